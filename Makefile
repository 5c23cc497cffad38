# procseq: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= outputs/demo
# torch is pinned to the CPU build this machine carries; elsewhere any torch >= 2.4 works.
TORCH_PIN ?= torch==2.13.0

.PHONY: install demo test test-all app test-app chromium wordnet test-browser app-screenshot clean

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
	@echo "demo outputs: $(OUT)/ and $(OUT)-recraft/: sequence.png (readable), grid.png, frame_XX.png, sequence.gif, sequence.json"

test: install  ## fast offline tests (CI)
	$(BIN)/python -m pytest -q

test-all: install  ## include slow tests
	$(BIN)/python -m pytest -q -m ""

# The web app (app/, `procseq app`) lives in the same virtualenv: `make app` after `make demo` adds only gradio (and
# its dependencies; gradio caps pillow below 13, the core needs only pillow >= 10, so pip settles on a 12.x).
$(BIN)/gradio: $(BIN)/procseq
	$(BIN)/pip install -q -e ".[app,test]"

app: $(BIN)/gradio  ## start the web app on http://127.0.0.1:7860
	$(BIN)/procseq app

test-app: $(BIN)/gradio  ## the web app driven through gradio_client on loopback
	$(BIN)/python -m pytest -q tests/app

# The browser test: Debian's chromium driven by playwright (never `playwright install`); screenshots go to
# $(SCREENSHOTS) (ignored by git). Only `make app-screenshot` rewrites the README's docs/app.png.
SCREENSHOTS ?= outputs/screenshots

$(BIN)/playwright: $(BIN)/gradio
	$(BIN)/pip install -q -e ".[app,browser,test]"

chromium:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

wordnet:  ## optional: WordNet 3.0 (Debian's wordnet-base) for the prompt parser's word meaning (tests skip without it)
	test -f /usr/share/wordnet/index.noun || (apt-get update -qq && apt-get install -y -qq --no-install-recommends wordnet-base)

test-browser: $(BIN)/playwright chromium  ## every tab of the app in headless chromium; screenshots in $(SCREENSHOTS)/
	PROCSEQ_SCREENSHOT_DIR=$(SCREENSHOTS) $(BIN)/python -m pytest -q -m browser tests/app

app-screenshot: test-browser  ## refresh docs/app.png (the README's picture of the app) from the browser test
	cp $(SCREENSHOTS)/text-to-sequence.png docs/app.png

clean:
	rm -rf $(VENV) outputs .pytest_cache
