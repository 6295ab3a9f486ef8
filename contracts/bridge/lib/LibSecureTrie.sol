// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { InvalidAccount, InvalidStorageValue } from "../BridgeErrors.sol";
import { LibMPT } from "./LibMPT.sol";
import { LibRLP, RLPItem } from "./LibRLP.sol";

/// @title LibSecureTrie
/// @notice Ethereum's state and storage tries over `LibMPT`: keys are `keccak256` of the address or of
///         the 32-byte slot, an account leaf is `rlp([nonce, balance, storageRoot, codeHash])` and a
///         storage leaf is `rlp(value)` (minimal big-endian). The proofs are EIP-1186's
///         (`eth_getProof`'s `accountProof` and `storageProof[i].proof`).
library LibSecureTrie {
    /// @notice An account as the state trie holds it.
    struct Account {
        uint256 nonce;
        uint256 balance;
        bytes32 storageRoot;
        bytes32 codeHash;
    }

    /// @notice The account `_account` in the state with root `_stateRoot`, if it exists.
    function getAccount(bytes32 _stateRoot, address _account, bytes[] memory _proof)
        internal
        pure
        returns (bool exists_, Account memory account_)
    {
        bytes memory value;
        (exists_, value) = LibMPT.get(abi.encodePacked(keccak256(abi.encodePacked(_account))), _proof, _stateRoot);
        if (!exists_) return (false, account_);
        account_ = decodeAccount(value);
    }

    /// @notice The value of storage slot `_slot` in the storage trie with root `_storageRoot` (0 if absent).
    function getStorage(bytes32 _storageRoot, bytes32 _slot, bytes[] memory _proof)
        internal
        pure
        returns (uint256 value_)
    {
        (bool exists, bytes memory value) =
            LibMPT.get(abi.encodePacked(keccak256(abi.encodePacked(_slot))), _proof, _storageRoot);
        if (!exists) return 0;
        RLPItem memory item = LibRLP.toItem(value);
        // INVARIANT: a storage leaf is one RLP string of at most 32 bytes.
        if (LibRLP.isList(item)) revert InvalidStorageValue();
        value_ = LibRLP.readUint(item);
    }

    /// @notice An account leaf's value, `rlp([nonce, balance, storageRoot, codeHash])`.
    function decodeAccount(bytes memory _value) internal pure returns (Account memory account_) {
        RLPItem memory item = LibRLP.toItem(_value);
        if (!LibRLP.isList(item)) revert InvalidAccount();
        RLPItem[] memory fields = LibRLP.readList(item);
        // INVARIANT: exactly the four account fields.
        if (fields.length != 4) revert InvalidAccount();
        account_.nonce = LibRLP.readUint(fields[0]);
        account_.balance = LibRLP.readUint(fields[1]);
        account_.storageRoot = LibRLP.readBytes32(fields[2]);
        account_.codeHash = LibRLP.readBytes32(fields[3]);
    }
}
