// ethers v6 reaching the node's tool methods through provider.send, as ethers users do, over HTTP
// (JsonRpcProvider) or WebSocket (WebSocketProvider, for a ws:// URL): deploy DigitsClassifier, an
// inference transaction traced with debug_traceTransaction (callTracer), eth_getProof of the
// contract, and evm_snapshot / evm_mine / evm_revert around a second transaction.
// Usage: node ethers_tools.mjs <rpcUrl|wsUrl> <DigitsClassifier artifact.json> <modelAddress> <image0Hex> <image1Hex>
// Prints one JSON line with what it saw; exits non-zero on any failure.
import { readFileSync } from "node:fs";
import { ethers } from "ethers";

const [url, artifactPath, model, image0, image1] = process.argv.slice(2);
const artifact = JSON.parse(readFileSync(artifactPath, "utf8"));
const provider = url.startsWith("ws")
  ? new ethers.WebSocketProvider(url)
  : new ethers.JsonRpcProvider(url, undefined, { staticNetwork: true, polling: true, pollingInterval: 100 });
// dev account 1 (anvil's default mnemonic); NonceManager: see ethers_session.mjs
const sender = new ethers.NonceManager(
  new ethers.Wallet("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d", provider));

const factory = new ethers.ContractFactory(artifact.abi, artifact.bytecode, sender);
const contract = await factory.deploy(model);
await contract.waitForDeployment();
const address = await contract.getAddress();
const receipt = await (await contract.classify(image0)).wait();

const trace = await provider.send("debug_traceTransaction", [receipt.hash, { tracer: "callTracer" }]);
const head = await provider.send("eth_getBlockByNumber", ["latest", false]);
const proof = await provider.send("eth_getProof", [address, [ethers.toBeHex(0, 32), ethers.toBeHex(1, 32)], head.number]);

const number = async () => Number(await provider.send("eth_blockNumber", []));
const before = { block: await number(), lastPrediction: (await contract.lastPrediction()).toString() };
const snapshot = await provider.send("evm_snapshot", []);
const second = await (await contract.classify(image1)).wait();
await provider.send("evm_mine", []);
const during = { block: await number(), lastPrediction: (await contract.lastPrediction()).toString() };
const reverted = await provider.send("evm_revert", [snapshot]);
sender.reset(); // the reverted transaction's nonce is free again
const after = { block: await number(), lastPrediction: (await contract.lastPrediction()).toString(),
                secondTx: await provider.send("eth_getTransactionByHash", [second.hash]) };

console.log(JSON.stringify({
  address, sender: await sender.getAddress(), txHash: receipt.hash, status: receipt.status, trace, stateRoot: head.stateRoot, proofBlock: head.number,
  proof, snapshot, reverted, before, during, after, secondHash: second.hash,
  transport: provider.constructor.name,
}));
await provider.destroy();
process.exit(0);
