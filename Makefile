# Every target installs what it needs first, so a fresh clone runs `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LEADS ?=
MAPPING ?=
PG_URL ?= postgresql+psycopg2://postgres@127.0.0.1:5432/postgres

.PHONY: install demo ui test lint services clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Starts the local PostgreSQL cluster when it is not accepting connections.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done; \
		echo "PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1

demo: $(STAMP)
	$(BIN)/acquisition demo $(if $(LEADS),--leads "$(LEADS)",) $(if $(MAPPING),--mapping "$(MAPPING)",)

# The Dagster UI and a sandbox, on the demo's database; Ctrl-C stops both.
ui: $(STAMP)
	$(BIN)/acquisition ui

test: $(STAMP) services
	ACQUISITION_TEST_POSTGRES_URL=$(PG_URL) $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check acquisition_assets acquisition_assets_tests
	$(BIN)/ruff format --check acquisition_assets acquisition_assets_tests

clean:
	rm -rf $(VENV) data build *.egg-info
