# Two commands do all the set-up on a fresh machine (see README.md):
#   make broker   start a broker on the embedded default (./streambed-data, 127.0.0.1:9092)
#   make test     install everything the tests need, lint, type-check and run every test
VENV ?= .venv
PY := $(VENV)/bin/python
PLUGINS := plugins/wal_ebs plugins/wal_s3 plugins/object_minio plugins/object_hdfs
PYTEST_ARGS ?=
ARGS ?=

.PHONY: install broker test lint system-deps clean

$(VENV)/.installed: pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[test,fast]' $(addprefix -e ,$(PLUGINS))
	touch $@

install: $(VENV)/.installed

broker: install
	$(VENV)/bin/streambed broker $(ARGS)

system-deps:
	scripts/system-deps

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: install system-deps lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis streambed-data
