# The two newcomer commands (see README):  make run   and   make test
PY := .venv/bin/python
RUN_DIR ?= runs/default

.PHONY: setup run test lint

setup:
	bash scripts/setup.sh

# train on built-in data -> export the spiking branch to NIR -> Lava hybrid inference -> report
run: setup
	bash scripts/main_job.sh $(RUN_DIR)

test: setup
	$(PY) -m pytest -q; status=$$?; if [ $$status -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$status

lint: setup
	.venv/bin/ruff check .
