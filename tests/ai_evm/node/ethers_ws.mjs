// ethers v6 over WebSocket: WebSocketProvider, a call, a send, contract.on (eth_subscribe "logs")
// while another client mines blocks. Usage: node ethers_ws.mjs <wsUrl> <pingAddress> <count>
// Prints {"ready": true} once subscribed, then one JSON line with what it saw; non-zero on failure.
import { ethers } from "ethers";

const [url, address, count] = process.argv.slice(2);
let subscribed;
const ready = new Promise((resolve) => { subscribed = resolve; });

class Watching extends ethers.WebSocketProvider {
  async send(method, params) {
    const result = await super.send(method, params);
    if (method === "eth_subscribe") subscribed();
    return result;
  }
}

const provider = new Watching(url);
const chainId = (await provider.getNetwork()).chainId.toString();
const wallet = new ethers.Wallet("0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a", provider);
const sent = await wallet.sendTransaction({ to: "0x" + "77".repeat(20), value: 1n });
const receipt = await sent.wait();
const contract = new ethers.Contract(address, ["event Ping(uint256 n)"], provider);
const events = [];
await contract.on("Ping", (n, payload) => { events.push({ n: n.toString(), block: payload.log.blockNumber }); });
await ready;
console.log(JSON.stringify({ ready: true }));
const deadline = Date.now() + 60_000;
while (events.length < Number(count) && Date.now() < deadline) {
  await new Promise((r) => setTimeout(r, 50));
}
await new Promise((r) => setTimeout(r, 500));
await contract.removeAllListeners();
await provider.destroy();
console.log(JSON.stringify({ chainId, status: receipt.status, events }));
