// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { NotBatcher } from "./RollupErrors.sol";

/// @title BatchInbox
/// @notice Where the batcher posts L2 batches (docs/rollup.md "Batch format"): the data is the
///         transaction's calldata, or its EIP-4844 blobs. The contract keeps nothing; it only makes
///         a post by anyone but the batcher fail, so derivation reads the **successful**
///         transactions to this address and never has to trust their sender field alone.
contract BatchInbox {
    /// @notice The only account whose posts derivation reads.
    address public immutable BATCHER;

    /// @param _batcher The batcher's account.
    constructor(address _batcher) {
        BATCHER = _batcher;
    }

    /// @notice Accept the batcher's data (any calldata; blobs ride on the transaction).
    fallback() external {
        // INVARIANT: only the batcher posts; a failed post is not part of the L2 chain.
        if (msg.sender != BATCHER) revert NotBatcher();
    }
}
