"""Benchmark of the model store: address computation, hub throughput, Merkle proofs.

Prints, for a ~25 MB bundle:

- address computation (decode + fast address) in MB/s and seconds (target: under 1 s), against
  plain keccak256 over the same bytes and the reference ``bundle_address`` in the same run;
- hub throughput over loopback (target: at least 100 MB/s) against a plain file read, and a
  verified ``HubStore.get`` (download + verify);
- proof generation per word (after one ``BundleTree`` build) and verification per proof.

Usage: ``python scripts/bench/store.py [--mb 25] [--repeat 3]``. No assertions: read the numbers.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable

import requests
import sha3

from opml.bundle import decode_bundle
from opml.commitment import BundleTree, bundle_address, compute_address, verify
from opml.store import HubStore, LocalStore
from opml.store.testing import big_bundle, hub_process


def best(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def row(name: str, seconds: float, mb: float, ref: float | None = None, target: str = "") -> None:
    ratio = f"{seconds / ref:6.2f}x ref" if ref else " " * 10
    print(f"  {name:<38} {seconds * 1e3:9.1f} ms {mb / seconds:9.1f} MB/s  {ratio}  {target}")


def bench_address(data: bytes, repeat: int) -> None:
    mb = len(data) / 1e6
    print(f"address computation, bundle of {mb:.1f} MB")
    ref = best(lambda: sha3.keccak_256(data).digest(), repeat)
    row("reference: keccak256(bytes)", ref, mb)
    t_decode = best(lambda: decode_bundle(data), repeat)
    row("decode_bundle", t_decode, mb, ref)
    decoded = decode_bundle(data)
    row("compute_address (fast)", best(lambda: compute_address(decoded), repeat), mb, ref)
    t_total = best(lambda: compute_address(decode_bundle(data)), repeat)
    verdict = "OK" if t_total < 1.0 else "OVER TARGET"
    row("decode + compute_address", t_total, mb, ref, f"target < 1 s: {verdict}")
    row("reference bundle_address (opml.merkle)", best(lambda: bundle_address(decoded), 1), mb, ref)


def bench_hub(data: bytes, address: bytes, repeat: int) -> None:
    mb = len(data) / 1e6
    print(f"hub over loopback, bundle of {mb:.1f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)
        store.put(data)
        path = store.path(address)
        ref = best(lambda: path.read_bytes(), repeat)
        row("reference: plain file read", ref, mb)
        with hub_process(tmp) as url:
            session = requests.Session()
            model_url = f"{url}/models/0x{address.hex()}"
            session.head(model_url, timeout=60)  # first request: the hub verifies the file once

            def download() -> None:
                with session.get(model_url, stream=True, timeout=60) as r:
                    n = sum(len(c) for c in r.iter_content(1 << 20))
                assert n == len(data)

            t = best(download, repeat)
            verdict = "OK" if mb / t >= 100 else "UNDER TARGET"
            row("GET /models/<address> (raw bytes)", t, mb, ref, f"target >= 100 MB/s: {verdict}")
            client = HubStore(url)
            row("HubStore.get (download + verify)", best(lambda: client.get(address), repeat), mb, ref)


def bench_proofs(data: bytes, count: int) -> None:
    print("Merkle proofs")
    b = decode_bundle(data)
    t = time.perf_counter()
    tree = BundleTree(b)
    build = time.perf_counter() - t
    print(f"  {'BundleTree build (once per bundle)':<38} {build * 1e3:9.1f} ms")
    rng = random.Random(0)
    consts = [i for i, s in enumerate(b.tensors) if s.data]
    picks = []
    for _ in range(count):
        i = rng.choice(consts)
        picks.append((i, rng.randrange(-(-len(b.tensors[i].data or b"") // 32))))
    t = time.perf_counter()
    proofs = [tree.prove(i, w) for i, w in picks]
    per_proof = (time.perf_counter() - t) / count
    t = time.perf_counter()
    ok = all(verify(tree.address, p.tensor_index, p.word_index, p.word, p) for p in proofs)
    per_verify = (time.perf_counter() - t) / count
    depth = len(proofs[0].data_path) + len(proofs[0].tensor_path) + 2
    print(f"  {'proof generation per word':<38} {per_proof * 1e6:9.1f} us  ({count} words)")
    print(f"  {'verification per proof':<38} {per_verify * 1e6:9.1f} us  ({depth} levels, all ok: {ok})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=25.0, help="bundle size in MB")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (best is shown)")
    ap.add_argument("--proofs", type=int, default=2000, help="words to prove")
    args = ap.parse_args()
    b = big_bundle(int(args.mb * (1 << 20)))
    data = b.encoded
    bench_address(data, args.repeat)
    bench_hub(data, b.address, args.repeat)
    bench_proofs(data, args.proofs)


if __name__ == "__main__":
    main()
