# Quick start: `make demo` then `make test`. Both create .venv and install the project first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_CASE ?= build/demo-case
# test workers (pytest-xdist): 2 fits the 2-core machines the suite is measured on; TEST_JOBS=0 runs serially
TEST_JOBS ?= 2

.PHONY: install demo test lint bench samples clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_CASE)
	$(VENV)/bin/triage run samples/exchange-compromised/EXCH01-volume.zip samples/exchange-compromised/memory/EXCH01-memory.raw \
		--symbols samples/exchange-compromised/memory/symbols \
		--case $(DEMO_CASE) --examiner demo
	$(VENV)/bin/triage verify $(DEMO_CASE)
	@echo
	@echo "Demo case folder:  $(DEMO_CASE)"
	@echo "Findings data:     $(DEMO_CASE)/report/findings.parquet (csv, jsonl, xlsx, timesketch, stix alongside)"
	@$(PY) -m triage.report.summary $(DEMO_CASE)
	@echo "HTML report:       $(DEMO_CASE)/report/report.html"

# loadfile: a test file's module fixtures (built cases, volumes) are made once, on one worker; measured faster
# than per-test distribution, which builds them on both workers
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check triage collectors analyzers tests benchmarks samples
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/suite.py $(BENCH_ARGS)

samples: $(STAMP)
	$(PY) samples/build_samples.py

clean:
	rm -rf build .pytest_cache
