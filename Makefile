# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/labctl: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,queue]'
	command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)  # the queue tests' Redis
	touch $@

demo: $(BIN)/labctl  ## the paper's overnight plating experiment on the simulated lab
	$(BIN)/labctl run configs/plating-overnight.yaml

test: $(BIN)/labctl  ## unit, device, plan and storage tests, and the layer contracts
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

bench: $(BIN)/labctl  ## performance figures, printed side by side
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m pytest -m benchmark -s tests/benchmarks

clean:
	rm -rf $(VENV) data
