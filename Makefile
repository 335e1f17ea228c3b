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

# What the installed project is built from. A change to any of these files (or a file added or
# removed) reinstalls it; nothing else does, so `make test` goes straight to the tests when only the
# tests changed. After `make dev` (an editable install: sources are used in place) only the build
# definition counts.
EDITABLE := $(wildcard $(VENV)/.editable)
BUILD_INPUTS := pyproject.toml hatch_build.py
SOURCE_INPUTS := $(shell find kernel server_ext/governed_server policies jupyter-config labextension/src \
	labextension/style -type f -not -path '*/__pycache__/*' -not -path 'server_ext/governed_server/labextension/*' \
	-not -name '*.so' -not -name '*.py[co]' 2>/dev/null | LC_ALL=C sort) \
	labextension/package.json labextension/yarn.lock labextension/tsconfig.json
INSTALL_INPUTS := $(strip $(BUILD_INPUTS) $(if $(EDITABLE),,$(SOURCE_INPUTS)))
# The list itself is an input (rewritten only when it changes), so that a removed file counts too.
INPUT_LIST := $(VENV)/.install-inputs
$(shell mkdir -p $(VENV) && (echo '$(INSTALL_INPUTS)' | cmp -s - $(INPUT_LIST) || echo '$(INSTALL_INPUTS)' > $(INPUT_LIST)))

# One stamp per extra: `test` (the suite's tools) and `demo` (what the demo notebook imports).
$(VENV)/.installed-%: $(BIN)/python $(INSTALL_INPUTS) $(INPUT_LIST)
	$(BIN)/pip install --quiet $(if $(EDITABLE),-e ,)".[$*]"
	@touch $@

# Installs the project with its test tools; the wheel build compiles the labextension with jlpm.
install: $(VENV)/.installed-test

LABEXT_LINK := $(VENV)/share/jupyter/labextensions/@governed-kernel/labextension

# Editable install for development: Python changes apply on kernel/server restart. The installed
# labextension is replaced by a link to the build output, so `make labextension` (or
# `jlpm watch` in labextension/) plus a browser reload shows TypeScript changes.
dev: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test,demo]"
	@echo '$(strip $(BUILD_INPUTS))' > $(INPUT_LIST)
	@touch $(VENV)/.editable $(VENV)/.installed-test $(VENV)/.installed-demo
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
# Node.js is required; bubblewrap (the kernel jail, docs/jail.md) is installed when it can be (as root
# with apt); without it the demo runs its kernels unjailed, risk accepted, and its banner says so.
lab: $(BIN)/python
	bash .ci/system-deps.sh lab
	$(MAKE) --no-print-directory $(VENV)/.installed-demo
	$(MAKE) --no-print-directory demo

# The demo without reinstalling (e.g. after `make dev`). `jupyter governance demo --help` for options.
.PHONY: demo
demo:
	$(BIN)/jupyter governance demo --port $(PORT)

# Installs everything the tests need, then runs the whole suite. PYTEST_ARGS narrows it, e.g.
# `make test PYTEST_ARGS="-m 'not browser'"`; a selection that collects nothing (pytest exit 5) is
# reported, not failed.
test: system-deps install hub-python
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests"; exit 0; fi; exit $$rc

# The JupyterHub profile's Python (every OS user can run it) and configurable-http-proxy; as root
# only (the profile starts processes as other users; its tests fail, with this hint, otherwise).
.PHONY: hub-python hub
hub-python:
	@if [ "$$(id -u)" -eq 0 ]; then bash .ci/hub-python.sh >/dev/null; \
	else echo "make: not root: the JupyterHub profile (tests/hub) cannot run here"; fi

# The team profile on this machine (as root, e.g. in a container): JupyterHub with
# configurable-http-proxy, the governance service as its own OS user on PostgreSQL, demo OS users
# (docs/deploy-jupyterhub.md); prints how each person logs in. Ctrl-C stops it.
hub: system-deps install hub-python
	$(BIN)/python tests/hubstack.py

# Chromium, PostgreSQL server binaries, Node.js and bubblewrap (apt-get when run as root; else says
# what is missing).
system-deps:
	bash .ci/system-deps.sh

# On a fresh clone this first installs the project with its test extra (which pins the linters).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

build: $(BIN)/python
	$(BIN)/pip install --quiet build
	$(BIN)/python -m build --wheel

clean:
	rm -f $(VENV)/.editable $(VENV)/.installed-* $(VENV)/.install-inputs
	rm -rf build dist labextension/lib labextension/tsconfig.tsbuildinfo server_ext/governed_server/labextension
