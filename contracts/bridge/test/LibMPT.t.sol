// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import "../BridgeErrors.sol";
import { BridgeLibHarness } from "../harness/BridgeLibHarness.sol";
import { LibMPT } from "../lib/LibMPT.sol";
import { LibSecureTrie } from "../lib/LibSecureTrie.sol";
import { BridgeTest } from "./BridgeTest.t.sol";
import { BridgeVectors as V } from "./BridgeVectors.t.sol";

/// @title LibMPTTest
/// @notice `LibRLP`/`LibMPT`/`LibSecureTrie` on proofs py-trie made (BridgeVectors): present and
///         absent keys, embedded nodes listed or not, and forged proofs (tampered node, wrong root,
///         truncated, extended), each rejected with its named error; fuzzed inputs never read out of
///         bounds (every revert is one of the named errors).
contract LibMPTTest is BridgeTest {
    address internal constant PASSER = 0x4200000000000000000000000000000000000016;
    BridgeLibHarness internal h;

    function setUp() public {
        h = new BridgeLibHarness();
    }

    function _slot(uint256 _nonce) internal pure returns (bytes32) {
        bytes32 wh = keccak256(abi.encode(_nonce, V.W_SENDER, V.W_TARGET, V.W_VALUE, V.W_GAS_LIMIT, V.W_DATA));
        return keccak256(abi.encode(wh, uint256(0)));
    }

    function test_accountProof_provesThePasser() public view {
        (bool exists, LibSecureTrie.Account memory a) = h.getAccount(V.STATE_ROOT, PASSER, V.accountProof());
        assertTrue(exists, "passer exists");
        assertEq(a.storageRoot, V.PASSER_STORAGE_ROOT, "storage root");
        assertEq(a.balance, V.PASSER_BALANCE, "balance");
        assertEq(a.codeHash, V.PASSER_CODE_HASH, "code hash");
        assertEq(a.nonce, 0, "nonce");
    }

    function test_accountProof_ofAnotherAddress_isAbsentOrRejected() public view {
        // The passer's path proves nothing about an address on another path: it diverges (absent) or
        // the proof ends at a hash the path needs (too short) or runs on past the decision (too long).
        try h.getAccount(V.STATE_ROOT, address(0xBEEF), V.accountProof()) returns (
            bool exists, LibSecureTrie.Account memory
        ) {
            assertTrue(!exists, "another address is not proven present");
        } catch (bytes memory err) {
            bytes4 sel = bytes4(err);
            assertTrue(sel == MPTProofTooShort.selector || sel == MPTProofTooLong.selector, "named error");
        }
    }

    function test_storageProof_recordedWithdrawalIsOne() public view {
        assertEq(h.getStorage(V.PASSER_STORAGE_ROOT, _slot(V.W_NONCE), V.storageProof()), 1, "recorded");
    }

    function test_storageProof_unrecordedWithdrawalIsAbsent() public view {
        assertEq(h.getStorage(V.PASSER_STORAGE_ROOT, _slot(V.UNRECORDED_NONCE), V.unrecordedStorageProof()), 0, "0");
    }

    function test_embeddedNodes_listedOrNot() public view {
        (bool e1, bytes memory v1) = h.get(hex"1123", V.shortProofWithEmbedded(), V.SHORT_ROOT);
        (bool e2, bytes memory v2) = h.get(hex"1123", V.shortProofHashedOnly(), V.SHORT_ROOT);
        assertTrue(e1 && e2, "both forms prove the key");
        assertEq(v1, bytes("dd"), "value (embedded listed)");
        assertEq(v2, bytes("dd"), "value (hashed only)");
        (bool e3,) = h.get(hex"1124", V.shortProofAbsent(), V.SHORT_ROOT);
        assertTrue(!e3, "0x1124 is absent");
        // Keys that end inside the tree: 0x11 (at the extension's child branch) and 0x01 (leaf).
        (bool e4,) = h.get(hex"0103", V.shortProofHashedOnly(), V.SHORT_ROOT);
        assertTrue(!e4, "0x0103 is absent");
    }

    function test_emptyTrie() public view {
        bytes[] memory none = new bytes[](0);
        (bool e,) = h.get(hex"01", none, LibMPT.EMPTY_TRIE_ROOT);
        assertTrue(!e, "nothing in the empty trie");
        bytes[] memory one = new bytes[](1);
        one[0] = hex"80";
        (e,) = h.get(hex"01", one, LibMPT.EMPTY_TRIE_ROOT);
        assertTrue(!e, "nothing in the empty trie (root node listed)");
    }

    function test_rejects_wrongRoot() public {
        vm.expectRevert(MPTInvalidNodeHash.selector);
        h.getAccount(bytes32(uint256(V.STATE_ROOT) ^ 1), PASSER, V.accountProof());
    }

    function test_rejects_emptyProofOfANonEmptyTrie() public {
        vm.expectRevert(MPTProofTooShort.selector);
        h.getAccount(V.STATE_ROOT, PASSER, new bytes[](0));
    }

    function test_rejects_truncatedProof() public {
        vm.expectRevert(MPTProofTooShort.selector);
        h.getAccount(V.STATE_ROOT, PASSER, truncate(V.accountProof(), 1));
    }

    function test_rejects_extendedProof() public {
        vm.expectRevert(MPTProofTooLong.selector);
        h.getAccount(V.STATE_ROOT, PASSER, append(V.accountProof(), hex"c0"));
    }

    function test_rejects_storageProofOfTheWrongTrie() public {
        // The state trie's proof is no storage proof.
        vm.expectRevert(MPTInvalidNodeHash.selector);
        h.getStorage(V.PASSER_STORAGE_ROOT, _slot(V.W_NONCE), V.accountProof());
    }

    /// @notice Flipping any bit of any node breaks its hash link.
    function testFuzz_rejects_tamperedNode(uint256 _node, uint256 _at, uint8 _mask) public {
        bytes[] memory p = V.accountProof();
        _node = bound(_node, 0, p.length - 1);
        _at = bound(_at, 0, p[_node].length - 1);
        _mask = uint8(bound(_mask, 1, 255));
        vm.expectRevert(MPTInvalidNodeHash.selector);
        h.getAccount(V.STATE_ROOT, PASSER, tamper(p, _node, _at, _mask));
    }

    /// @notice A tampered node that is also re-hashed into the root (a forged trie) is still parsed
    ///         safely: any revert is a named error, never a panic or an out-of-bounds read.
    function testFuzz_forgedRoot_onlyNamedErrors(uint256 _at, uint8 _mask) public view {
        bytes[] memory p = V.shortProofHashedOnly();
        _at = bound(_at, 0, p[0].length - 1);
        p = tamper(p, 0, _at, uint8(bound(_mask, 1, 255)));
        try h.get(hex"1123", p, keccak256(p[0])) returns (bool, bytes memory) { }
        catch (bytes memory err) {
            _assertNamed(err);
        }
    }

    /// @notice Arbitrary bytes as RLP: decoded or rejected with a named error.
    function testFuzz_rlp_arbitraryBytes_onlyNamedErrors(bytes calldata _in) public view {
        try h.readList(_in) returns (bytes[] memory items) {
            for (uint256 i = 0; i < items.length; i++) {
                assertTrue(items[i].length > 0, "items are non-empty encodings");
            }
        } catch (bytes memory err) {
            _assertNamed(err);
        }
        try h.readBytes(_in) returns (bytes memory) { }
        catch (bytes memory err) {
            _assertNamed(err);
        }
    }

    function test_rlp_rejectsNonCanonical() public {
        vm.expectRevert(RLPNotCanonical.selector);
        h.readBytes(hex"8105"); // a single byte < 0x80 must encode as itself
        vm.expectRevert(RLPNotCanonical.selector);
        h.readBytes(hex"b80100"); // long form for a 1-byte payload
        vm.expectRevert(RLPOutOfBounds.selector);
        h.readBytes(hex"83aabb"); // payload past the end
        vm.expectRevert(RLPTrailingBytes.selector);
        h.readBytes(hex"8261626364"); // trailing bytes
        vm.expectRevert(RLPUnexpectedType.selector);
        h.readList(hex"826162"); // a string is no list
        vm.expectRevert(RLPEmptyInput.selector);
        h.readBytes(hex"");
        vm.expectRevert(RLPOutOfBounds.selector);
        h.readList(hex"c28201"); // an item runs past its list
    }

    function _assertNamed(bytes memory _err) internal pure {
        assertTrue(_err.length == 4, "a custom error without arguments (not a panic)");
        bytes4 s = bytes4(_err);
        assertTrue(
            s == RLPEmptyInput.selector || s == RLPOutOfBounds.selector || s == RLPNotCanonical.selector
                || s == RLPUnexpectedType.selector || s == RLPTrailingBytes.selector || s == RLPTooManyItems.selector
                || s == MPTInvalidNodeHash.selector || s == MPTInvalidNode.selector || s == MPTInvalidPath.selector
                || s == MPTInvalidChildRef.selector || s == MPTProofTooShort.selector || s == MPTProofTooLong.selector,
            "a named RLP/MPT error"
        );
    }
}
