# `make demo` and `make test` set up a local virtual environment on a fresh machine:
# torch first (the local CPU wheel, so pip never pulls CUDA builds), then the project.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,cluster]'   # cluster: the Dask back end is tested too
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pyrovae demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/svi_overhead.py

clean:
	rm -rf $(VENV) runs
