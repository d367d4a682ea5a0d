# rmteacher: `make demo` sets everything up and runs the main job; `make test` sets up and runs the test suite.
# Set-up happens once: the virtual environment is rebuilt only when pyproject.toml or constraints.txt change.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= runs/demo

.PHONY: demo test lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned, so pip takes the CPU build where there is no GPU instead of gigabytes of CUDA wheels
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# The main job until `rmteacher study` exists: rank the sandbox task's reward models as teachers for its policy
# (builds the sandbox once, ~35 s), then reproduce the theorems in the exact simulator. --resume reuses the
# cached samples and scores, so a second `make demo` is quick.
demo: $(STAMP)
	$(BIN)/rmteacher evaluate --out $(DEMO_OUT)/evaluate --resume
	$(BIN)/rmteacher theory all --out $(DEMO_OUT)/theory

lint: $(STAMP)
	$(BIN)/ruff check rmteacher tests benchmarks examples
	$(BIN)/ruff format --check rmteacher tests benchmarks examples
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q -n 2

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
