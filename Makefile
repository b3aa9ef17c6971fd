# cafe: `make run` installs and serves the app on SQLite; `make test` installs and runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
export CAFE_INSTANCE_DIR ?= $(CURDIR)/instance

.PHONY: run test install install-test db-upgrade browser-deps browser-deps-chromium bench-seating bench-clustering bench-load clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"

db-upgrade: install
	$(BIN)/flask --app wsgi db upgrade

run: db-upgrade
	HOST=$(HOST) PORT=$(PORT) $(BIN)/python wsgi.py

# Browser tests drive Debian's chromium (installed when we can: root), and inject axe-core from npm.
browser-deps: node_modules/axe-core/axe.min.js node_modules/acorn/dist/acorn.js
node_modules/axe-core/axe.min.js node_modules/acorn/dist/acorn.js: package.json
	@if command -v npm >/dev/null; then npm install --no-audit --no-fund --silent; \
	else echo "No npm: the accessibility tests will be skipped (apt-get install npm)"; fi
browser-deps-chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "No /usr/bin/chromium: browser tests will be skipped (sudo apt-get install chromium)"; fi

test: install-test browser-deps browser-deps-chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench-seating: install
	$(BIN)/python -m cafe.bench seating ../shared/data/seating/instances.json --out bench-out/seating

bench-clustering: install
	$(BIN)/python -m cafe.bench clustering ../shared/data/clustering/*.jsonl --out bench-out/clustering

bench-load: install
	$(BIN)/python -m cafe.bench load --phones 2000 --duration 60

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache bench-out
