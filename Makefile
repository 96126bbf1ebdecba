# abrflow: `make demo` and `make test` each build the environment first, so a fresh clone needs one command.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# A CPU build of torch; GPU users install their own torch into .venv first and run `make venv TORCH_SPEC=`.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.abrflow-installed
# Two workers, one file per worker at a time (module fixtures such as a trained checkpoint are built once).
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: venv test fuzz demo lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"; fi
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The property-based fault tests with 1000 generated cases per target (`make test` runs 30, derandomized);
# cases run and escapes per target are printed at the end and written to .hypothesis/fuzz_counts.json.
FUZZ_TESTS ?= tests/test_fuzz_readers.py tests/test_fuzz_config.py tests/test_fuzz_inference.py tests/test_fuzz_evaluate.py
fuzz: venv
	mkdir -p .hypothesis
	HYPOTHESIS_PROFILE=fuzz ABRFLOW_FUZZ_COUNTS=.hypothesis/fuzz_counts.json $(BIN)/python -m pytest $(PYTEST_ARGS) $(FUZZ_TESTS)

demo: venv
	$(BIN)/python run_training_demo.py

lint: venv
	$(BIN)/ruff check src tests benchmarks experiments

bench: venv
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
