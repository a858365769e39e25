# Quickstart: `make demo` (install + run the demo), `make test` (install + run the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-dev lint bench clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/roadpulse demo $(ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

# pytest exits 5 when it collected no test; that is not a failure of the code under test.
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc

# The dashboard's browser tests drive Debian's chromium through Playwright (never a downloaded
# browser build). Install it (and a CJK font for the zh-CN labels) where we are root with apt;
# elsewhere say loudly that those tests will be skipped.
browser:
	@if [ -x /usr/bin/chromium ] && fc-list :lang=zh 2>/dev/null | grep -q .; then \
		echo "browser: /usr/bin/chromium"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei \
		&& echo "browser: installed /usr/bin/chromium"; \
	elif [ -x /usr/bin/chromium ]; then \
		echo "browser: /usr/bin/chromium (no CJK font: zh-CN labels show as boxes in screenshots)"; \
	else \
		echo "browser: NO CHROMIUM and cannot install it (needs root and apt): dashboard browser tests will be SKIPPED"; \
	fi

bench: install-dev
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
