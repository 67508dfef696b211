# The two commands of the README: `make run` and `make test`. Everything else is set-up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run manage test test-postgres drills bench bench-smoke install lint clean

$(VENV)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

# The service refuses to start without DJANGO_SECRET_KEY (DEBUG stays off), so `make run`
# makes a development key once, inside the git-ignored venv, and reuses it: logins survive
# restarts. A DJANGO_SECRET_KEY already in the environment wins.
DEV_SECRET_KEY := $(VENV)/dev-secret-key

$(DEV_SECRET_KEY): | $(VENV)/.installed
	umask 077 && $(PY) -c 'import secrets; print(secrets.token_urlsafe(50))' > $@

## Migrate SQLite, gather the static files, load the demo story, print the admin login,
## serve on http://$(HOST):$(PORT)
run: install $(DEV_SECRET_KEY)
	export DJANGO_SECRET_KEY="$${DJANGO_SECRET_KEY:-$$(cat $(DEV_SECRET_KEY))}" && \
	$(PY) manage.py migrate --noinput && \
	$(PY) manage.py collectstatic --noinput --verbosity 0 && \
	$(PY) manage.py seed_demo --site-url http://$(HOST):$(PORT) && \
	$(PY) manage.py runserver $(HOST):$(PORT)

## Any management command with the venv's Python: make manage ARGS="drf_create_token demo"
manage: install
	$(PY) manage.py $(ARGS)

## The whole suite (SQLite unless DATABASE_URL says otherwise)
test: install
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q $(PYTEST_ARGS)

## Fault drills (tests/drills): writers under gunicorn (the README's production command) while
## the database, a worker and the media storage fail and slow clients hold connections;
## PostgreSQL only (DATABASE_URL), a few minutes. See the README's Production.
drills:
	@case "$${DATABASE_URL:-}" in \
	  postgres://*|postgresql://*) ;; \
	  *) echo "make drills needs PostgreSQL: set DATABASE_URL=postgres://... (SQLite has no connections or server to break)" >&2; exit 2;; \
	esac
	@$(MAKE) --no-print-directory install
	$(PY) -m pytest -q -s -rs -m drill tests/drills $(PYTEST_ARGS)

## Every benchmark in benchmarks/, 3 runs each, medians and spread (PostgreSQL when DATABASE_URL
## is set, SQLite otherwise); writes benchmarks/RESULTS.md. BENCH_ARGS="--only create api",
## "--repeat 5" or "--quick" (one run) change it.
bench: install
	$(PY) benchmarks/run.py $(BENCH_ARGS)

## Every benchmark in its --quick form on SQLite, to the end (CI): they must not rot.
bench-smoke: install
	$(PY) -m pytest -q -m bench tests/benchmarks $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) db.sqlite3 media staticfiles test-artifacts
