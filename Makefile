# FaXplainer. `make serve` and `make test` create the virtual environment when it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= configs/default.yaml
HOST   ?= 127.0.0.1
PORT   ?= 8050
export PYTHONUNBUFFERED := 1

.PHONY: venv serve serve-shared run test test-fast bench bench-full demo-data clean-runs

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $@

## Build the demo set if no data is configured, run the pipeline (progress in the terminal), serve.
serve: venv
	$(PY) -m pipeline run --config $(CONFIG)
	$(PY) -m app --config $(CONFIG) --host $(HOST) --port $(PORT)

## Shared lab server: Redis (loopback), Celery workers, gunicorn, HTTP Basic auth (see README).
## First: $(PY) -m app.access.auth add-user NAME
SHARED_CONFIG ?= configs/shared.yaml
serve-shared: venv
	scripts/serve_shared.sh --config $(SHARED_CONFIG) $(ARGS)

run: venv
	$(PY) -m pipeline run --config $(CONFIG) $(ARGS)

## The whole suite: unit, integration (real data sets when ../shared/data exists) and browser tests.
test: venv
	$(PY) -m pytest -q --durations=15 tests $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

## Every benchmark with its --quick settings (minutes on 2 cores); `make bench-full`: the full ones
## (run_100k alone takes ~15 min). One bench by hand: `.venv/bin/python bench/NAME.py --help`.
BENCH_ARGS ?= --quick
GPU_ARGS ?= --device cpu --quick  # bench/gpu.py is meant for a GPU; on a CPU, its quick run
bench: venv
	$(PY) bench/embed.py $(BENCH_ARGS)
	$(PY) bench/relevance.py $(BENCH_ARGS)
	$(PY) bench/app.py $(BENCH_ARGS)
	$(PY) bench/scale.py $(BENCH_ARGS)
	$(PY) bench/load.py $(BENCH_ARGS)
	$(PY) bench/grids.py $(BENCH_ARGS)
	$(PY) bench/run_100k.py $(BENCH_ARGS)
	$(PY) bench/standin_probe.py $(BENCH_ARGS)
	$(PY) bench/filefacts.py $(BENCH_ARGS)
	$(PY) bench/crossgen.py $(BENCH_ARGS)
	$(PY) bench/apply.py $(BENCH_ARGS)
	$(PY) bench/first_insight.py $(BENCH_ARGS)
	$(PY) bench/run_time.py $(BENCH_ARGS)
	$(PY) bench/fidelity.py $(BENCH_ARGS)
	$(PY) bench/atlas.py $(BENCH_ARGS)
	$(PY) bench/gpu.py $(GPU_ARGS)

bench-full:
	$(MAKE) bench BENCH_ARGS= GPU_ARGS=

demo-data: venv
	$(PY) -m pipeline demo-data --out data/demo

clean-runs:
	rm -rf runs
