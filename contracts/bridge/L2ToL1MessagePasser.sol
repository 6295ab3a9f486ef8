// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title L2ToL1MessagePasser
/// @notice The L2 predeploy at `0x4200000000000000000000000000000000000016` (in every L2 genesis) where
///         withdrawals start (docs/bridge.md), as the OP Stack's. `initiateWithdrawal` records the
///         withdrawal's hash in `sentMessages` (storage slot 0, a mapping), which the L1 `Portal`
///         proves against an output's state root (slot `keccak256(abi.encode(hash, uint256(0)))`
///         holds 1). The ETH sent stays here; the Portal releases the same amount on L1.
/// @dev The storage layout is part of the bridge's interface: slot 0 `sentMessages`, slot 1
///      `messageNonce`. Do not reorder.
contract L2ToL1MessagePasser {
    /// @notice Withdrawal hashes initiated here (slot 0).
    mapping(bytes32 => bool) public sentMessages;
    /// @notice Withdrawals so far (slot 1): the next withdrawal's nonce.
    uint256 public messageNonce;

    /// @notice A withdrawal was initiated; prove it on L1 with `withdrawalHash`'s storage slot.
    event MessagePassed(
        uint256 indexed nonce,
        address indexed sender,
        address indexed target,
        uint256 value,
        uint256 gasLimit,
        bytes data,
        bytes32 withdrawalHash
    );

    /// @notice Start a withdrawal: once the output holding this block is final on L1, the Portal calls
    ///         `_target` with `msg.value` and `_gasLimit` gas and `_data` (L1 `Portal.l2Sender` is the
    ///         caller here while it runs).
    /// @param _target The L1 call's target.
    /// @param _gasLimit The L1 call's gas limit.
    /// @param _data The L1 call's calldata.
    function initiateWithdrawal(address _target, uint256 _gasLimit, bytes calldata _data) external payable {
        uint256 nonce = messageNonce;
        bytes32 withdrawalHash = hashWithdrawal(nonce, msg.sender, _target, msg.value, _gasLimit, _data);
        sentMessages[withdrawalHash] = true;
        emit MessagePassed(nonce, msg.sender, _target, msg.value, _gasLimit, _data, withdrawalHash);
        messageNonce = nonce + 1;
    }

    /// @notice `keccak256(abi.encode(nonce, sender, target, value, gasLimit, data))` (the Portal's
    ///         `Portal.hashWithdrawal` and `ai_evm.bridge.withdrawal_hash` are the same).
    function hashWithdrawal(
        uint256 _nonce,
        address _sender,
        address _target,
        uint256 _value,
        uint256 _gasLimit,
        bytes calldata _data
    ) public pure returns (bytes32) {
        return keccak256(abi.encode(_nonce, _sender, _target, _value, _gasLimit, _data));
    }
}
