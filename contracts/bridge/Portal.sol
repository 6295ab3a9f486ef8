// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { OutputOracle } from "../rollup/OutputOracle.sol";
import {
    AlreadyFinalized,
    AlreadyProven,
    BadTarget,
    BlockDepositGasExceeded,
    DepositDataTooLarge,
    GasLimitTooHigh,
    GasLimitTooLow,
    InsufficientGas,
    MessagePasserNotInState,
    NotProven,
    OutputNotFinal,
    ProvenOutputDeleted,
    PortalBalanceTooLow,
    Reentrant,
    WithdrawalNotInStorage
} from "./BridgeErrors.sol";
import { LibSecureTrie } from "./lib/LibSecureTrie.sol";

/// @title Portal
/// @notice The rollup's L1 bridge end (docs/bridge.md), as the OP Stack's `OptimismPortal`.
///         **Deposits**: `depositTransaction` locks the ETH sent (`mint`) here and emits
///         `TransactionDeposited`; derivation turns each event, in log order, into an L2 deposit
///         transaction (type 0x7E) that mints `mint` to `from` on L2 and calls `to`.
///         **Withdrawals**: a withdrawal initiated on L2 (`L2ToL1MessagePasser`) is proven here against
///         an output's state root and finalized once that output is final; finalizing releases the
///         ETH locked by deposits.
/// @dev A withdrawal whose call fails is still finalized (as OP's portal): it executes at most once,
///      and its ETH stays here. `finalizeWithdrawal` checks that the call gets the withdrawal's whole
///      gas limit, so nobody can make another's withdrawal fail by sending too little gas.
contract Portal {
    /// @notice A withdrawal as `L2ToL1MessagePasser.initiateWithdrawal` recorded it.
    struct Withdrawal {
        uint256 nonce;
        address sender;
        address target;
        uint256 value;
        uint256 gasLimit;
        bytes data;
    }

    /// @notice Where and when a withdrawal was proven.
    struct ProvenWithdrawal {
        uint64 outputIndex;
        uint64 outputNonce;
        uint64 provenAt;
    }

    /// @notice Most L2 gas one deposit may buy.
    uint64 public constant MAX_DEPOSIT_GAS = 2_000_000;
    /// @notice Least L2 gas of a deposit (a plain transfer).
    uint64 public constant MIN_DEPOSIT_GAS = 21_000;
    /// @notice Most L2 gas of all deposits of one L1 block.
    uint64 public constant MAX_DEPOSIT_GAS_PER_BLOCK = 8_000_000;
    /// @notice Most calldata bytes of one deposit.
    uint256 public constant MAX_DEPOSIT_DATA = 32_768;
    /// @notice L2 gas limit of a deposit made by sending ETH to the Portal (`receive`).
    uint64 public constant RECEIVE_DEPOSIT_GAS = 100_000;
    /// @notice Added to a contract caller's address to give its L2 `from` (OP's aliasing), so an L1
    ///         contract cannot pose as the L2 account at the same address.
    uint160 public constant ALIAS_OFFSET = uint160(0x1111000000000000000000000000000000001111);

    /// @notice The L2 predeploy whose storage records withdrawals (`L2ToL1MessagePasser`).
    address public constant MESSAGE_PASSER = 0x4200000000000000000000000000000000000016;
    /// @notice `l2Sender` outside a withdrawal's call.
    address public constant DEFAULT_L2_SENDER = 0x000000000000000000000000000000000000dEaD;
    /// @notice Gas kept back for the bookkeeping after a withdrawal's call.
    uint256 public constant FINALIZE_GAS_RESERVE = 40_000;

    /// @notice The output oracle whose outputs withdrawals are proven against.
    OutputOracle public immutable ORACLE;

    /// @notice The L2 sender of the withdrawal whose call is running (else `DEFAULT_L2_SENDER`), for
    ///         targets that only accept calls from a given L2 account.
    address public l2Sender = DEFAULT_L2_SENDER;
    /// @notice Proofs by withdrawal hash.
    mapping(bytes32 => ProvenWithdrawal) public provenWithdrawals;
    /// @notice Finalized withdrawal hashes.
    mapping(bytes32 => bool) public finalizedWithdrawals;

    /// @notice Deposits so far (the next deposit's nonce).
    uint256 public depositCount;
    /// @notice The L1 block the deposit gas below is counted for.
    uint64 public depositBlock;
    /// @notice L2 gas bought by the deposits of L1 block `depositBlock`.
    uint64 public depositBlockGas;

    /// @notice A deposit: derivation executes it on L2 as deposit transaction number `nonce`.
    event TransactionDeposited(
        uint256 indexed nonce,
        address indexed from,
        address indexed to,
        uint256 mint,
        uint256 value,
        uint64 gasLimit,
        bytes data
    );

    /// @notice A withdrawal was proven against output `outputIndex`.
    event WithdrawalProven(bytes32 indexed withdrawalHash, address indexed sender, address indexed target,
        uint256 outputIndex);
    /// @notice A withdrawal was finalized; `success` is whether its call succeeded.
    event WithdrawalFinalized(bytes32 indexed withdrawalHash, bool success);

    /// @param _oracle The rollup's output oracle.
    constructor(OutputOracle _oracle) {
        ORACLE = _oracle;
    }

    /// @notice Sending ETH to the Portal deposits it to the sender's L2 account (aliased if a contract).
    receive() external payable {
        _deposit(msg.sender, msg.value, RECEIVE_DEPOSIT_GAS, hex"");
    }

    /// @notice Deposit: mint `msg.value` to the caller's L2 account and call `_to` from it with
    ///         `_value` and `_gasLimit` gas (`_data` as calldata). The ETH stays locked here.
    /// @param _to The L2 call's target.
    /// @param _value The L2 call's value (from the L2 balance, which includes the minted `msg.value`).
    /// @param _gasLimit The L2 call's gas limit, paid for by L1 gas nowhere else: bounded per deposit
    ///        and per L1 block.
    /// @param _data The L2 call's calldata.
    function depositTransaction(address _to, uint256 _value, uint64 _gasLimit, bytes calldata _data)
        external
        payable
    {
        _deposit(_to, _value, _gasLimit, _data);
    }

    /// @notice Prove that withdrawal `_w` was initiated on L2 by output `_outputIndex`: the message passer's
    ///         account in the output's state root (`_accountProof`, EIP-1186) and, in its storage, slot
    ///         `keccak256(abi.encode(hash, 0))` holding 1 (`_storageProof`). A withdrawal proven against an
    ///         output that was deleted since can (must) be proven again against a live one.
    function proveWithdrawal(
        Withdrawal calldata _w,
        uint256 _outputIndex,
        bytes[] calldata _accountProof,
        bytes[] calldata _storageProof
    ) external {
        // INVARIANT: the Portal never calls itself (its ETH and `l2Sender` are not for withdrawals to use).
        if (_w.target == address(this)) revert BadTarget();
        bytes32 h = hashWithdrawal(_w);
        // INVARIANT: once finalized, a withdrawal is done.
        if (finalizedWithdrawals[h]) revert AlreadyFinalized();
        ProvenWithdrawal memory prior = provenWithdrawals[h];
        // INVARIANT: re-proving only replaces a proof whose output was deleted.
        if (prior.provenAt != 0 && _isLive(prior)) revert AlreadyProven();
        OutputOracle.Output memory o = ORACLE.output(_outputIndex); // reverts UnknownOutput
        (bool exists, LibSecureTrie.Account memory passer) =
            LibSecureTrie.getAccount(o.stateRoot, MESSAGE_PASSER, _accountProof);
        // SAFETY: both proofs are checked node by node against the output's state root.
        if (!exists) revert MessagePasserNotInState();
        if (LibSecureTrie.getStorage(passer.storageRoot, storageSlot(h), _storageProof) != 1) {
            revert WithdrawalNotInStorage();
        }
        provenWithdrawals[h] = ProvenWithdrawal({
            outputIndex: uint64(_outputIndex),
            outputNonce: o.nonce,
            provenAt: uint64(block.timestamp)
        });
        emit WithdrawalProven(h, _w.sender, _w.target, _outputIndex);
    }

    /// @notice Finalize proven withdrawal `_w` once its output is final: call `_w.target` with `_w.value`,
    ///         `_w.gasLimit` gas and `_w.data`, with `l2Sender` = `_w.sender`. Anyone may finalize.
    function finalizeWithdrawal(Withdrawal calldata _w) external {
        // INVARIANT: one withdrawal call at a time (no finalizing from inside a withdrawal's call).
        if (l2Sender != DEFAULT_L2_SENDER) revert Reentrant();
        bytes32 h = hashWithdrawal(_w);
        // INVARIANT: each withdrawal executes at most once.
        if (finalizedWithdrawals[h]) revert AlreadyFinalized();
        ProvenWithdrawal memory p = provenWithdrawals[h];
        if (p.provenAt == 0) revert NotProven();
        // INVARIANT: the output proven against is still the one at its index (not deleted by a dispute).
        if (!_isLive(p)) revert ProvenOutputDeleted();
        // INVARIANT: the output's challenge window passed with no dispute (it can no longer be deleted).
        if (!ORACLE.isFinal(p.outputIndex)) revert OutputNotFinal();
        // INVARIANT: the ETH is here (deposits lock it); a withdrawal waits rather than fail for lack of it.
        if (address(this).balance < _w.value) revert PortalBalanceTooLow();
        // SAFETY: state before the call (re-entrancy cannot finalize it again).
        finalizedWithdrawals[h] = true;
        // SAFETY: the call gets at least `gasLimit` gas (63/64 rule), else the whole finalization reverts.
        if (_w.gasLimit > type(uint64).max || gasleft() * 63 < _w.gasLimit * 64 + FINALIZE_GAS_RESERVE * 63) {
            revert InsufficientGas();
        }
        l2Sender = _w.sender;
        (bool success,) = _w.target.call{ gas: _w.gasLimit, value: _w.value }(_w.data);
        l2Sender = DEFAULT_L2_SENDER;
        emit WithdrawalFinalized(h, success);
    }

    /// @notice `keccak256(abi.encode(nonce, sender, target, value, gasLimit, data))`, as the message passer.
    function hashWithdrawal(Withdrawal calldata _w) public pure returns (bytes32) {
        return keccak256(abi.encode(_w.nonce, _w.sender, _w.target, _w.value, _w.gasLimit, _w.data));
    }

    /// @notice The message passer's storage slot of `sentMessages[_withdrawalHash]`.
    function storageSlot(bytes32 _withdrawalHash) public pure returns (bytes32) {
        return keccak256(abi.encode(_withdrawalHash, uint256(0)));
    }

    /// @notice The L2 `from` of a deposit made by `_sender`: itself for an EOA's own transaction,
    ///         else `_sender + ALIAS_OFFSET` (mod 2^160).
    function depositSender(address _sender, address _origin) public pure returns (address) {
        if (_sender == _origin) return _sender;
        unchecked {
            return address(uint160(_sender) + ALIAS_OFFSET);
        }
    }

    /// @dev One deposit (`depositTransaction`, `receive`): checks the limits, counts the L1 block's
    ///      deposit gas and emits the event derivation reads.
    function _deposit(address _to, uint256 _value, uint64 _gasLimit, bytes memory _data) internal {
        // INVARIANT: every deposit pays at least a transfer's gas and at most the per-deposit cap.
        if (_gasLimit < MIN_DEPOSIT_GAS) revert GasLimitTooLow();
        if (_gasLimit > MAX_DEPOSIT_GAS) revert GasLimitTooHigh();
        // INVARIANT: deposit calldata is bounded (it is carried by every L2 node).
        if (_data.length > MAX_DEPOSIT_DATA) revert DepositDataTooLarge();
        // INVARIANT: the L2 gas bought by one L1 block's deposits stays under the per-block cap, so
        //            the sequencer can always fit them in one L2 block.
        uint64 used = depositBlock == uint64(block.number) ? depositBlockGas : 0;
        if (used + _gasLimit > MAX_DEPOSIT_GAS_PER_BLOCK) revert BlockDepositGasExceeded();
        depositBlock = uint64(block.number);
        depositBlockGas = used + _gasLimit;
        address from = depositSender(msg.sender, tx.origin);
        emit TransactionDeposited(depositCount++, from, _to, msg.value, _value, _gasLimit, _data);
    }

    /// @dev Whether the output a withdrawal was proven against is still at its index.
    function _isLive(ProvenWithdrawal memory _p) internal view returns (bool) {
        if (_p.outputIndex >= ORACLE.outputCount()) return false;
        return ORACLE.output(_p.outputIndex).nonce == _p.outputNonce;
    }
}
