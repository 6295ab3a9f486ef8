// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

// Custom errors of the inference dispute game (`docs/dispute_game.md`), collected in one file as
// Optimism's `Errors.sol`. Python mirror: `fraud_vm/errors.py` (the game's move checks) and
// `fraud_vm/position.py` (`PositionError`).

////////////////////////////////////////////////////////////////
//                     Positions and Merkle                   //
////////////////////////////////////////////////////////////////

/// @notice A position or depth outside the game tree (`fraud_vm.position.PositionError`).
error PositionOutOfRange();

/// @notice A Merkle path whose length does not fit the tree, or a leaf index beyond it.
error InvalidProofLength();

/// @notice A multiproof ran out of sibling hashes, or left some unused.
error InvalidMultiproof();

////////////////////////////////////////////////////////////////
//                        The claim                           //
////////////////////////////////////////////////////////////////

/// @notice The game (clone) was already initialized.
error AlreadyInitialized();

/// @notice The batch size is outside 1..65536.
error InvalidBatch();

/// @notice `keccak256(A ‖ uint256(n) ‖ final_tensors_root)` differs from the claim's final state.
error FinalStateMismatch();

/// @notice The claim does not carry one output root and one path per graph output.
error OutputCountMismatch();

/// @notice A tensor root does not open at its tensor id in a phase-1 tensor table.
error InvalidTensorProof();

////////////////////////////////////////////////////////////////
//                          Moves                             //
////////////////////////////////////////////////////////////////

/// @notice The game is over (resolved); no move, timeout or second resolution is accepted.
error GameNotInProgress();

/// @notice The sender is not the player whose turn it is.
error NotYourTurn();

/// @notice The claimant cannot also be the challenger of its own claim.
error ClaimantCannotChallenge();

/// @notice The mover's chess clock has run out.
error ClockTimeExceeded();

/// @notice A move must answer the last claim.
error InvalidParent();

/// @notice A phase's root claim can only be attacked.
error CannotDefendRootClaim();

/// @notice The move's kind does not fit the position and phase (`Bisect` above the maximum
///         depth, `OpenSteps` at the phase-1 maximum depth, `Step` at the phase-2 maximum depth).
error MoveKindMismatch();

/// @notice The value sent is not exactly the bond of this move.
error IncorrectBondAmount();

////////////////////////////////////////////////////////////////
//                 OpenSteps (the phase link)                 //
////////////////////////////////////////////////////////////////

/// @notice `keccak256(A ‖ uint256(k) ‖ pre_tensors_root)` is not the agreed phase-1 state.
error PreStateMismatch();

/// @notice Not one root and one path per non-constant input of the node.
error InputCountMismatch();

/// @notice A node output's leaf is not zero before the node writes it (the graph is SSA).
error OutputAlreadyWritten();

/// @notice The mover's outputs give the disputed state while it disputes it, or do not give it
///         while it defends it.
error PostStateMismatch();

/// @notice The final VM state is not a canonical HALTED end state of the node's program.
error InvalidFinalState();

/// @notice The final VM state's memory does not hold the mover's first output root.
error FinalOutputMismatch();

////////////////////////////////////////////////////////////////
//                Timeout, resolution, credit                 //
////////////////////////////////////////////////////////////////

/// @notice The player to move still has time on its clock.
error ClockNotExpired();

/// @notice The account has no credit to claim.
error NoCreditToClaim();

/// @notice Sending the credit to the recipient failed.
error BondTransferFailed();

/// @notice Creating a game's clone failed (factory).
error CloneFailed();

////////////////////////////////////////////////////////////////
//   The step verifier (mirror of fraud_vm/errors.py)         //
////////////////////////////////////////////////////////////////
// VERIFIER ERRORS: this section holds the step verifier's errors, one per named error class of
// `fraud_vm/errors.py` and with the same names. They are reverted by the `IStepVerifier`
// implementation and reach the mover unchanged (the game does not catch them). The list below
// is the set `fraud_vm/errors.py` defines today; extend it as the Python spec names more checks.

/// @notice The instruction cannot execute from this state (`fraud_vm.errors.InvalidStep`).
error InvalidStep();

/// @notice A step witness does not match the pre-state hash, the context or the memory root
///         (`fraud_vm.errors.InvalidWitness`).
error InvalidWitness();

/// @notice The node cannot be expressed as a VM program (`fraud_vm.errors.UnsupportedOp`).
error UnsupportedOp();
