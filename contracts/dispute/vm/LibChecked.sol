// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { ArithmeticOverflow, InvalidShift, NegativeSquareRoot, NonPositiveDivisor } from "../lib/Errors.sol";

/// @title LibChecked
/// @notice The fraud VM's checked integer arithmetic (`fraud_vm.isa`: i256, i64, shl, clamp,
///         round_shift, round_div, requant, isqrt; docs/fraud_vm.md "Arithmetic bounds"): every
///         intermediate a Python formula wraps in `i256` is computed unchecked and tested
///         explicitly, so it reverts `ArithmeticOverflow()` (never a Panic) exactly where Python
///         raises; shifts and divisors are checked as `shl`, `round_shift` and `round_div` do.
library LibChecked {
    int256 internal constant I32_MIN = type(int32).min;
    int256 internal constant I32_MAX = type(int32).max;
    int256 internal constant I64_MIN = type(int64).min;
    int256 internal constant I64_MAX = type(int64).max;


    /// @notice `i256(_a + _b)`: the sum, `ArithmeticOverflow` outside int256.
    function add(int256 _a, int256 _b) internal pure returns (int256 r_) {
        bool overflow;
        // SAFETY: without overflow the sum lies below `_a` exactly when `_b` is negative.
        assembly ("memory-safe") {
            r_ := add(_a, _b)
            overflow := iszero(eq(slt(r_, _a), slt(_b, 0)))
        }
        if (overflow) revert ArithmeticOverflow();
    }

    /// @notice `i256(_a - _b)`: the difference, `ArithmeticOverflow` outside int256.
    function sub(int256 _a, int256 _b) internal pure returns (int256 r_) {
        bool overflow;
        // SAFETY: without overflow the difference lies above `_a` exactly when `_b` is negative.
        assembly ("memory-safe") {
            r_ := sub(_a, _b)
            overflow := iszero(eq(sgt(r_, _a), slt(_b, 0)))
        }
        if (overflow) revert ArithmeticOverflow();
    }

    /// @notice `i256(_a * _b)`: the product, `ArithmeticOverflow` outside int256.
    function mul(int256 _a, int256 _b) internal pure returns (int256 r_) {
        bool overflow;
        // SAFETY: the wrapped product divided by a non-zero `_a` gives back `_b` exactly when nothing
        // wrapped, except -1 * -2^255 (sdiv(-2^255, -1) wraps to -2^255), tested on its own.
        assembly ("memory-safe") {
            r_ := mul(_a, _b)
            overflow := or(
                and(eq(_a, not(0)), eq(_b, shl(255, 1))),
                and(iszero(iszero(_a)), iszero(eq(sdiv(r_, _a), _b)))
            )
        }
        if (overflow) revert ArithmeticOverflow();
    }

    /// @notice `floor(_a / _b)` for `_b > 0` (Python's `//`; Solidity's `/` truncates).
    function floorDiv(int256 _a, int256 _b) internal pure returns (int256 q_) {
        // SAFETY: `_b > 0` (every caller checks it), so neither sdiv nor smod overflows; a negative
        // numerator with a remainder was truncated up and moves down by one.
        assembly ("memory-safe") {
            q_ := sdiv(_a, _b)
            if and(slt(_a, 0), iszero(iszero(smod(_a, _b)))) { q_ := sub(q_, 1) }
        }
    }

    /// @notice `_v` if it is an int64 (an `acc`/`aux` lane value), else `ArithmeticOverflow`.
    function i64(int256 _v) internal pure returns (int256) {
        // INVARIANT: lanes are int64.
        if (_v < I64_MIN || _v > I64_MAX) revert ArithmeticOverflow();
        return _v;
    }

    /// @notice `_x * 2^_s` for `0 <= _s <= 255` (`InvalidShift` otherwise), checked to int256.
    function shl(int256 _x, int256 _s) internal pure returns (int256 r_) {
        // INVARIANT: a left shift amount lies in [0, 255].
        if (_s < 0 || _s > 255) revert InvalidShift();
        r_ = _x << uint256(_s);
        // SAFETY: the arithmetic shift back recovers `_x` exactly when no bit (or sign) was lost.
        if (r_ >> uint256(_s) != _x) revert ArithmeticOverflow();
    }

    /// @notice `_lo` if `_v < _lo`, else `_hi` if `_v > _hi`, else `_v` (`fraud_vm.isa.clamp`).
    function clamp(int256 _v, int256 _lo, int256 _hi) internal pure returns (int256) {
        return _v < _lo ? _lo : _v > _hi ? _hi : _v;
    }

    /// @notice `(_v + 2^(_s-1)) >> _s` for `1 <= _s <= 62` (`InvalidShift` otherwise).
    function roundShift(int256 _v, int256 _s) internal pure returns (int256 r_) {
        // INVARIANT: a requantization shift lies in [1, 62].
        if (_s < 1 || _s > 62) revert InvalidShift();
        bool overflow;
        // SAFETY: the addend 2^(s-1) is positive, so the sum overflowed exactly when it is below `_v`;
        // `sar` floors.
        assembly ("memory-safe") {
            let t := add(_v, shl(sub(_s, 1), 1))
            overflow := slt(t, _v)
            r_ := sar(_s, t)
        }
        if (overflow) revert ArithmeticOverflow();
    }

    /// @notice `floor((2n + d) / 2d)` for `d > 0` (`NonPositiveDivisor` otherwise).
    function roundDiv(int256 _n, int256 _d) internal pure returns (int256 q_) {
        // INVARIANT: the divisor is positive.
        if (_d <= 0) revert NonPositiveDivisor();
        bool overflow;
        // SAFETY: `2n` fits iff n's top two bits agree (`sar(254, n)` is 0 or -1); `2n + d` with
        // `d > 0` overflowed iff it is below `2n`; `2d` fits iff `d < 2^254`. Then floor division by
        // the positive `2d` (sdiv truncates: a negative numerator with a remainder moves down).
        assembly ("memory-safe") {
            let n2 := shl(1, _n)
            let num := add(n2, _d)
            overflow := or(or(iszero(lt(add(sar(254, _n), 1), 2)), slt(num, n2)), sgt(_d, sub(shl(254, 1), 1)))
            let den := shl(1, _d)
            q_ := sdiv(num, den)
            if and(slt(num, 0), iszero(iszero(smod(num, den)))) { q_ := sub(q_, 1) }
        }
        if (overflow) revert ArithmeticOverflow();
    }

    /// @notice `clamp(zp + round_shift(clamp_int32(acc) * m, s), qmin, qmax)`.
    function requant(int256 _acc, int256 _m, int256 _s, int256 _zp, int256 _qmin, int256 _qmax)
        internal
        pure
        returns (int256)
    {
        return clamp(add(_zp, roundShift(mulInt32(clamp(_acc, I32_MIN, I32_MAX), _m), _s)), _qmin, _qmax);
    }

    /// @notice `i256(_c * _m)` for an int32 `_c` (requant's product): only `|_m| >= 2^223` can
    ///         overflow, and then `ArithmeticOverflow` exactly where `mul` would.
    function mulInt32(int256 _c, int256 _m) internal pure returns (int256 r_) {
        bool overflow;
        // SAFETY: |c| <= 2^31, so c·m overflows only if m's top 33 bits are not all equal; then the
        // exact test of `mul` decides (c = -1 with m = -2^255 included).
        assembly ("memory-safe") {
            r_ := mul(_c, _m)
            if iszero(lt(add(sar(222, _m), 1), 2)) {
                overflow := or(
                    and(eq(_c, not(0)), eq(_m, shl(255, 1))),
                    and(iszero(iszero(_c)), iszero(eq(sdiv(r_, _c), _m)))
                )
            }
        }
        if (overflow) revert ArithmeticOverflow();
    }

    /// @notice Bit length of `_x` (0 for 0).
    function bitLength(uint256 _x) internal pure returns (uint256 n_) {
        for (uint256 step = 128; step > 0; step >>= 1) {
            if (_x >> step != 0) {
                _x >>= step;
                n_ += step;
            }
        }
        if (_x != 0) n_ += 1;
    }

    /// @notice `floor(sqrt(_x))` by Newton's iteration from `2^ceil(bitlen(_x) / 2)` (`fraud_vm.isa.isqrt`);
    ///         `NegativeSquareRoot` for `_x < 0`.
    function isqrt(int256 _x) internal pure returns (int256 r_) {
        // INVARIANT: square roots of non-negative values only.
        if (_x < 0) revert NegativeSquareRoot();
        if (_x < 2) return _x;
        uint256 x = uint256(_x);
        uint256 z = uint256(1) << ((bitLength(x) + 1) >> 1);
        // SAFETY: z <= 2^128 and x / z < 2^255, so the sum cannot overflow; the iteration
        // strictly decreases z until it stops (at most 8 rounds below 2^256).
        uint256 y = (z + x / z) >> 1;
        while (y < z) {
            z = y;
            y = (z + x / z) >> 1;
        }
        r_ = int256(z);
    }
}
