// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { LibMPT } from "../lib/LibMPT.sol";
import { LibRLP, RLPItem } from "../lib/LibRLP.sol";
import { LibSecureTrie } from "../lib/LibSecureTrie.sol";

/// @title BridgeLibHarness
/// @notice Exposes the bridge's proof libraries (`LibRLP`, `LibMPT`, `LibSecureTrie`) for the
///         differential tests against Python's `trie`/`rlp` (tests/bridge); never deployed on a chain.
contract BridgeLibHarness {
    /// @notice `LibMPT.get`.
    function get(bytes calldata _key, bytes[] calldata _proof, bytes32 _root)
        external
        pure
        returns (bool exists_, bytes memory value_)
    {
        return LibMPT.get(_key, _proof, _root);
    }

    /// @notice `LibSecureTrie.getAccount`.
    function getAccount(bytes32 _stateRoot, address _account, bytes[] calldata _proof)
        external
        pure
        returns (bool exists_, LibSecureTrie.Account memory account_)
    {
        return LibSecureTrie.getAccount(_stateRoot, _account, _proof);
    }

    /// @notice `LibSecureTrie.getStorage`.
    function getStorage(bytes32 _storageRoot, bytes32 _slot, bytes[] calldata _proof)
        external
        pure
        returns (uint256 value_)
    {
        return LibSecureTrie.getStorage(_storageRoot, _slot, _proof);
    }

    /// @notice The items of the RLP list `_in`, each as its whole encoding (`LibRLP.readList`).
    function readList(bytes calldata _in) external pure returns (bytes[] memory items_) {
        RLPItem[] memory items = LibRLP.readList(LibRLP.toItem(_in));
        items_ = new bytes[](items.length);
        for (uint256 i = 0; i < items.length; i++) {
            items_[i] = LibRLP.readRawBytes(items[i]);
        }
    }

    /// @notice The payload of the RLP string `_in` (`LibRLP.readBytes`).
    function readBytes(bytes calldata _in) external pure returns (bytes memory) {
        return LibRLP.readBytes(LibRLP.toItem(_in));
    }
}
