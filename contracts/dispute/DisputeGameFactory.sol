// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { IClaimRegistry } from "./interfaces/IClaimRegistry.sol";
import { IInferenceDisputeGame } from "./interfaces/IInferenceDisputeGame.sol";
import { InferenceDisputeGame } from "./InferenceDisputeGame.sol";
import {
    ChallengeWindowClosed,
    ChallengeWindowOpen,
    ClaimAlreadyFinal,
    ClaimAlreadyRejected,
    CloneFailed,
    BondTransferFailed,
    DuplicateChallenge,
    GamesInProgress,
    IncorrectBond,
    InvalidClaim,
    NoCredit,
    UnknownClaim
} from "./lib/Errors.sol";
import { Claim, Outcome } from "./lib/Types.sol";

/// @title DisputeGameFactory
/// @notice The claim registry on L1 (`fraud_vm/registry.py`, `docs/dispute_game.md` §8): claims
///         are posted with the claim bond, each challenge opens its own two-party game (an EIP-1167
///         clone of one `InferenceDisputeGame` implementation) between the claimant and that
///         challenger, games run in parallel, a claim is rejected as soon as it loses one (the
///         claim bond goes to that game's challenger) and becomes final once its challenge window
///         has passed with every game won (the claim bond goes back to the claimant).
/// @dev Game pots (the move bonds) stay in and are paid by each game (`claimCredit` there); the
///      claim bonds are held and paid here.
contract DisputeGameFactory is IClaimRegistry {
    /// @notice Where a claim stands (`fraud_vm.registry.ClaimStatus`).
    enum ClaimStatus {
        Pending,
        Rejected,
        Final
    }

    /// @notice One posted claim (`fraud_vm.registry.ClaimRecord`).
    /// @custom:field claimHash `keccak256(abi.encode(claim, graphProof))`: a challenge re-sends both.
    /// @custom:field claimant Who posted it.
    /// @custom:field createdAt When.
    /// @custom:field status Pending, rejected or final.
    /// @custom:field bond The claim bond held here.
    /// @custom:field rejectedBy The game that rejected it.
    struct ClaimRecord {
        bytes32 claimHash;
        address claimant;
        uint64 createdAt;
        ClaimStatus status;
        uint256 bond;
        address rejectedBy;
    }

    /// @notice The game implementation every clone delegates to (it holds the game rules).
    InferenceDisputeGame public immutable IMPLEMENTATION;
    /// @notice Seconds after a claim during which it may be challenged (`Rules.challenge_window_s`).
    uint64 public immutable CHALLENGE_WINDOW;

    /// @notice Every claim, by id (its index).
    ClaimRecord[] internal claims_;
    /// @notice The games on each claim, in creation order.
    mapping(uint256 => address[]) internal gamesOf_;
    /// @notice Whether an account has a game on a claim (one seat per account).
    mapping(uint256 => mapping(address => bool)) public hasChallenged;
    /// @notice Claim id plus one of each game created here (zero: not a game of this registry).
    mapping(address => uint256) internal gameClaim_;
    /// @notice Claim bonds claimable per account.
    mapping(address => uint256) public credit;

    /// @notice A claim was posted.
    event Proposed(uint256 indexed claimId, address indexed claimant, bytes32 modelAddress, bytes32 outputHash);
    /// @notice A challenge opened a game.
    event Challenged(uint256 indexed claimId, address indexed game, address indexed challenger);
    /// @notice A claim was rejected by a game the claimant lost.
    event Rejected(uint256 indexed claimId, address indexed game);
    /// @notice A claim became final.
    event Finalized(uint256 indexed claimId);

    /// @param _implementation The `InferenceDisputeGame` implementation.
    /// @param _challengeWindow The challenge window in seconds.
    constructor(InferenceDisputeGame _implementation, uint64 _challengeWindow) {
        IMPLEMENTATION = _implementation;
        CHALLENGE_WINDOW = _challengeWindow;
    }

    /// @notice Post a claim with its bond `bond(0)`; the sender is the claimant.
    /// @dev Checked as a game's opening checks it (`InvalidDescriptorProof`, `InvalidClaim`). A
    ///      rejected claim's content may be proposed again: a new claim with a new id.
    /// @param _claim The claim.
    /// @param _graphProof The graph header's proof for the phase link.
    /// @return id_ The claim id.
    function propose(Claim calldata _claim, bytes calldata _graphProof) external payable returns (uint256 id_) {
        // INVARIANT: the claim bond is exactly bond(0).
        if (msg.value != IMPLEMENTATION.bond(0)) revert IncorrectBond();
        // INVARIANT: the claim opens (the same checks as a game's opening).
        IMPLEMENTATION.checkClaim(_claim, _graphProof);
        id_ = claims_.length;
        claims_.push(
            ClaimRecord({
                claimHash: keccak256(abi.encode(_claim, _graphProof)),
                claimant: msg.sender,
                createdAt: uint64(block.timestamp),
                status: ClaimStatus.Pending,
                bond: msg.value,
                rejectedBy: address(0)
            })
        );
        emit Proposed(id_, msg.sender, _claim.modelAddress, keccak256(abi.encodePacked(_claim.outputRoots)));
    }

    /// @notice Open a game between the claimant and the sender on a claim still open; the
    ///         challenger moves first. The claim and its proof are sent again (only their hash is
    ///         stored).
    /// @param _claimId The claim id.
    /// @param _claim The claim, as proposed.
    /// @param _graphProof The graph header's proof, as proposed.
    /// @return game_ The new game.
    function challenge(uint256 _claimId, Claim calldata _claim, bytes calldata _graphProof)
        external
        returns (address game_)
    {
        ClaimRecord storage rec = _record(_claimId);
        // INVARIANT: only a pending claim inside its window can be challenged, once per challenger.
        if (rec.status == ClaimStatus.Rejected) revert ClaimAlreadyRejected();
        if (rec.status == ClaimStatus.Final) revert ClaimAlreadyFinal();
        if (block.timestamp >= windowEnd(_claimId)) revert ChallengeWindowClosed();
        if (hasChallenged[_claimId][msg.sender]) revert DuplicateChallenge();
        // SAFETY: the game is opened on exactly the proposed claim.
        if (keccak256(abi.encode(_claim, _graphProof)) != rec.claimHash) revert InvalidClaim();
        hasChallenged[_claimId][msg.sender] = true;
        game_ = _clone(address(IMPLEMENTATION));
        gameClaim_[game_] = _claimId + 1;
        gamesOf_[_claimId].push(game_);
        IInferenceDisputeGame(game_).initialize(_claim, _graphProof, rec.claimant, msg.sender, false);
        emit Challenged(_claimId, game_, msg.sender);
    }

    /// @notice Make a claim final (anyone): its window has passed and no game on it is running
    ///         (every resolved game was won by the claimant, or the claim would be rejected).
    /// @param _claimId The claim id.
    function finalize(uint256 _claimId) external {
        ClaimRecord storage rec = _record(_claimId);
        if (rec.status == ClaimStatus.Rejected) revert ClaimAlreadyRejected();
        if (rec.status == ClaimStatus.Final) revert ClaimAlreadyFinal();
        if (block.timestamp < windowEnd(_claimId)) revert ChallengeWindowOpen();
        address[] storage games = gamesOf_[_claimId];
        for (uint256 i = 0; i < games.length; i++) {
            if (IInferenceDisputeGame(games[i]).outcome() == Outcome.InProgress) revert GamesInProgress();
        }
        rec.status = ClaimStatus.Final;
        credit[rec.claimant] += rec.bond;
        emit Finalized(_claimId);
    }

    /// @inheritdoc IClaimRegistry
    function onGameResolved(bool _challengerWon) external {
        uint256 id1 = gameClaim_[msg.sender];
        // INVARIANT: only a game of this registry reports outcomes.
        if (id1 == 0) revert UnknownClaim();
        ClaimRecord storage rec = claims_[id1 - 1];
        if (_challengerWon && rec.status == ClaimStatus.Pending) {
            // The claim bond goes to the first challenger to win.
            rec.status = ClaimStatus.Rejected;
            rec.rejectedBy = msg.sender;
            credit[IInferenceDisputeGame(msg.sender).challenger()] += rec.bond;
            emit Rejected(id1 - 1, msg.sender);
        }
    }

    /// @notice Pay `_recipient` its claim-bond credit (pull payment).
    /// @param _recipient The account.
    function claimCredit(address _recipient) external {
        uint256 amount = credit[_recipient];
        // INVARIANT: there is something to pay.
        if (amount == 0) revert NoCredit();
        // SAFETY: zeroed before the transfer, so a re-entering recipient finds nothing.
        credit[_recipient] = 0;
        (bool ok,) = _recipient.call{ value: amount }("");
        if (!ok) revert BondTransferFailed();
    }

    /// @notice A claim's record.
    /// @param _claimId The claim id.
    /// @return record_ The record.
    function claimRecord(uint256 _claimId) external view returns (ClaimRecord memory record_) {
        record_ = _record(_claimId);
    }

    /// @notice The number of claims posted.
    function claimCount() external view returns (uint256) {
        return claims_.length;
    }

    /// @notice The games opened on a claim, in creation order.
    /// @param _claimId The claim id.
    /// @return games_ Their addresses.
    function gamesOf(uint256 _claimId) external view returns (address[] memory games_) {
        games_ = gamesOf_[_claimId];
    }

    /// @notice The claim a game of this registry is about (`UnknownClaim` for other addresses).
    /// @param _game The game.
    /// @return claimId_ Its claim id.
    function claimOf(address _game) external view returns (uint256 claimId_) {
        if (gameClaim_[_game] == 0) revert UnknownClaim();
        claimId_ = gameClaim_[_game] - 1;
    }

    /// @notice The first time at which a claim can no longer be challenged.
    /// @param _claimId The claim id.
    /// @return end_ `createdAt + CHALLENGE_WINDOW`.
    function windowEnd(uint256 _claimId) public view returns (uint256 end_) {
        end_ = uint256(_record(_claimId).createdAt) + CHALLENGE_WINDOW;
    }

    /// @notice The record of a claim, or `UnknownClaim`.
    function _record(uint256 _claimId) internal view returns (ClaimRecord storage rec_) {
        if (_claimId >= claims_.length) revert UnknownClaim();
        rec_ = claims_[_claimId];
    }

    /// @notice Deploy an EIP-1167 minimal proxy delegating to `_implementation`.
    function _clone(address _implementation) internal returns (address instance_) {
        bytes memory code = abi.encodePacked(
            hex"3d602d80600a3d3981f3363d3d373d3d3d363d73", _implementation, hex"5af43d82803e903d91602b57fd5bf3"
        );
        assembly ("memory-safe") {
            instance_ := create(0, add(code, 0x20), mload(code))
        }
        if (instance_ == address(0)) revert CloneFailed();
    }
}
