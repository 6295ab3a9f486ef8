// ethers v6 reading a deposit transaction (type 0x7e) from an AI EVM node: provider.getTransaction,
// getTransactionReceipt and getBlock with prefetched transactions. Usage: node ethers_deposit.mjs <rpcUrl> <txHash>
// Prints one JSON line with what it saw; exits non-zero on any failure.
import { ethers } from "ethers";

const [url, txHash] = process.argv.slice(2);
const provider = new ethers.JsonRpcProvider(url, undefined, { staticNetwork: true });
const tx = await provider.getTransaction(txHash);
const receipt = await provider.getTransactionReceipt(txHash);
const block = await provider.getBlock(receipt.blockNumber, true);
const inBlock = block.prefetchedTransactions.find((t) => t.hash === txHash);
console.log(JSON.stringify({
  type: tx.type, from: tx.from, to: tx.to, value: tx.value.toString(), gasLimit: tx.gasLimit.toString(),
  data: tx.data, blockNumber: tx.blockNumber, index: tx.index,
  status: receipt.status, gasUsed: receipt.gasUsed.toString(), receiptType: receipt.type,
  inBlock: inBlock !== undefined && inBlock.from === tx.from,
}));
