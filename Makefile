# mcpwatch — the commands the README promises.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo test unit e2e lint fmt build release services ort

## demo: the daemon on the embedded default (in-process Kafka + traffic generator, in-process
##       cache, embedded Arrow store in data/store): no external service. Serves on 127.0.0.1:8080.
demo: ort
	$(CARGO) run --release -- demo

## test: everything CI runs — unit and integration tests (real PostgreSQL, librdkafka mock
##       cluster), then the end-to-end suite against a real Kafka-protocol broker.
test: services ort unit e2e

## unit: cargo tests (needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379).
unit:
	$(CARGO) test --all-targets

## e2e: the daemon binary against nisshi: a crash scenario (2 × SIGKILL) and a small drain;
##      retention over 10 days of partitions with the archive read back by DataFusion.
##      Correctness only (lost=0, duplicates=0), so the debug build serves.
e2e:
	MCPWATCH_PROFILE=debug load-tests/crash.sh --samples 60000 --kills 2
	MCPWATCH_PROFILE=debug load-tests/ingest.sh --samples 100000 --services 200
	MCPWATCH_PROFILE=debug load-tests/retention.sh --rows-per-day 20000

## lint: formatting and clippy, warnings are errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build

release:
	$(CARGO) build --release

## services: start PostgreSQL and Redis if they are down (this machine's layout).
services:
	@scripts/services.sh

## ort: fetch the ONNX Runtime library the forecaster loads at run time into ./lib (from the
##      onnxruntime wheel on PyPI; no-op when present). Without it forecasts use the baseline.
ort:
	@scripts/fetch-ort.sh
