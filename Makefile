# Quick start: `make demo` (install, export the built-in shapes-SANA, generate demo.png)
#              `make test` (install with dev extras, run the test suite)
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
STAMP := build/.installed

.PHONY: install demo test test-slow bench clean

$(STAMP): pyproject.toml
	$(PIP) install -q -e '.[export,dev]'
	@mkdir -p build && touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	sana-edge export --force
	sana-edge run "a large green triangle on the right on a white background" -o demo.png --seed 0

test: $(STAMP)
	$(PYTHON) -m pytest -q

test-slow: $(STAMP)
	$(PYTHON) -m pytest -q -m slow

bench: $(STAMP)
	$(PYTHON) -m benchmarks.latency

clean:
	rm -rf build demo.png
