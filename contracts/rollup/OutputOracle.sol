// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { LibMerkle } from "../dispute/lib/LibMerkle.sol";
import {
    ChallengeWindowOver,
    DisputeRunning,
    IncorrectValue,
    InvalidConfig,
    InvalidRecords,
    NotDisputeAuthority,
    NotProposer,
    NothingToWithdraw,
    OutputAlreadyFinal,
    OutputFromTheFuture,
    OutputNotAfterLast,
    OutputNotFinalizable,
    TransferFailed,
    UnknownOutput
} from "./RollupErrors.sol";

/// @title OutputOracle
/// @notice The L2 outputs posted to L1 (docs/rollup.md "Outputs"): per output the L2 block number,
///         timestamp and hash, the state root and the **inference root** (the Merkle root of the
///         block range's inference records, `ai_evm.evm.records.inference_root`), each with the
///         proposer's bond. An output is final once its challenge window has passed with no
///         dispute running and every earlier output is final; its bond then returns to the
///         proposer. The dispute authority (the record-dispute contract wired to the inference
///         game) opens and closes disputes on outputs; a dispute that proves an inference record
///         wrong **deletes that output and every later one**, pays their bonds to the challenger
///         and opens proposing to any bonded account.
/// @dev Outputs are addressed by index; indices are reused after a deletion, so a dispute names
///      the output's `nonce` (unique per proposal) as well, and closing a dispute on a deleted
///      output is a no-op.
contract OutputOracle {
    /// @notice One output.
    struct Output {
        bytes32 stateRoot;
        bytes32 inferenceRoot;
        bytes32 l2BlockHash;
        uint64 l2BlockNumber;
        uint64 l2Timestamp;
        uint64 proposedAt;
        uint64 nonce;
        address proposer;
        uint32 openDisputes;
        uint256 bond;
    }

    /// @notice Bytes of one encoded inference record.
    uint256 public constant RECORD_BYTES = 192;
    /// @notice Most records one output may carry.
    uint256 public constant MAX_RECORDS = 4096;
    /// @notice The output-root version (`outputRoot`).
    bytes32 public constant OUTPUT_VERSION = bytes32(0);

    /// @notice The designated proposer (anyone bonded after the first deletion).
    address public immutable PROPOSER;
    /// @notice The bond per output (wei).
    uint256 public immutable PROPOSER_BOND;
    /// @notice Seconds after a proposal during which it can be disputed.
    uint64 public immutable CHALLENGE_WINDOW;
    /// @notice The account that deploys and wires the dispute authority (once).
    address internal immutable DEPLOYER;

    /// @notice The contract allowed to open/close disputes and delete outputs.
    address public disputeAuthority;
    /// @notice Whether any bonded account may propose (set by the first deletion).
    bool public permissionless;
    /// @notice Outputs `[0, finalizedCount)` are final.
    uint256 public finalizedCount;
    /// @notice The outputs, oldest first.
    Output[] internal outputs;
    /// @notice Proposals so far (the next output's nonce).
    uint64 public proposals;
    /// @notice Withdrawable balances (pull payments).
    mapping(address => uint256) public credit;

    /// @notice An output was proposed.
    event OutputProposed(uint256 indexed index, uint64 indexed l2BlockNumber, bytes32 outputRoot, address proposer);
    /// @notice Outputs `[index, index + count)` were deleted; their bonds went to `challenger`.
    event OutputsDeleted(uint256 indexed index, uint256 count, address challenger);
    /// @notice Output `index` became final.
    event OutputFinalized(uint256 indexed index, uint64 l2BlockNumber);
    /// @notice A dispute over output `index` opened or closed.
    event DisputeChanged(uint256 indexed index, uint64 nonce, bool opened, bool outputWrong);

    /// @param _proposer The designated proposer.
    /// @param _bond The bond per output.
    /// @param _challengeWindow The challenge window in seconds (> 0).
    constructor(address _proposer, uint256 _bond, uint64 _challengeWindow) {
        if (_challengeWindow == 0 || _proposer == address(0)) revert InvalidConfig();
        PROPOSER = _proposer;
        PROPOSER_BOND = _bond;
        CHALLENGE_WINDOW = _challengeWindow;
        DEPLOYER = msg.sender;
    }

    /// @notice Wire the dispute authority (once, by the deployer).
    function setDisputeAuthority(address _authority) external {
        // INVARIANT: set once, by the deployer, to a non-zero address.
        if (msg.sender != DEPLOYER || disputeAuthority != address(0) || _authority == address(0)) {
            revert NotDisputeAuthority();
        }
        disputeAuthority = _authority;
    }

    ////////////////////////////////////////////////////////////////
    //                        Proposing                           //
    ////////////////////////////////////////////////////////////////

    /// @notice Propose the output at L2 block `_l2BlockNumber` with the inference records of the
    ///         blocks since the previous output (`_records`: 192-byte `InferenceRecord.encode()`s,
    ///         in order). The records are published here (calldata) so that anyone can prove one of
    ///         them in a challenge; their Merkle root is computed here, never taken from the proposer.
    /// @return index_ The output's index.
    function propose(
        uint64 _l2BlockNumber,
        uint64 _l2Timestamp,
        bytes32 _l2BlockHash,
        bytes32 _stateRoot,
        bytes calldata _records
    ) external payable returns (uint256 index_) {
        // INVARIANT: the designated proposer, or anyone once it was caught lying.
        if (msg.sender != PROPOSER && !permissionless) revert NotProposer();
        // INVARIANT: every output is bonded with exactly the bond.
        if (msg.value != PROPOSER_BOND) revert IncorrectValue();
        index_ = outputs.length;
        // INVARIANT: outputs move forward along the L2 chain.
        if (index_ > 0 && _l2BlockNumber <= outputs[index_ - 1].l2BlockNumber) revert OutputNotAfterLast();
        if (index_ == 0 && _l2BlockNumber == 0) revert OutputNotAfterLast();
        // INVARIANT: an L2 block cannot be newer than L1 time.
        if (_l2Timestamp > block.timestamp) revert OutputFromTheFuture();
        bytes32 inferenceRoot = inferenceRootOf(_records);
        uint64 nonce = proposals++;
        outputs.push(
            Output({
                stateRoot: _stateRoot,
                inferenceRoot: inferenceRoot,
                l2BlockHash: _l2BlockHash,
                l2BlockNumber: _l2BlockNumber,
                l2Timestamp: _l2Timestamp,
                proposedAt: uint64(block.timestamp),
                nonce: nonce,
                proposer: msg.sender,
                openDisputes: 0,
                bond: msg.value
            })
        );
        emit OutputProposed(index_, _l2BlockNumber, outputRoot(index_), msg.sender);
    }

    /// @notice Finalize the next output if it can be; returns whether it was.
    function finalizeNext() public returns (bool) {
        uint256 i = finalizedCount;
        if (i >= outputs.length) return false;
        Output storage o = outputs[i];
        if (o.openDisputes != 0 || block.timestamp < uint256(o.proposedAt) + CHALLENGE_WINDOW) return false;
        finalizedCount = i + 1;
        credit[o.proposer] += o.bond;
        emit OutputFinalized(i, o.l2BlockNumber);
        return true;
    }

    /// @notice Finalize outputs in order up to and including `_index` (reverts if one cannot be).
    function finalize(uint256 _index) external {
        if (_index >= outputs.length) revert UnknownOutput();
        while (finalizedCount <= _index) {
            // INVARIANT: in order, each past its window with no dispute running.
            if (!finalizeNext()) revert OutputNotFinalizable();
        }
    }

    /// @notice Withdraw the caller's credit (pull payment; state is cleared before the transfer).
    function withdraw() external {
        uint256 amount = credit[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        credit[msg.sender] = 0;
        (bool ok,) = msg.sender.call{ value: amount }("");
        if (!ok) revert TransferFailed();
    }

    ////////////////////////////////////////////////////////////////
    //                        Disputes                            //
    ////////////////////////////////////////////////////////////////

    /// @notice A dispute over output `_index` (proposal `_nonce`) opens; blocks its finalization.
    function openDispute(uint256 _index, uint64 _nonce) external {
        if (msg.sender != disputeAuthority) revert NotDisputeAuthority();
        Output storage o = _live(_index, _nonce);
        // INVARIANT: only non-final outputs inside their window can be disputed.
        if (_index < finalizedCount) revert OutputAlreadyFinal();
        if (block.timestamp >= uint256(o.proposedAt) + CHALLENGE_WINDOW) revert ChallengeWindowOver();
        o.openDisputes += 1;
        emit DisputeChanged(_index, _nonce, true, false);
    }

    /// @notice A dispute closes. If it proved the output wrong, delete it and every later output
    ///         and credit their bonds to `_challenger`. A no-op for a deleted output.
    function closeDispute(uint256 _index, uint64 _nonce, bool _outputWrong, address _challenger) external {
        if (msg.sender != disputeAuthority) revert NotDisputeAuthority();
        if (_index >= outputs.length || outputs[_index].nonce != _nonce) return; // deleted meanwhile
        Output storage o = outputs[_index];
        o.openDisputes -= 1;
        emit DisputeChanged(_index, _nonce, false, _outputWrong);
        if (!_outputWrong) return;
        // SAFETY: a running dispute blocks finalization, so the output cannot be final here.
        uint256 n = outputs.length - _index;
        uint256 bonds = 0;
        while (outputs.length > _index) {
            bonds += outputs[outputs.length - 1].bond;
            outputs.pop();
        }
        permissionless = true;
        credit[_challenger] += bonds;
        emit OutputsDeleted(_index, n, _challenger);
    }

    function _live(uint256 _index, uint64 _nonce) internal view returns (Output storage o_) {
        // INVARIANT: the output exists and is the proposal the dispute is about.
        if (_index >= outputs.length || outputs[_index].nonce != _nonce) revert UnknownOutput();
        o_ = outputs[_index];
    }

    ////////////////////////////////////////////////////////////////
    //                          Views                             //
    ////////////////////////////////////////////////////////////////

    /// @notice The inference root of concatenated 192-byte records (`ai_evm.evm.records.inference_root`:
    ///         keccak leaves, zero-padded tree of depth `tree_depth(n)`, depth 1 for no record).
    function inferenceRootOf(bytes calldata _records) public pure returns (bytes32) {
        // INVARIANT: whole records, and few enough that computing the root stays cheap.
        if (_records.length % RECORD_BYTES != 0 || _records.length / RECORD_BYTES > MAX_RECORDS) {
            revert InvalidRecords();
        }
        uint256 n = _records.length / RECORD_BYTES;
        bytes32[] memory leaves = new bytes32[](n);
        for (uint256 i = 0; i < n; i++) {
            leaves[i] = keccak256(_records[i * RECORD_BYTES:(i + 1) * RECORD_BYTES]);
        }
        return LibMerkle.merkleRoot(leaves, n == 0 ? 1 : LibMerkle.treeDepth(n));
    }

    /// @notice Number of (live) outputs.
    function outputCount() external view returns (uint256) {
        return outputs.length;
    }

    /// @notice Output `_index`.
    function output(uint256 _index) external view returns (Output memory output_) {
        if (_index >= outputs.length) revert UnknownOutput();
        output_ = outputs[_index];
    }

    /// @notice `keccak256(version ‖ stateRoot ‖ inferenceRoot ‖ l2BlockHash)` of output `_index`.
    function outputRoot(uint256 _index) public view returns (bytes32) {
        if (_index >= outputs.length) revert UnknownOutput();
        Output storage o = outputs[_index];
        return keccak256(abi.encodePacked(OUTPUT_VERSION, o.stateRoot, o.inferenceRoot, o.l2BlockHash));
    }

    /// @notice Whether output `_index` is final.
    function isFinal(uint256 _index) external view returns (bool) {
        return _index < finalizedCount;
    }

    /// @notice Whether `_recordHash` (`keccak256(record.encode())`) is record `_recordIndex` of
    ///         output `_index`'s inference root (path bottom first).
    function hasRecord(uint256 _index, bytes32 _recordHash, uint256 _recordIndex, bytes32[] calldata _proof)
        external
        view
        returns (bool)
    {
        if (_index >= outputs.length) revert UnknownOutput();
        return LibMerkle.rootFromProof(_recordHash, _recordIndex, _proof) == outputs[_index].inferenceRoot;
    }

    /// @notice Reject stray ether (bonds come with `propose`).
    receive() external payable {
        revert IncorrectValue();
    }

    /// @dev Keeps the `DisputeRunning` error referenced for callers that check it first.
    function requireNoDispute(uint256 _index) external view {
        if (_index >= outputs.length) revert UnknownOutput();
        if (outputs[_index].openDisputes != 0) revert DisputeRunning();
    }
}
