// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

// Custom errors of the rollup's L1 contracts (batch inbox, model registry, output oracle).

/// @notice Only the configured batcher may post to the batch inbox.
error NotBatcher();
/// @notice The model is already registered.
error ModelAlreadyRegistered();
/// @notice The model is not registered (or not yet, as of the given L1 block).
error ModelNotRegistered();
/// @notice The fetch location is empty or longer than the registry accepts.
error InvalidModelUri();
/// @notice The value sent is not the required bond or fee.
error IncorrectValue();
/// @notice The caller may not propose outputs now (the designated proposer only, until a deletion).
error NotProposer();
/// @notice The output's L2 block number does not come after the last output's.
error OutputNotAfterLast();
/// @notice The output's L2 block is not in the past of L1 time (its timestamp is ahead).
error OutputFromTheFuture();
/// @notice No output has this index (never proposed, or deleted).
error UnknownOutput();
/// @notice The output is still inside its challenge window, or an earlier output is not final.
error OutputNotFinalizable();
/// @notice The output is already final: it can no longer be challenged or deleted.
error OutputAlreadyFinal();
/// @notice A dispute over this output is still running.
error DisputeRunning();
/// @notice Only the dispute authority may open/close disputes and delete outputs.
error NotDisputeAuthority();
/// @notice The challenge window of the output has closed.
error ChallengeWindowOver();
/// @notice Nothing to withdraw for this account.
error NothingToWithdraw();
/// @notice A transfer of ether failed.
error TransferFailed();
/// @notice A constructor argument is out of range.
error InvalidConfig();
/// @notice The inference record is not in the output's inference root at that index.
error InvalidRecordProof();
/// @notice The input or output bytes do not split into the model's declared tensors.
error InvalidInferenceBytes();
/// @notice A tensor descriptor of a graph input/output is not proven against the model address.
error InvalidTensorProof();
/// @notice No record challenge has this id.
error UnknownChallenge();
/// @notice The record challenge is already defended, or resolved.
error ChallengeNotOpen();
/// @notice The defence came after the response window, or names a claim other than the record's.
error InvalidDefence();
/// @notice The record challenge cannot be resolved yet (its claim is still being disputed).
error NotResolvable();
/// @notice The records are not whole 192-byte records, or more than an output may carry.
error InvalidRecords();
