# Entry points that work on a fresh machine: `make demo`, `make test` and `make lab`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lab lint bench clean

$(STAMP): pyproject.toml wallaroo_nb/engine/_timer.c
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	bash .ci/install-kafka-broker.sh
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/wallaroo-nb demo --workers 2

# JupyterLab on notebooks/ with the wallaroo_nb kernel spec installed into .venv; prints
# its URL (no browser opens without a display). Ctrl-C stops it and its kernels.
lab: $(STAMP)
	$(BIN)/wallaroo-nb lab $(LAB_ARGS)

test: $(STAMP)
	@if [ -f .ci/install-browser.sh ]; then bash .ci/install-browser.sh; fi
	$(BIN)/ruff check wallaroo_nb tests bench notebooks examples
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) build *.egg-info
