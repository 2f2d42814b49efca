GO      ?= go
BIN     := bin/deploywatch
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: setup build test fuzz bench run clean

## setup: install clickhouse-server, nats-server, prometheus, prometheus-alertmanager, curl and jq (apt) and build bin/deploywatch
setup:
	./scripts/setup.sh
	$(MAKE) build

## build: build bin/deploywatch
build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/deploywatch

## test: vet and run every test against real NATS and ClickHouse servers, then the fuzz targets briefly
test:
	$(GO) vet ./...
	CI=$${CI:-true} $(GO) test -count=1 -timeout 30m ./...
	$(MAKE) fuzz

## fuzz: run every fuzz target of every package for FUZZTIME (default 5s); a crasher is kept in the package's testdata/fuzz/
FUZZTIME ?= 5s
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

## bench: the end-to-end pipeline benchmark against its ClickHouse ceiling
bench:
	$(GO) test -run '^$$' -bench 'Pipeline|Ceiling' -benchtime 3x -count 1 -timeout 30m ./cmd/deploywatch/

## run: start deploywatch with everything local
run: build
	./$(BIN) serve

clean:
	rm -rf bin data
