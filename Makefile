VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test lint bench bench-all demo demo-l2 demo-bridge clean contracts contracts-check forge-test

NPM ?= npm
NODE ?= node
SOLIDITY := $(shell find contracts -name '*.sol' -not -path 'contracts/build/*' 2>/dev/null)

install: $(VENV)/.installed node_modules/.installed contracts/build/.stamp opml/native/libopml_native.so

# opml's exact native kernels (C, loaded through ctypes; the engine runs without them, bit for bit the same)
opml/native/libopml_native.so: scripts/build_native.sh $(wildcard opml/native/*.c)
	bash scripts/build_native.sh

# npm toolchain (solc-js, anvil, cast, ethers): reinstalled only when the lock file changes.
node_modules/.installed: package.json package-lock.json
	CI=true $(NPM) ci --no-audit --no-fund
	touch $@

# Contract artifacts: deterministic, so rebuilding them is safe; the test suite checks them with --check.
contracts/build/.stamp: node_modules/.installed scripts/build_contracts.mjs $(SOLIDITY)
	$(NODE) scripts/build_contracts.mjs
	touch $@

$(VENV)/.installed: setup.cfg pyproject.toml scripts/build_softfloat.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[dev]'
	bash scripts/build_softfloat.sh $(PY)
	touch $@

test: install
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check opml fraud_vm ai_evm scripts tests models
	$(VENV)/bin/mypy

bench: install
	$(PY) scripts/bench/engine.py

# Every benchmark (each prints ratios against a reference measured in the same run).
bench-all: install
	$(PY) scripts/bench/engine.py
	$(PY) scripts/bench/gas_calibration.py
	$(PY) scripts/bench/node.py
	$(PY) scripts/bench/dispute.py
	$(PY) scripts/bench/store.py
	$(PY) scripts/bench/rollup.py

demo: install
	$(PY) scripts/rollup_demo.py
	$(PY) scripts/bridge_demo.py

# Only the bridge round trip (deposit L1 -> L2, withdraw L2 -> L1) on a fresh devnet.
demo-bridge: install
	$(PY) scripts/bridge_demo.py

# The L2-only demo (a single node with the example models; no L1).
demo-l2: install
	$(PY) scripts/demo.py

contracts: node_modules/.installed
	$(NODE) scripts/build_contracts.mjs
	touch contracts/build/.stamp

contracts-check: node_modules/.installed
	$(NODE) scripts/build_contracts.mjs --check

# The dispute game's forge suite alone (`make test` runs it too, through tests/contracts/test_forge.py);
# offline, compiled by solc-js through scripts/solc_shim.mjs (foundry.toml). Runs the native binary npm
# installed for this platform: the node_modules/.bin/forge wrapper exits 0 even when a test fails.
forge-test: node_modules/.installed
	@forge=$$(ls node_modules/@foundry-rs/forge-*/bin/forge 2>/dev/null | head -n 1); \
	test -x "$$forge" || { echo "forge-test: no native forge under node_modules/@foundry-rs/forge-*/bin (make install)" >&2; exit 1; }; \
	echo "$$forge test --offline -vv"; "$$forge" test --offline -vv

clean:
	rm -rf $(VENV) build *.egg-info node_modules
