#!/usr/bin/env bash
# Build opml's native kernels (opml/native/*.c) into opml/native/libopml_native.so.
#
# Plain C with no Python headers, loaded through ctypes. Built for the baseline x86-64 (or whatever
# the host is); the AVX2, AVX-512, AVX-VNNI and AMX kernels are compiled with per-function target
# attributes and chosen at run time, so the library runs on any CPU of the architecture (AMX needs GCC 11 /
# clang 12 and 64-bit Linux; without them the library is built without that kernel and never offers it).
# Every kernel is exact integer arithmetic, so the results do not depend on the compiler, its flags or the
# instruction set; the engine also runs without the library (numpy path), bit for bit the same
# (tests/opml/test_native.py).
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${CC:-gcc}
out=opml/native/libopml_native.so
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# -fno-strict-aliasing: the GEMM reads int16 pairs as int32 broadcasts; -fwrapv: no signed-overflow UB
# OPML_CFLAGS: extra flags, e.g. -DOPML_NO_AMX (a library without the AMX kernel, as an older compiler builds)
# shellcheck disable=SC2086
"$CC" -O3 -std=c11 -pthread -fPIC -shared -fno-strict-aliasing -fwrapv -Wall -Wextra -Werror ${OPML_CFLAGS:-} \
    -o "$tmp" opml/native/*.c
mv -f "$tmp" "$out"
trap - EXIT
echo "opml native kernels: built $out"
