// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { LibMultiproof, MultiproofTrace } from "../vm/LibMultiproof.sol";
import { LibVMState, VMState } from "../vm/LibVMState.sol";
import { LibWitness } from "../vm/LibWitness.sol";
import { Region } from "../vm/VMTypes.sol";

/// @title FraudVMLibsHarness
/// @notice Exposes `LibWitness`, `LibVMState` and `LibMultiproof` as external functions, for the
///         differential tests against `fraud_vm.vm.StepWitness`, `fraud_vm.state` and
///         `fraud_vm.memory.roots_from_words` (`tests/contracts/test_vm_verifier.py`). Not deployed on L1.
contract FraudVMLibsHarness {
    /// @notice `LibWitness.decode`, with the words split into addresses and values.
    function decodeWitness(bytes calldata _witness)
        external
        pure
        returns (
            bytes memory preState_,
            bytes memory context_,
            uint256[] memory addrs_,
            bytes32[] memory values_,
            bytes32[] memory siblings_
        )
    {
        bytes calldata words;
        (preState_, context_, words, siblings_) = LibWitness.decode(_witness);
        uint256 n = LibWitness.wordCount(words);
        addrs_ = new uint256[](n);
        values_ = new bytes32[](n);
        for (uint256 k = 0; k < n; ++k) {
            (addrs_[k], values_[k]) = LibWitness.wordAt(words, k);
        }
    }

    /// @notice `LibVMState.decodeState`.
    function decodeState(bytes calldata _data) external pure returns (VMState memory state_) {
        state_ = LibVMState.decodeState(_data);
    }

    /// @notice `LibVMState.encodeState`.
    function encodeState(VMState memory _state) external pure returns (bytes memory data_) {
        data_ = LibVMState.encodeState(_state);
    }

    /// @notice `LibVMState.stateHash`.
    function stateHash(VMState memory _state) external pure returns (bytes32 hash_) {
        hash_ = LibVMState.stateHash(_state);
    }

    /// @notice `LibMultiproof.rootsFromWords` from position 0.
    function rootsFromWords(
        Region[] memory _regions,
        uint256[] memory _addrs,
        bytes32[] memory _values,
        bytes32[] calldata _siblings
    )
        external
        pure
        returns (bytes32 root_, uint256 pos_)
    {
        (root_, pos_) = LibMultiproof.rootsFromWords(_regions, _addrs, _values, _siblings, 0);
    }

    /// @notice `LibMultiproof.proveWords` over `_before`, then `rootAfterWrites` with `_after`.
    function rootAfterWrites(
        Region[] memory _regions,
        uint256[] memory _addrs,
        bytes32[] memory _before,
        bytes32[] memory _after,
        bytes32[] calldata _siblings
    )
        external
        pure
        returns (bytes32 pre_, bytes32 post_)
    {
        MultiproofTrace memory trace;
        (pre_,, trace) = LibMultiproof.proveWords(_regions, _addrs, _before, _siblings, 0);
        post_ = LibMultiproof.rootAfterWrites(_regions, _addrs, _before, _after, _siblings, trace);
    }
}
