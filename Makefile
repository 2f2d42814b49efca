GO      ?= go
BIN     := bin/deploywatch
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: setup build test bench run clean

## setup: install clickhouse-server and nats-server (apt) and build bin/deploywatch
setup:
	./scripts/setup.sh
	$(MAKE) build

## build: build bin/deploywatch
build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/deploywatch

## test: vet and run every test against real NATS and ClickHouse servers
test:
	$(GO) vet ./...
	CI=$${CI:-true} $(GO) test -count=1 -timeout 30m ./...

## bench: the end-to-end pipeline benchmark against its ClickHouse ceiling
bench:
	$(GO) test -run '^$$' -bench 'Pipeline|Ceiling' -benchtime 3x -count 1 -timeout 30m ./cmd/deploywatch/

## run: start deploywatch with everything local
run: build
	./$(BIN) serve

clean:
	rm -rf bin data
