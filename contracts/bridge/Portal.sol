// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { OutputOracle } from "../rollup/OutputOracle.sol";
import { BlockDepositGasExceeded, DepositDataTooLarge, GasLimitTooHigh, GasLimitTooLow } from "./BridgeErrors.sol";

/// @title Portal
/// @notice The rollup's L1 bridge end (docs/bridge.md), as the OP Stack's `OptimismPortal`.
///         **Deposits**: `depositTransaction` locks the ETH sent (`mint`) here and emits
///         `TransactionDeposited`; derivation turns each event, in log order, into an L2 deposit
///         transaction (type 0x7E) that mints `mint` to `from` on L2 and calls `to`.
///         **Withdrawals**: a withdrawal initiated on L2 (`L2ToL1MessagePasser`) is proven here against
///         an output's state root and finalized once that output is final; finalizing releases the
///         ETH locked by deposits.
contract Portal {
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

    /// @notice The output oracle whose outputs withdrawals are proven against.
    OutputOracle public immutable ORACLE;

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

    /// @notice The L2 `from` of a deposit made by `_sender`: itself for an EOA's own transaction,
    ///         else `_sender + ALIAS_OFFSET` (mod 2^160).
    function l2Sender(address _sender, address _origin) public pure returns (address) {
        if (_sender == _origin) return _sender;
        unchecked {
            return address(uint160(_sender) + ALIAS_OFFSET);
        }
    }

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
        address from = l2Sender(msg.sender, tx.origin);
        emit TransactionDeposited(depositCount++, from, _to, msg.value, _value, _gasLimit, _data);
    }
}
