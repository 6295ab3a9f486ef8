// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AILib} from "../AILib.sol";

/// @title AILibHarness
/// @notice Exposes AILib's pure helpers and precompile calls as external functions for tests.
contract AILibHarness {
    /// @notice See `AILib.encodeInt8`.
    /// @param _values The values.
    /// @return The tensor bytes.
    function encodeInt8(int8[] memory _values) external pure returns (bytes memory) {
        return AILib.encodeInt8(_values);
    }

    /// @notice See `AILib.encodeUint8`.
    /// @param _values The values.
    /// @return The tensor bytes.
    function encodeUint8(uint8[] memory _values) external pure returns (bytes memory) {
        return AILib.encodeUint8(_values);
    }

    /// @notice See `AILib.decodeInt8`.
    /// @param _data The tensor bytes.
    /// @return The values.
    function decodeInt8(bytes memory _data) external pure returns (int8[] memory) {
        return AILib.decodeInt8(_data);
    }

    /// @notice See `AILib.decodeUint8`.
    /// @param _data The tensor bytes.
    /// @return The values.
    function decodeUint8(bytes memory _data) external pure returns (uint8[] memory) {
        return AILib.decodeUint8(_data);
    }

    /// @notice See `AILib.argmaxInt8`.
    /// @param _data The tensor bytes.
    /// @return The index.
    function argmaxInt8(bytes memory _data) external pure returns (uint256) {
        return AILib.argmaxInt8(_data);
    }

    /// @notice See `AILib.argmaxUint8`.
    /// @param _data The tensor bytes.
    /// @return The index.
    function argmaxUint8(bytes memory _data) external pure returns (uint256) {
        return AILib.argmaxUint8(_data);
    }

    /// @notice See `AILib.argmaxFloat32`.
    /// @param _data The tensor bytes.
    /// @return The index.
    function argmaxFloat32(bytes memory _data) external pure returns (uint256) {
        return AILib.argmaxFloat32(_data);
    }

    /// @notice See `AILib.encodeFloat32FromScaled`.
    /// @param _values Numerators.
    /// @param _scale The denominator.
    /// @return The float32 tensor bytes.
    function encodeFloat32FromScaled(int256[] memory _values, uint256 _scale) external pure returns (bytes memory) {
        return AILib.encodeFloat32FromScaled(_values, _scale);
    }

    /// @notice See `AILib.encodeFloat32FromUint8`.
    /// @param _data One value per byte.
    /// @param _scale The denominator.
    /// @return The float32 tensor bytes.
    function encodeFloat32FromUint8(bytes memory _data, uint256 _scale) external pure returns (bytes memory) {
        return AILib.encodeFloat32FromUint8(_data, _scale);
    }

    /// @notice See `AILib.decodeFloat32ToScaled`.
    /// @param _data The float32 tensor bytes.
    /// @param _scale The multiplier.
    /// @return The scaled integers.
    function decodeFloat32ToScaled(bytes memory _data, uint256 _scale) external pure returns (int256[] memory) {
        return AILib.decodeFloat32ToScaled(_data, _scale);
    }

    /// @notice See `AILib.float32FromScaled`.
    /// @param _value Numerator.
    /// @param _scale Denominator.
    /// @return The float32 bits.
    function float32FromScaled(int256 _value, uint256 _scale) external pure returns (uint32) {
        return AILib.float32FromScaled(_value, _scale);
    }

    /// @notice See `AILib.float32ToScaled`.
    /// @param _bits The float32 bits.
    /// @param _scale The multiplier.
    /// @return The scaled integer.
    function float32ToScaled(uint32 _bits, uint256 _scale) external pure returns (int256) {
        return AILib.float32ToScaled(_bits, _scale);
    }

    /// @notice See `AILib.float32At`.
    /// @param _data The float32 tensor bytes.
    /// @param _index The element index.
    /// @return The float32 bits.
    function float32At(bytes memory _data, uint256 _index) external pure returns (uint32) {
        return AILib.float32At(_data, _index);
    }

    /// @notice See `AILib.inference`.
    /// @param _model The model address.
    /// @param _input The input bytes.
    /// @param _outputSize The output size.
    /// @return The output bytes.
    function inference(bytes32 _model, bytes memory _input, uint256 _outputSize) external view returns (bytes memory) {
        return AILib.inference(_model, _input, _outputSize);
    }

    /// @notice See `AILib.tryInference`.
    /// @param _model The model address.
    /// @param _input The input bytes.
    /// @param _outputSize The output size.
    /// @param _gas The gas to forward.
    /// @return ok Whether it succeeded.
    /// @return output The output bytes.
    function tryInference(bytes32 _model, bytes memory _input, uint256 _outputSize, uint256 _gas)
        external
        view
        returns (bool ok, bytes memory output)
    {
        return AILib.tryInference(_model, _input, _outputSize, _gas);
    }

    /// @notice See `AILib.inferenceInline`.
    /// @param _bundle The bundle bytes.
    /// @param _input The input bytes.
    /// @param _outputSize The output size.
    /// @return The output bytes.
    function inferenceInline(bytes memory _bundle, bytes memory _input, uint256 _outputSize)
        external
        view
        returns (bytes memory)
    {
        return AILib.inferenceInline(_bundle, _input, _outputSize);
    }
}
