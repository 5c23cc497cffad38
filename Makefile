# procseq: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= outputs/demo
# torch is pinned to the CPU build this machine carries; elsewhere any torch >= 2.4 works.
TORCH_PIN ?= torch==2.13.0

.PHONY: install demo test test-all clean

$(BIN)/procseq: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(BIN)/procseq  ## create the virtualenv and install procseq

demo: install  ## generate a 9-frame sequence with the embedded model, then ReCraft its last frame back into a process
	$(BIN)/procseq generate "a painting of a red star on the left under a sunset sky above sand, with a sun" --domain painting --frames 9 --seed 0 --out $(OUT) --overwrite
	$(BIN)/procseq recraft $(OUT)/frame_08.png --domain painting --frames 9 --seed 0 --out $(OUT)-recraft --overwrite
	@echo "demo outputs: $(OUT)/ and $(OUT)-recraft/: grid.png, frame_XX.png, sequence.gif, sequence.json"

test: install  ## fast offline tests (CI)
	$(BIN)/python -m pytest -q

test-all: install  ## include slow tests
	$(BIN)/python -m pytest -q -m ""

clean:
	rm -rf $(VENV) outputs .pytest_cache
