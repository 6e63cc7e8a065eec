# Outpost: `make serve` and `make test` set up everything they need from a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GEN := gen/outpost/v1/outpost_pb2.py
PROTO := proto/outpost/v1/outpost.proto

.PHONY: help venv proto serve test test-fast lint typecheck bench model rules-check docker clean

help:
	@echo "make serve     start Outpost on its embedded defaults (127.0.0.1:50051)"
	@echo "make test      set up and run the whole test suite"
	@echo "make bench     run the benchmark suite and rewrite docs/benchmarks.md"
	@echo "make lint      ruff + mypy"
	@echo "make model     retrain the shipped default model from the simulator"

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(STAMP)

venv: $(STAMP)

$(GEN): $(PROTO) $(STAMP)
	mkdir -p gen
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=gen --pyi_out=gen --grpc_python_out=gen $(PROTO)
	touch gen/outpost/__init__.py gen/outpost/v1/__init__.py
	# Generated code lives in its own tree; a .pth file puts it on the venv's path.
	echo "$(CURDIR)/gen" > $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outpost-gen.pth

proto: $(GEN)

serve: $(GEN)
	$(BIN)/outpost serve

test: $(GEN)
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: $(GEN)
	$(BIN)/python -m pytest -q -x -m "not slow"

lint: $(GEN)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(GEN)
	$(BIN)/python -m bench

model: $(GEN)
	$(BIN)/outpost train --simulate --out models/artifacts

rules-check: $(GEN)
	$(BIN)/outpost rules check rules_engine/packs/default.yaml

docker:
	docker build -t outpost:latest .

clean:
	rm -rf gen .venv .pytest_cache .mypy_cache
