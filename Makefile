# Two commands for a fresh machine (see README): `make lab` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8888

.PHONY: lab test install dev lint build clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs the project with its test tools; the wheel build compiles the labextension with jlpm.
install: $(BIN)/python
	$(BIN)/pip install --quiet ".[test]"

# Editable install for development: Python changes apply on kernel/server restart; run
# `cd labextension && ../$(BIN)/jlpm build` after TypeScript changes.
dev: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/jupyter labextension develop --overwrite .

lab: $(BIN)/python
	$(BIN)/pip install --quiet ".[lab]"
	$(BIN)/jupyter lab --ServerApp.port=$(PORT) --MappingKernelManager.default_kernel_name=governed-python \
		--ServerApp.root_dir=binder --LabApp.default_url=/lab/tree/demo.ipynb

test: install
	$(BIN)/python -m pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

build: $(BIN)/python
	$(BIN)/pip install --quiet build
	$(BIN)/python -m build --wheel

clean:
	rm -rf build dist labextension/lib labextension/tsconfig.tsbuildinfo server_ext/governed_server/labextension
