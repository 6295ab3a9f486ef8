// ethers v6 against an AI EVM node: deploy AIContract, send an inference transaction, read the
// Inference event with eth_getLogs (provider.getLogs / contract.queryFilter), call a failing
// inference. Usage: node ethers_session.mjs <rpcUrl> <artifact.json> <modelAddress> <inputHex>
// Prints one JSON line with what it saw; exits non-zero on any failure.
import { readFileSync } from "node:fs";
import { ethers } from "ethers";

const [url, artifactPath, model, inputHex] = process.argv.slice(2);
const artifact = JSON.parse(readFileSync(artifactPath, "utf8"));
const provider = new ethers.JsonRpcProvider(url, undefined, { staticNetwork: true, polling: true });
provider.pollingInterval = 100;
// dev account 1 (anvil's default mnemonic), signing locally: eth_sendRawTransaction
const wallet = new ethers.Wallet("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d", provider);
// ethers caches identical requests for 250 ms, so back-to-back sends on a fast automining node
// would reuse a stale "pending" nonce; NonceManager is ethers' own answer to that.
const sender = new ethers.NonceManager(wallet);

const network = await provider.getNetwork();
const factory = new ethers.ContractFactory(artifact.abi, artifact.bytecode, sender);
const contract = await factory.deploy();
await contract.waitForDeployment();
const address = await contract.getAddress();

const tx = await contract.inference(model, inputHex, 40);
const receipt = await tx.wait();
const logs = await provider.getLogs({ address, fromBlock: receipt.blockNumber, toBlock: "latest" });
const parsed = contract.interface.parseLog(logs[0]);
const events = await contract.queryFilter(contract.filters.Inference(), receipt.blockNumber);

// a JSON-RPC signer (eth_sendTransaction from a dev account)
const signer = await provider.getSigner(0);
const viaNode = await signer.sendTransaction({ to: wallet.address, value: 12345n });
const viaNodeReceipt = await viaNode.wait();

let failure = null;
try {
  await contract.inference.staticCall("0x" + "01".repeat(32), inputHex, 40);
} catch (e) {
  failure = { code: e.code, message: e.message, revert: e.revert?.name ?? null, args: e.revert?.args?.map(String) ?? null,
              data: e.data ?? null };
}

console.log(JSON.stringify({
  chainId: network.chainId.toString(),
  address,
  deployBlock: (await contract.deploymentTransaction().wait()).blockNumber,
  status: receipt.status,
  gasUsed: receipt.gasUsed.toString(),
  txHash: receipt.hash,
  logCount: logs.length,
  eventModel: parsed.args.model_address,
  eventOutput: parsed.args.output,
  queryFilterCount: events.length,
  signerStatus: viaNodeReceipt.status,
  signerFrom: viaNodeReceipt.from,
  failure,
}));
