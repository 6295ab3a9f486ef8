// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { Position } from "../lib/LibPosition.sol";
import { Claim, OpenStepsData, Outcome, Role } from "../lib/Types.sol";

/// @title IInferenceDisputeGame
/// @notice A two-party game over one claim about an inference (`docs/dispute_game.md`).
interface IInferenceDisputeGame {
    /// @notice A move was accepted.
    /// @param parent The answered claim's position.
    /// @param isAttack Whether it disputed that claim.
    /// @param position The new claim's position (the resolved leaf's interval for a resolution).
    /// @param claim The posted claim (zero for a resolution move).
    /// @param mover Who moved.
    event Move(Position indexed parent, bool isAttack, Position position, bytes32 claim, address indexed mover);

    /// @notice Phase 1 resolved on node `nodeIndex` and phase 2 opened.
    /// @param nodeIndex The disputed node `k`.
    /// @param numSteps The node program's length `N`.
    /// @param startState The derived phase-2 start state.
    /// @param rootClaim Phase 2's root claim (`keccak256` of the mover's final VM state).
    event StepsOpened(uint256 nodeIndex, uint256 numSteps, bytes32 startState, bytes32 rootClaim);

    /// @notice The game ended.
    /// @param outcome Who won.
    event Resolved(Outcome outcome);

    /// @notice Initialize a fresh clone with a claim between two players.
    /// @param _claim The claim.
    /// @param _graphProof The graph header's proof for `IPhaseLink.graph`.
    /// @param _claimant The claimant.
    /// @param _challenger The challenger (not the claimant); it moves first.
    /// @param _stakeClaimBond A lone game (the claimant's `bond(0)` is sent and joins the pot) or a
    ///        claim registry's game (nothing is sent; the creator is told the outcome).
    function initialize(
        Claim calldata _claim,
        bytes calldata _graphProof,
        address _claimant,
        address _challenger,
        bool _stakeClaimBond
    )
        external
        payable;

    /// @notice Answer the last claim and post `_claim` at `move(_parent, _isAttack)`.
    function bisect(Position _parent, bool _isAttack, bytes32 _claim) external payable;

    /// @notice Resolve phase 1 on node `k` and open phase 2 (or end the game on a padding leaf).
    function openSteps(Position _parent, bool _isAttack, OpenStepsData calldata _data) external payable;

    /// @notice Resolve phase 2 by executing the disputed step from its witness.
    function step(Position _parent, bool _isAttack, bytes calldata _witness) external payable;

    /// @notice End the game once the mover's clock ran out: the mover loses. Anyone may call it.
    function claimTimeout() external;

    /// @notice Pay `_recipient` its credit (the bonds it won).
    function claimCredit(address _recipient) external;

    /// @notice The game's state.
    function outcome() external view returns (Outcome);

    /// @notice The player to move.
    function mover() external view returns (Role);

    /// @notice The claimant.
    function claimant() external view returns (address);

    /// @notice The challenger.
    function challenger() external view returns (address);
}
