// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { IPhaseLink } from "../dispute/interfaces/IPhaseLink.sol";
import { Graph } from "../dispute/lib/Types.sol";
import { IncorrectValue, InvalidModelUri, ModelAlreadyRegistered, ModelNotRegistered } from "./RollupErrors.sol";

/// @title ModelRegistry
/// @notice Which models the L2 may use, and where nodes fetch them (DESIGN §7, docs/rollup.md
///         "Models"). A model is registered once, by anyone, with its graph header proven against
///         its address (`docs/dispute_game.md` §1 "The graph header", verified by the phase link)
///         and a fetch location. From the L1 block of its registration on, L2 blocks whose L1
///         origin is at or after it may run the model; an inference on any other model fails on
///         every node alike. The registration fee is kept by the contract (burnt): every validator
///         downloads every registered model, so registering must not be free.
contract ModelRegistry {
    /// @notice A registered model.
    /// @custom:field registrant Who registered it.
    /// @custom:field l1Block The L1 block of the registration (usable by L2 from this origin on).
    /// @custom:field uri Where to fetch the bundle (hub URL, s3://, ...; nodes verify the address).
    /// @custom:field graph The graph header facts the dispute game needs (T, n, input/output ids).
    struct Model {
        address registrant;
        uint64 l1Block;
        string uri;
        Graph graph;
    }

    /// @notice Longest fetch location accepted, in bytes.
    uint256 public constant MAX_URI_BYTES = 512;

    /// @notice Verifies graph header proofs against model addresses.
    IPhaseLink public immutable PHASE_LINK;
    /// @notice The fee (wei) every registration pays.
    uint256 public immutable REGISTRATION_FEE;

    /// @notice The registered models by address.
    mapping(bytes32 => Model) internal models;
    /// @notice Every registered address, in registration order.
    bytes32[] public modelList;

    /// @notice A model was registered.
    event ModelRegistered(bytes32 indexed model, address indexed registrant, uint64 l1Block, string uri);

    /// @param _phaseLink The header-proof verifier.
    /// @param _registrationFee The fee per registration.
    constructor(IPhaseLink _phaseLink, uint256 _registrationFee) {
        PHASE_LINK = _phaseLink;
        REGISTRATION_FEE = _registrationFee;
    }

    /// @notice Register `_model`, fetchable at `_uri`, with its graph header proof.
    /// @param _model The model address.
    /// @param _headerProof `abi.encode(bytes meta, bytes32 nodesRoot, bytes32 tensorsRoot)`.
    /// @param _uri Where nodes fetch the bundle.
    function register(bytes32 _model, bytes calldata _headerProof, string calldata _uri) external payable {
        // INVARIANT: each model is registered once; its first registration block is consensus.
        if (models[_model].registrant != address(0)) revert ModelAlreadyRegistered();
        // INVARIANT: registering costs the fee, exactly.
        if (msg.value != REGISTRATION_FEE) revert IncorrectValue();
        // INVARIANT: a location nodes can use, bounded so that reading it stays cheap.
        if (bytes(_uri).length == 0 || bytes(_uri).length > MAX_URI_BYTES) revert InvalidModelUri();
        // SAFETY: the phase link reverts unless the header is the one the address commits to.
        Graph memory g = PHASE_LINK.graph(_model, _headerProof);
        Model storage m = models[_model];
        m.registrant = msg.sender;
        m.l1Block = uint64(block.number);
        m.uri = _uri;
        m.graph = g;
        modelList.push(_model);
        emit ModelRegistered(_model, msg.sender, uint64(block.number), _uri);
    }

    /// @notice Whether `_model` may run in an L2 block whose L1 origin is `_l1Block`.
    function isRegistered(bytes32 _model, uint256 _l1Block) external view returns (bool) {
        Model storage m = models[_model];
        return m.registrant != address(0) && m.l1Block <= _l1Block;
    }

    /// @notice The registration of `_model` (reverts `ModelNotRegistered`).
    function model(bytes32 _model) external view returns (Model memory model_) {
        model_ = models[_model];
        if (model_.registrant == address(0)) revert ModelNotRegistered();
    }

    /// @notice The graph header facts of a registered model (what a dispute needs).
    function graphOf(bytes32 _model) external view returns (Graph memory graph_) {
        Model storage m = models[_model];
        if (m.registrant == address(0)) revert ModelNotRegistered();
        graph_ = m.graph;
    }

    /// @notice How many models are registered.
    function modelCount() external view returns (uint256) {
        return modelList.length;
    }
}
