// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title Vm
/// @notice The few forge cheatcodes these tests use (forge-std's `Vm`, declared locally: npm
///         forge-std lacks its ds-test dependency, and the tests run offline).
interface Vm {
    function warp(uint256 newTimestamp) external;
    function roll(uint256 newHeight) external;
    function prank(address msgSender) external;
    function startPrank(address msgSender) external;
    function stopPrank() external;
    function deal(address account, uint256 newBalance) external;
    function expectRevert(bytes4 revertData) external;
    function expectRevert(bytes calldata revertData) external;
    function expectRevert() external;
    function assume(bool condition) external;
    function label(address account, string calldata newLabel) external;
}

/// @title Test
/// @notice A minimal test base: the cheatcode handle, assertions that revert with a message, a
///         fuzz-input `bound`, and `console`-style logs forge prints with `-vv`.
abstract contract Test {
    /// @notice The cheatcode address (`address(uint160(uint256(keccak256("hevm cheat code"))))`).
    Vm internal constant vm = Vm(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);

    /// @notice Marks the contract as a test contract for forge.
    bool public IS_TEST = true;

    /// @notice A named value (ds-test's log event, printed by forge at -vv).
    event log_named_uint(string key, uint256 val);
    /// @notice A message (ds-test's log event).
    event log(string);

    function assertTrue(bool _c, string memory _msg) internal pure {
        if (!_c) revert(string.concat("assertion failed: ", _msg));
    }

    function assertEq(uint256 _a, uint256 _b, string memory _msg) internal pure {
        if (_a != _b) {
            revert(string.concat("assertEq failed: ", _msg, ": ", _str(_a), " != ", _str(_b)));
        }
    }

    function assertEq(bytes32 _a, bytes32 _b, string memory _msg) internal pure {
        if (_a != _b) revert(string.concat("assertEq(bytes32) failed: ", _msg));
    }

    function assertEq(address _a, address _b, string memory _msg) internal pure {
        if (_a != _b) revert(string.concat("assertEq(address) failed: ", _msg));
    }

    /// @notice `_x` mapped into `[_lo, _hi]` (as forge-std's `bound`, without its logging).
    function bound(uint256 _x, uint256 _lo, uint256 _hi) internal pure returns (uint256) {
        require(_lo <= _hi, "bound: lo > hi");
        if (_x >= _lo && _x <= _hi) return _x;
        uint256 size = _hi - _lo;
        if (size == type(uint256).max) return _x;
        return _lo + _x % (size + 1);
    }

    function _str(uint256 _v) internal pure returns (string memory) {
        if (_v == 0) return "0";
        bytes memory b;
        while (_v != 0) {
            b = abi.encodePacked(bytes1(uint8(48 + _v % 10)), b);
            _v /= 10;
        }
        return string(b);
    }
}
