# Procestra: `make demo` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_WS ?= demo-workspace
PYTEST_WORKERS ?= 2

.PHONY: demo test bench explore sysdeps venv clean lint

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

# System packages: Graphviz for diagrams, PostgreSQL for the database-source tests,
# Chromium and npm (bpmn-js) for the browser tests. Installed only when missing.
sysdeps:
	@missing=""; \
	command -v dot >/dev/null || missing="$$missing graphviz"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: $(STAMP) sysdeps
	@rm -rf $(DEMO_WS)
	$(BIN)/procestra -w $(DEMO_WS) init
	$(BIN)/procestra generate --events 200000 --seed 7 --out $(DEMO_WS)/tmp/loan-200k.parquet
	$(BIN)/procestra -w $(DEMO_WS) ingest event_logs/loan-sample.csv --log loan \
		--case-attribute amount --case-attribute channel --timezone Europe/Amsterdam
	$(BIN)/procestra -w $(DEMO_WS) ingest $(DEMO_WS)/tmp/loan-200k.parquet --log loan-200k
	@echo "--- loading the same file again is a no-op:"
	$(BIN)/procestra -w $(DEMO_WS) ingest event_logs/loan-sample.csv --log loan \
		--case-attribute amount --case-attribute channel --timezone Europe/Amsterdam
	$(BIN)/procestra -w $(DEMO_WS) logs
	$(BIN)/procestra -w $(DEMO_WS) info loan
	$(BIN)/procestra -w $(DEMO_WS) info loan --json
	$(BIN)/procestra -w $(DEMO_WS) export loan --to $(DEMO_WS)/loan.xes.gz
	@echo "--- mining: variants, process map, discovered model, conformance"
	$(BIN)/procestra -w $(DEMO_WS) variants loan --top 5
	$(BIN)/procestra -w $(DEMO_WS) dfg loan --paths 0.8 --out $(DEMO_WS)/loan-map.svg
	$(BIN)/procestra -w $(DEMO_WS) dfg loan --metric performance --out $(DEMO_WS)/loan-map-performance.svg
	$(BIN)/procestra -w $(DEMO_WS) discover loan --miner inductive --noise 0.2 \
		--out $(DEMO_WS)/loan-asis.bpmn --save loan-asis
	$(BIN)/procestra -w $(DEMO_WS) discover loan --miner inductive --noise 0.2 --out $(DEMO_WS)/loan-asis.svg
	$(BIN)/procestra -w $(DEMO_WS) conform loan loan-asis
	$(BIN)/procestra -w $(DEMO_WS) models list
	@echo "--- wrote the process maps $(DEMO_WS)/loan-map.svg and $(DEMO_WS)/loan-map-performance.svg,"
	@echo "    the BPMN model $(DEMO_WS)/loan-asis.bpmn (opens in bpmn.io / Camunda Modeler) and its drawing $(DEMO_WS)/loan-asis.svg"

test: $(STAMP) sysdeps
	PROCESTRA_NO_PROGRESS=1 $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q

bench: $(STAMP) sysdeps
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_mining.py
	$(BIN)/python benchmarks/bench_discover.py
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_explorer.py

# The explorer notebook as a web page (Voila), on the demo workspace.
explore: $(STAMP)
	cd notebooks && ../$(BIN)/voila 01_explore.ipynb --Voila.ip=127.0.0.1

clean:
	rm -rf $(VENV) $(DEMO_WS) .pytest_cache build *.egg-info toolkit/*.egg-info
