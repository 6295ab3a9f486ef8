VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test lint bench demo clean

install: $(VENV)/.installed

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

demo: install
	$(PY) scripts/demo.py

clean:
	rm -rf $(VENV) build *.egg-info
