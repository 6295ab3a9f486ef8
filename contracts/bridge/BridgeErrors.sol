// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

// Custom errors of the bridge (L1 Portal, L2ToL1MessagePasser) and of its proof libraries
// (LibRLP, LibMPT, LibSecureTrie). docs/bridge.md lists what each one means for a user.

////////////////////////////////////////////////////////////////
//                         Deposits                           //
////////////////////////////////////////////////////////////////

/// @notice The deposit's L2 gas limit is below the 21,000 of a plain transfer.
error GasLimitTooLow();
/// @notice The deposit's L2 gas limit is above `Portal.MAX_DEPOSIT_GAS`.
error GasLimitTooHigh();
/// @notice The deposit's calldata is longer than `Portal.MAX_DEPOSIT_DATA`.
error DepositDataTooLarge();
/// @notice The deposits of this L1 block would exceed `Portal.MAX_DEPOSIT_GAS_PER_BLOCK` of L2 gas:
///         deposit again in a later L1 block.
error BlockDepositGasExceeded();

////////////////////////////////////////////////////////////////
//                        Withdrawals                         //
////////////////////////////////////////////////////////////////

/// @notice A withdrawal may not target the Portal itself.
error BadTarget();
/// @notice The withdrawal is already proven against an output that is still live.
error AlreadyProven();
/// @notice The message passer has no account in the output's state (proof of absence).
error MessagePasserNotInState();
/// @notice The message passer's storage does not hold `true` for this withdrawal's hash.
error WithdrawalNotInStorage();
/// @notice The withdrawal has not been proven.
error NotProven();
/// @notice The output the withdrawal was proven against was deleted: prove again against a live output.
error ProvenOutputDeleted();
/// @notice The output the withdrawal was proven against is not final yet (challenge window or dispute).
error OutputNotFinal();
/// @notice The withdrawal was already finalized (each one executes at most once).
error AlreadyFinalized();
/// @notice Too little gas left to give the withdrawal's call its gas limit.
error InsufficientGas();
/// @notice The Portal holds less ETH than the withdrawal's value (only possible for L2 ETH that was not
///         deposited, e.g. an L2 genesis allocation): finalize later.
error PortalBalanceTooLow();
/// @notice A withdrawal's call tried to finalize another withdrawal (one per call frame).
error Reentrant();

////////////////////////////////////////////////////////////////
//                           RLP                              //
////////////////////////////////////////////////////////////////

/// @notice The RLP input is empty where an item was expected.
error RLPEmptyInput();
/// @notice An RLP item's header or payload runs past the end of its input (or of its enclosing list).
error RLPOutOfBounds();
/// @notice An RLP item is not in canonical (shortest) form.
error RLPNotCanonical();
/// @notice An RLP item was expected to be a list and is a string (or the other way round).
error RLPUnexpectedType();
/// @notice An RLP item's encoding is followed by extra bytes.
error RLPTrailingBytes();
/// @notice An RLP list has more items than the reader accepts.
error RLPTooManyItems();

////////////////////////////////////////////////////////////////
//                     Merkle-Patricia trie                   //
////////////////////////////////////////////////////////////////

/// @notice A proof node does not hash to (or equal) the reference its parent holds for it.
error MPTInvalidNodeHash();
/// @notice A proof node is neither a 17-item branch nor a 2-item leaf/extension.
error MPTInvalidNode();
/// @notice A leaf/extension path has a bad hex-prefix flag or is empty.
error MPTInvalidPath();
/// @notice A child reference is neither a 32-byte hash nor an embedded node shorter than 32 bytes.
error MPTInvalidChildRef();
/// @notice The proof ends before the key's path does.
error MPTProofTooShort();
/// @notice The proof has nodes after the one that decides the key.
error MPTProofTooLong();
/// @notice The key's path continues past a leaf, or a branch with a value is met where the trie has none.
error MPTInvalidKeyPath();

////////////////////////////////////////////////////////////////
//                       Secure trie                          //
////////////////////////////////////////////////////////////////

/// @notice An account leaf is not `rlp([nonce, balance, storageRoot, codeHash])`.
error InvalidAccount();
/// @notice A storage leaf is not the RLP of an unsigned integer of at most 32 bytes.
error InvalidStorageValue();
