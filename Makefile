# Everything runs from the project's own virtual environment in .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup browser demo test test-fast lint format bench clean

setup: $(STAMP)

# torch and torchvision are pinned by constraints.txt (the tested versions).
$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,ray]'
	touch $(STAMP)

demo: setup
	$(BIN)/xsearch demo

# tests/test_web.py drives Debian's chromium headless (Playwright never downloads a browser).
# Installed here when missing and running as root (CI); elsewhere that test skips with a reason.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }; \
		else \
			echo "chromium is not installed (apt-get install chromium): the browser test will skip"; \
		fi; \
	fi

test: setup browser
	$(BIN)/pytest

# The edit-test loop: everything but the tests marked slow (fault injection, browser, Ray,
# benchmarks, whole-process runs of the command line).
test-fast: setup
	$(BIN)/pytest -m "not slow" -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python benchmarks/embed_speed.py --out benchmarks/results/embed_speed_cpu.json
	$(BIN)/python benchmarks/ingest_speed.py --out benchmarks/results/ingest_speed.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
