#!/usr/bin/env bash
# Build opml's native kernels (opml/native/*.c) into opml/native/libopml_native.so.
#
# Plain C with no Python headers, loaded through ctypes. Built for the baseline x86-64 (or whatever
# the host is); the AVX2 kernels are compiled with per-function target attributes and chosen at run
# time, so the library runs on any CPU of the architecture. Every kernel is exact integer arithmetic,
# so the results do not depend on the compiler, its flags or the instruction set; the engine also runs
# without the library (numpy path), bit for bit the same (tests/opml/test_native.py).
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${CC:-gcc}
out=opml/native/libopml_native.so
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# -fno-strict-aliasing: the GEMM reads int16 pairs as int32 broadcasts; -fwrapv: no signed-overflow UB
"$CC" -O3 -std=c11 -pthread -fPIC -shared -fno-strict-aliasing -fwrapv -Wall -Wextra -Werror -o "$tmp" opml/native/*.c
mv -f "$tmp" "$out"
trap - EXIT
echo "opml native kernels: built $out"
