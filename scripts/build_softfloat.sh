#!/usr/bin/env bash
# Build and install the `softfloat` oracle (Berkeley SoftFloat 3d) from its PyPI sdist, with the two
# fixes DESIGN §3 requires: build the static library once, in order (its setup.py races `make clean`
# with `make`), and cast to (uint16_t) in the reciprocal(-sqrt) approximations (3d computes f32_sqrt
# wrong on 64-bit Linux without it; SoftFloat 3e has the cast).
set -euo pipefail
PY=${1:-.venv/bin/python}
if "$PY" -c 'import softfloat as s; assert s.convertF32ToDouble(s.f32_sqrt(s.convertDoubleToF32(4.0))) == 2.0' 2>/dev/null; then
  echo "softfloat: already installed and correct"; exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download --quiet --no-deps --no-binary :all: -d "$work" softfloat==0.1.4.1
tar -xzf "$work"/softfloat-0.1.4.1.tar.gz -C "$work"
src="$work/softfloat-0.1.4.1"
for f in s_approxRecipSqrt32_1.c s_approxRecip32_1.c; do
  sed -i 's/(uint_fast16_t)/(uint16_t)/g' "$src/SoftFloat-master/source/$f"
done
(cd "$src/SoftFloat-master/build/Linux-x86_64-GCC" && make clean >/dev/null && make -j2 >/dev/null)
# The library is built; stop setup.py from rebuilding it concurrently.
sed -i 's/^subprocess.Popen(\["make", "clean"\].*$//; s/^p=subprocess.Popen(\["make"\].*$/p=subprocess.Popen(["true"])/' "$src/setup.py"
"$PY" -m pip install --quiet --no-build-isolation "$src"
"$PY" -c 'import softfloat as s; assert s.convertF32ToDouble(s.f32_sqrt(s.convertDoubleToF32(4.0))) == 2.0, "f32_sqrt(4) != 2"; print("softfloat: f32_sqrt(4.0) == 2.0")'
