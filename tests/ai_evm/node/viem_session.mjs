// viem against an AI EVM node (started with --dev-methods): deploy DigitsClassifier, call predict
// (eth_call running the inference precompile), send classify transactions, watch Classified events
// with watchContractEvent over HTTP (eth_newFilter + eth_getFilterChanges polling, no fromBlock)
// and over a webSocket transport (eth_subscribe "logs"), trace with debug_traceTransaction through
// client.request, eth_getProof through getProof, snapshot/mine/revert through a test client in
// anvil mode, and multicall through the Multicall3 predeploy.
// Usage: node viem_session.mjs <httpUrl> <wsUrl> <artifact.json> <modelAddress> <imagesJson> <pollingMs>
// Prints one JSON line with what it saw (bigints as decimal strings); exits non-zero on any failure.
import { readFileSync } from "node:fs";
import {
  createPublicClient, createTestClient, createWalletClient, defineChain, http, webSocket,
  numberToHex, parseAbi,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";

const [url, wsUrl, artifactPath, model, imagesJson, pollingMs] = process.argv.slice(2);
const artifact = JSON.parse(readFileSync(artifactPath, "utf8"));
const abi = artifact.abi;
const images = JSON.parse(imagesJson);
const WATCHED = images.length - 2; // images[1..WATCHED] are sent while both watchers run

const chain = defineChain({
  id: 31337,
  name: "AI EVM devnet",
  nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [url], webSocket: [wsUrl] } },
  // the usual address; viem's multicall() reads it from the chain
  contracts: { multicall3: { address: "0xcA11bde05977b3631167028862bE2a173976CA11", blockCreated: 0 } },
});

// Count what the HTTP watcher asks: onFetchRequest sees every request body of this transport.
const calls = {};
const counted = http(url, {
  onFetchRequest: async (request) => {
    const body = await request.clone().json();
    for (const r of Array.isArray(body) ? body : [body]) calls[r.method] = (calls[r.method] ?? 0) + 1;
  },
});
const client = createPublicClient({ chain, transport: http(url), pollingInterval: 50 });
const watcher = createPublicClient({ chain, transport: counted });
const wsClient = createPublicClient({ chain, transport: webSocket(wsUrl) });
// dev account 1 (anvil's default mnemonic), signing locally: eth_sendRawTransaction
const account = privateKeyToAccount("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d");
const wallet = createWalletClient({ chain, transport: http(url), account });
const testClient = createTestClient({ chain, mode: "anvil", transport: http(url) });
const jsonify = (x) => JSON.parse(JSON.stringify(x, (_, v) => (typeof v === "bigint" ? v.toString() : v)));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(predicate, ms) {
  const deadline = Date.now() + ms;
  while (!predicate() && Date.now() < deadline) await sleep(50);
  return predicate();
}

const out = { chainId: await client.getChainId() };

// deploy
const deployHash = await wallet.deployContract({ abi, bytecode: artifact.bytecode, args: [model] });
const deployed = await client.waitForTransactionReceipt({ hash: deployHash });
const address = deployed.contractAddress;
out.deploy = { address, status: deployed.status, block: Number(deployed.blockNumber) };

// call: eth_call runs the inference
out.predict = await Promise.all(images.map((image) => client.readContract({ address, abi, functionName: "predict", args: [image] })));

// send: the first classify transaction
const firstHash = await wallet.writeContract({ address, abi, functionName: "classify", args: [images[0]] });
const first = await client.waitForTransactionReceipt({ hash: firstHash });
out.send = { hash: firstHash, status: first.status, block: Number(first.blockNumber), gasUsed: first.gasUsed,
             lastPrediction: await client.readContract({ address, abi, functionName: "lastPrediction" }) };

// watch: one watcher polling a filter over HTTP, one subscription over WebSocket
const httpBatches = [];
const wsBatches = [];
const errors = [];
const record = (batches) => (logs) => batches.push(logs.map((l) => ({ digit: l.args.digit, block: Number(l.blockNumber), tx: l.transactionHash, caller: l.args.caller })));
const unwatchHttp = watcher.watchContractEvent({ address, abi, eventName: "Classified", pollingInterval: Number(pollingMs),
                                                 onLogs: record(httpBatches), onError: (e) => errors.push(String(e)) });
const unwatchWs = wsClient.watchContractEvent({ address, abi, eventName: "Classified",
                                                onLogs: record(wsBatches), onError: (e) => errors.push(String(e)) });
if (!(await until(() => calls.eth_newFilter === 1, 30_000))) throw new Error("the HTTP watcher installed no filter");
// The subscription is installed asynchronously: repeat a marker transaction until the socket has
// delivered one (each marker is a block of its own; the HTTP watcher sees them all too).
const markers = [];
while (wsBatches.length === 0 && markers.length < 20) {
  const h = await wallet.writeContract({ address, abi, functionName: "classify", args: [images[0]] });
  await client.waitForTransactionReceipt({ hash: h });
  markers.push(h);
  await until(() => wsBatches.length > 0, 500);
}
const flat = (batches) => batches.flat();
// wait for the HTTP watcher to catch up with the markers, then send WATCHED transactions at once,
// one block each (automine), all within one polling interval of the HTTP watcher
await until(() => flat(httpBatches).length >= markers.length, 60_000);
const pollsBefore = calls.eth_getFilterChanges ?? 0;
let nonce = await client.getTransactionCount({ address: account.address, blockTag: "pending" });
const watchedHashes = [];
for (const image of images.slice(1, 1 + WATCHED)) {
  watchedHashes.push(await wallet.writeContract({ address, abi, functionName: "classify", args: [image], nonce, gas: 3_000_000n }));
  nonce += 1;
}
const watchedReceipts = await Promise.all(watchedHashes.map((hash) => client.waitForTransactionReceipt({ hash })));
const want = markers.length + WATCHED;
await until(() => flat(httpBatches).length >= want && flat(wsBatches).length >= want, 20_000);
await sleep(2 * Number(pollingMs)); // nothing more arrives (no duplicates)
unwatchHttp();
unwatchWs();
out.watch = {
  markers, watched: watchedHashes, watchedBlocks: watchedReceipts.map((r) => Number(r.blockNumber)),
  pollsWhileSending: (calls.eth_getFilterChanges ?? 0) - pollsBefore,
  http: httpBatches, ws: wsBatches, errors, calls,
};

// trace: the call tracer shows the 0xa1 frame with the model, input, output and inference gas
const traceHash = watchedHashes[0];
out.trace = {
  hash: traceHash,
  callTracer: await client.request({ method: "debug_traceTransaction", params: [traceHash, { tracer: "callTracer" }] }),
  structLogCount: (await client.request({ method: "debug_traceTransaction", params: [traceHash, {}] })).structLogs.length,
};

// proof: the classifier's account and its first storage slots at the head
const head = await client.getBlock();
const slots = [0, 1, 2, 3].map((i) => numberToHex(i, { size: 32 }));
const proof = await client.getProof({ address, storageKeys: slots, blockNumber: head.number });
out.proof = { block: Number(head.number), stateRoot: head.stateRoot, proof,
              storage: await Promise.all(slots.map((slot) => client.getStorageAt({ address, slot, blockNumber: head.number }))) };

// snapshot / mine / send / revert with the anvil-mode test client
const before = { block: await client.getBlockNumber({ cacheTime: 0 }),
                 lastPrediction: await client.readContract({ address, abi, functionName: "lastPrediction" }) };
const snapshot = await testClient.snapshot();
await testClient.mine({ blocks: 3 });
const other = images.findIndex((_, i) => out.predict[i] !== before.lastPrediction);
const changedHash = await wallet.writeContract({ address, abi, functionName: "classify", args: [images[other]] });
await client.waitForTransactionReceipt({ hash: changedHash });
await testClient.setBalance({ address: "0x000000000000000000000000000000000000dEaD", value: 10n ** 18n });
const during = { block: await client.getBlockNumber({ cacheTime: 0 }),
                 lastPrediction: await client.readContract({ address, abi, functionName: "lastPrediction" }),
                 deadBalance: await client.getBalance({ address: "0x000000000000000000000000000000000000dEaD" }) };
await testClient.revert({ id: snapshot });
const after = { block: await client.getBlockNumber({ cacheTime: 0 }),
                lastPrediction: await client.readContract({ address, abi, functionName: "lastPrediction" }),
                deadBalance: await client.getBalance({ address: "0x000000000000000000000000000000000000dEaD" }),
                changedTx: await client.getTransactionReceipt({ hash: changedHash }).then(() => "found", (e) => e.name) };
out.snapshot = { id: snapshot, before, during, after, changedHash };

// multicall: aggregate3 on the predeploy, batching predictions, a failing call and a balance
const multicall3 = parseAbi(["function getEthBalance(address) view returns (uint256)"]);
const results = await client.multicall({
  contracts: [
    ...images.map((image) => ({ address, abi, functionName: "predict", args: [image] })),
    { address, abi, functionName: "predict", args: ["0x01"] }, // wrong length: InvalidImageLength
    { address: chain.contracts.multicall3.address, abi: multicall3, functionName: "getEthBalance", args: [account.address] },
  ],
});
out.multicall = { results: results.map((r) => ({ status: r.status, result: r.result, error: r.error?.name,
                                                 errorName: r.error?.cause?.data?.errorName ?? r.error?.data?.errorName })),
                  balance: await client.getBalance({ address: account.address }) };

console.log(JSON.stringify(jsonify(out)));
process.exit(0);
