# procseq: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= outputs/demo
# torch is pinned to the CPU build this machine carries; elsewhere any torch >= 2.4 works.
TORCH_PIN ?= torch==2.13.0

.PHONY: install demo test test-all app test-app test-browser clean

# $(call make_venv,FOLDER,EXTRAS): a virtualenv with the pinned torch and procseq[EXTRAS] (editable)
define make_venv
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install -q --upgrade pip
	$(1)/bin/pip install -q "$(TORCH_PIN)"
	$(1)/bin/pip install -q -e ".[$(2)]"
	touch $@
endef

$(BIN)/procseq: pyproject.toml
	$(call make_venv,$(VENV),test)

install: $(BIN)/procseq  ## create the virtualenv and install procseq

demo: install  ## generate a 9-frame sequence with the embedded model, then ReCraft its last frame back into a process
	$(BIN)/procseq generate "a painting of a red star on the left under a sunset sky above sand, with a sun" --domain painting --frames 9 --seed 0 --out $(OUT) --overwrite
	$(BIN)/procseq recraft $(OUT)/frame_08.png --domain painting --frames 9 --seed 0 --out $(OUT)-recraft --overwrite
	@echo "demo outputs: $(OUT)/ and $(OUT)-recraft/: grid.png, frame_XX.png, sequence.gif, sequence.json"

test: install  ## fast offline tests (CI)
	$(BIN)/python -m pytest -q

test-all: install  ## include slow tests
	$(BIN)/python -m pytest -q -m ""

# The web app (app/, `procseq app`) has its own virtualenv: gradio pins pillow < 13, the core does not.
APP_VENV ?= .venv-app
APP_BIN := $(APP_VENV)/bin
comma := ,

$(APP_BIN)/gradio: pyproject.toml
	$(call make_venv,$(APP_VENV),app$(comma)test)

app: $(APP_BIN)/gradio  ## start the web app on http://127.0.0.1:7860
	$(APP_BIN)/procseq app

test-app: $(APP_BIN)/gradio  ## the web app driven through gradio_client on loopback
	$(APP_BIN)/python -m pytest -q tests/app

test-browser: $(APP_BIN)/gradio  ## the web app in headless chromium (installs Debian's chromium); writes docs/app.png
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	PROCSEQ_SCREENSHOT=docs/app.png $(APP_BIN)/python -m pytest -q -m browser tests/app

clean:
	rm -rf $(VENV) $(APP_VENV) outputs .pytest_cache
