# The two commands README promises: `make run` and `make test`. Everything they need
# is installed here, so a fresh Debian machine needs nothing else.
SHELL := /bin/bash
.DEFAULT_GOAL := run

# The server's Python: 3.12 or newer (Django 6 needs it).
PYTHON_BASE ?= $(shell for p in python3.13 python3.12 $(wildcard $(HOME)/.pyenv/versions/3.1[23].*/bin/python3) /usr/local/bin/python3 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { command -v $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
export DJANGO_SETTINGS_MODULE := playground.settings
export PYTHONDONTWRITEBYTECODE := 1

# A secret key generated once per checkout, so `make run` needs no configuration.
var/secret_key:
	@mkdir -p var && chmod 700 var
	@umask 077 && $(PYTHON_BASE) -c 'import secrets; print(secrets.token_urlsafe(50))' > $@

# Exactly the lock, every package pinned and checked against its hashes.
$(VENV)/.installed: requirements-dev.lock
	@test -n "$(PYTHON_BASE)" || { echo "Python 3.12+ not found; set PYTHON_BASE=/path/to/python3.12" >&2; exit 1; }
	$(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.lock
	@touch $@

# The locks, from what requirements*.txt choose, after changing either (pip-tools: the
# versions those name, the newest of the rest, every file's hash from the index).
.PHONY: lock
lock: $(VENV)/.installed
	for name in requirements requirements-dev; do \
		CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --generate-hashes \
			--strip-extras --allow-unsafe --no-emit-index-url \
			--no-emit-find-links --output-file $$name.lock $$name.txt || exit 1; \
	done

.PHONY: setup
setup: var/secret_key $(VENV)/.installed
	bin/system-deps
	SECRET_KEY=$$(cat var/secret_key) $(PY) manage.py snippetenv
	SECRET_KEY=$$(cat var/secret_key) $(PY) manage.py migrate --noinput -v0

.PHONY: run
run: setup
	@export SECRET_KEY=$$(cat var/secret_key) PYTHON=$(PY); \
	$(PY) manage.py collectstatic --noinput -v0 && \
	echo "CodeCarbon Playground at http://$${BIND:-127.0.0.1:8000} (Ctrl-C stops it)" && \
	bin/serve

.PHONY: lint
lint: var/secret_key $(VENV)/.installed
	$(VENV)/bin/pre-commit run --all-files --show-diff-on-failure
	SECRET_KEY=$$(cat var/secret_key) $(VENV)/bin/mypy

# The fast loop: every test that needs no sandbox, worker or browser (the markers in
# pyproject.toml; a test that starts a sandbox unmarked fails), on SQLite, in well under a
# minute, without collectstatic or Chromium. `make test` stays the whole suite.
.PHONY: test-fast
test-fast: var/secret_key $(VENV)/.installed
	SECRET_KEY=$$(cat var/secret_key) $(VENV)/bin/pytest -m "not sandbox and not browser" $(ARGS)

# The suite runs twice: on SQLite, and on the PostgreSQL this machine runs on loopback
# (the suite creates and drops its own test database there).
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/playground

# axe-core, for the accessibility tests only (never served), pinned in its lock file.
AXE := tests/axe/node_modules/axe-core/axe.min.js
$(AXE): tests/axe/package.json tests/axe/package-lock.json
	npm ci --prefix tests/axe --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: test
test: setup lint
	bin/system-deps --test
	$(MAKE) --no-print-directory $(AXE)
	@export SECRET_KEY=$$(cat var/secret_key); \
	$(PY) manage.py makemigrations --check --dry-run && \
	HTTPS=1 $(PY) manage.py check --deploy --fail-level WARNING && \
	$(PY) manage.py collectstatic --noinput -v0 && \
	echo "--- the suite on SQLite" && \
	$(VENV)/bin/pytest && \
	echo "--- the suite on PostgreSQL ($(TEST_POSTGRES_URL))" && \
	$(PY) bin/wait-for-database "$(TEST_POSTGRES_URL)" && \
	DATABASE_URL="$(TEST_POSTGRES_URL)" $(VENV)/bin/pytest

# The container image, built from the Dockerfile with podman and run as README's container
# section says, compose included (deploy/image/test.py). Root, about 9 minutes.
.PHONY: image-test
image-test: $(VENV)/.installed
	bin/system-deps --image
	$(PY) deploy/image/test.py

.PHONY: bench
bench: setup
	bin/system-deps --test
	@export SECRET_KEY=$$(cat var/secret_key); $(PY) manage.py collectstatic --noinput -v0 && \
	$(PY) benchmarks/run.py && echo && $(PY) benchmarks/sequential.py && echo && \
	$(PY) benchmarks/served.py && echo && \
	$(PY) bin/wait-for-database "$(TEST_POSTGRES_URL)" && \
	TEST_POSTGRES_URL="$(TEST_POSTGRES_URL)" $(PY) benchmarks/fleet.py

.PHONY: clean
clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache .mypy_cache tests/axe/node_modules
