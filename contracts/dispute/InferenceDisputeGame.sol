// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { IClaimRegistry } from "./interfaces/IClaimRegistry.sol";
import { IInferenceDisputeGame } from "./interfaces/IInferenceDisputeGame.sol";
import { IPhaseLink } from "./interfaces/IPhaseLink.sol";
import { IStepVerifier } from "./interfaces/IStepVerifier.sol";
import { LibMerkle } from "./lib/LibMerkle.sol";
import { LibPosition, Position } from "./lib/LibPosition.sol";
import { Bisection, Claim, Graph, NodeLink, OpenStepsData, Outcome, Phase, Role } from "./lib/Types.sol";
import "./lib/Errors.sol";

/// @title InferenceDisputeGame
/// @notice The two-phase dispute game over one claim `(model address, input hash) -> output hash`
///         (`docs/dispute_game.md`; Python referee: `fraud_vm/game.py`, same state machine, same
///         checks in the same order). Phase 1 bisects over graph nodes, `openSteps` resolves it on
///         one node and derives phase 2's start state on chain, phase 2 bisects over that node's VM
///         steps and `step` executes the disputed one through the `IStepVerifier`. Chess clocks
///         with an extension against last-second moves, bonds growing geometrically with the move
///         number, the winner takes every bond through `claimCredit` (pull payment).
/// @dev Deployed once as an implementation holding the rules (immutables) and cloned per game by
///      `DisputeGameFactory` (EIP-1167); each clone is initialized once with its claim.
contract InferenceDisputeGame is IInferenceDisputeGame {
    /// @notice The one-step verifier (phase 2's resolution).
    IStepVerifier public immutable VERIFIER;
    /// @notice The model facts proven against the model address (graph header, node links).
    IPhaseLink public immutable PHASE_LINK;
    /// @notice Seconds each player has for the whole game (`Rules.clock_s`).
    uint64 public immutable CLOCK;
    /// @notice Time a player is guaranteed at the start of its turn (`Rules.clock_extension_s`).
    uint64 public immutable CLOCK_EXTENSION;
    /// @notice Bond of the claim, move 0 (`Rules.claim_bond`).
    uint256 public immutable CLAIM_BOND;
    /// @notice Bond growth per move: `bond(m) = floor(bond(m - 1) * NUM / DEN)`.
    uint256 public immutable BOND_GROWTH_NUM;
    /// @notice See `BOND_GROWTH_NUM`.
    uint256 public immutable BOND_GROWTH_DEN;

    /// @notice The largest batch size a claim may name.
    uint256 internal constant MAX_BATCH = 65536;
    /// @notice Status word of a halted VM state (`fraud_vm.state.Status.HALTED`).
    uint256 internal constant HALTED = 1;
    /// @notice Bytes of an encoded VM state (25 words).
    uint256 internal constant STATE_BYTES = 800;
    /// @notice Where a step witness's context starts (6-byte header, 800-byte pre-state).
    uint256 internal constant WITNESS_CONTEXT_OFFSET = 806;

    /// @notice Who created (initialized) this game.
    address public factory;
    /// @notice The claimant.
    address public claimant;
    /// @notice The challenger.
    address public challenger;
    /// @notice Whether the game was opened by a claim registry (which holds the claim bond and is
    ///         told the outcome) rather than standing alone with the claim bond in its pot.
    bool public registryGame;

    /// @notice The claim's model address `A`.
    bytes32 public modelAddress;
    /// @notice The claim's batch size.
    uint256 public batch;
    /// @notice `keccak256` of the claim's input roots.
    bytes32 public inputHash;
    /// @notice `keccak256` of the claim's output roots.
    bytes32 public outputHash;
    /// @notice The claim's final phase-1 state (phase 1's root claim).
    bytes32 public rootClaim;
    /// @notice The model's node count `n`.
    uint256 public nNodes;
    /// @notice The model's tensor count `T`.
    uint256 public nTensors;
    /// @notice Depth of the model's tensor table, `ceil(log2 T)`.
    uint256 public tableDepth;

    /// @notice The current phase.
    Phase public phase;
    /// @inheritdoc IInferenceDisputeGame
    Outcome public outcome;
    /// @inheritdoc IInferenceDisputeGame
    Role public mover;
    /// @notice When the current turn started (the last accepted move, or the game's opening).
    uint64 public turnStarted;
    /// @notice Seconds of clock used by each player, by `Role`.
    uint64[2] public clockUsed;
    /// @notice Accepted moves after the claim (the claim is move 0).
    uint256 public moves;
    /// @notice Bonds posted by each player, by `Role`.
    uint256[2] public bonds;
    /// @notice The current phase's bisection.
    Bisection internal bisection_;

    /// @notice Phase 2's node `k` (set by `openSteps`).
    uint256 public nodeIndex;
    /// @notice Phase 2's node context hash (set by `openSteps`).
    bytes32 public contextHash;
    /// @notice The step that resolved the game (set by `step`).
    uint256 public pinnedStep;
    /// @notice Credit (won bonds) claimable per account.
    mapping(address => uint256) public credit;

    /// @notice The kinds of move (`Bisect`, `OpenSteps`, `Step` in `fraud_vm.game`).
    enum MoveKind {
        Bisect,
        OpenSteps,
        Step
    }

    /// @param _verifier The step verifier.
    /// @param _phaseLink The phase link.
    /// @param _clock Seconds per player for the whole game.
    /// @param _clockExtension Seconds a player is guaranteed at the start of its turn (<= `_clock`).
    /// @param _claimBond The claim's bond.
    /// @param _growthNum Bond growth numerator (>= `_growthDen`).
    /// @param _growthDen Bond growth denominator (> 0).
    constructor(
        IStepVerifier _verifier,
        IPhaseLink _phaseLink,
        uint64 _clock,
        uint64 _clockExtension,
        uint256 _claimBond,
        uint256 _growthNum,
        uint256 _growthDen
    ) {
        if (_clockExtension > _clock || _growthDen == 0 || _growthNum < _growthDen) revert InvalidRules();
        VERIFIER = _verifier;
        PHASE_LINK = _phaseLink;
        CLOCK = _clock;
        CLOCK_EXTENSION = _clockExtension;
        CLAIM_BOND = _claimBond;
        BOND_GROWTH_NUM = _growthNum;
        BOND_GROWTH_DEN = _growthDen;
        // The implementation itself never holds a game.
        factory = address(this);
        outcome = Outcome.ClaimantWins;
        phase = Phase.Resolved;
    }

    ////////////////////////////////////////////////////////////////
    //                     Opening the game                       //
    ////////////////////////////////////////////////////////////////

    /// @inheritdoc IInferenceDisputeGame
    function initialize(
        Claim calldata _claim,
        bytes calldata _graphProof,
        address _claimant,
        address _challenger,
        bool _stakeClaimBond
    )
        external
        payable
    {
        // INVARIANT: a game is initialized once, by the account that created it.
        if (factory != address(0)) revert AlreadyInitialized();
        factory = msg.sender;
        // INVARIANT: a lone game takes the claimant's bond bond(0) into its pot; a registry game
        // leaves the claim bond with the registry (its creator) and takes nothing.
        if (msg.value != (_stakeClaimBond ? bond(0) : 0)) revert IncorrectBond();
        if (_claimant == _challenger || _challenger == address(0)) revert ClaimantCannotChallenge();
        (Graph memory g, bytes32 start) = checkClaim(_claim, _graphProof);
        claimant = _claimant;
        challenger = _challenger;
        registryGame = !_stakeClaimBond;
        modelAddress = _claim.modelAddress;
        batch = _claim.batch;
        inputHash = keccak256(abi.encodePacked(_claim.inputRoots));
        outputHash = keccak256(abi.encodePacked(_claim.outputRoots));
        rootClaim = _claim.finalState;
        nNodes = g.nNodes;
        nTensors = g.nTensors;
        tableDepth = LibMerkle.treeDepth(g.nTensors);
        phase = Phase.Nodes;
        mover = Role.Challenger;
        turnStarted = uint64(block.timestamp);
        bonds[uint256(Role.Claimant)] = msg.value;
        _openBisection(g.nNodes, start, _claim.finalState, Role.Claimant);
    }

    /// @notice The checks of a game's opening (`docs/dispute_game.md` §1, `open_game`), in order;
    ///         returns the proven graph header and the derived `state_0`. Reverts
    ///         `InvalidDescriptorProof` (header, from the phase link) or `InvalidClaim`.
    /// @param _claim The claim.
    /// @param _graphProof The graph header's proof.
    /// @return g_ The graph header.
    /// @return start_ `state_0`, derived from the input roots (never taken from a player).
    function checkClaim(Claim calldata _claim, bytes calldata _graphProof)
        public
        view
        returns (Graph memory g_, bytes32 start_)
    {
        bytes32 a = _claim.modelAddress;
        // INVARIANT: the model's graph header is proven against its address.
        g_ = PHASE_LINK.graph(a, _graphProof);
        // INVARIANT: 1 <= batch <= 65536.
        if (_claim.batch == 0 || _claim.batch > MAX_BATCH) revert InvalidClaim();
        // INVARIANT: keccak256(A ‖ uint256(n) ‖ final_tensors_root) == final_state.
        if (stateHash(a, g_.nNodes, _claim.finalTensorsRoot) != _claim.finalState) revert InvalidClaim();
        // INVARIANT: one output root and one path per graph output, each opening at its tensor id
        // in the final tensor table (so the output hash follows from state_n).
        uint256 depth = LibMerkle.treeDepth(g_.nTensors);
        uint256 nOut = g_.outputIds.length;
        if (_claim.outputRoots.length != nOut || _claim.outputProofs.length != nOut) revert InvalidClaim();
        for (uint256 j = 0; j < nOut; j++) {
            if (!_opens(g_.nTensors, depth, _claim.finalTensorsRoot, g_.outputIds[j], _claim.outputRoots[j], _claim.outputProofs[j])) {
                revert InvalidClaim();
            }
        }
        // INVARIANT: one input root per graph input.
        if (_claim.inputRoots.length != g_.inputIds.length) revert InvalidClaim();
        // SAFETY: state_0 is derived here from the input roots, never taken from a player.
        start_ = stateHash(a, 0, _initialTensorsRoot(g_.inputIds, _claim.inputRoots, depth));
    }

    ////////////////////////////////////////////////////////////////
    //                           Moves                            //
    ////////////////////////////////////////////////////////////////

    /// @inheritdoc IInferenceDisputeGame
    function bisect(Position _parent, bool _isAttack, bytes32 _claim) external payable {
        (Role role, bytes32 lo, bytes32 hi, Role hiOwner,) = _beginMove(_parent, _isAttack, MoveKind.Bisect);
        Bisection storage b = bisection_;
        Position next = LibPosition.move(_parent, _isAttack);
        (b.loHash, b.hiHash, b.hiOwner) = (lo, hi, hiOwner);
        (b.last, b.lastHash, b.lastOwner) = (next, _claim, role);
        _endMove(role);
        emit Move(_parent, _isAttack, next, _claim, msg.sender);
    }

    /// @inheritdoc IInferenceDisputeGame
    function openSteps(Position _parent, bool _isAttack, OpenStepsData calldata _data) external payable {
        (Role role, bytes32 lo, bytes32 hi, Role hiOwner, Position interval) =
            _beginMove(_parent, _isAttack, MoveKind.OpenSteps);
        uint256 k = interval.indexAtDepth();
        nodeIndex = k;
        _endMove(role);
        emit Move(_parent, _isAttack, interval, bytes32(0), msg.sender);
        if (k >= nNodes) {
            // Past the last node the trace is padded with the final state: hi must equal lo.
            _finish(hi == lo ? hiOwner : _other(hiOwner));
            return;
        }
        bytes32 a = modelAddress;
        // INVARIANT: the node's and its tensors' descriptors are proven against the model address
        // (the link reverts with InvalidDescriptorProof otherwise).
        NodeLink memory link = PHASE_LINK.openNode(a, k, batch, _data.link);
        // INVARIANT: the agreed pre-state is opened to its tensor table.
        if (stateHash(a, k, _data.preTensorsRoot) != lo) revert PreTensorsMismatch();
        // INVARIANT: the start state's inputs are agreed tensors (proven in the agreed table).
        bytes32[] memory regions = _provenInputRegions(link, _data);
        // INVARIANT: the mover's post-state follows from the agreed table and its output roots;
        // it equals the disputed claim iff the mover owns that claim.
        bytes32 post = stateHash(a, k + 1, _applyNodeOutputs(link.outputIds, _data));
        if ((post == hi) != (role == hiOwner)) revert OutputsContradictClaim();
        // INVARIANT: the mover's final VM state is HALTED at the program's end and holds its
        // first output root in the output region.
        _checkFinalState(link, _data);
        // SAFETY: the phase-2 start state is derived here from proven roots, never taken from a
        // player: memory root over [input regions.., zero output region], step 0, RUNNING.
        regions[regions.length - 1] = link.outputZeroRoot;
        bytes32 start = initialStateHash(link.contextHash, LibMerkle.merkleRoot(regions, LibMerkle.treeDepth(regions.length)));
        bytes32 root = keccak256(_data.finalState);
        contextHash = link.contextHash;
        phase = Phase.Steps;
        _openBisection(link.numSteps, start, root, role);
        emit StepsOpened(k, link.numSteps, start, root);
    }

    /// @inheritdoc IInferenceDisputeGame
    function step(Position _parent, bool _isAttack, bytes calldata _witness) external payable {
        (Role role, bytes32 lo, bytes32 hi, Role hiOwner, Position interval) =
            _beginMove(_parent, _isAttack, MoveKind.Step);
        uint256 j = interval.indexAtDepth();
        bytes32 post;
        if (j >= bisection_.length) {
            // A HALTED VM does not change: the trace is padded with the final state.
            post = lo;
        } else {
            // INVARIANT: the witness is about node k's context (a cheap early reject; the verifier
            // checks it again against the pre-state): `docs/fraud_vm.md` "Witness calldata".
            if (_witnessContextHash(_witness) != contextHash) revert ContextHashMismatch();
            // INVARIANT: the one-step check uses only the agreed pre-state hash and the witness;
            // an invalid witness reverts with the verifier's error.
            post = VERIFIER.step(lo, _witness);
        }
        pinnedStep = j;
        _endMove(role);
        emit Move(_parent, _isAttack, interval, post, msg.sender);
        _finish(post == hi ? hiOwner : _other(hiOwner));
    }

    /// @inheritdoc IInferenceDisputeGame
    function claimTimeout() external {
        // INVARIANT: the game is in progress (a game is resolved once).
        if (outcome != Outcome.InProgress) revert GameOver();
        // INVARIANT: the player to move has used up its clock.
        if (block.timestamp < deadline()) revert ClockNotExpired();
        _finish(_other(mover));
    }

    /// @inheritdoc IInferenceDisputeGame
    function claimCredit(address _recipient) external {
        uint256 amount = credit[_recipient];
        // INVARIANT: there is something to pay.
        if (amount == 0) revert NoCredit();
        // SAFETY: the credit is cleared before the call, so a re-entering recipient finds none.
        credit[_recipient] = 0;
        (bool ok,) = _recipient.call{ value: amount }("");
        if (!ok) revert BondTransferFailed();
    }

    ////////////////////////////////////////////////////////////////
    //                    Views and rule math                     //
    ////////////////////////////////////////////////////////////////

    /// @notice The time by which the player to move must move.
    /// @return deadline_ `turnStarted + CLOCK - clockUsed[mover]`.
    function deadline() public view returns (uint256 deadline_) {
        deadline_ = uint256(turnStarted) + CLOCK - clockUsed[uint256(mover)];
    }

    /// @notice The bond of move `_moveNumber` (the claim is move 0): `CLAIM_BOND` grown by
    ///         `BOND_GROWTH_NUM / BOND_GROWTH_DEN` per move, rounded down at each move.
    /// @param _moveNumber The move number.
    /// @return bond_ The bond.
    function bond(uint256 _moveNumber) public view returns (uint256 bond_) {
        bond_ = CLAIM_BOND;
        for (uint256 m = 0; m < _moveNumber; m++) {
            bond_ = bond_ * BOND_GROWTH_NUM / BOND_GROWTH_DEN;
        }
    }

    /// @notice The current phase's bisection record.
    /// @return bisection_ The record.
    function bisection() external view returns (Bisection memory) {
        return bisection_;
    }

    /// @notice The phase-1 state `keccak256(A ‖ uint256(counter) ‖ tensorsRoot)`.
    /// @param _model The model address.
    /// @param _counter The number of nodes executed.
    /// @param _tensorsRoot The tensor table's root.
    /// @return state_ The state hash.
    function stateHash(bytes32 _model, uint256 _counter, bytes32 _tensorsRoot) public pure returns (bytes32 state_) {
        state_ = keccak256(abi.encodePacked(_model, _counter, _tensorsRoot));
    }

    /// @notice Hash of a node run's start state (`fraud_vm.trace.initial_state`): context hash,
    ///         memory root, step 0, RUNNING, zero registers (25 words, `docs/fraud_vm.md` "State").
    /// @param _contextHash The node context's hash.
    /// @param _memoryRoot The region tree's root.
    /// @return state_ The state hash.
    function initialStateHash(bytes32 _contextHash, bytes32 _memoryRoot) public pure returns (bytes32 state_) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, _contextHash)
            mstore(add(p, 0x20), _memoryRoot)
            calldatacopy(add(p, 0x40), calldatasize(), sub(STATE_BYTES, 0x40)) // zero the other 23 words
            state_ := keccak256(p, STATE_BYTES)
        }
    }

    ////////////////////////////////////////////////////////////////
    //                         Internals                          //
    ////////////////////////////////////////////////////////////////

    /// @notice The checks every move makes first; returns the mover's role and the interval the
    ///         move leaves: `(lo, hi, hiOwner)` and its position (`c` on attack, `c | 1` on defense).
    function _beginMove(Position _parent, bool _isAttack, MoveKind _kind)
        internal
        returns (Role role_, bytes32 lo_, bytes32 hi_, Role hiOwner_, Position interval_)
    {
        // INVARIANT: the game is in progress.
        if (outcome != Outcome.InProgress) revert GameOver();
        role_ = mover;
        // INVARIANT: it is the mover's turn.
        if (msg.sender != (role_ == Role.Claimant ? claimant : challenger)) revert NotYourTurn();
        // INVARIANT: now is not past the mover's deadline.
        if (block.timestamp > deadline()) revert ClockExpired();
        // INVARIANT: the mover posts exactly this move's bond.
        if (msg.value != bond(moves + 1)) revert IncorrectBond();
        Bisection memory b = bisection_;
        // INVARIANT: a move answers the last claim.
        if (Position.unwrap(_parent) != Position.unwrap(b.last)) revert ParentNotLast();
        // INVARIANT: a phase's root claim can only be attacked.
        if (!_isAttack && Position.unwrap(b.last) == 1) revert CannotDefendRoot();
        // INVARIANT: the move's kind fits the position: Bisect above the maximum depth, OpenSteps
        // (phase 1) and Step (phase 2) at it.
        bool atLeaf = b.last.depth() == b.maxDepth;
        if (_kind == MoveKind.Bisect) {
            if (atLeaf) revert WrongMoveKind();
        } else if (!atLeaf || phase != (_kind == MoveKind.OpenSteps ? Phase.Nodes : Phase.Steps)) {
            revert WrongMoveKind();
        }
        // An attack disputes the last claim (it becomes hi); a defense agrees with it (it becomes lo).
        if (_isAttack) {
            (lo_, hi_, hiOwner_, interval_) = (b.loHash, b.lastHash, b.lastOwner, b.last);
        } else {
            (lo_, hi_, hiOwner_) = (b.lastHash, b.hiHash, b.hiOwner);
            interval_ = Position.wrap(Position.unwrap(b.last) | 1);
        }
    }

    /// @notice Charge the mover's clock, top up the responder's, take the bond, pass the turn.
    function _endMove(Role _role) internal {
        uint256 r = uint256(_role);
        clockUsed[r] += uint64(block.timestamp - turnStarted);
        // INVARIANT: the responder has at least CLOCK_EXTENSION to answer (clock extension: a
        // move made at the last second cannot leave the other player without time).
        uint256 o = 1 - r;
        if (CLOCK - clockUsed[o] < CLOCK_EXTENSION) clockUsed[o] = CLOCK - CLOCK_EXTENSION;
        turnStarted = uint64(block.timestamp);
        moves += 1;
        bonds[r] += msg.value;
        mover = _other(_role);
    }

    /// @notice Start a phase's bisection over `_length` transitions from the agreed `_lo` to the
    ///         root claim `_root` by `_owner`.
    function _openBisection(uint256 _length, bytes32 _lo, bytes32 _root, Role _owner) internal {
        // D = ceil(log2 N) (Python: max(0, (N - 1).bit_length()), which is 1 for N = 0).
        uint256 d = _length == 0 ? 1 : LibMerkle.treeDepth(_length);
        if (d > LibPosition.MAX_DEPTH || _length >> 64 != 0) revert PositionError();
        bisection_ = Bisection({
            loHash: _lo,
            hiHash: _root,
            lastHash: _root,
            length: uint64(_length),
            last: Position.wrap(1),
            maxDepth: uint8(d),
            hiOwner: _owner,
            lastOwner: _owner
        });
    }

    /// @notice End the game: the winner is credited every bond posted in it.
    function _finish(Role _winner) internal {
        outcome = _winner == Role.Claimant ? Outcome.ClaimantWins : Outcome.ChallengerWins;
        phase = Phase.Resolved;
        uint256 total = bonds[0] + bonds[1];
        address to = _winner == Role.Claimant ? claimant : challenger;
        credit[to] += total;
        emit Resolved(outcome);
        // A registry game reports its outcome: a claimant's loss rejects the claim at once.
        if (registryGame) IClaimRegistry(factory).onGameResolved(_winner == Role.Challenger);
    }

    /// @notice Whether `_leaf` opens at `_id` in the table `_root` of `_nTensors` leaves
    ///         (`fraud_vm.phase1.check_leaf`).
    function _opens(
        uint256 _nTensors,
        uint256 _depth,
        bytes32 _root,
        uint256 _id,
        bytes32 _leaf,
        bytes32[] calldata _proof
    )
        internal
        pure
        returns (bool opens_)
    {
        // SAFETY: the path length is the table's depth, fixed by the proven tensor count.
        opens_ = _id < _nTensors && _proof.length == _depth && LibMerkle.rootFromProof(_leaf, _id, _proof) == _root;
    }

    /// @notice The tensor table before node 0: the graph inputs' roots, zero elsewhere.
    function _initialTensorsRoot(uint256[] memory _ids, bytes32[] calldata _roots, uint256 _depth)
        internal
        pure
        returns (bytes32 root_)
    {
        uint256 n = _ids.length;
        uint256[] memory idx = new uint256[](n);
        bytes32[] memory val = new bytes32[](n);
        // insertion sort by tensor id (graph inputs are few)
        for (uint256 i = 0; i < n; i++) {
            uint256 j = i;
            while (j > 0 && idx[j - 1] > _ids[i]) {
                (idx[j], val[j]) = (idx[j - 1], val[j - 1]);
                j--;
            }
            (idx[j], val[j]) = (_ids[i], _roots[i]);
        }
        root_ = LibMerkle.sparseRoot(idx, val, _depth);
    }

    /// @notice Region roots of the node's inputs (constants from the link, activations proven in
    ///         the agreed table), with one more slot left for the output region.
    function _provenInputRegions(NodeLink memory _link, OpenStepsData calldata _data)
        internal
        view
        returns (bytes32[] memory regions_)
    {
        uint256 nIn = _link.inputIds.length;
        if (_link.constRoots.length != nIn) revert InputCountMismatch();
        regions_ = new bytes32[](nIn + 1);
        uint256 dyn = 0;
        for (uint256 i = 0; i < nIn; i++) {
            if (_link.constRoots[i] == bytes32(0)) dyn++;
        }
        if (dyn != _data.inputRoots.length || dyn != _data.inputProofs.length) revert InputCountMismatch();
        uint256 t = nTensors;
        uint256 depth = tableDepth;
        dyn = 0;
        for (uint256 i = 0; i < nIn; i++) {
            if (_link.constRoots[i] != bytes32(0)) {
                regions_[i] = _link.constRoots[i];
                continue;
            }
            if (!_opens(t, depth, _data.preTensorsRoot, _link.inputIds[i], _data.inputRoots[dyn], _data.inputProofs[dyn])) {
                revert InvalidTableProof();
            }
            regions_[i] = _data.inputRoots[dyn];
            dyn++;
        }
    }

    /// @notice The tensor table after node `k`: each output's leaf is zero before it is written,
    ///         outputs written in order, each path taken in the table as updated so far.
    function _applyNodeOutputs(uint256[] memory _outputIds, OpenStepsData calldata _data)
        internal
        view
        returns (bytes32 root_)
    {
        uint256 nOut = _outputIds.length;
        if (_data.outputRoots.length != nOut || _data.outputProofs.length != nOut || nOut == 0) {
            revert InputCountMismatch();
        }
        uint256 depth = tableDepth;
        root_ = _data.preTensorsRoot;
        for (uint256 j = 0; j < nOut; j++) {
            bytes32[] calldata proof = _data.outputProofs[j];
            // INVARIANT: the output's leaf is zero before the node writes it (SSA).
            if (!_opens(nTensors, depth, root_, _outputIds[j], bytes32(0), proof)) revert InvalidTableProof();
            root_ = LibMerkle.rootFromProof(_data.outputRoots[j], _outputIds[j], proof);
        }
    }

    /// @notice `fraud_vm.trace.node_final_check`: the mover's final state is a canonical HALTED
    ///         state at `step == numSteps` of this context, holding `outputRoots[0]` at region
    ///         `n_inputs` of its memory tree.
    function _checkFinalState(NodeLink memory _link, OpenStepsData calldata _data) internal pure {
        bytes calldata s = _data.finalState;
        if (s.length != STATE_BYTES) revert FinalStateMismatch();
        bytes32 ctx = bytes32(s[0:32]);
        bytes32 memRoot = bytes32(s[32:64]);
        uint256 stepWord = uint256(bytes32(s[64:96]));
        uint256 status = uint256(bytes32(s[96:128]));
        bytes32 reserved = bytes32(s[768:800]);
        if (ctx != _link.contextHash || status != HALTED || stepWord != _link.numSteps || reserved != bytes32(0)) {
            revert FinalStateMismatch();
        }
        uint256 nIn = _link.inputIds.length;
        if (_data.finalProof.length != LibMerkle.treeDepth(nIn + 1)) revert FinalStateMismatch();
        if (LibMerkle.rootFromProof(_data.outputRoots[0], nIn, _data.finalProof) != memRoot) {
            revert FinalStateMismatch();
        }
    }

    /// @notice `keccak256` of a step witness's context: `nContext` (uint16 at offset 0) words at
    ///         offset 806 (after the 6-byte header and the 800-byte pre-state).
    function _witnessContextHash(bytes calldata _witness) internal pure returns (bytes32 hash_) {
        // INVARIANT: the witness holds its header and the context it announces.
        if (_witness.length < 6) revert MalformedMove();
        uint256 end = WITNESS_CONTEXT_OFFSET + 32 * uint256(uint16(bytes2(_witness[0:2])));
        if (_witness.length < end) revert MalformedMove();
        hash_ = keccak256(_witness[WITNESS_CONTEXT_OFFSET:end]);
    }

    /// @notice The other player.
    function _other(Role _role) internal pure returns (Role other_) {
        other_ = _role == Role.Claimant ? Role.Challenger : Role.Claimant;
    }
}
