// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

// Custom errors of the inference dispute game and its step verifier, collected in one file as
// Optimism's `Errors.sol`. The names (and their order) are those of `fraud_vm.errors.ERROR_CLASSES`
// (`tests/contracts/test_dispute_contracts.py` checks that both lists agree): "same verdict, same
// error" between the Python referee/verifier and these contracts. Errors that only the contracts
// can raise (clones, transfers, Merkle helpers, positions) follow at the end.

// ---- VERIFIER ERRORS: verify_step, in check order ----
// Reverted by the `IStepVerifier` implementation (the Solidity mirror of `fraud_vm.vm.verify_step`,
// not part of this change) and passed through by `InferenceDisputeGame.step` unchanged.
/// @notice The witness calldata is not the canonical encoding (lengths, offsets, padding, trailing bytes). (`fraud_vm.errors.MalformedWitness`)
error MalformedWitness();

/// @notice The witness's pre-state does not hash to the given pre-state hash. (`fraud_vm.errors.PreStateHashMismatch`)
error PreStateHashMismatch();

/// @notice The pre-state is not a canonical state encoding (size, status, step, reserved word). (`fraud_vm.errors.MalformedState`)
error MalformedState();

/// @notice The witness's node context does not hash to the state's context hash. (`fraud_vm.errors.ContextHashMismatch`)
error ContextHashMismatch();

/// @notice The node context is not a canonical context encoding (lengths, descriptors, dtypes). (`fraud_vm.errors.MalformedContext`)
error MalformedContext();

/// @notice The node context describes a node the VM cannot express as a program. (`fraud_vm.errors.UnsupportedOp`)
error UnsupportedOp();

/// @notice The pre-state is HALTED: a halted VM takes no further step. (`fraud_vm.errors.StateHalted`)
error StateHalted();

/// @notice The pre-state's step is at or past the program's number of steps. (`fraud_vm.errors.StepOutOfRange`)
error StepOutOfRange();

/// @notice The witness carries more memory words than a step may touch. (`fraud_vm.errors.TooManyWords`)
error TooManyWords();

/// @notice The witness's words are not sorted by (region, index), or one is repeated. (`fraud_vm.errors.WordsNotSorted`)
error WordsNotSorted();

/// @notice A witness word's region or index lies outside the memory the context describes. (`fraud_vm.errors.WordOutOfRange`)
error WordOutOfRange();

/// @notice The multiproof ran out of sibling hashes before reaching the memory root. (`fraud_vm.errors.SiblingsExhausted`)
error SiblingsExhausted();

/// @notice The witness's words and siblings do not prove the pre-state's memory root. (`fraud_vm.errors.MemoryRootMismatch`)
error MemoryRootMismatch();

/// @notice The multiproof has sibling hashes left over after reaching the memory root. (`fraud_vm.errors.UnusedSiblings`)
error UnusedSiblings();

/// @notice The step reads or writes a memory word the witness does not carry. (`fraud_vm.errors.WordNotInWitness`)
error WordNotInWitness();

/// @notice The witness carries a memory word the step does not touch. (`fraud_vm.errors.UnusedWord`)
error UnusedWord();

/// @notice An intermediate value leaves int256, or an accumulator lane leaves int64. (`fraud_vm.errors.ArithmeticOverflow`)
error ArithmeticOverflow();

/// @notice A shift amount lies outside its range (requantization: 1..62; left shifts: 0..254). (`fraud_vm.errors.InvalidShift`)
error InvalidShift();

/// @notice A division by a divisor <= 0 (an average over an empty window, a zero row length...). (`fraud_vm.errors.NonPositiveDivisor`)
error NonPositiveDivisor();

/// @notice A square root of a negative value. (`fraud_vm.errors.NegativeSquareRoot`)
error NegativeSquareRoot();

/// @notice A float32 NaN where the instruction needs a number (quantize, cast to an integer type). (`fraud_vm.errors.NanOperand`)
error NanOperand();

/// @notice A float32 scale that is not a finite positive float32 (quantize) or not finite (dequantize). (`fraud_vm.errors.InvalidScale`)
error InvalidScale();

/// @notice An instruction names a dtype code the VM does not know. (`fraud_vm.errors.InvalidDType`)
error InvalidDType();

/// @notice A gather index lies outside [-n, n). (`fraud_vm.errors.GatherIndexOutOfRange`)
error GatherIndexOutOfRange();

/// @notice A lookup-table index (LUT, softmax exponent table) lies outside the table's region. (`fraud_vm.errors.TableIndexOutOfRange`)
error TableIndexOutOfRange();

/// @notice An instruction addresses an element outside its region (an inconsistent program). (`fraud_vm.errors.ElementOutOfRange`)
error ElementOutOfRange();

/// @notice A value to be stored does not fit the output region's dtype. (`fraud_vm.errors.ValueOutOfRange`)
error ValueOutOfRange();

/// @notice The claimed post-state hash differs from the one the step computes. (`fraud_vm.errors.PostStateMismatch`)
error PostStateMismatch();

// ---- the referee (fraud_vm.game): InferenceDisputeGame ----
/// @notice The game is already resolved: no further move or timeout claim. (`fraud_vm.errors.GameOver`)
error GameOver();

/// @notice The game is still in progress: nothing can be paid out yet. (`fraud_vm.errors.GameNotOver`)
error GameNotOver();

/// @notice The move comes from the player who is not to move. (`fraud_vm.errors.NotYourTurn`)
error NotYourTurn();

/// @notice The move's time is earlier than the previous move's. (`fraud_vm.errors.TimeNotMonotonic`)
error TimeNotMonotonic();

/// @notice The mover's chess clock has run out: the move comes too late. (`fraud_vm.errors.ClockExpired`)
error ClockExpired();

/// @notice A timeout is claimed while the mover still has time on its clock. (`fraud_vm.errors.ClockNotExpired`)
error ClockNotExpired();

/// @notice A move must answer the last claim of the bisection. (`fraud_vm.errors.ParentNotLast`)
error ParentNotLast();

/// @notice The root claim of a phase can only be attacked. (`fraud_vm.errors.CannotDefendRoot`)
error CannotDefendRoot();

/// @notice The move's kind does not fit the position (bisect above the leaves, open or step at a leaf). (`fraud_vm.errors.WrongMoveKind`)
error WrongMoveKind();

/// @notice A move's fields are malformed (a claim not 32 bytes, a final state not bytes...). (`fraud_vm.errors.MalformedMove`)
error MalformedMove();

/// @notice The bond sent with a move differs from the bond its move number requires. (`fraud_vm.errors.IncorrectBond`)
error IncorrectBond();

/// @notice The claim does not open: wrong model address, batch, final tensor table or output count. (`fraud_vm.errors.InvalidClaim`)
error InvalidClaim();

/// @notice The opened tensor table does not hash to the agreed phase-1 state. (`fraud_vm.errors.PreTensorsMismatch`)
error PreTensorsMismatch();

/// @notice The opening carries a different number of input roots or proofs than the node has inputs. (`fraud_vm.errors.InputCountMismatch`)
error InputCountMismatch();

/// @notice A tensor root does not open against the tensor-table root with its proof. (`fraud_vm.errors.InvalidTableProof`)
error InvalidTableProof();

/// @notice A node or tensor descriptor is not proven against the model address. (`fraud_vm.errors.InvalidDescriptorProof`)
error InvalidDescriptorProof();

/// @notice The mover's node outputs do not give (or, for the other player, give) the disputed state. (`fraud_vm.errors.OutputsContradictClaim`)
error OutputsContradictClaim();

/// @notice The mover's final VM state is not HALTED or does not hold the mover's node output roots. (`fraud_vm.errors.FinalStateMismatch`)
error FinalStateMismatch();

// ---- the claim registry (fraud_vm.registry): DisputeGameFactory ----
/// @notice No claim has this id. (`fraud_vm.errors.UnknownClaim`)
error UnknownClaim();

/// @notice The claim's challenge window has passed: no new challenge. (`fraud_vm.errors.ChallengeWindowClosed`)
error ChallengeWindowClosed();

/// @notice The claim lost a game: it cannot be challenged again or become final. (`fraud_vm.errors.ClaimAlreadyRejected`)
error ClaimAlreadyRejected();

/// @notice The claim is already final. (`fraud_vm.errors.ClaimAlreadyFinal`)
error ClaimAlreadyFinal();

/// @notice This challenger already has a game on this claim. (`fraud_vm.errors.DuplicateChallenge`)
error DuplicateChallenge();

/// @notice The claim's challenge window has not passed yet: it cannot become final. (`fraud_vm.errors.ChallengeWindowOpen`)
error ChallengeWindowOpen();

/// @notice A game on the claim is not resolved yet: the claim cannot become final. (`fraud_vm.errors.GamesInProgress`)
error GamesInProgress();

/// @notice The account has no credit to claim. (`fraud_vm.errors.NoCredit`)
error NoCredit();

// ---- contract-only errors (no Python counterpart) ----

/// @notice A position or depth outside the game tree (Python: `fraud_vm.position.PositionError`).
error PositionError();

/// @notice A Merkle path shorter than the bits of its leaf index (Python: `ValueError` of
///         `opml.merkle.root_from_proof`).
error InvalidProofLength();

/// @notice Game rules out of range (`clock_extension_s <= clock_s`, `0 < growth den <= num`;
///         Python: `ValueError` of `fraud_vm.game.Rules`).
error InvalidRules();

/// @notice The game (clone) was already initialized.
error AlreadyInitialized();

/// @notice A game needs a challenger other than its claimant (and not the zero address).
error ClaimantCannotChallenge();

/// @notice Sending the credit to the recipient failed.
error BondTransferFailed();

/// @notice Creating a game's clone failed (factory).
error CloneFailed();

/// @notice `LibExecInt.execInt` got an instruction kind it does not execute (QUANT, DEQUANT and
///         CAST are `LibExecFloat`'s; the verifier dispatches by kind).
error NotAnIntegerKind();
