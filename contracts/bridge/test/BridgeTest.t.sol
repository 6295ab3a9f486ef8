// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { Test } from "../../dispute/test/lib/Test.sol";

/// @title VmBridge
/// @notice The cheatcodes the bridge tests use beyond `Test`'s `Vm` (forge-std's names).
interface VmBridge {
    struct Log {
        bytes32[] topics;
        bytes data;
        address emitter;
    }

    function prank(address msgSender, address txOrigin) external;
    function etch(address target, bytes calldata newRuntimeBytecode) external;
    function store(address target, bytes32 slot, bytes32 value) external;
    function recordLogs() external;
    function getRecordedLogs() external returns (Log[] memory);
}

/// @title BridgeTest
/// @notice `Test` with the bridge's extra cheatcodes and byte-level assertions.
abstract contract BridgeTest is Test {
    /// @notice The same cheatcode address as `vm`, with the extra cheatcodes.
    VmBridge internal constant vmb = VmBridge(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);

    function assertEq(bytes memory _a, bytes memory _b, string memory _msg) internal pure {
        if (keccak256(_a) != keccak256(_b)) revert(string.concat("assertEq(bytes) failed: ", _msg));
    }

    /// @dev A copy of `_p` without its last `_drop` elements.
    function truncate(bytes[] memory _p, uint256 _drop) internal pure returns (bytes[] memory out_) {
        out_ = new bytes[](_p.length - _drop);
        for (uint256 i = 0; i < out_.length; i++) {
            out_[i] = _p[i];
        }
    }

    /// @dev A copy of `_p` with `_extra` appended.
    function append(bytes[] memory _p, bytes memory _extra) internal pure returns (bytes[] memory out_) {
        out_ = new bytes[](_p.length + 1);
        for (uint256 i = 0; i < _p.length; i++) {
            out_[i] = _p[i];
        }
        out_[_p.length] = _extra;
    }

    /// @dev A deep copy of `_p` with byte `_at` of node `_node` xor-ed with `_mask` (non-zero).
    function tamper(bytes[] memory _p, uint256 _node, uint256 _at, uint8 _mask)
        internal
        pure
        returns (bytes[] memory out_)
    {
        out_ = new bytes[](_p.length);
        for (uint256 i = 0; i < _p.length; i++) {
            out_[i] = bytes.concat(_p[i]);
        }
        out_[_node][_at] = bytes1(uint8(out_[_node][_at]) ^ _mask);
    }
}
