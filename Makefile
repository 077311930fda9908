# The two newcomer commands (see README):  make run   and   make test
PY := .venv/bin/python
RUN_DIR ?= runs/default

.PHONY: setup setup-dev run test test-fast lint

setup:
	bash scripts/setup.sh

# setup + the test and lint tools
setup-dev:
	bash scripts/setup.sh dev

# train on built-in data -> export the spiking branch to NIR -> Lava hybrid inference -> report
run: setup
	bash scripts/main_job.sh $(RUN_DIR)

test: setup-dev
	$(PY) -m pytest -q; status=$$?; if [ $$status -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$status

# the fast tier (about 3 minutes on 2 cores): no Lava processes, no training loops (see tests/conftest.py)
test-fast: setup-dev
	$(PY) -m pytest -q -m "not lava and not slow and not signals"

lint: setup-dev
	.venv/bin/ruff check .
