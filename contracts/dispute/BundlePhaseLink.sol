// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { IPhaseLink } from "./interfaces/IPhaseLink.sol";
import { IProgramLength } from "./interfaces/IProgramLength.sol";
import { LibMerkle } from "./lib/LibMerkle.sol";
import { Graph, NodeLink } from "./lib/Types.sol";
import { InputCountMismatch, InvalidDescriptorProof, MalformedContext } from "./lib/Errors.sol";

/// @title BundlePhaseLink
/// @notice The phase link over the bundle commitment of `docs/bundle.md` "Merkle proofs":
///         `address = H(H(meta_hash ‖ nodes_root) ‖ H(tensors_root ‖ 0^32))`. `graph` checks the
///         meta section against the address and parses its header words
///         (`opml.commitment.verify_header`); `openNode` checks node `k`'s descriptor and its
///         tensors' descriptors (`verify_node`, `verify_tensor`), rebuilds the node context
///         (`fraud_vm.context.NodeContext`), and derives the constants' and the zero output
///         region's roots (`fraud_vm.tensors.region_root`, `fraud_vm.trace.zero_region_root`), as
///         `fraud_vm.game.node_context` does. The program length comes from `PROGRAM_LENGTH` (the
///         step verifier's mirror of `fraud_vm.stepper.num_steps`).
contract BundlePhaseLink is IPhaseLink {
    /// @notice A node descriptor with its proof against the model address (`NodeProof`).
    /// @custom:field nodeWords The descriptor words `[op, n_in, in.., n_out, out.., n_attrs, (len, v..)..]`.
    /// @custom:field nodePath Siblings from the node leaf up to `nodes_root`.
    /// @custom:field metaHash The meta section's hash (left half of the address).
    /// @custom:field tensorsRoot The tensors tree's root.
    struct NodeProofData {
        int256[] nodeWords;
        bytes32[] nodePath;
        bytes32 metaHash;
        bytes32 tensorsRoot;
    }

    /// @notice A tensor descriptor and data root with their path to `tensors_root` (`TensorProof`).
    struct TensorProofData {
        int256[] desc;
        bytes32 dataRoot;
        bytes32[] tensorPath;
    }

    /// @notice Derives a node program's length from its context.
    IProgramLength public immutable PROGRAM_LENGTH;

    /// @param _programLength The program-length oracle (the step verifier's stepper).
    constructor(IProgramLength _programLength) {
        PROGRAM_LENGTH = _programLength;
    }

    /// @inheritdoc IPhaseLink
    /// @dev `_proof = abi.encode(bytes meta, bytes32 nodesRoot, bytes32 tensorsRoot)`.
    function graph(bytes32 _model, bytes calldata _proof) external pure returns (Graph memory g_) {
        (bytes memory meta, bytes32 nodesRoot, bytes32 tensorsRoot) = abi.decode(_proof, (bytes, bytes32, bytes32));
        // INVARIANT: the meta section is committed by the model address.
        if (addressFromParts(keccak256(meta), nodesRoot, tensorsRoot) != _model) revert InvalidDescriptorProof();
        g_ = parseHeader(meta);
    }

    /// @inheritdoc IPhaseLink
    /// @dev `_proof = abi.encode(NodeProofData, TensorProofData[])`, one tensor proof per node
    ///      input then output, in descriptor order.
    function openNode(bytes32 _model, uint256 _nodeIndex, uint256 _batch, bytes calldata _proof)
        external
        view
        returns (NodeLink memory link_)
    {
        (NodeProofData memory np, TensorProofData[] memory tps) = abi.decode(_proof, (NodeProofData, TensorProofData[]));
        // INVARIANT: the node's descriptor is proven against the model address.
        (uint256[] memory ins, uint256[] memory outs) = nodeTensorIds(np.nodeWords);
        if (_nodeIndex >> np.nodePath.length != 0) revert InvalidDescriptorProof();
        bytes32 nodesRoot = LibMerkle.rootFromMemoryProof(keccak256(abi.encodePacked(np.nodeWords)), _nodeIndex, np.nodePath);
        if (addressFromParts(np.metaHash, nodesRoot, np.tensorsRoot) != _model) revert InvalidDescriptorProof();
        // INVARIANT: one descriptor proof per tensor the node names, each against the same address.
        uint256 nIn = ins.length;
        if (tps.length != nIn + outs.length) revert InputCountMismatch();
        for (uint256 j = 0; j < tps.length; j++) {
            uint256 id = j < nIn ? ins[j] : outs[j - nIn];
            if (!tensorDescOk(tps[j].desc) || id >> tps[j].tensorPath.length != 0) revert InvalidDescriptorProof();
            bytes32 leaf = keccak256(abi.encodePacked(tps[j].desc, tps[j].dataRoot));
            if (LibMerkle.rootFromMemoryProof(leaf, id, tps[j].tensorPath) != np.tensorsRoot) {
                revert InvalidDescriptorProof();
            }
        }
        bytes memory context = encodeContext(_model, _nodeIndex, _batch, np.nodeWords, tps);
        link_.contextHash = keccak256(context);
        link_.inputIds = ins;
        link_.outputIds = outs;
        link_.constRoots = new bytes32[](nIn);
        for (uint256 i = 0; i < nIn; i++) {
            // SAFETY: a constant's root is its proven descriptor's header and data root.
            if (tps[i].desc[uint256(tps[i].desc[1]) + 2] == 1) {
                link_.constRoots[i] = regionRoot(tps[i].desc, _batch, tps[i].dataRoot);
            }
        }
        link_.outputZeroRoot = zeroRegionRoot(tps[tps.length - 1].desc, _batch);
        link_.numSteps = PROGRAM_LENGTH.numSteps(context);
    }

    /// @notice `H(H(meta_hash ‖ nodes_root) ‖ H(tensors_root ‖ 0^32))`.
    function addressFromParts(bytes32 _metaHash, bytes32 _nodesRoot, bytes32 _tensorsRoot)
        public
        pure
        returns (bytes32)
    {
        return LibMerkle.hashPair(LibMerkle.hashPair(_metaHash, _nodesRoot), LibMerkle.hashPair(_tensorsRoot, 0));
    }

    /// @notice The graph header words of a meta section (`opml.commitment.parse_header`).
    function parseHeader(bytes memory _meta) public pure returns (Graph memory g_) {
        int256 nTensors = _word(_meta, 1);
        int256 nNodes = _word(_meta, 2);
        int256 nIn = _word(_meta, 3);
        if (nTensors <= 0 || nTensors >= 2 ** 32 || nNodes < 0 || nNodes >= 2 ** 32 || nIn < 0 || nIn > nTensors) {
            revert InvalidDescriptorProof();
        }
        g_.nTensors = uint256(nTensors);
        g_.nNodes = uint256(nNodes);
        g_.inputIds = _ids(_meta, 4, uint256(nIn), nTensors);
        int256 nOut = _word(_meta, 4 + uint256(nIn));
        if (nOut < 0 || nOut > nTensors) revert InvalidDescriptorProof();
        g_.outputIds = _ids(_meta, 5 + uint256(nIn), uint256(nOut), nTensors);
    }

    /// @notice The tensor ids a node descriptor names, after its structure check
    ///         (`opml.commitment.node_words_ok`, `fraud_vm.game._node_tensor_ids`).
    function nodeTensorIds(int256[] memory _w) public pure returns (uint256[] memory ins_, uint256[] memory outs_) {
        uint256 nIn = _count(_w, 1);
        uint256 nOut = _count(_w, 2 + nIn);
        uint256 pos = 3 + nIn + nOut;
        uint256 nAttrs = _count(_w, pos);
        pos += 1;
        for (uint256 a = 0; a < nAttrs; a++) {
            pos += _count(_w, pos) + 1;
        }
        if (pos != _w.length) revert InvalidDescriptorProof();
        ins_ = new uint256[](nIn);
        outs_ = new uint256[](nOut);
        for (uint256 i = 0; i < nIn; i++) {
            ins_[i] = _nonNegative(_w[2 + i]);
        }
        for (uint256 i = 0; i < nOut; i++) {
            outs_[i] = _nonNegative(_w[3 + nIn + i]);
        }
    }

    /// @notice The count word at `_pos` (0..64), or `InvalidDescriptorProof`.
    function _count(int256[] memory _w, uint256 _pos) internal pure returns (uint256) {
        if (_pos >= _w.length || _w[_pos] < 0 || _w[_pos] > 64) revert InvalidDescriptorProof();
        return uint256(_w[_pos]);
    }

    /// @notice Structure check of tensor descriptor words (`opml.commitment.tensor_desc_ok`).
    function tensorDescOk(int256[] memory _d) public pure returns (bool) {
        return _d.length >= 6 && _d[1] >= 0 && _d[1] <= 8 && _d.length == uint256(_d[1]) + 6 && _d[_d.length - 1] >= 0;
    }

    /// @notice The node context `address ‖ int256 words [k, batch, m, node words.., t, (len, desc..)..]`.
    function encodeContext(
        bytes32 _model,
        uint256 _nodeIndex,
        uint256 _batch,
        int256[] memory _nodeWords,
        TensorProofData[] memory _tps
    )
        public
        pure
        returns (bytes memory ctx_)
    {
        ctx_ = abi.encodePacked(_model, _nodeIndex, _batch, _nodeWords.length, _nodeWords, _tps.length);
        for (uint256 j = 0; j < _tps.length; j++) {
            ctx_ = bytes.concat(ctx_, abi.encodePacked(_tps[j].desc.length, _tps[j].desc));
        }
    }

    /// @notice `H(header ‖ data_root)` with `header = [dtype, ndim, dims (batch applied)..]`.
    function regionRoot(int256[] memory _desc, uint256 _batch, bytes32 _dataRoot) public pure returns (bytes32) {
        (bytes memory header,) = _header(_desc, _batch);
        return keccak256(abi.encodePacked(header, _dataRoot));
    }

    /// @notice Root of the all-zero region of a tensor (`fraud_vm.trace.zero_region_root`).
    function zeroRegionRoot(int256[] memory _desc, uint256 _batch) public pure returns (bytes32) {
        (bytes memory header, uint256 size) = _header(_desc, _batch);
        uint256 nWords = (size * _itemsize(_desc[0]) + 31) / 32;
        bytes32 dataRoot = nWords == 0 ? bytes32(0) : LibMerkle.zeroHash(LibMerkle.treeDepth(nWords));
        return keccak256(abi.encodePacked(header, dataRoot));
    }

    /// @notice Header words of a tensor region and its element count (`fraud_vm.context._info`).
    function _header(int256[] memory _desc, uint256 _batch) internal pure returns (bytes memory h_, uint256 size_) {
        uint256 nd = uint256(_desc[1]);
        _itemsize(_desc[0]); // a known dtype
        h_ = abi.encodePacked(_desc[0], _desc[1]);
        size_ = 1;
        for (uint256 i = 0; i < nd; i++) {
            int256 d = _desc[2 + i];
            if (i == 0 && d < 0) d = -d * int256(_batch);
            if (d < 0) revert MalformedContext();
            h_ = bytes.concat(h_, abi.encodePacked(d));
            size_ *= uint256(d);
        }
    }

    /// @notice Bytes per element of a dtype code (`opml.bundle.DType.itemsize`).
    function _itemsize(int256 _dtype) internal pure returns (uint256) {
        if (_dtype == 1 || _dtype == 2 || _dtype == 7) return 1; // int8, uint8, bool
        if (_dtype == 3) return 2; // int16
        if (_dtype == 4 || _dtype == 6) return 4; // int32, float32
        if (_dtype == 5) return 8; // int64
        revert MalformedContext();
    }

    function _word(bytes memory _b, uint256 _i) internal pure returns (int256 w_) {
        if (_b.length < (_i + 1) * 32) revert InvalidDescriptorProof();
        assembly ("memory-safe") {
            w_ := mload(add(add(_b, 0x20), mul(_i, 0x20)))
        }
    }

    function _ids(bytes memory _b, uint256 _first, uint256 _n, int256 _nTensors)
        internal
        pure
        returns (uint256[] memory ids_)
    {
        ids_ = new uint256[](_n);
        for (uint256 j = 0; j < _n; j++) {
            int256 t = _word(_b, _first + j);
            if (t < 0 || t >= _nTensors) revert InvalidDescriptorProof();
            ids_[j] = uint256(t);
        }
    }

    function _nonNegative(int256 _v) internal pure returns (uint256) {
        if (_v < 0) revert InvalidDescriptorProof();
        return uint256(_v);
    }
}
