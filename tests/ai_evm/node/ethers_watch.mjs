// ethers v6 watching events with contract.on (eth_newFilter + eth_getFilterChanges, ethers'
// FilterIdEventSubscriber) while another client mines several blocks between two polls.
// Usage: node ethers_watch.mjs <rpcUrl> <pingAddress> <count> <pollingMs>
// Prints {"ready": true} once the filter is installed, then one JSON line with the events it got
// (or what it had after 60 s); exits non-zero on any failure.
import { ethers } from "ethers";

const [url, address, count, pollingMs] = process.argv.slice(2);
let polls = 0;
let installed;
const filterInstalled = new Promise((resolve) => { installed = resolve; });

class CountingProvider extends ethers.JsonRpcProvider {
  async send(method, params) {
    const result = await super.send(method, params);
    if (method === "eth_newFilter") installed();
    if (method === "eth_getFilterChanges") polls += 1;
    return result;
  }
}

const provider = new CountingProvider(url, undefined, { staticNetwork: true });
provider.pollingInterval = Number(pollingMs);
const contract = new ethers.Contract(address, ["event Ping(uint256 n)"], provider);
const events = [];
await contract.on("Ping", (n, payload) => {
  events.push({ n: n.toString(), block: payload.log.blockNumber });
});
await filterInstalled;
console.log(JSON.stringify({ ready: true }));

const deadline = Date.now() + 60_000;
while (events.length < Number(count) && Date.now() < deadline) {
  await new Promise((r) => setTimeout(r, 100));
}
await new Promise((r) => setTimeout(r, 2 * Number(pollingMs)));  // nothing more (no duplicates)
await contract.removeAllListeners();
provider.destroy();
console.log(JSON.stringify({ events, polls }));
