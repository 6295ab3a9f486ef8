// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title AILib
/// @notice Calls the AI EVM inference precompiles and converts between Solidity values and the
///         engine's tensor bytes (little-endian, C order, in the model's declared dtype).
/// @dev Precompile layouts (docs/ailib.md), compatible with the public Axonum AILib:
///      0xa1 input  = bytes32 modelAddress ‖ uint256 outputSize ‖ inputBytes
///      0xa0 input  = uint256 bundleLength ‖ uint256 inputLength ‖ bundle ‖ inputBytes
///      both return = uint256 outputLength ‖ outputBytes
///      The return is written straight onto a fresh `bytes` of `outputSize` bytes: the returned
///      length word lands on the array's length slot (the Axonum trick), so no copy is needed.
library AILib {
    /// @notice The precompile that runs a model given by its 32-byte model address.
    address internal constant INFERENCE = address(0xa1);
    /// @notice The precompile that runs a model whose bundle is passed inline (tiny models only).
    address internal constant INFERENCE_INLINE = address(0xa0);

    /// @notice Exclusive upper bound on the `scale` of the float32 helpers: it keeps every
    ///         intermediate product of the exact rounding below 2^256.
    uint256 internal constant MAX_SCALE = 1 << 128;

    /// @notice The inference precompile failed: unknown or unavailable model, malformed call,
    ///         wrong input length, output size mismatch, or out of gas (the call's gas is consumed).
    /// @param model The model address that was called.
    error InferenceFailed(bytes32 model);

    /// @notice The inline inference precompile failed (same reasons as `InferenceFailed`).
    /// @param bundleLength Length in bytes of the bundle that was passed.
    error InlineInferenceFailed(uint256 bundleLength);

    /// @notice The precompile returned a different number of output bytes than requested.
    /// @param expected The requested output size in bytes.
    /// @param actual The output size the precompile returned.
    error OutputSizeMismatch(uint256 expected, uint256 actual);

    /// @notice A byte string is not a whole number of elements of the expected width.
    /// @param length The length in bytes.
    /// @param elementSize The element width in bytes.
    error InvalidTensorLength(uint256 length, uint256 elementSize);

    /// @notice An argmax over zero elements.
    error EmptyTensor();

    /// @notice A scale of zero, or one not below `MAX_SCALE`.
    /// @param scale The scale given.
    error InvalidScale(uint256 scale);

    /// @notice `value / scale` does not fit a finite float32 (or |value| >= 2^255).
    /// @param index Position of the value in the input array.
    /// @param value The offending value.
    error Float32OutOfRange(uint256 index, int256 value);

    /// @notice A float32 is NaN or infinite where a finite number is required.
    /// @param index Element position in the tensor.
    /// @param bits The float32 bit pattern.
    error Float32NotFinite(uint256 index, uint32 bits);

    /// @notice A decoded `float32 * scale` does not fit an int256.
    /// @param index Element position in the tensor.
    /// @param bits The float32 bit pattern.
    error ScaledOverflow(uint256 index, uint32 bits);

    // ---------------------------------------------------------------------------------------------
    // Precompile calls
    // ---------------------------------------------------------------------------------------------

    /// @notice Runs model `_model` on `_input` and returns exactly `_outputSize` output bytes.
    /// @dev Reverts with `InferenceFailed(_model)` when the precompile fails and with
    ///      `OutputSizeMismatch` when it returns another size. Forwards all gas but 1/64.
    /// @param _model The 32-byte model address (Merkle root of the bundle).
    /// @param _input The input tensors' bytes (declared dtype, little-endian, C order).
    /// @param _outputSize The number of output bytes expected.
    /// @return output_ The output tensors' bytes.
    function inference(bytes32 _model, bytes memory _input, uint256 _outputSize)
        internal
        view
        returns (bytes memory output_)
    {
        bool ok;
        uint256 returned;
        (ok, returned, output_) = _callByAddress(_model, _input, _outputSize, gasleft());
        if (!ok) revert InferenceFailed(_model);
        _checkReturned(output_, _outputSize, returned);
    }

    /// @notice Like `inference`, but reports failure instead of reverting, and forwards at most
    ///         `_gas` gas: for contracts that fall back when a model is unavailable.
    /// @param _model The model address.
    /// @param _input The input tensors' bytes.
    /// @param _outputSize The number of output bytes expected.
    /// @param _gas The most gas the precompile may use (all of it is consumed on failure).
    /// @return ok_ True when the precompile succeeded and returned exactly `_outputSize` bytes.
    /// @return output_ The output bytes when `ok_`, else an empty array.
    function tryInference(bytes32 _model, bytes memory _input, uint256 _outputSize, uint256 _gas)
        internal
        view
        returns (bool ok_, bytes memory output_)
    {
        uint256 returned;
        (ok_, returned, output_) = _callByAddress(_model, _input, _outputSize, _gas);
        if (!ok_ || returned != _outputSize + 32 || output_.length != _outputSize) return (false, new bytes(0));
    }

    /// @dev The 0xa1 call: the return (length word ‖ output) is written onto a fresh
    ///      `bytes(_outputSize)`; returns the success flag and the return data size.
    function _callByAddress(bytes32 _model, bytes memory _input, uint256 _outputSize, uint256 _gas)
        private
        view
        returns (bool ok_, uint256 returned_, bytes memory output_)
    {
        output_ = new bytes(_outputSize);
        assembly ("memory-safe") {
            // Call data lives just past the output buffer, beyond the free memory pointer.
            let inLen := mload(_input)
            let cd := mload(0x40)
            mstore(cd, _model)
            mstore(add(cd, 0x20), _outputSize)
            mcopy(add(cd, 0x40), add(_input, 0x20), inLen)
            ok_ := staticcall(_gas, 0xa1, cd, add(0x40, inLen), output_, add(0x20, _outputSize))
            returned_ := returndatasize()
        }
    }

    /// @notice Runs the model whose bundle bytes are `_bundle` (tiny models only) on `_input`.
    /// @dev Reverts with `InlineInferenceFailed` when the precompile fails and with
    ///      `OutputSizeMismatch` when the model's output is not `_outputSize` bytes.
    /// @param _bundle The model bundle bytes.
    /// @param _input The input tensors' bytes.
    /// @param _outputSize The number of output bytes expected.
    /// @return output_ The output tensors' bytes.
    function inferenceInline(bytes memory _bundle, bytes memory _input, uint256 _outputSize)
        internal
        view
        returns (bytes memory output_)
    {
        output_ = new bytes(_outputSize);
        bool ok;
        uint256 returned;
        assembly ("memory-safe") {
            let bLen := mload(_bundle)
            let inLen := mload(_input)
            let cd := mload(0x40)
            mstore(cd, bLen)
            mstore(add(cd, 0x20), inLen)
            mcopy(add(cd, 0x40), add(_bundle, 0x20), bLen)
            mcopy(add(add(cd, 0x40), bLen), add(_input, 0x20), inLen)
            ok := staticcall(gas(), 0xa0, cd, add(add(0x40, bLen), inLen), output_, add(0x20, _outputSize))
            returned := returndatasize()
        }
        if (!ok) revert InlineInferenceFailed(_bundle.length);
        _checkReturned(output_, _outputSize, returned);
    }

    /// @notice `argmaxFloat32(inference(_model, _input, _outputSize))`: the class index of a
    ///         classifier with one float32 output row.
    /// @param _model The model address.
    /// @param _input The input tensors' bytes.
    /// @param _outputSize The output size in bytes (4 x number of classes).
    /// @return index_ Index of the first largest output.
    function inferenceArgmaxFloat32(bytes32 _model, bytes memory _input, uint256 _outputSize)
        internal
        view
        returns (uint256 index_)
    {
        index_ = argmaxFloat32(inference(_model, _input, _outputSize));
    }

    /// @notice `argmaxInt8(inference(_model, _input, _outputSize))` for int8-output models.
    /// @param _model The model address.
    /// @param _input The input tensors' bytes.
    /// @param _outputSize The output size in bytes (number of classes).
    /// @return index_ Index of the first largest output.
    function inferenceArgmaxInt8(bytes32 _model, bytes memory _input, uint256 _outputSize)
        internal
        view
        returns (uint256 index_)
    {
        index_ = argmaxInt8(inference(_model, _input, _outputSize));
    }

    /// @dev Checks the precompile returned `32 + _size` bytes and the length word says `_size`.
    function _checkReturned(bytes memory _output, uint256 _size, uint256 _returned) private pure {
        // INVARIANT: the output buffer holds exactly what the precompile returned.
        if (_returned != _size + 32) {
            revert OutputSizeMismatch(_size, _returned < 32 ? 0 : _returned - 32);
        }
        if (_output.length != _size) revert OutputSizeMismatch(_size, _output.length);
    }

    // ---------------------------------------------------------------------------------------------
    // int8 / uint8 tensors
    // ---------------------------------------------------------------------------------------------

    /// @notice Packs int8 values into tensor bytes (one byte each, two's complement).
    /// @param _values The values.
    /// @return data_ The tensor bytes.
    function encodeInt8(int8[] memory _values) internal pure returns (bytes memory data_) {
        uint256 n = _values.length;
        data_ = new bytes(n);
        assembly ("memory-safe") {
            let src := add(_values, 0x20)
            let dst := add(data_, 0x20)
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                mstore8(add(dst, i), mload(add(src, shl(5, i))))
            }
        }
    }

    /// @notice Packs uint8 values into tensor bytes.
    /// @param _values The values.
    /// @return data_ The tensor bytes.
    function encodeUint8(uint8[] memory _values) internal pure returns (bytes memory data_) {
        uint256 n = _values.length;
        data_ = new bytes(n);
        assembly ("memory-safe") {
            let src := add(_values, 0x20)
            let dst := add(data_, 0x20)
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                mstore8(add(dst, i), mload(add(src, shl(5, i))))
            }
        }
    }

    /// @notice Reads int8 tensor bytes.
    /// @param _data The tensor bytes.
    /// @return values_ One int8 per byte.
    function decodeInt8(bytes memory _data) internal pure returns (int8[] memory values_) {
        uint256 n = _data.length;
        values_ = new int8[](n);
        assembly ("memory-safe") {
            let src := add(_data, 0x20)
            let dst := add(values_, 0x20)
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                mstore(add(dst, shl(5, i)), signextend(0, byte(0, mload(add(src, i)))))
            }
        }
    }

    /// @notice Reads uint8 tensor bytes.
    /// @param _data The tensor bytes.
    /// @return values_ One uint8 per byte.
    function decodeUint8(bytes memory _data) internal pure returns (uint8[] memory values_) {
        uint256 n = _data.length;
        values_ = new uint8[](n);
        assembly ("memory-safe") {
            let src := add(_data, 0x20)
            let dst := add(values_, 0x20)
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                mstore(add(dst, shl(5, i)), byte(0, mload(add(src, i))))
            }
        }
    }

    /// @notice Index of the first largest int8 in `_data`.
    /// @param _data int8 tensor bytes (at least one).
    /// @return index_ The index.
    function argmaxInt8(bytes memory _data) internal pure returns (uint256 index_) {
        uint256 n = _data.length;
        if (n == 0) revert EmptyTensor();
        assembly ("memory-safe") {
            let src := add(_data, 0x20)
            // Bias by 128 so that int8 order is unsigned byte order.
            let best := xor(byte(0, mload(src)), 0x80)
            for { let i := 1 } lt(i, n) { i := add(i, 1) } {
                let v := xor(byte(0, mload(add(src, i))), 0x80)
                if gt(v, best) {
                    best := v
                    index_ := i
                }
            }
        }
    }

    /// @notice Index of the first largest uint8 in `_data`.
    /// @param _data uint8 tensor bytes (at least one).
    /// @return index_ The index.
    function argmaxUint8(bytes memory _data) internal pure returns (uint256 index_) {
        uint256 n = _data.length;
        if (n == 0) revert EmptyTensor();
        assembly ("memory-safe") {
            let src := add(_data, 0x20)
            let best := byte(0, mload(src))
            for { let i := 1 } lt(i, n) { i := add(i, 1) } {
                let v := byte(0, mload(add(src, i)))
                if gt(v, best) {
                    best := v
                    index_ := i
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------------
    // float32 tensors
    // ---------------------------------------------------------------------------------------------

    /// @notice Index of the first largest float32 in `_data` (little-endian float32 values).
    /// @dev Exact IEEE order: negatives below positives, -0 equal to +0, infinities allowed;
    ///      a NaN reverts with `Float32NotFinite`.
    /// @param _data float32 tensor bytes (a non-zero multiple of 4).
    /// @return index_ The index.
    function argmaxFloat32(bytes memory _data) internal pure returns (uint256 index_) {
        uint256 n = _float32Count(_data);
        if (n == 0) revert EmptyTensor();
        uint256 best;
        for (uint256 i = 0; i < n; ++i) {
            uint32 bits = float32At(_data, i);
            // SAFETY: a NaN has no place in an order; reject it rather than pick an arbitrary index.
            if (bits & 0x7fffffff > 0x7f800000) revert Float32NotFinite(i, bits);
            uint256 key = _orderKey(bits);
            if (i == 0 || key > best) {
                best = key;
                index_ = i;
            }
        }
    }

    /// @notice The float32 bit pattern of element `_index` of little-endian float32 bytes.
    /// @param _data float32 tensor bytes.
    /// @param _index Element index (reverts with a panic past the end).
    /// @return bits_ The IEEE 754 binary32 bits.
    function float32At(bytes memory _data, uint256 _index) internal pure returns (uint32 bits_) {
        uint256 offset = _index * 4;
        if (offset + 4 > _data.length) revert InvalidTensorLength(_data.length, 4);
        assembly ("memory-safe") {
            let w := mload(add(add(_data, 0x20), offset))
            // Bytes b0 b1 b2 b3 (little-endian) -> b3 b2 b1 b0.
            bits_ := or(
                or(byte(0, w), shl(8, byte(1, w))),
                or(shl(16, byte(2, w)), shl(24, byte(3, w)))
            )
        }
    }

    /// @notice Encodes each `value / _scale` as an IEEE float32, rounded to nearest, ties to even,
    ///         as little-endian bytes (4 per value).
    /// @dev Exact for every input: subnormals are produced when due; 0 encodes as +0. Range:
    ///      `0 < _scale < 2^128`, `|value| < 2^255`, and `|value / _scale|` must round to at most
    ///      the largest finite float32 (about 3.4028235e38), else `Float32OutOfRange`.
    ///      Example: `encodeFloat32FromScaled([5, -3], 16)` encodes 0.3125 and -0.1875.
    /// @param _values Numerators.
    /// @param _scale The common denominator.
    /// @return data_ float32 tensor bytes.
    function encodeFloat32FromScaled(int256[] memory _values, uint256 _scale)
        internal
        pure
        returns (bytes memory data_)
    {
        if (_scale == 0 || _scale >= MAX_SCALE) revert InvalidScale(_scale);
        uint256 n = _values.length;
        uint256 scaleBits = _bitLength(_scale);
        data_ = new bytes(n * 4);
        for (uint256 i = 0; i < n; ++i) {
            _storeFloat32(data_, i, _toFloat32(_values[i], _scale, scaleBits, i));
        }
    }

    /// @notice Encodes each byte `b` of `_data` (an unsigned 8-bit value, e.g. a pixel) as the
    ///         float32 `b / _scale`, rounded to nearest, ties to even, little-endian.
    /// @dev The cheap path for images: no int256[] to build, and each distinct byte value is
    ///      converted once (a 256-entry memory table). `0 < _scale < 2^128`.
    ///      Example: `encodeFloat32FromUint8(pixels, 255)` gives pixel intensities in [0, 1].
    /// @param _data One value per byte.
    /// @param _scale The common denominator.
    /// @return out_ float32 tensor bytes (4 per input byte).
    function encodeFloat32FromUint8(bytes memory _data, uint256 _scale) internal pure returns (bytes memory out_) {
        if (_scale == 0 || _scale >= MAX_SCALE) revert InvalidScale(_scale);
        uint256 n = _data.length;
        uint256 scaleBits = _bitLength(_scale);
        out_ = new bytes(n * 4);
        // Each distinct byte value is converted once (0 doubles as "not yet": 0 / scale is +0).
        uint32[256] memory seen;
        for (uint256 i = 0; i < n; ++i) {
            uint256 b;
            assembly ("memory-safe") {
                b := byte(0, mload(add(add(_data, 0x20), i)))
            }
            uint32 bits = seen[b];
            if (bits == 0 && b != 0) {
                bits = _toFloat32(int256(b), _scale, scaleBits, i);
                seen[b] = bits;
            }
            _storeFloat32(out_, i, bits);
        }
    }

    /// @notice Decodes little-endian float32 bytes to `round(x * _scale)` each, rounded to
    ///         nearest, ties to even (exact: no intermediate rounding).
    /// @dev NaN and infinities revert with `Float32NotFinite`; results beyond int256 revert with
    ///      `ScaledOverflow`; `0 < _scale < 2^128`.
    /// @param _data float32 tensor bytes (a multiple of 4).
    /// @param _scale The multiplier.
    /// @return values_ The scaled integers.
    function decodeFloat32ToScaled(bytes memory _data, uint256 _scale)
        internal
        pure
        returns (int256[] memory values_)
    {
        if (_scale == 0 || _scale >= MAX_SCALE) revert InvalidScale(_scale);
        uint256 n = _float32Count(_data);
        values_ = new int256[](n);
        for (uint256 i = 0; i < n; ++i) {
            values_[i] = _fromFloat32(float32At(_data, i), _scale, i);
        }
    }

    /// @notice The float32 bits of `_value / _scale`, rounded to nearest, ties to even.
    /// @param _value Numerator (|value| < 2^255).
    /// @param _scale Denominator, `0 < _scale < 2^128`.
    /// @return bits_ IEEE 754 binary32 bits.
    function float32FromScaled(int256 _value, uint256 _scale) internal pure returns (uint32 bits_) {
        if (_scale == 0 || _scale >= MAX_SCALE) revert InvalidScale(_scale);
        bits_ = _toFloat32(_value, _scale, _bitLength(_scale), 0);
    }

    /// @notice `round(float32(_bits) * _scale)`, rounded to nearest, ties to even.
    /// @param _bits IEEE 754 binary32 bits (finite).
    /// @param _scale The multiplier, `0 < _scale < 2^128`.
    /// @return value_ The scaled integer.
    function float32ToScaled(uint32 _bits, uint256 _scale) internal pure returns (int256 value_) {
        if (_scale == 0 || _scale >= MAX_SCALE) revert InvalidScale(_scale);
        value_ = _fromFloat32(_bits, _scale, 0);
    }

    /// @dev `float32FromScaled` given the scale's bit length (scale already checked), with the
    ///      element index to report.
    function _toFloat32(int256 _value, uint256 _scale, uint256 _scaleBits, uint256 _index)
        private
        pure
        returns (uint32 bits_)
    {
        if (_value == 0) return 0;
        if (_value == type(int256).min) revert Float32OutOfRange(_index, _value);
        uint256 sign = _value < 0 ? 1 << 31 : 0;
        uint256 a = uint256(_value < 0 ? -_value : _value);
        uint256 bits;
        unchecked {
            // SAFETY: la <= 255 and ls <= 128, so every shift below stays under 2^256.
            // a / scale lies in (2^(la-1-ls), 2^(la-ls+1)): with k = 24 + ls - la the quotient
            // a * 2^k / scale lies in (2^23, 2^25); one halving brings it into [2^23, 2^24).
            int256 k = int256(24 + _scaleBits) - int256(_bitLength(a));
            (uint256 num, uint256 den) = k >= 0 ? (a << uint256(k), _scale) : (a, _scale << uint256(-k));
            if (num / den >= 1 << 24) {
                k -= 1;
                // a << k has a zero low bit when k > 0, so halving it is exact.
                if (k >= 0) num >>= 1;
                else den <<= 1;
            }
            // value = m * 2^-k, m = round(num / den) in [2^23, 2^24] (2^24 only by rounding up).
            uint256 m = _roundDiv(num, den);
            int256 biased = 127 + 23 - k;
            if (m == 1 << 24) {
                m >>= 1;
                biased += 1;
            }
            if (biased >= 255) revert Float32OutOfRange(_index, _value);
            if (biased >= 1) {
                bits = (uint256(biased) << 23) | (m - (1 << 23));
            } else {
                // Subnormal: value = M * 2^-149, M <= 2^23 (M == 2^23 is the smallest normal,
                // whose bit pattern is also M). Round once, at the final position:
                // a * 2^149 < scale * 2^23 < 2^151.
                bits = _roundDiv(a << 149, _scale);
            }
        }
        bits_ = uint32(sign | bits);
    }

    /// @dev `float32ToScaled` with the element index to report (scale already checked).
    function _fromFloat32(uint32 _bits, uint256 _scale, uint256 _index) private pure returns (int256 value_) {
        uint256 e = (_bits >> 23) & 0xff;
        if (e == 0xff) revert Float32NotFinite(_index, _bits);
        uint256 mant = _bits & 0x7fffff;
        // value = mant * 2^(e - 150) (normal: implicit bit; subnormal: e = 1).
        if (e == 0) e = 1;
        else mant |= 1 << 23;
        uint256 x = mant * _scale; // < 2^152
        uint256 magnitude;
        if (e >= 150) {
            uint256 shift = e - 150; // <= 104
            if (x >> (255 - shift) != 0) revert ScaledOverflow(_index, _bits);
            magnitude = x << shift;
        } else {
            magnitude = _roundShift(x, 150 - e);
        }
        value_ = _bits >> 31 == 1 ? -int256(magnitude) : int256(magnitude);
    }

    /// @dev Writes `_bits` little-endian as element `_index` of a float32 buffer (caller sized it).
    function _storeFloat32(bytes memory _buf, uint256 _index, uint32 _bits) private pure {
        assembly ("memory-safe") {
            let p := add(add(_buf, 0x20), shl(2, _index))
            mstore8(p, and(_bits, 0xff))
            mstore8(add(p, 1), and(shr(8, _bits), 0xff))
            mstore8(add(p, 2), and(shr(16, _bits), 0xff))
            mstore8(add(p, 3), shr(24, _bits))
        }
    }

    /// @dev Number of float32 elements in `_data`; reverts unless its length is a multiple of 4.
    function _float32Count(bytes memory _data) private pure returns (uint256) {
        if (_data.length % 4 != 0) revert InvalidTensorLength(_data.length, 4);
        return _data.length / 4;
    }

    /// @dev A uint that orders finite float32 bit patterns like their values (-0 maps to +0).
    function _orderKey(uint32 _bits) private pure returns (uint256) {
        if (_bits == 0x80000000) _bits = 0;
        return _bits >> 31 == 1 ? uint256(0x7fffffff - (_bits & 0x7fffffff)) : uint256(_bits) + 0x80000000;
    }

    /// @dev round(_num / _den) to nearest, ties to even.
    function _roundDiv(uint256 _num, uint256 _den) private pure returns (uint256 q_) {
        unchecked {
            q_ = _num / _den;
            uint256 r = _num % _den;
            uint256 rest = _den - r;
            if (r > rest || (r == rest && q_ & 1 == 1)) q_ += 1;
        }
    }

    /// @dev round(_x / 2^_shift) to nearest, ties to even (shift >= 1).
    function _roundShift(uint256 _x, uint256 _shift) private pure returns (uint256) {
        if (_shift > 255) return 0; // _x < 2^152 < 2^(shift-1): rounds to 0
        uint256 q = _x >> _shift;
        uint256 r = _x & ((1 << _shift) - 1);
        uint256 half = 1 << (_shift - 1);
        if (r > half || (r == half && q & 1 == 1)) q += 1;
        return q;
    }

    /// @dev Number of significant bits of `_x` (0 for 0).
    function _bitLength(uint256 _x) private pure returns (uint256 n_) {
        assembly ("memory-safe") {
            // Binary search: eight halving steps, then the last bit.
            let s := shl(7, gt(_x, 0xffffffffffffffffffffffffffffffff))
            _x := shr(s, _x)
            n_ := s
            s := shl(6, gt(_x, 0xffffffffffffffff))
            _x := shr(s, _x)
            n_ := or(n_, s)
            s := shl(5, gt(_x, 0xffffffff))
            _x := shr(s, _x)
            n_ := or(n_, s)
            s := shl(4, gt(_x, 0xffff))
            _x := shr(s, _x)
            n_ := or(n_, s)
            s := shl(3, gt(_x, 0xff))
            _x := shr(s, _x)
            n_ := or(n_, s)
            s := shl(2, gt(_x, 0xf))
            _x := shr(s, _x)
            n_ := or(n_, s)
            s := shl(1, gt(_x, 0x3))
            _x := shr(s, _x)
            n_ := or(n_, s)
            s := gt(_x, 0x1)
            _x := shr(s, _x)
            n_ := add(or(n_, s), _x)
        }
    }
}
