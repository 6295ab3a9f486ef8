// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { IInferenceDisputeGame } from "./interfaces/IInferenceDisputeGame.sol";
import { CloneFailed } from "./lib/Errors.sol";
import { Claim, Outcome } from "./lib/Types.sol";

/// @title DisputeGameFactory
/// @notice Creates inference dispute games as EIP-1167 clones of one `InferenceDisputeGame`
///         implementation and indexes them by claim. Several challengers: each challenge is its
///         own two-party game on the claim, and a claim has as many games as were opened on it;
///         `claimStatus` says whether any of them was lost by the claimant (the claim is then
///         rejected) and how many are still open (`docs/dispute_game.md`, DESIGN §6.5).
contract DisputeGameFactory {
    /// @notice The game implementation every clone delegates to (it holds the rules).
    address public immutable IMPLEMENTATION;

    /// @notice Every game created, in creation order.
    address[] public allGames;
    /// @notice Whether an address is a game created here.
    mapping(address => bool) public isGame;
    /// @notice The games on each claim id.
    mapping(bytes32 => address[]) internal gamesOf_;

    /// @notice A game was created.
    /// @param claimId The claim's id (`claimId`).
    /// @param game The game's address.
    /// @param claimant Who posted the claim and its bond.
    /// @param challenger The designated challenger (zero: the first to move).
    event GameCreated(bytes32 indexed claimId, address indexed game, address indexed claimant, address challenger);

    /// @param _implementation The `InferenceDisputeGame` implementation.
    constructor(address _implementation) {
        IMPLEMENTATION = _implementation;
    }

    /// @notice The id a claim is indexed by: `keccak256(abi.encode(A, batch, inputHash, outputHash))`.
    /// @param _model The model address.
    /// @param _batch The batch size.
    /// @param _inputHash `keccak256` of the input roots.
    /// @param _outputHash `keccak256` of the output roots.
    /// @return id_ The claim id.
    function claimId(bytes32 _model, uint256 _batch, bytes32 _inputHash, bytes32 _outputHash)
        public
        pure
        returns (bytes32 id_)
    {
        id_ = keccak256(abi.encode(_model, _batch, _inputHash, _outputHash));
    }

    /// @notice Open a game on a claim; the sender is the claimant and sends the claim's bond.
    /// @param _claim The claim.
    /// @param _graphProof The graph header's proof for the phase link.
    /// @param _challenger The challenger, or zero to let the first challenger move take the seat.
    /// @return game_ The new game.
    function create(Claim calldata _claim, bytes calldata _graphProof, address _challenger)
        external
        payable
        returns (address game_)
    {
        game_ = _clone(IMPLEMENTATION);
        IInferenceDisputeGame(game_).initialize{ value: msg.value }(_claim, _graphProof, msg.sender, _challenger);
        bytes32 id = claimId(
            _claim.modelAddress,
            _claim.batch,
            keccak256(abi.encodePacked(_claim.inputRoots)),
            keccak256(abi.encodePacked(_claim.outputRoots))
        );
        isGame[game_] = true;
        allGames.push(game_);
        gamesOf_[id].push(game_);
        emit GameCreated(id, game_, msg.sender, _challenger);
    }

    /// @notice The games opened on a claim.
    /// @param _claimId The claim id.
    /// @return games_ Their addresses, in creation order.
    function gamesOf(bytes32 _claimId) external view returns (address[] memory games_) {
        games_ = gamesOf_[_claimId];
    }

    /// @notice The number of games created.
    /// @return count_ The count.
    function gameCount() external view returns (uint256 count_) {
        count_ = allGames.length;
    }

    /// @notice A claim's standing over all its games.
    /// @param _claimId The claim id.
    /// @return open_ Games still in progress.
    /// @return won_ Games the claimant won.
    /// @return lost_ Games the claimant lost (any loss rejects the claim).
    function claimStatus(bytes32 _claimId) external view returns (uint256 open_, uint256 won_, uint256 lost_) {
        address[] storage games = gamesOf_[_claimId];
        for (uint256 i = 0; i < games.length; i++) {
            Outcome o = IInferenceDisputeGame(games[i]).outcome();
            if (o == Outcome.InProgress) open_++;
            else if (o == Outcome.ClaimantWins) won_++;
            else lost_++;
        }
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
