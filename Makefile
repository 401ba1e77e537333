# Everything runs from the project's own virtual environment in .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all lint format bench clean

setup: $(STAMP)

# torch and torchvision are pinned by constraints.txt (the tested versions).
$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/xsearch demo

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python benchmarks/embed_speed.py --out benchmarks/results/embed_speed_cpu.json
	$(BIN)/python benchmarks/ingest_speed.py --out benchmarks/results/ingest_speed.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
