# A newcomer's two commands: `make run` (the app) and `make test` (everything CI checks).
# Both create .venv and install what they need; torch comes first, pinned, so pip never
# swaps in a multi-GB build when another package asks for torch.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
APP    := $(VENV)/.app-installed
DEV    := $(VENV)/.dev-installed

.PHONY: run test demo bench chromium clean

run: $(APP)
	$(BIN)/streamlit run main_app.py

test: $(DEV) chromium
	$(BIN)/python -m pytest

$(APP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(DEV): $(APP) tests/requirements.txt
	$(BIN)/pip install --quiet -r tests/requirements.txt
	touch $@

# The browser tests drive Debian's Chromium (never `playwright install`).
chromium:
	@test -x /usr/bin/chromium || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

clean:
	rm -rf $(VENV) .pytest_cache
