# Tessera: every target installs what it needs into .venv first.
# A fresh clone needs exactly two commands: `make cluster` and `make test`.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
STUBS  := proto/storage_pb2.py proto/storage_pb2_grpc.py

N        ?= 6
GATEWAYS ?= 2
KES      ?= 2
PARITY   ?= 2
# e.g. NODE_TMPFS=node-3=64M: that node's data dir on its own small tmpfs (disk-full drills)
NODE_TMPFS ?=
NAME     ?= gateway-1

CLUSTER_ARGS := --nodes $(N) --gateways $(GATEWAYS) --kes $(KES) --parity $(PARITY) \
                $(foreach t,$(NODE_TMPFS),--node-tmpfs $(t))

.PHONY: install proto cluster cluster-down cluster-status cluster-logs test test-unit \
        test-integration test-chaos test-tools lint bench clean

install: $(STAMP) $(STUBS)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Stubs are build output (see .gitignore): regenerated whenever the .proto changes,
# so they can never drift from it.
$(STUBS): proto/storage.proto $(STAMP)
	$(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. proto/storage.proto

proto: $(STUBS)

cluster: install
	$(PY) -m cluster up $(CLUSTER_ARGS)

cluster-down: install
	$(PY) -m cluster down

cluster-status: install
	$(PY) -m cluster status

# the last lines of one process's log, then follow it: make cluster-logs NAME=node-3
cluster-logs:
	tail -n 50 -f .cluster/logs/$(NAME).log

# rclone is a Go binary, not a PyPI package: the client tests need it, so it comes from Debian's
# packages when missing and apt-get is usable (root). Idempotent and quiet; without apt the rclone
# tests skip and say why.
test-tools:
	@command -v rclone >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq rclone >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq rclone >/dev/null 2>&1; } || \
	    echo "make: could not install rclone with apt-get; its client tests will skip"; \
	  else echo "make: rclone missing and apt-get not usable; its client tests will skip"; fi; }

test: install test-tools
	$(PY) -m ruff check .
	$(PY) -m pytest tests

test-unit: install
	$(PY) -m pytest tests/unit

test-integration: install test-tools
	$(PY) -m pytest tests/integration

test-chaos: install
	$(PY) -m pytest tests/chaos

lint: install
	$(PY) -m ruff check .

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(STUBS) proto/storage_pb2.pyi .pytest_cache
