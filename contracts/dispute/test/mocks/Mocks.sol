// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { IPhaseLink } from "../../interfaces/IPhaseLink.sol";
import { IStepVerifier } from "../../interfaces/IStepVerifier.sol";
import { InvalidDescriptorProof, PreStateHashMismatch } from "../../lib/Errors.sol";
import { Graph, NodeLink } from "../../lib/Types.sol";

/// @notice A step verifier over a table of honest transitions set by the test: `step(pre)` is
///         `next[pre]`; an unknown pre-state, or a witness announcing memory words (the tests'
///         forged witness), reverts as the real verifier would.
contract MockStepVerifier is IStepVerifier {
    mapping(bytes32 => bytes32) public next;

    function setNext(bytes32 _pre, bytes32 _post) external {
        next[_pre] = _post;
    }

    function step(bytes32 _pre, bytes calldata _witness) external view returns (bytes32 post_) {
        post_ = next[_pre];
        // a witness announcing memory words stands for a forged one in these tests
        if (post_ == bytes32(0) || bytes2(_witness[2:4]) != bytes2(0)) revert PreStateHashMismatch();
    }
}

/// @notice The test model: `T = 8` tensors, `n = 5` nodes, graph input tensor 0, output tensor 5;
///         node `i` reads activation `i` and constant 6 and writes tensor `i + 1`; every node's
///         program has 5 steps. The proof "bad" (or an unknown model) is not proven.
contract MockPhaseLink is IPhaseLink {
    bytes32 public immutable MODEL;
    bytes32 public constant CONST_ROOT = keccak256("constant 6");
    bytes32 public constant OUTPUT_ZERO_ROOT = keccak256("zero output region");
    uint256 public constant N_TENSORS = 8;
    uint256 public constant N_NODES = 5;
    uint256 public constant NUM_STEPS = 5;

    constructor(bytes32 _model) {
        MODEL = _model;
    }

    /// @notice Node `_k`'s (mock) context bytes: two words.
    function context(uint256 _k) public pure returns (bytes memory) {
        return abi.encode(keccak256("context"), _k);
    }

    function contextHash(uint256 _k) public pure returns (bytes32) {
        return keccak256(context(_k));
    }

    function graph(bytes32 _model, bytes calldata _proof) external view returns (Graph memory g_) {
        if (_model != MODEL || keccak256(_proof) == keccak256("bad")) revert InvalidDescriptorProof();
        g_.nTensors = N_TENSORS;
        g_.nNodes = N_NODES;
        g_.inputIds = new uint256[](1);
        g_.outputIds = new uint256[](1);
        g_.outputIds[0] = 5;
    }

    function openNode(bytes32 _model, uint256 _k, uint256, bytes calldata _proof)
        external
        view
        returns (NodeLink memory l_)
    {
        if (_model != MODEL || _k >= N_NODES || keccak256(_proof) == keccak256("bad")) revert InvalidDescriptorProof();
        l_.contextHash = contextHash(_k);
        l_.numSteps = NUM_STEPS;
        l_.inputIds = new uint256[](2);
        l_.inputIds[0] = _k;
        l_.inputIds[1] = 6;
        l_.constRoots = new bytes32[](2);
        l_.constRoots[1] = CONST_ROOT;
        l_.outputIds = new uint256[](1);
        l_.outputIds[0] = _k + 1;
        l_.outputZeroRoot = OUTPUT_ZERO_ROOT;
    }
}
