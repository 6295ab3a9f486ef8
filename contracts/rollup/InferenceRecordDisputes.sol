// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { BundlePhaseLink } from "../dispute/BundlePhaseLink.sol";
import { DisputeGameFactory } from "../dispute/DisputeGameFactory.sol";
import { LibMerkle } from "../dispute/lib/LibMerkle.sol";
import { Claim, Graph } from "../dispute/lib/Types.sol";
import { ModelRegistry } from "./ModelRegistry.sol";
import { OutputOracle } from "./OutputOracle.sol";
import {
    ChallengeNotOpen,
    IncorrectValue,
    InvalidDefence,
    InvalidInferenceBytes,
    InvalidRecordProof,
    InvalidTensorProof,
    NotResolvable,
    NothingToWithdraw,
    TransferFailed,
    UnknownChallenge
} from "./RollupErrors.sol";

/// @title InferenceRecordDisputes
/// @notice Challenges of one inference record of an L2 output, decided by the inference dispute
///         game (docs/rollup.md "Disputing an output", `docs/dispute_game.md` §1 "Link to the
///         rollup's inference record"). The dispute authority of the `OutputOracle`.
///
///         1. `challenge`: anyone, with the challenge bond, names a record of an output (its Merkle
///            path to the output's inference root) and gives the call's input bytes (every node
///            that re-executed the block has them; the record's input hash is checked). The bytes
///            are split into the model's declared input tensors (descriptors proven against the
///            model address) and their `commit_tensor` roots computed here. The output cannot
///            finalize meanwhile.
///         2. `defend`: within the response window the output's proposer reveals the output bytes
///            its record commits to (their hash is checked: only the proposer knows a wrong
///            output's preimage), whose roots are computed likewise, and names its own pending
///            `DisputeGameFactory` claim about exactly that inference: the claim is fixed by the
///            record, not chosen by a player. The challenger (and anyone) then challenges that
///            claim in the factory and plays the game.
///         3. `resolve`: no defence in time, or the claim rejected by a game: the output was wrong:
///            it and every later output are deleted, their bonds and the challenge bond go to the
///            challenger. The claim final: the output stands and the challenge bond goes to the
///            proposer.
contract InferenceRecordDisputes {
    /// @notice Where a record challenge stands.
    enum Status {
        None,
        Open,
        Defended,
        OutputDeleted,
        OutputUpheld
    }

    /// @notice One record challenge.
    /// @custom:field model The record's model address.
    /// @custom:field batch The batch size the input bytes imply.
    /// @custom:field inputKey `keccak256(abi.encode(inputRoots))` of the record's input bytes.
    /// @custom:field outputHash The record's output hash (the defence must reveal its preimage).
    struct RecordChallenge {
        uint256 outputIndex;
        uint64 outputNonce;
        uint64 deadline;
        Status status;
        address challenger;
        address proposer;
        uint256 bond;
        bytes32 model;
        uint256 batch;
        bytes32 inputKey;
        bytes32 outputHash;
        uint256 claimId;
    }

    /// @notice The call a record commits to (`ai_evm.evm.call.InferenceRecord`).
    struct Record {
        bytes32 model;
        bytes32 txHash;
        uint256 callIndex;
        uint256 gas;
    }

    /// @notice A record with its place in the output's inference root.
    /// @custom:field outputHash The record's output hash (`keccak256` of the output bytes).
    struct RecordProof {
        Record record;
        bytes32 outputHash;
        uint256 index;
        bytes32[] path;
    }

    /// @notice The model's graph input and output descriptors, proven against its address.
    /// @custom:field metaHash, nodesRoot, tensorsRoot The address's parts (`addressFromParts`).
    /// @custom:field inputs, outputs One proof per graph input / output, declared order.
    struct IOProof {
        bytes32 metaHash;
        bytes32 nodesRoot;
        bytes32 tensorsRoot;
        BundlePhaseLink.TensorProofData[] inputs;
        BundlePhaseLink.TensorProofData[] outputs;
    }

    /// @notice Largest batch the engine accepts (`opml.engine.MAX_BATCH`).
    uint256 public constant MAX_BATCH = 65_536;

    OutputOracle public immutable ORACLE;
    ModelRegistry public immutable REGISTRY;
    DisputeGameFactory public immutable FACTORY;
    /// @notice The bond of a record challenge.
    uint256 public immutable CHALLENGE_BOND;
    /// @notice Seconds the proposer has to post and name its claim.
    uint64 public immutable RESPONSE_WINDOW;

    RecordChallenge[] internal challenges_;
    /// @notice Withdrawable balances (pull payments).
    mapping(address => uint256) public credit;

    event RecordChallenged(uint256 indexed id, uint256 indexed outputIndex, address challenger, bytes32 model,
        uint256 batch);
    event RecordDefended(uint256 indexed id, uint256 claimId);
    event RecordResolved(uint256 indexed id, bool outputDeleted);

    constructor(
        OutputOracle _oracle,
        ModelRegistry _registry,
        DisputeGameFactory _factory,
        uint256 _challengeBond,
        uint64 _responseWindow
    ) {
        ORACLE = _oracle;
        REGISTRY = _registry;
        FACTORY = _factory;
        CHALLENGE_BOND = _challengeBond;
        RESPONSE_WINDOW = _responseWindow;
    }

    /// @notice Challenge record `_recordIndex` of output `_outputIndex` (module docstring, 1).
    /// @return id_ The challenge id.
    /// @param _outputIndex The output.
    /// @param _record The record's call fields and output hash, its index in the output and its path.
    /// @param _input The call's input bytes (the record's `inputHash` is their keccak).
    /// @param _io The model's graph input/output descriptors with their proofs.
    function challenge(uint256 _outputIndex, RecordProof calldata _record, bytes calldata _input, IOProof calldata _io)
        external
        payable
        returns (uint256 id_)
    {
        // INVARIANT: a challenge is bonded.
        if (msg.value != CHALLENGE_BOND) revert IncorrectValue();
        OutputOracle.Output memory out = ORACLE.output(_outputIndex);
        // INVARIANT: the record is in the output, with these exact input bytes.
        bytes32 leaf = recordHash(_record.record, keccak256(_input), _record.outputHash);
        if (!ORACLE.hasRecord(_outputIndex, leaf, _record.index, _record.path)) revert InvalidRecordProof();
        bytes32 model = _record.record.model;
        _checkIO(model, _io);
        uint256 batch = batchOf(_io.inputs, _input.length);
        bytes32 inputKey = keccak256(abi.encode(_roots(_io.inputs, batch, _input)));
        // SAFETY: the oracle checks the output is live, not final and inside its window.
        ORACLE.openDispute(_outputIndex, out.nonce);
        id_ = challenges_.length;
        challenges_.push(
            RecordChallenge({
                outputIndex: _outputIndex,
                outputNonce: out.nonce,
                deadline: uint64(block.timestamp) + RESPONSE_WINDOW,
                status: Status.Open,
                challenger: msg.sender,
                proposer: out.proposer,
                bond: msg.value,
                model: model,
                batch: batch,
                inputKey: inputKey,
                outputHash: _record.outputHash,
                claimId: 0
            })
        );
        emit RecordChallenged(id_, _outputIndex, msg.sender, model, batch);
    }

    /// @notice Defend challenge `_id` (module docstring, 2): reveal the record's output bytes and
    ///         name the proposer's own pending factory claim `_claimId` about exactly this inference.
    function defend(
        uint256 _id,
        bytes calldata _output,
        IOProof calldata _io,
        uint256 _claimId,
        Claim calldata _claim,
        bytes calldata _graphProof
    ) external {
        RecordChallenge storage c = _challenge(_id);
        // INVARIANT: defended once, in time, with the record's own output bytes.
        if (c.status != Status.Open) revert ChallengeNotOpen();
        if (block.timestamp > c.deadline || keccak256(_output) != c.outputHash) revert InvalidDefence();
        _checkIO(c.model, _io);
        bytes32[] memory outRoots = _roots(_io.outputs, c.batch, _output);
        DisputeGameFactory.ClaimRecord memory rec = FACTORY.claimRecord(_claimId);
        // INVARIANT: the proposer's own claim, pending, about exactly this inference.
        if (
            rec.claimant != c.proposer || rec.status != DisputeGameFactory.ClaimStatus.Pending
                || rec.claimHash != keccak256(abi.encode(_claim, _graphProof)) || _claim.modelAddress != c.model
                || _claim.batch != c.batch || keccak256(abi.encode(_claim.inputRoots)) != c.inputKey
                || keccak256(abi.encode(_claim.outputRoots)) != keccak256(abi.encode(outRoots))
        ) revert InvalidDefence();
        c.status = Status.Defended;
        c.claimId = _claimId;
        emit RecordDefended(_id, _claimId);
    }

    /// @notice Settle challenge `_id` once its outcome is known (module docstring, 3).
    function resolve(uint256 _id) external {
        RecordChallenge storage c = _challenge(_id);
        bool wrong;
        if (c.status == Status.Open) {
            // INVARIANT: an undefended challenge wins only after the response window.
            if (block.timestamp <= c.deadline) revert NotResolvable();
            wrong = true;
        } else if (c.status == Status.Defended) {
            DisputeGameFactory.ClaimStatus s = FACTORY.claimRecord(c.claimId).status;
            // INVARIANT: the claim's fate is decided (rejected by a game, or final).
            if (s == DisputeGameFactory.ClaimStatus.Pending) revert NotResolvable();
            wrong = s == DisputeGameFactory.ClaimStatus.Rejected;
        } else {
            revert ChallengeNotOpen();
        }
        c.status = wrong ? Status.OutputDeleted : Status.OutputUpheld;
        credit[wrong ? c.challenger : c.proposer] += c.bond;
        ORACLE.closeDispute(c.outputIndex, c.outputNonce, wrong, c.challenger);
        emit RecordResolved(_id, wrong);
    }

    /// @notice Withdraw the caller's credit (state cleared before the transfer).
    function withdraw() external {
        uint256 amount = credit[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        credit[msg.sender] = 0;
        (bool ok,) = msg.sender.call{ value: amount }("");
        if (!ok) revert TransferFailed();
    }

    /// @notice `keccak256(record.encode())` (`ai_evm.evm.call.InferenceRecord.encode`).
    function recordHash(Record calldata _r, bytes32 _inputHash, bytes32 _outputHash) public pure returns (bytes32) {
        return keccak256(abi.encodePacked(_r.model, _inputHash, _outputHash, _r.txHash, _r.callIndex, _r.gas));
    }

    /// @notice Challenge `_id`.
    function challengeOf(uint256 _id) external view returns (RecordChallenge memory) {
        return _challenge(_id);
    }

    /// @notice Number of challenges.
    function challengeCount() external view returns (uint256) {
        return challenges_.length;
    }

    ////////////////////////////////////////////////////////////////
    //                 The claim fixed by a record                //
    ////////////////////////////////////////////////////////////////

    /// @notice The batch and the `commit_tensor` roots of an inference's input and output bytes
    ///         (`opml.engine.decode_inputs`, `fraud_vm.tensors.commit_tensor`): what a claim about
    ///         it must hold.
    function rootsOf(bytes32 _model, bytes calldata _input, bytes calldata _output, IOProof calldata _io)
        external
        view
        returns (uint256 batch_, bytes32[] memory inputRoots_, bytes32[] memory outputRoots_)
    {
        _checkIO(_model, _io);
        batch_ = batchOf(_io.inputs, _input.length);
        inputRoots_ = _roots(_io.inputs, batch_, _input);
        outputRoots_ = _roots(_io.outputs, batch_, _output);
    }

    /// @notice The descriptors are the model's, at its graph's input and output ids.
    function _checkIO(bytes32 _model, IOProof calldata _io) internal view {
        Graph memory g = REGISTRY.graphOf(_model);
        // INVARIANT: one proven descriptor per graph input and output, against the model address.
        if (
            _io.inputs.length != g.inputIds.length || _io.outputs.length != g.outputIds.length
                || _addressFromParts(_io.metaHash, _io.nodesRoot, _io.tensorsRoot) != _model
        ) revert InvalidTensorProof();
        for (uint256 i = 0; i < _io.inputs.length; i++) {
            _checkTensor(_io.inputs[i], g.inputIds[i], _io.tensorsRoot);
        }
        for (uint256 j = 0; j < _io.outputs.length; j++) {
            _checkTensor(_io.outputs[j], g.outputIds[j], _io.tensorsRoot);
        }
    }

    /// @notice The batch size `_n` input bytes imply (`opml.engine.batch_from_input_length`).
    function batchOf(BundlePhaseLink.TensorProofData[] calldata _specs, uint256 _n) public pure returns (uint256) {
        uint256 fixedBytes;
        uint256 per;
        for (uint256 i = 0; i < _specs.length; i++) {
            (uint256 b, bool dynamic) = _sampleBytes(_specs[i].desc);
            if (dynamic) per += b;
            else fixedBytes += b;
        }
        if (per == 0) {
            if (_n != fixedBytes) revert InvalidInferenceBytes();
            return 1;
        }
        if (_n <= fixedBytes || (_n - fixedBytes) % per != 0 || (_n - fixedBytes) / per > MAX_BATCH) {
            revert InvalidInferenceBytes();
        }
        return (_n - fixedBytes) / per;
    }

    function _sampleBytes(int256[] calldata _d) internal pure returns (uint256 bytes_, bool dynamic_) {
        uint256 nd = uint256(_d[1]);
        bytes_ = _itemsize(_d[0]);
        for (uint256 k = 0; k < nd; k++) {
            int256 v = _d[2 + k];
            if (k == 0 && v < 0) {
                dynamic_ = true;
                v = -v;
            }
            // INVARIANT: dimensions are bounded as the context decoder bounds them.
            if (v < 0 || v >= 2 ** 32) revert InvalidTensorProof();
            bytes_ *= uint256(v);
        }
    }

    function _roots(BundlePhaseLink.TensorProofData[] calldata _specs, uint256 _batch, bytes calldata _data)
        internal
        pure
        returns (bytes32[] memory roots_)
    {
        roots_ = new bytes32[](_specs.length);
        uint256 pos = 0;
        for (uint256 i = 0; i < _specs.length; i++) {
            (bytes memory header, uint256 n) = _header(_specs[i].desc, _batch);
            // INVARIANT: the bytes are exactly the declared tensors, back to back.
            if (pos + n > _data.length) revert InvalidInferenceBytes();
            roots_[i] = keccak256(abi.encodePacked(header, _dataRoot(_data[pos:pos + n])));
            pos += n;
        }
        if (pos != _data.length) revert InvalidInferenceBytes();
    }

    /// @notice Header words `[dtype, ndim, dims (batch applied)..]` and the byte size of a tensor.
    function _header(int256[] calldata _d, uint256 _batch) internal pure returns (bytes memory h_, uint256 n_) {
        uint256 nd = uint256(_d[1]);
        h_ = abi.encodePacked(_d[0], _d[1]);
        n_ = _itemsize(_d[0]);
        for (uint256 k = 0; k < nd; k++) {
            int256 v = _d[2 + k];
            if (k == 0 && v < 0) v = -v * int256(_batch);
            h_ = bytes.concat(h_, abi.encodePacked(v));
            n_ *= uint256(v);
        }
    }

    /// @notice The word tree root of `_b` (zero-padded last word; `0^32` if empty; one word is
    ///         its own root), as `fraud_vm.tensors.commit_tensor`.
    function _dataRoot(bytes calldata _b) internal pure returns (bytes32) {
        uint256 nWords = (_b.length + 31) / 32;
        bytes32[] memory leaves = new bytes32[](nWords);
        for (uint256 w = 0; w < nWords; w++) {
            uint256 end = w * 32 + 32 > _b.length ? _b.length : w * 32 + 32;
            leaves[w] = bytes32(_b[w * 32:end]); // right-padded with zeros
        }
        return LibMerkle.merkleRoot(leaves, LibMerkle.treeDepth(nWords));
    }

    function _checkTensor(BundlePhaseLink.TensorProofData calldata _t, uint256 _id, bytes32 _tensorsRoot)
        internal
        pure
    {
        int256[] calldata d = _t.desc;
        // INVARIANT: a well-formed descriptor at tensor `_id` of the address's tensor table.
        if (d.length < 6 || d[1] < 0 || d[1] > 8 || d.length != uint256(d[1]) + 6 || _id >> _t.tensorPath.length != 0) {
            revert InvalidTensorProof();
        }
        bytes32 leaf = keccak256(abi.encodePacked(d, _t.dataRoot));
        if (LibMerkle.rootFromProof(leaf, _id, _t.tensorPath) != _tensorsRoot) revert InvalidTensorProof();
    }

    function _addressFromParts(bytes32 _metaHash, bytes32 _nodesRoot, bytes32 _tensorsRoot)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(
            abi.encodePacked(
                keccak256(abi.encodePacked(_metaHash, _nodesRoot)), keccak256(abi.encodePacked(_tensorsRoot, bytes32(0)))
            )
        );
    }

    function _itemsize(int256 _dtype) internal pure returns (uint256) {
        if (_dtype == 1 || _dtype == 2 || _dtype == 7) return 1;
        if (_dtype == 3) return 2;
        if (_dtype == 4 || _dtype == 6) return 4;
        if (_dtype == 5) return 8;
        revert InvalidTensorProof();
    }

    function _challenge(uint256 _id) internal view returns (RecordChallenge storage c_) {
        if (_id >= challenges_.length) revert UnknownChallenge();
        c_ = challenges_[_id];
    }
}
