// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IClaimRegistry
/// @notice What a registry game calls back when it ends (`fraud_vm.registry.ClaimRegistry`'s
///         `on_resolved` hook).
interface IClaimRegistry {
    /// @notice The calling game ended.
    /// @dev Only games the registry created may call it.
    /// @param _challengerWon Whether the challenger won (which rejects a pending claim).
    function onGameResolved(bool _challengerWon) external;
}
