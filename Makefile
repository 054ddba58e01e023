# A newcomer's two commands: `make run` (the app) and `make test` (everything CI checks).
# Both create .venv and install what they need; torch comes first, pinned, so pip never
# swaps in a multi-GB build when another package asks for torch.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
APP    := $(VENV)/.app-installed
DEV    := $(VENV)/.dev-installed

.PHONY: run test demo bench chromium fonts clean

run: $(APP)
	$(BIN)/streamlit run main_app.py

test: $(DEV) chromium fonts
	$(BIN)/python -m pytest

# Offline demo: synthetic shapes indexed with the committed tiny CLIP, in a store of its own.
# Try queries like "a red circle" or "a small blue square".
DEMO_ENV := EMBEDDER_MODEL=tests/fixtures/tiny-clip QDRANT_PATH=data/demo/qdrant \
            UPLOAD_DIR=data/demo/uploads IMAGE_DIRS=data/demo/images
demo: $(APP)
	$(BIN)/python -m embedder.evaluation.synthetic data/demo/images --per-class 8 --seed 1
	$(DEMO_ENV) $(BIN)/python -m embedder index data/demo/images
	$(DEMO_ENV) $(BIN)/streamlit run main_app.py

$(APP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(DEV): $(APP) tests/requirements.txt
	$(BIN)/pip install --quiet -r tests/requirements.txt
	touch $@

# Speed and memory (not tests): print tables, write bench/results/*.json; see BENCHMARKS.md.
bench: $(DEV)
	$(BIN)/python bench/index_throughput.py
	$(BIN)/python bench/search_latency.py
	$(BIN)/python bench/cli_in_use.py

# The browser tests drive Debian's Chromium (never `playwright install`).
chromium:
	@test -x /usr/bin/chromium || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

# The OCR tests and the text bench draw their pictures with Debian's fonts.
fonts:
	@test -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf -a -d /usr/share/fonts/truetype/liberation || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq fonts-dejavu-core fonts-liberation; }

clean:
	rm -rf $(VENV) .pytest_cache
