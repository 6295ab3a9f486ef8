// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

// Types and constants of the Solidity fraud VM (the mirror of `fraud_vm`, docs/fraud_vm.md).
// Shared by the program derivation (`VMProgram`, `fraud_vm.stepper`), the executors
// (`fraud_vm.isa.execute`) and the one-step verifier (`fraud_vm.vm.verify_step`).

/// @dev Lanes per instruction (`fraud_vm.state.LANES`).
uint256 constant LANES = 32;
/// @dev The most lanes one instruction uses (`fraud_vm.state.WIDTH`): the block width of the
///      GEMM / reduce / window programs, the column chunk of a row, the output bytes of one
///      elementwise step.
uint256 constant WIDTH = 8;
/// @dev Scalar registers s0..s3 (`fraud_vm.state.N_SCALARS`).
uint256 constant N_SCALARS = 4;
/// @dev Most memory words one witness may carry (`fraud_vm.vm.MAX_WITNESS_WORDS`).
uint256 constant MAX_WITNESS_WORDS = 256;
/// @dev An operand `(region, element)` is packed as `region << 128 | element` (both < 2^128);
///      `PAD` (`fraud_vm.isa.PAD`, Python's `(-1, -1)`) is all ones.
uint256 constant PAD = type(uint256).max;
uint256 constant ELEMENT_MASK = (uint256(1) << 128) - 1;

/// @dev dtype codes (`opml.bundle.DType`, committed).
uint8 constant DT_INT8 = 1;
uint8 constant DT_UINT8 = 2;
uint8 constant DT_INT16 = 3;
uint8 constant DT_INT32 = 4;
uint8 constant DT_INT64 = 5;
uint8 constant DT_FLOAT32 = 6;
uint8 constant DT_BOOL = 7;

/// @dev Op codes (`opml.ops`) of the blocked program family (`LibBlocked`, `LibWindow`) and of
///      `_MIN_INPUTS`; the streamed family's are in `LibStream`.
uint256 constant OP_LINEAR = 3;
uint256 constant OP_CONV = 4;
uint256 constant OP_MATMUL = 5;
uint256 constant OP_MAXPOOL = 11;
uint256 constant OP_AVGPOOL = 12;
uint256 constant OP_REDUCE = 13;
uint256 constant OP_ARGMAX = 19;

/// @dev Instruction kinds (`fraud_vm.isa.Kind`; codes are part of the protocol).
uint8 constant K_NOP = 0;
uint8 constant K_MAC = 1;
uint8 constant K_ACC_SUM = 2;
uint8 constant K_ACC_SQ = 3;
uint8 constant K_ACC_MAX = 4;
uint8 constant K_ACC_ARG = 5;
uint8 constant K_FIN_REQ = 6;
uint8 constant K_FIN_DIV = 7;
uint8 constant K_FIN_MOVE = 8;
uint8 constant K_ADD = 9;
uint8 constant K_MUL = 10;
uint8 constant K_LUT = 11;
uint8 constant K_QUANT = 12;
uint8 constant K_DEQUANT = 13;
uint8 constant K_COPY = 14;
uint8 constant K_CAST = 15;
uint8 constant K_FLIP = 16;
uint8 constant K_WHERE = 17;
uint8 constant K_GATHER = 18;
uint8 constant K_SM_MAX = 19;
uint8 constant K_SM_SUM = 20;
uint8 constant K_SM_OUT = 21;
uint8 constant K_LN_SUM = 22;
uint8 constant K_LN_VAR = 23;
uint8 constant K_LN_DEN = 24;
uint8 constant K_LN_OUT = 25;

/// @notice A node operand as the VM sees it (`fraud_vm.context.TensorInfo`).
/// @custom:field dtype The dtype code.
/// @custom:field shape The concrete shape (a leading `-k` already multiplied by the batch).
/// @custom:field size The element count (product of `shape`).
/// @custom:field zeroPoint The quantization zero point.
/// @custom:field scaleBits The float32 scale's raw bits.
/// @custom:field isConst Whether the tensor is a constant of the bundle.
struct TensorInfo {
    uint8 dtype;
    uint256[] shape;
    uint256 size;
    int256 zeroPoint;
    uint256 scaleBits;
    bool isConst;
}

/// @notice A decoded node context (`fraud_vm.context.NodeContext`, docs/fraud_vm.md "Node context").
/// @custom:field modelAddress The bundle's model address (the context's first word).
/// @custom:field nodeIndex The node's index in the graph.
/// @custom:field batch The run's batch size.
/// @custom:field op The node's op code (`opml.ops`).
/// @custom:field nInputs The node's input count.
/// @custom:field attrs The node's attributes in schema order, each a list of int256 values.
/// @custom:field tensors The inputs' then the output's tensor info (`nInputs + 1` entries).
struct NodeContext {
    bytes32 modelAddress;
    uint256 nodeIndex;
    uint256 batch;
    uint256 op;
    uint256 nInputs;
    int256[][] attrs;
    TensorInfo[] tensors;
}

/// @notice One memory region (`fraud_vm.memory.Region`): region `i < nInputs` holds input `i`,
///         the last one the output.
/// @custom:field header The tensor header words `[dtype, ndim, dim_0, ..]` (`fraud_vm.tensors`).
/// @custom:field dtype The dtype code.
/// @custom:field itemsize Bytes per element (1, 2, 4 or 8).
/// @custom:field nbytes The region's byte size.
/// @custom:field nWords `ceil(nbytes / 32)`.
/// @custom:field depth The data tree's depth (`opml.merkle.tree_depth(nWords)`).
struct Region {
    uint256[] header;
    uint8 dtype;
    uint256 itemsize;
    uint256 nbytes;
    uint256 nWords;
    uint256 depth;
}

/// @notice A decoded instruction (`fraud_vm.isa.Instr`). Operands are packed
///         `region << 128 | element` or `PAD`; `out` holds output element indices.
struct Instr {
    uint8 kind;
    uint256[] out;
    uint256[] a;
    uint256[] b;
    uint256[] c;
    int256[] imm;
}

/// @notice The registers of one step (`fraud_vm.isa.Regs`): int256 scalars and int64 lanes.
struct Regs {
    int256[4] s;
    int256[32] acc;
    int256[32] aux;
}

/// @notice The memory one step sees (`fraud_vm.memory.StepAccess` over a witness's proven words).
/// @custom:field regions The regions of the node's memory.
/// @custom:field addrs The witness's word addresses `region << 64 | index`, strictly ascending.
/// @custom:field values The words' current values (written in place by `LibVMMemory.write`).
/// @custom:field touched Whether the step read or wrote each word (`UnusedWord` otherwise).
/// @custom:field written Whether the step wrote any word (the post-root is then recomputed).
/// @custom:field hint Per region: the witness position of the word last found in it (a lookup
///         tries it and the next position before its binary search; lanes walk words in order).
///         Only a speed-up: any value, or an empty array, gives the same answers.
struct StepMemory {
    Region[] regions;
    uint256[] addrs;
    bytes32[] values;
    bool[] touched;
    bool written;
    uint256[] hint;
}
