# Quick start: `make demo` (install, build the tiny model, export it, generate demo.png)
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
	sana-edge init-tiny build/tiny-sana --force
	sana-edge export build/tiny-sana -o build/tiny-sana-onnx --force
	sana-edge run "a red fox sitting in fresh snow" --model build/tiny-sana-onnx -o demo.png --seed 0 --height 512 --width 512

test: $(STAMP)
	$(PYTHON) -m pytest -q

test-slow: $(STAMP)
	$(PYTHON) -m pytest -q -m slow

bench: $(STAMP)
	$(PYTHON) -m benchmarks.dit_step_latency

clean:
	rm -rf build demo.png
