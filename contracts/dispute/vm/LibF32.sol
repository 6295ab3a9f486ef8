// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @dev `F32Parts.cls` of a finite float32 (`sign * m * 2^e`).
uint8 constant F32_FINITE = 0;
/// @dev `F32Parts.cls` of a NaN (`fraud_vm.f32.NAN`), any payload.
uint8 constant F32_NAN = 1;
/// @dev `F32Parts.cls` of +infinity (`fraud_vm.f32.POS_INF`).
uint8 constant F32_POS_INF = 2;
/// @dev `F32Parts.cls` of -infinity (`fraud_vm.f32.NEG_INF`).
uint8 constant F32_NEG_INF = 3;
/// @dev The float32 sign bit (`fraud_vm.f32.F32_SIGN_BIT`).
uint256 constant F32_SIGN_BIT = 0x80000000;
/// @dev The bits of +infinity (`fraud_vm.f32.F32_INF_BITS`).
uint256 constant F32_INF_BITS = 0x7F800000;

/// @notice A float32 decomposed (`fraud_vm.f32.Parts`, or one of its three strings).
/// @custom:field cls `F32_FINITE`, `F32_NAN`, `F32_POS_INF` or `F32_NEG_INF`; the other fields are
///               meaningful only for `F32_FINITE` (they are still what Python's decomposition gives).
/// @custom:field sign -1 or 1.
/// @custom:field m The integer mantissa, `0 <= m < 2^24`.
/// @custom:field e The exponent: `e = exp - 150` (normal) or `-149` (subnormal and zero).
struct F32Parts {
    uint8 cls;
    int256 sign;
    uint256 m;
    int256 e;
}

/// @title LibF32
/// @notice Exact IEEE-754 binary32 arithmetic on bit patterns with bounded integers only: the mirror
///         of `fraud_vm.f32` (same functions, same order, camelCase names). A float32 is its integer
///         decomposition `sign * m * 2^e` (`f32Parts`); each operation is one exact integer
///         computation rounded once (`f32RoundScaled`: round to nearest, ties to even, subnormals
///         kept, overflow to infinity), which gives numpy's float32 bits. Every intermediate is a
///         non-negative integer below `2^153` when the inputs are below `2^128`
///         (docs/fraud_vm.md "Arithmetic bounds"); the callers (`LibExecFloat`) stay inside those
///         bounds, so checked arithmetic here never reverts for them.
library LibF32 {
    /// @notice A float32 bit pattern as `(sign, m, e)`, NaN or ±infinity (`f32_parts`).
    /// @dev Exactly Python's integer semantics for any int256 `_bits` (arithmetic right shift and
    ///      two's-complement masks), so an integer element misread as float32 decomposes as in
    ///      Python: normal `m = 2^23 | frac`, `e = exp - 150`; subnormal and zero `m = frac`,
    ///      `e = -149`; exponent 255 is NaN (`frac != 0`) or ±infinity.
    /// @param _bits The bit pattern (`0 <= _bits < 2^32` for a genuine float32).
    /// @return p_ The decomposition.
    function f32Parts(int256 _bits) internal pure returns (F32Parts memory p_) {
        // SAFETY: writes the four words of `p_` (allocated above, zeroed) only; `sar` and the masks
        // are Python's `>>` and `&` on two's complement.
        assembly ("memory-safe") {
            let neg := iszero(iszero(sar(31, _bits))) // bits >> 31 != 0
            let ex := and(sar(23, _bits), 0xFF)
            let frac := and(_bits, 0x7FFFFF)
            mstore(add(p_, 0x20), sub(1, shl(1, neg))) // sign: -1 or 1
            switch ex
            case 0xFF {
                // NaN, or +inf / -inf (m = e = 0)
                switch frac
                case 0 { mstore(p_, add(F32_POS_INF, neg)) } // F32_NEG_INF == F32_POS_INF + 1
                default { mstore(p_, F32_NAN) }
            }
            case 0 {
                // subnormal or zero: m = frac, e = -149
                mstore(add(p_, 0x40), frac)
                mstore(add(p_, 0x60), sub(0, 149))
            }
            default {
                // normal: m = 2^23 | frac, e = exp - 150
                mstore(add(p_, 0x40), or(shl(23, 1), frac))
                mstore(add(p_, 0x60), sub(ex, 150))
            }
        }
    }

    /// @notice Nearest integer to `_p / _q` (`_q > 0`), ties to even (`round_ratio_even`).
    /// @param _p The numerator (below `2^255`).
    /// @param _q The denominator (`0 < _q < 2^255`).
    /// @return r_ The rounded quotient.
    function roundRatioEven(uint256 _p, uint256 _q) internal pure returns (uint256 r_) {
        r_ = _p / _q; // reverts (Panic 0x12) for _q == 0, outside the domain
        // SAFETY: rem < q < 2^255, so 2 rem does not wrap; r_ + 1 <= p.
        assembly ("memory-safe") {
            let twice := shl(1, mod(_p, _q))
            // + 1 when the remainder is above half, or exactly half and the floor is odd
            r_ := add(r_, or(gt(twice, _q), and(eq(twice, _q), and(r_, 1))))
        }
    }

    /// @notice The number of bits of `_x` (Python's `int.bit_length`; 0 for 0).
    /// @param _x The value.
    /// @return n_ The smallest `n` with `_x < 2^n`.
    function bitLength(uint256 _x) internal pure returns (uint256 n_) {
        assembly ("memory-safe") {
            n_ := bitlen(_x)
            // `bitlen(x)`: floor(log2 x) by binary search down to a byte, the last 5 bits from a
            // 32-entry table (Solady's `log2`), then + 1 for a non-zero x (0 for 0)
            function bitlen(x) -> n {
                n := shl(7, lt(0xffffffffffffffffffffffffffffffff, x))
                n := or(n, shl(6, lt(0xffffffffffffffff, shr(n, x))))
                n := or(n, shl(5, lt(0xffffffff, shr(n, x))))
                n := or(n, shl(4, lt(0xffff, shr(n, x))))
                n := or(n, shl(3, lt(0xff, shr(n, x))))
                n := or(
                    n,
                    byte(
                        and(0x1f, shr(shr(n, x), 0x8421084210842108cc6318c6db6d54be)),
                        0x0706060506020504060203020504030106050205030304010505030400000000
                    )
                )
                n := add(n, iszero(iszero(x)))
            }
        }
    }

    /// @notice `floor(log2(_p / _d))` for `_p, _d > 0` (`floor_log2_ratio`): bit lengths, then one
    ///         comparison.
    /// @param _p The numerator (> 0).
    /// @param _d The denominator (> 0).
    /// @return e_ The exponent.
    function floorLog2Ratio(uint256 _p, uint256 _d) internal pure returns (int256 e_) {
        // SAFETY: bit lengths are <= 256, and both shifts keep the shifted value within the other
        // operand's bit length (<= 256): no overflow, no bit lost.
        assembly ("memory-safe") {
            // `bitLength`, inlined (Yul cannot call a Solidity function)
            function bitlen(x) -> n {
                n := shl(7, lt(0xffffffffffffffffffffffffffffffff, x))
                n := or(n, shl(6, lt(0xffffffffffffffff, shr(n, x))))
                n := or(n, shl(5, lt(0xffffffff, shr(n, x))))
                n := or(n, shl(4, lt(0xffff, shr(n, x))))
                n := or(n, shl(3, lt(0xff, shr(n, x))))
                n := or(
                    n,
                    byte(
                        and(0x1f, shr(shr(n, x), 0x8421084210842108cc6318c6db6d54be)),
                        0x0706060506020504060203020504030106050205030304010505030400000000
                    )
                )
                n := add(n, iszero(iszero(x)))
            }
            switch eq(_d, 1)
            case 1 {
                // d == 1 (float32(v), products): floor(log2 p) = bitLength(p) - 1 exactly
                e_ := sub(bitlen(_p), 1)
            }
            default {
                e_ := sub(bitlen(_p), bitlen(_d))
                switch slt(e_, 0)
                case 0 {
                    // e >= 0: one less if d * 2^e > p
                    e_ := sub(e_, gt(shl(e_, _d), _p))
                }
                default {
                    // e < 0: one less if p * 2^-e < d
                    e_ := sub(e_, lt(shl(sub(0, e_), _p), _d))
                }
            }
        }
    }

    /// @notice Nearest integer to `_sign * _m * 2^_e`, ties to even (numpy `rint`, `f32_rint`).
    /// @dev Domain: a finite decomposition (`_m < 2^24`, `-149 <= _e <= 104`): `|result| < 2^128`.
    /// @param _sign -1 or 1.
    /// @param _m The mantissa.
    /// @param _e The exponent.
    /// @return r_ The rounded value.
    function f32Rint(int256 _sign, uint256 _m, int256 _e) internal pure returns (int256 r_) {
        // ties to even is symmetric: round the magnitude, then apply the sign
        // SAFETY: in the domain the magnitude is below 2^128 and 1 << -e does not wrap.
        unchecked {
            uint256 mag = _e >= 0 ? _m << uint256(_e) : roundRatioEven(_m, uint256(1) << uint256(-_e));
            r_ = _sign < 0 ? -int256(mag) : int256(mag);
        }
    }

    /// @notice `_sign * _m * 2^_e` rounded toward zero (C's float-to-integer conversion before
    ///         saturation, `f32_trunc`).
    /// @dev Domain: a finite decomposition (`_m < 2^24`, `-149 <= _e <= 104`).
    /// @param _sign -1 or 1.
    /// @param _m The mantissa.
    /// @param _e The exponent.
    /// @return r_ The truncated value.
    function f32Trunc(int256 _sign, uint256 _m, int256 _e) internal pure returns (int256 r_) {
        // SAFETY: in the domain the magnitude is below 2^128.
        unchecked {
            uint256 mag = _e >= 0 ? _m << uint256(_e) : _m >> uint256(-_e);
            r_ = _sign < 0 ? -int256(mag) : int256(mag);
        }
    }

    /// @notice Bits of the float32 nearest to `±(_p / _d) * 2^_e2` (`_d > 0`), ties to even
    ///         (`f32_round_scaled`).
    /// @dev Overflow gives ±infinity, underflow ±0 (the sign of `_negative`); `_p == 0` gives +0
    ///      unless `_negativeZero`. The exponent is `E = floor(log2(p / d)) + e2`, the last mantissa
    ///      bit weighs `2^lsb` with `lsb = max(E, -126) - 23`, and the mantissa is
    ///      `m = round((p / d) * 2^(e2 - lsb))`, one integer division whose operands stay below
    ///      `max(4p, 2^25 d)`. Domain: `_p, _d < 2^128` and `|_e2| < 2^200` (or `_d == 1`, `_e2 == 0`
    ///      and any `_p`, as `f32FromInt`: `_p >= 2^128` is infinity before any shift).
    /// @param _negative The result's sign.
    /// @param _p The numerator.
    /// @param _d The denominator (> 0).
    /// @param _e2 The binary exponent applied to the ratio.
    /// @param _negativeZero Whether a zero `_p` gives -0.
    /// @return bits_ The float32 bits.
    function f32RoundScaled(bool _negative, uint256 _p, uint256 _d, int256 _e2, bool _negativeZero)
        internal
        pure
        returns (uint256 bits_)
    {
        if (_p == 0) return _negativeZero ? F32_SIGN_BIT : 0;
        uint256 sign = _negative ? F32_SIGN_BIT : 0;
        // SAFETY: inside the domain no operation below wraps: |e| <= 256, |e2| < 2^200, and the
        // shifted operands stay below 2^153 (see each shift).
        unchecked {
            int256 e = floorLog2Ratio(_p, _d);
            int256 bigE = e + _e2;
            if (bigE > 127) return sign | F32_INF_BITS;
            bool normal = bigE >= -126;
            // value * 2^-lsb = (p / d) * 2^t, below 2^(e + t + 1)
            int256 t = _e2 - ((normal ? bigE : int256(-126)) - 23);
            uint256 m;
            if (t >= 0) {
                // SAFETY: p << t < d * 2^24 (normal: t = 23 - e; subnormal: t < 23 - e), no bit lost.
                m = roundRatioEven(_p << uint256(t), _d);
            } else if (e + t + 1 <= -1) {
                return sign; // below half the smallest subnormal: rounds to zero
            } else {
                // SAFETY: -t <= e + 1, so d << -t <= 2p: no bit lost.
                m = roundRatioEven(_p, _d << uint256(-t));
            }
            if (!normal) return sign | m; // m == 2^23 is the smallest normal number's encoding
            if (m == uint256(1) << 24) {
                m = uint256(1) << 23;
                bigE += 1;
                if (bigE > 127) return sign | F32_INF_BITS;
            }
            // SAFETY: -126 <= bigE <= 127 and 2^23 <= m < 2^24 here.
            bits_ = sign | (uint256(bigE + 127) << 23) | (m - (uint256(1) << 23));
        }
    }

    /// @notice Bits of `float32(_v)` for an integer `_v` (numpy `astype(float32)`, `f32_from_int`):
    ///         `|_v| >= 2^128` rounds to ±infinity.
    /// @param _v Any int256.
    /// @return bits_ The float32 bits.
    function f32FromInt(int256 _v) internal pure returns (uint256 bits_) {
        // |v| without overflow for type(int256).min
        uint256 mag;
        unchecked {
            mag = _v < 0 ? uint256(-(_v + 1)) + 1 : uint256(_v);
        }
        bits_ = f32RoundScaled(_v < 0, mag, 1, 0, false);
    }

    /// @notice Bits of `float32(_x / _y)` for finite `_x` and finite non-zero `_y` (`f32_div_parts`).
    /// @param _x The dividend's decomposition.
    /// @param _y The divisor's decomposition (`m > 0`).
    /// @param _negativeZero Whether a zero quotient keeps a negative sign.
    /// @return bits_ The float32 bits.
    function f32DivParts(F32Parts memory _x, F32Parts memory _y, bool _negativeZero)
        internal
        pure
        returns (uint256 bits_)
    {
        bits_ = f32RoundScaled((_x.sign < 0) != (_y.sign < 0), _x.m, _y.m, _x.e - _y.e, _negativeZero);
        // (finite parts: m < 2^24 and |e| <= 150, so the checked difference never reverts)
    }

    /// @notice Bits of `float32(_x * _y)` for finite `_x` and `_y`; a zero product keeps the sign
    ///         (`f32_mul_parts`).
    /// @param _x The first factor's decomposition.
    /// @param _y The second factor's decomposition.
    /// @return bits_ The float32 bits.
    function f32MulParts(F32Parts memory _x, F32Parts memory _y) internal pure returns (uint256 bits_) {
        bool neg = (_x.sign < 0) != (_y.sign < 0);
        bits_ = f32RoundScaled(neg, _x.m * _y.m, 1, _x.e + _y.e, neg);
    }
}
