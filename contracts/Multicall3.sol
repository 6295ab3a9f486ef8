// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title Multicall3
/// @notice Batches calls in one `eth_call` or transaction, with the public Multicall3 interface
///         (the contract viem, ethers' and web3 tools expect at 0xcA11bde05977b3631167028862bE2a173976CA11).
///         The L2 genesis holds this contract's runtime code at that address (ai_evm/rollup/predeploys.py).
/// @dev Written for this repository from the published interface; compiled with the repository's
///      solc, so its bytecode is not the mainnet deployment's (the ABI and behaviour are the same:
///      failures revert with "Multicall3: call failed" / "Multicall3: value mismatch").
contract Multicall3 {
    /// @notice A call: target and call data.
    struct Call {
        address target;
        bytes callData;
    }

    /// @notice A call that may be allowed to fail.
    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    /// @notice A call with value that may be allowed to fail.
    struct Call3Value {
        address target;
        bool allowFailure;
        uint256 value;
        bytes callData;
    }

    /// @notice The outcome of one call.
    struct Result {
        bool success;
        bytes returnData;
    }

    /// @notice Runs `calls` in order, reverting if any fails.
    /// @param calls The calls.
    /// @return blockNumber The current block number.
    /// @return returnData Each call's return data.
    function aggregate(Call[] calldata calls)
        public
        payable
        returns (uint256 blockNumber, bytes[] memory returnData)
    {
        blockNumber = block.number;
        uint256 length = calls.length;
        returnData = new bytes[](length);
        for (uint256 i = 0; i < length; ++i) {
            bool success;
            (success, returnData[i]) = calls[i].target.call(calls[i].callData);
            require(success, "Multicall3: call failed");
        }
    }

    /// @notice Runs `calls` in order; reverts on a failure only when `requireSuccess`.
    /// @param requireSuccess Whether a failed call reverts the whole batch.
    /// @param calls The calls.
    /// @return returnData Each call's outcome.
    function tryAggregate(bool requireSuccess, Call[] calldata calls)
        public
        payable
        returns (Result[] memory returnData)
    {
        uint256 length = calls.length;
        returnData = new Result[](length);
        for (uint256 i = 0; i < length; ++i) {
            Result memory result = returnData[i];
            (result.success, result.returnData) = calls[i].target.call(calls[i].callData);
            if (requireSuccess) require(result.success, "Multicall3: call failed");
        }
    }

    /// @notice `tryAggregate` with the block number and `blockhash(block.number)` (as Multicall3).
    /// @param requireSuccess Whether a failed call reverts the whole batch.
    /// @param calls The calls.
    /// @return blockNumber The current block number.
    /// @return blockHash `blockhash(block.number)` (zero in the EVM, as in Multicall3).
    /// @return returnData Each call's outcome.
    function tryBlockAndAggregate(bool requireSuccess, Call[] calldata calls)
        public
        payable
        returns (uint256 blockNumber, bytes32 blockHash, Result[] memory returnData)
    {
        blockNumber = block.number;
        blockHash = blockhash(block.number);
        returnData = tryAggregate(requireSuccess, calls);
    }

    /// @notice `tryBlockAndAggregate(true, calls)`.
    /// @param calls The calls.
    /// @return blockNumber The current block number.
    /// @return blockHash `blockhash(block.number)`.
    /// @return returnData Each call's outcome.
    function blockAndAggregate(Call[] calldata calls)
        public
        payable
        returns (uint256 blockNumber, bytes32 blockHash, Result[] memory returnData)
    {
        (blockNumber, blockHash, returnData) = tryBlockAndAggregate(true, calls);
    }

    /// @notice Runs `calls` in order; a failed call reverts the batch unless it allows failure.
    /// @param calls The calls.
    /// @return returnData Each call's outcome.
    function aggregate3(Call3[] calldata calls) public payable returns (Result[] memory returnData) {
        uint256 length = calls.length;
        returnData = new Result[](length);
        for (uint256 i = 0; i < length; ++i) {
            Call3 calldata calli = calls[i];
            Result memory result = returnData[i];
            (result.success, result.returnData) = calli.target.call(calli.callData);
            if (!calli.allowFailure) require(result.success, "Multicall3: call failed");
        }
    }

    /// @notice `aggregate3` with a value per call; `msg.value` must equal their sum.
    /// @param calls The calls.
    /// @return returnData Each call's outcome.
    function aggregate3Value(Call3Value[] calldata calls) public payable returns (Result[] memory returnData) {
        uint256 valAccumulator;
        uint256 length = calls.length;
        returnData = new Result[](length);
        for (uint256 i = 0; i < length; ++i) {
            Call3Value calldata calli = calls[i];
            Result memory result = returnData[i];
            uint256 val = calli.value;
            valAccumulator += val;
            (result.success, result.returnData) = calli.target.call{ value: val }(calli.callData);
            if (!calli.allowFailure) require(result.success, "Multicall3: call failed");
        }
        require(msg.value == valAccumulator, "Multicall3: value mismatch");
    }

    /// @notice The hash of block `blockNumber` (zero outside the last 256 blocks).
    /// @param blockNumber The block number.
    /// @return blockHash The hash.
    function getBlockHash(uint256 blockNumber) public view returns (bytes32 blockHash) {
        blockHash = blockhash(blockNumber);
    }

    /// @notice The current block number.
    /// @return blockNumber The number.
    function getBlockNumber() public view returns (uint256 blockNumber) {
        blockNumber = block.number;
    }

    /// @notice The current block's coinbase.
    /// @return coinbase The address.
    function getCurrentBlockCoinbase() public view returns (address coinbase) {
        coinbase = block.coinbase;
    }

    /// @notice The current block's difficulty (`prevrandao` since the merge).
    /// @return difficulty The value.
    function getCurrentBlockDifficulty() public view returns (uint256 difficulty) {
        difficulty = block.prevrandao;
    }

    /// @notice The current block's gas limit.
    /// @return gaslimit The gas limit.
    function getCurrentBlockGasLimit() public view returns (uint256 gaslimit) {
        gaslimit = block.gaslimit;
    }

    /// @notice The current block's timestamp.
    /// @return timestamp The timestamp.
    function getCurrentBlockTimestamp() public view returns (uint256 timestamp) {
        timestamp = block.timestamp;
    }

    /// @notice The balance of `addr`.
    /// @param addr The account.
    /// @return balance The balance in wei.
    function getEthBalance(address addr) public view returns (uint256 balance) {
        balance = addr.balance;
    }

    /// @notice The previous block's hash.
    /// @return blockHash The hash.
    function getLastBlockHash() public view returns (bytes32 blockHash) {
        unchecked {
            blockHash = blockhash(block.number - 1);
        }
    }

    /// @notice The current block's base fee.
    /// @return basefee The base fee.
    function getBasefee() public view returns (uint256 basefee) {
        basefee = block.basefee;
    }

    /// @notice The chain id.
    /// @return chainid The chain id.
    function getChainId() public view returns (uint256 chainid) {
        chainid = block.chainid;
    }
}
