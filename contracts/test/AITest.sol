// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @notice The Foundry cheatcodes `AITest` uses (a local subset: no forge-std needed).
interface AIVm {
    function etch(address target, bytes calldata newRuntimeBytecode) external;
    function rpc(string calldata method, string calldata params) external returns (bytes memory data);
    function rpc(string calldata urlOrAlias, string calldata method, string calldata params)
        external
        returns (bytes memory data);
    function toString(bytes calldata value) external pure returns (string memory);
    function toString(uint256 value) external pure returns (string memory);
    function label(address account, string calldata newLabel) external;
}

/// @title AIMockRegistry
/// @notice The answers of the mock inference precompiles: (model, input) -> output bytes, set by
///         its owner (the test or script that deployed it). Read by `AIPrecompileMock`.
contract AIMockRegistry {
    /// @notice One mocked answer.
    /// @param set Whether an answer was registered (an unset key makes the mock fail).
    /// @param fails Whether the mocked precompile fails for this key (as a real one does on an
    ///        unavailable model or a wrong input length).
    /// @param output The output bytes returned (after the length word).
    struct Answer {
        bool set;
        bool fails;
        bytes output;
    }

    /// @notice Who may register answers.
    address public immutable owner;
    /// @notice Key (see `keyOf` / `inlineKeyOf`) -> answer.
    mapping(bytes32 => Answer) internal answers;

    /// @notice A caller other than `owner` tried to register an answer.
    /// @param caller The caller.
    error NotOwner(address caller);

    constructor() {
        owner = msg.sender;
    }

    /// @notice The key of a 0xa1 call: the model address and the input bytes.
    /// @param _model The model address.
    /// @param _input The input bytes.
    /// @return The key.
    function keyOf(bytes32 _model, bytes memory _input) public pure returns (bytes32) {
        return keccak256(abi.encodePacked(bytes1(0xa1), _model, _input));
    }

    /// @notice The key of a 0xa0 call: the bundle's hash and the input bytes.
    /// @param _bundle The bundle bytes.
    /// @param _input The input bytes.
    /// @return The key.
    function inlineKeyOf(bytes memory _bundle, bytes memory _input) public pure returns (bytes32) {
        return keccak256(abi.encodePacked(bytes1(0xa0), keccak256(_bundle), _input));
    }

    /// @notice Registers the answer for `_key` (owner only).
    /// @param _key The key.
    /// @param _fails True to make the call fail.
    /// @param _output The output bytes (ignored when `_fails`).
    function setAnswer(bytes32 _key, bool _fails, bytes calldata _output) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        answers[_key] = Answer({ set: true, fails: _fails, output: _fails ? bytes("") : _output });
    }

    /// @notice The answer registered for `_key`.
    /// @param _key The key.
    /// @return The answer (`set` false when none).
    function answer(bytes32 _key) external view returns (Answer memory) {
        return answers[_key];
    }
}

/// @title AIPrecompileMock
/// @notice Runtime code to etch at 0xa1 and 0xa0 in Foundry (or `anvil_setCode`): answers the
///         precompile call layouts of docs/ailib.md with the outputs registered in `registry`.
/// @dev 0xa1: `bytes32 model ‖ uint256 outputSize ‖ input` -> `uint256 length ‖ output`; fails
///      when no answer is registered, when the answer is a failure, or when the registered output
///      is not `outputSize` bytes (the real precompile fails on a size mismatch too).
///      0xa0: `uint256 bundleLength ‖ uint256 inputLength ‖ bundle ‖ input` -> same return.
///      A failure reverts with `AIMockNoAnswer` / `AIMockFailure` / `AIMockSizeMismatch` data
///      (AILib ignores revert data and reports `InferenceFailed`, as on the chain); the real
///      precompile's inference gas is not charged. The registry's address is an immutable, so
///      etching this contract's runtime code carries it along.
contract AIPrecompileMock {
    /// @notice Where the answers are read.
    AIMockRegistry public immutable registry;

    /// @notice No answer is registered for this call.
    /// @param key The registry key of the call.
    error AIMockNoAnswer(bytes32 key);
    /// @notice The registered answer for this call is a failure.
    /// @param key The registry key of the call.
    error AIMockFailure(bytes32 key);
    /// @notice The call asked for `expected` output bytes; `actual` are registered.
    /// @param expected The outputSize of the call.
    /// @param actual The registered output's length.
    error AIMockSizeMismatch(uint256 expected, uint256 actual);
    /// @notice The call data is too short or its lengths do not add up.
    /// @param length The call data length.
    error AIMockMalformedCall(uint256 length);

    constructor(AIMockRegistry _registry) {
        registry = _registry;
    }

    fallback(bytes calldata _data) external returns (bytes memory) {
        if (address(this) == address(0xa0)) return _inline(_data);
        if (_data.length < 64) revert AIMockMalformedCall(_data.length);
        bytes32 model = bytes32(_data[0:32]);
        uint256 outputSize = uint256(bytes32(_data[32:64]));
        bytes32 key = registry.keyOf(model, _data[64:]);
        bytes memory output = _lookup(key);
        if (output.length != outputSize) revert AIMockSizeMismatch(outputSize, output.length);
        return abi.encodePacked(output.length, output);
    }

    /// @dev The 0xa0 layout.
    function _inline(bytes calldata _data) private view returns (bytes memory) {
        if (_data.length < 64) revert AIMockMalformedCall(_data.length);
        uint256 bundleLength = uint256(bytes32(_data[0:32]));
        uint256 inputLength = uint256(bytes32(_data[32:64]));
        if (bundleLength > _data.length || inputLength != _data.length - 64 - bundleLength) {
            revert AIMockMalformedCall(_data.length);
        }
        bytes32 key = registry.inlineKeyOf(_data[64:64 + bundleLength], _data[64 + bundleLength:]);
        bytes memory output = _lookup(key);
        return abi.encodePacked(output.length, output);
    }

    /// @dev The registered output for `_key`, reverting when there is none or it is a failure.
    function _lookup(bytes32 _key) private view returns (bytes memory) {
        AIMockRegistry.Answer memory a = registry.answer(_key);
        if (!a.set) revert AIMockNoAnswer(_key);
        if (a.fails) revert AIMockFailure(_key);
        return a.output;
    }
}

/// @title AITest
/// @notice Mixin for `forge test` and `forge script`: etches `AIPrecompileMock` at 0xa1 and 0xa0
///         so contracts calling `AILib` run in Foundry's EVM (revm has no inference precompile),
///         with outputs set by the test (`mockInference`) or recorded from an AI EVM node
///         (`recordInference`: `eth_call` to 0xa1 through `vm.rpc`). See docs/foundry.md.
/// @dev Use as `contract MyTest is Test, AITest` and call `installAIMock()` in `setUp` (or at the
///      start of a script's `run`, before `vm.startBroadcast`: the mock is local state and is never
///      broadcast). The registry is deployed by this contract, which alone may set answers.
abstract contract AITest {
    /// @dev The cheatcode address (private name: test bases declare their own `vm`).
    AIVm private constant AI_VM = AIVm(address(uint160(uint256(keccak256("hevm cheat code")))));
    /// @notice The inference precompile (by model address).
    address internal constant AI_PRECOMPILE = address(0xa1);
    /// @notice The inline inference precompile (bundle in the call).
    address internal constant AI_PRECOMPILE_INLINE = address(0xa0);

    /// @notice The registry the etched mocks read (zero until `installAIMock`).
    AIMockRegistry internal aiMockRegistry;

    /// @notice `recordInference` was called before `installAIMock`, or the node's answer is malformed.
    /// @param reason What went wrong.
    error AITestError(string reason);

    /// @notice Etches the mock at 0xa1 and 0xa0 (idempotent: a second call keeps the answers).
    function installAIMock() internal {
        if (address(aiMockRegistry) != address(0)) return;
        aiMockRegistry = new AIMockRegistry();
        bytes memory code = address(new AIPrecompileMock(aiMockRegistry)).code;
        AI_VM.etch(AI_PRECOMPILE, code);
        AI_VM.etch(AI_PRECOMPILE_INLINE, code);
        AI_VM.label(AI_PRECOMPILE, "AIPrecompileMock(0xa1)");
        AI_VM.label(AI_PRECOMPILE_INLINE, "AIPrecompileMock(0xa0)");
    }

    /// @notice Makes a 0xa1 call of `_model` on `_input` return `_output`.
    /// @param _model The model address.
    /// @param _input The input bytes.
    /// @param _output The output bytes.
    function mockInference(bytes32 _model, bytes memory _input, bytes memory _output) internal {
        _registry().setAnswer(aiMockRegistry.keyOf(_model, _input), false, _output);
    }

    /// @notice Makes a 0xa1 call of `_model` on `_input` fail (as for an unavailable model).
    /// @param _model The model address.
    /// @param _input The input bytes.
    function mockInferenceFailure(bytes32 _model, bytes memory _input) internal {
        _registry().setAnswer(aiMockRegistry.keyOf(_model, _input), true, "");
    }

    /// @notice Makes a 0xa0 call with `_bundle` on `_input` return `_output`.
    /// @param _bundle The bundle bytes.
    /// @param _input The input bytes.
    /// @param _output The output bytes.
    function mockInferenceInline(bytes memory _bundle, bytes memory _input, bytes memory _output) internal {
        _registry().setAnswer(aiMockRegistry.inlineKeyOf(_bundle, _input), false, _output);
    }

    /// @notice Asks the AI EVM node at `_rpcUrl` (a URL or a `[rpc_endpoints]` alias) for the output
    ///         of `_model` on `_input` (`eth_call` to 0xa1 at `latest`) and mocks it.
    /// @param _rpcUrl The node's RPC URL or alias.
    /// @param _model The model address.
    /// @param _input The input bytes.
    /// @param _outputSize The number of output bytes expected.
    /// @return output_ The node's output bytes.
    function recordInference(string memory _rpcUrl, bytes32 _model, bytes memory _input, uint256 _outputSize)
        internal
        returns (bytes memory output_)
    {
        output_ = _decodeAnswer(AI_VM.rpc(_rpcUrl, "eth_call", _callParams(_model, _input, _outputSize)), _outputSize);
        mockInference(_model, _input, output_);
    }

    /// @notice `recordInference` against the active fork (`forge script --rpc-url`, `--fork-url`).
    /// @param _model The model address.
    /// @param _input The input bytes.
    /// @param _outputSize The number of output bytes expected.
    /// @return output_ The node's output bytes.
    function recordInference(bytes32 _model, bytes memory _input, uint256 _outputSize)
        internal
        returns (bytes memory output_)
    {
        output_ = _decodeAnswer(AI_VM.rpc("eth_call", _callParams(_model, _input, _outputSize)), _outputSize);
        mockInference(_model, _input, output_);
    }

    /// @notice Asks the node at `_rpcUrl` for the output of the bundle `_bundle` on `_input`
    ///         (`eth_call` to 0xa0 at `latest`) and mocks it for 0xa0.
    /// @param _rpcUrl The node's RPC URL or alias.
    /// @param _bundle The model bundle bytes.
    /// @param _input The input bytes.
    /// @return output_ The node's output bytes.
    function recordInferenceInline(string memory _rpcUrl, bytes memory _bundle, bytes memory _input)
        internal
        returns (bytes memory output_)
    {
        bytes memory data = abi.encodePacked(_bundle.length, _input.length, _bundle, _input);
        bytes memory ret = AI_VM.rpc(_rpcUrl, "eth_call", _params(address(0xa0), data));
        if (ret.length < 32) revert AITestError(string.concat("node returned ", AI_VM.toString(ret.length), " bytes"));
        output_ = _decodeAnswer(ret, ret.length - 32);
        _registry().setAnswer(aiMockRegistry.inlineKeyOf(_bundle, _input), false, output_);
    }

    /// @dev The `eth_call` params of a 0xa1 call (JSON).
    function _callParams(bytes32 _model, bytes memory _input, uint256 _outputSize)
        private
        pure
        returns (string memory)
    {
        return _params(AI_PRECOMPILE, abi.encodePacked(_model, _outputSize, _input));
    }

    /// @dev The `eth_call` params of a call of `_to` with `_data` at `latest` (JSON).
    function _params(address _to, bytes memory _data) private pure returns (string memory) {
        return string.concat(
            '[{"to":"', AI_VM.toString(abi.encodePacked(_to)), '","data":"', AI_VM.toString(_data), '"},"latest"]'
        );
    }

    /// @dev The output bytes of a precompile return (`uint256 length ‖ output`).
    function _decodeAnswer(bytes memory _ret, uint256 _outputSize) private pure returns (bytes memory output_) {
        if (_ret.length != 32 + _outputSize) {
            revert AITestError(string.concat("node returned ", AI_VM.toString(_ret.length), " bytes"));
        }
        uint256 length;
        assembly ("memory-safe") {
            length := mload(add(_ret, 0x20))
        }
        if (length != _outputSize) revert AITestError("node's length word is not the output size");
        output_ = new bytes(_outputSize);
        assembly ("memory-safe") {
            mcopy(add(output_, 0x20), add(_ret, 0x40), _outputSize)
        }
    }

    /// @dev The registry, or an error when the mock is not installed.
    function _registry() private view returns (AIMockRegistry) {
        if (address(aiMockRegistry) == address(0)) revert AITestError("call installAIMock() first");
        return aiMockRegistry;
    }
}
