# The two commands that do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps so that a second `make test` does not reinstall; pyproject changes do.
$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

$(VENV)/.bench-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/logwarden demo
	@echo "Live service: $(BIN)/logwarden serve --model MODEL --store verdicts.db  (or on simulated traffic: $(BIN)/logwarden demo --serve, then open http://127.0.0.1:8080/)"

test: $(VENV)/.test-installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/pytest -q

lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(VENV)/.test-installed
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: $(VENV)/.bench-installed
	$(BIN)/python bench/parser_accuracy.py
	$(BIN)/python bench/make_logs.py
	$(BIN)/python bench/parse_speed.py
	$(BIN)/python bench/keys_hdfs.py
	$(BIN)/python bench/keys_hdfs100k.py
	$(BIN)/python bench/keys_simulated.py
	$(BIN)/python bench/keys_speed.py
	$(BIN)/python bench/params_simulated.py
	$(BIN)/python bench/params_openstack.py
	$(BIN)/python bench/params_speed.py
	$(BIN)/python bench/ray_scale.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache bench/out
