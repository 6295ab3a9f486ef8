// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { IProgramLength } from "../interfaces/IProgramLength.sol";
import { IStepVerifier } from "../interfaces/IStepVerifier.sol";
import { MalformedContext, MalformedWitness, NotYourTurn } from "../lib/Errors.sol";

/// @title OracleStepVerifier
/// @notice A stand-in step verifier and program-length oracle answering from tables its owner
///         fills with `fraud_vm`'s results (`fraud_vm.vm.verify_step` of given witnesses,
///         `fraud_vm.stepper.num_steps` of given contexts), so that whole games can be played on a
///         test chain before the Solidity step verifier exists. Not deployed on L1: it trusts its
///         owner. A witness or context the owner did not register reverts.
contract OracleStepVerifier is IStepVerifier, IProgramLength {
    /// @notice Who may fill the tables (the deployer).
    address public immutable OWNER;
    /// @notice `keccak256(pre ‖ keccak256(witness))` -> the post-state hash fraud_vm computed.
    mapping(bytes32 => bytes32) public post;
    /// @notice `keccak256(context)` -> program length plus one (zero: unknown context).
    mapping(bytes32 => uint256) public lengthPlusOne;

    /// @notice The deployer becomes the owner, the only account that fills the tables.
    constructor() {
        OWNER = msg.sender;
    }

    /// @notice Register the verdict of one step: `verify_step(_pre, witness) == _post`.
    /// @param _pre The pre-state hash.
    /// @param _witnessHash `keccak256` of the witness calldata.
    /// @param _post The post-state hash.
    function setStep(bytes32 _pre, bytes32 _witnessHash, bytes32 _post) external {
        // INVARIANT: only the owner fills the oracle.
        if (msg.sender != OWNER) revert NotYourTurn();
        post[keccak256(abi.encodePacked(_pre, _witnessHash))] = _post;
    }

    /// @notice Register the program lengths of node contexts.
    /// @param _contextHashes `keccak256` of each context.
    /// @param _lengths Each program's length.
    function setLengths(bytes32[] calldata _contextHashes, uint256[] calldata _lengths) external {
        // INVARIANT: only the owner fills the oracle, with one length per context.
        if (msg.sender != OWNER || _contextHashes.length != _lengths.length) revert NotYourTurn();
        for (uint256 i = 0; i < _lengths.length; i++) {
            lengthPlusOne[_contextHashes[i]] = _lengths[i] + 1;
        }
    }

    /// @inheritdoc IStepVerifier
    function step(bytes32 _preStateHash, bytes calldata _witness) external view returns (bytes32 postStateHash_) {
        postStateHash_ = post[keccak256(abi.encodePacked(_preStateHash, keccak256(_witness)))];
        // INVARIANT: only registered witnesses verify.
        if (postStateHash_ == bytes32(0)) revert MalformedWitness();
    }

    /// @inheritdoc IProgramLength
    function numSteps(bytes calldata _context) external view returns (uint256 numSteps_) {
        uint256 n = lengthPlusOne[keccak256(_context)];
        // INVARIANT: only registered contexts have a length.
        if (n == 0) revert MalformedContext();
        numSteps_ = n - 1;
    }
}
