# Two commands for a fresh machine (see README): `make lab` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8888
# JupyterLab refuses to run as root without this flag (containers, CI machines).
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test install system-deps dev native labextension lint build clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs the project with its test tools; the wheel build compiles the labextension with jlpm.
install: $(BIN)/python
	$(BIN)/pip install --quiet ".[test]"

LABEXT_LINK := $(VENV)/share/jupyter/labextensions/@governed-kernel/labextension

# Editable install for development: Python changes apply on kernel/server restart. The installed
# labextension is replaced by a link to the build output, so `make labextension` (or
# `jlpm watch` in labextension/) plus a browser reload shows TypeScript changes.
dev: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	$(MAKE) --no-print-directory native
	rm -rf $(LABEXT_LINK)
	ln -s $(CURDIR)/server_ext/governed_server/labextension $(LABEXT_LINK)

# Compiles the C accelerators (hatch_build.py: the PAN scanner) in place, for the editable install;
# run it after editing a .c file (a stale build is not used: the pure-Python path runs instead).
native: $(BIN)/python
	$(BIN)/python hatch_build.py

labextension: $(BIN)/python
	cd labextension && PATH=$(CURDIR)/$(BIN):$$PATH jlpm install && PATH=$(CURDIR)/$(BIN):$$PATH jlpm build

# Installs the project and starts JupyterLab for the two-person demo (docs/ui.md): the demo notebook,
# the governed kernel as the default, the embedded SQLite store under the Jupyter data dir, named
# demo identities (ana: analyst, bob: approver and auditor) and one login URL printed per person.
lab: $(BIN)/python
	bash .ci/system-deps.sh node
	$(BIN)/pip install --quiet .
	$(MAKE) --no-print-directory demo

# The demo without reinstalling (e.g. after `make dev`). `jupyter governance demo --help` for options.
.PHONY: demo
demo:
	$(BIN)/jupyter governance demo --port $(PORT) --notebook-dir binder

# Installs everything the tests need, then runs the whole suite. PYTEST_ARGS narrows it, e.g.
# `make test PYTEST_ARGS="-m 'not browser'"`; a selection that collects nothing (pytest exit 5) is
# reported, not failed.
test: system-deps install
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests"; exit 0; fi; exit $$rc

# Chromium, PostgreSQL server binaries and Node.js (apt-get when run as root; else says what is missing).
system-deps:
	bash .ci/system-deps.sh

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

build: $(BIN)/python
	$(BIN)/pip install --quiet build
	$(BIN)/python -m build --wheel

clean:
	rm -rf build dist labextension/lib labextension/tsconfig.tsbuildinfo server_ext/governed_server/labextension
