# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test sweep bench clean system-packages

# What the tests start besides Python: Debian packages, installed (as root) when missing.
# The dashboard's browser tests; the queue tests' Redis; the lab data server's PostgreSQL (its initdb
# and pg_ctl are under /usr/lib/postgresql/VERSION/bin, not on the PATH).
SYSTEM_PACKAGES = chromium redis-server postgresql

system-packages:
	@for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null || { [ $$p = postgresql ] && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } \
	  || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; } \
	  || echo "warning: could not install$$missing (run as root on Debian); the tests that need them are skipped"; fi

$(BIN)/labctl: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,queue]'
	touch $@

demo: $(BIN)/labctl  ## the paper's overnight plating experiment on the simulated lab
	$(BIN)/labctl run configs/plating-overnight.yaml

test: $(BIN)/labctl system-packages  ## the layer contracts, ruff, and the unit, device, plan, storage and browser tests
	$(BIN)/lint-imports
	$(BIN)/ruff check labctl devices plans tests
	$(BIN)/python -m pytest -n auto  # one pytest-xdist worker per core; tests/conftest.py starts the long tests first

sweep: $(BIN)/labctl  ## every plan at both ends of every allowed range, through check and the dry run
	$(BIN)/python -m pytest -m sweep tests/test_safety.py

bench: $(BIN)/labctl  ## performance figures, printed side by side
	$(BIN)/python -m pip install --quiet -e '.[test,queue,bench]'
	$(BIN)/python -m pytest -m benchmark -s tests/benchmarks

clean:
	rm -rf $(VENV) data
