// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AILib} from "../AILib.sol";

/// @title DigitsClassifier
/// @notice Classifies 8x8 handwritten digits (scikit-learn digits) with the `digits_mlp` or
///         `digits_cnn` example model: input float32 [1, 64] (or [1, 1, 8, 8]) of pixel / 16,
///         output float32 [1, 10] (probabilities or logits); the digit is the argmax.
contract DigitsClassifier {
    /// @notice Pixels per image.
    uint256 public constant PIXELS = 64;
    /// @notice Largest pixel intensity (scikit-learn digits use 0..16).
    uint256 public constant MAX_INTENSITY = 16;
    /// @notice Output bytes: ten float32 scores.
    uint256 public constant OUTPUT_SIZE = 40;

    /// @notice The model address this classifier runs.
    bytes32 public immutable model;
    /// @notice The digit of the last `classify` call.
    uint256 public lastPrediction;
    /// @notice Who made the last `classify` call.
    address public lastCaller;

    /// @notice An image was not 64 bytes.
    /// @param length The length given.
    error InvalidImageLength(uint256 length);
    /// @notice A pixel was above 16.
    /// @param index The pixel index.
    /// @param value The pixel value.
    error InvalidPixel(uint256 index, uint8 value);

    /// @notice `caller` classified an image as `digit`.
    /// @param caller The sender.
    /// @param digit The predicted digit.
    event Classified(address indexed caller, uint256 digit);

    /// @param _model The digits model address.
    constructor(bytes32 _model) {
        model = _model;
    }

    /// @notice Classifies `_image`, records the result and emits `Classified`.
    /// @param _image 64 pixel intensities in 0..16, row by row.
    /// @return digit_ The predicted digit (0..9).
    function classify(bytes calldata _image) external returns (uint256 digit_) {
        digit_ = predict(_image);
        lastPrediction = digit_;
        lastCaller = msg.sender;
        emit Classified(msg.sender, digit_);
    }

    /// @notice The digit the model predicts for `_image` (for eth_call; records nothing).
    /// @param _image 64 pixel intensities in 0..16, row by row.
    /// @return digit_ The predicted digit (0..9).
    function predict(bytes calldata _image) public view returns (uint256 digit_) {
        digit_ = AILib.inferenceArgmaxFloat32(model, encodeImage(_image), OUTPUT_SIZE);
    }

    /// @notice The model input for `_image`: 64 float32 values pixel / 16, little-endian.
    /// @param _image 64 pixel intensities in 0..16.
    /// @return input_ 256 bytes of float32.
    function encodeImage(bytes calldata _image) public pure returns (bytes memory input_) {
        if (_image.length != PIXELS) revert InvalidImageLength(_image.length);
        for (uint256 i = 0; i < PIXELS; ++i) {
            uint8 pixel = uint8(_image[i]);
            if (pixel > MAX_INTENSITY) revert InvalidPixel(i, pixel);
        }
        input_ = AILib.encodeFloat32FromUint8(_image, MAX_INTENSITY);
    }
}
