# Procestra: `make demo` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_WS ?= demo-workspace
PYTEST_WORKERS ?= 2

.PHONY: demo test bench explore crash-long sysdeps browser-deps venv clean lint

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

# System packages: Graphviz for diagrams, PostgreSQL for the database-source tests,
# Chromium and npm (bpmn-js) for the browser tests, strace for the tests that check commits
# reach the disk (tests/syscall_trace.py). Installed only when missing.
sysdeps:
	@missing=""; \
	command -v dot >/dev/null || missing="$$missing graphviz"; \
	command -v strace >/dev/null || missing="$$missing strace"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# bpmn-js for the browser tests, exactly as tests/browser/package-lock.json pins it (`npm ci`);
# run again only when the lockfile (or package.json) changes. The tests never install it themselves.
BROWSER_DIR := tests/browser
BROWSER_STAMP := $(BROWSER_DIR)/node_modules/.installed

browser-deps: $(BROWSER_STAMP)

$(BROWSER_STAMP): $(BROWSER_DIR)/package-lock.json $(BROWSER_DIR)/package.json | sysdeps
	cd $(BROWSER_DIR) && npm ci --no-audit --no-fund
	@touch $@

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
	$(BIN)/procestra -w $(DEMO_WS) model list
	@echo "--- scheduled notebook jobs: define a job, one scheduler pass, its history"
	$(BIN)/procestra -w $(DEMO_WS) schedule add daily-report notebooks/jobs/daily_report.ipynb \
		--cron "0 6 * * 1-5" --tz Europe/Amsterdam -p workspace=$(abspath $(DEMO_WS)) -p log=loan \
		--retries 2 --timeout 600 --start 2025-03-27T00:00:00Z
	$(BIN)/procestra -w $(DEMO_WS) scheduler tick --now 2025-03-31T04:00:30Z
	$(BIN)/procestra -w $(DEMO_WS) runs
	$(BIN)/procestra -w $(DEMO_WS) runs --json
	$(BIN)/procestra -w $(DEMO_WS) runs html
	@echo "--- a to-be process that runs: save the refined loan model, run cases, mine the runs"
	$(BIN)/python -c "from procestra import Workspace; from procestra.engine.examples import loan_to_be, write_scoring_notebook as w; \
		ws = Workspace('$(DEMO_WS)'); w(ws.path / 'notebooks' / 'score_application.ipynb'); loan_to_be().save(ws)"
	$(BIN)/procestra -w $(DEMO_WS) model validate loan-to-be
	$(BIN)/procestra -w $(DEMO_WS) start loan-to-be --data '{"applicant": "A-1", "amount": 4000}' --key APP-1
	$(BIN)/procestra -w $(DEMO_WS) start loan-to-be --data '{"applicant": "A-2", "amount": 25000}' --key APP-2
	$(BIN)/procestra -w $(DEMO_WS) worker --until-idle
	$(BIN)/procestra -w $(DEMO_WS) tasks
	$(BIN)/procestra -w $(DEMO_WS) cases
	@echo "--- wrote the process maps $(DEMO_WS)/loan-map.svg and $(DEMO_WS)/loan-map-performance.svg,"
	@echo "    the BPMN model $(DEMO_WS)/loan-asis.bpmn (opens in bpmn.io / Camunda Modeler) and its drawing $(DEMO_WS)/loan-asis.svg"

# ruff, mypy (strict on store/, ingest/, mining/), the import layers, and the layout rules
# import-linter cannot express (module size, depth, private names, one owner per table).
lint: $(STAMP)
	$(BIN)/ruff check toolkit tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	PROCESTRA_NO_PROGRESS=1 $(BIN)/python -m pytest -q -p no:randomly tests/test_layout.py tests/test_public_api.py

test: $(STAMP) sysdeps browser-deps lint
	PROCESTRA_NO_PROGRESS=1 $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q

bench: $(STAMP) sysdeps
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_mining.py
	$(BIN)/python benchmarks/bench_discover.py
	$(BIN)/python benchmarks/bench_conformance.py
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_explorer.py
	$(BIN)/python benchmarks/bench_schedule.py
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_engine.py --postgres
	$(BIN)/python benchmarks/bench_cli.py
	$(BIN)/python benchmarks/bench_large_model.py

# The engine's crash test with 100 worker kills instead of 50.
crash-long: $(STAMP)
	PROCESTRA_NO_PROGRESS=1 PROCESTRA_CRASH_KILLS=100 $(BIN)/python -m pytest tests/engine/test_engine_crash.py -q -s
	PROCESTRA_NO_PROGRESS=1 PROCESTRA_PG_CRASH_KILLS=50 $(BIN)/python -m pytest tests/engine/test_engine_postgres.py -k killed -q -s

# The explorer notebook as a web page (Voila), on the demo workspace.
explore: $(STAMP)
	cd notebooks && ../$(BIN)/voila 01_explore.ipynb --Voila.ip=127.0.0.1

clean:
	rm -rf $(VENV) $(DEMO_WS) .pytest_cache build *.egg-info toolkit/*.egg-info $(BROWSER_DIR)/node_modules
