// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { IProgramLength } from "../interfaces/IProgramLength.sol";

/// @title ConstantProgramLength
/// @notice A stand-in `IProgramLength` answering one fixed length, for testing `BundlePhaseLink`
///         until the step verifier's stepper mirror exists. Not deployed on L1.
contract ConstantProgramLength is IProgramLength {
    /// @notice The length every context gets.
    uint256 public immutable LENGTH;

    /// @param _length The length to answer.
    constructor(uint256 _length) {
        LENGTH = _length;
    }

    /// @inheritdoc IProgramLength
    function numSteps(bytes calldata) external view returns (uint256) {
        return LENGTH;
    }
}
