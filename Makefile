# Quick start on a fresh machine (only Python 3.10+ and make needed; everything goes in .venv):
#   make demo   install, export the built-in shapes-SANA, generate demo.png
#   make test   install with dev extras, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.sana-edge-installed

.PHONY: install demo test test-slow bench clean

# Our own virtual environment: a system Python that is "externally managed" (PEP 668) refuses
# pip installs, and a venv keeps the project's pinned build stack out of everything else.
$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[export,dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/sana-edge export --force
	$(BIN)/sana-edge run "A big green triangle on the right, white background" -o demo.png --seed 0

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) -m benchmarks.latency

clean:
	rm -rf build demo.png $(VENV)
