# Custos developer targets. See docs/development.md.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
# go test flags for `make test`. The integration tests start real
# PostgreSQL, sshd, MinIO and Vault processes (deploy/devstack), which the
# test cache cannot see: -count=1 makes every run really run them.
TEST_FLAGS ?= -race -count=1 -timeout 25m
PKGS ?= ./...

.PHONY: all build ui up down tools test test-go test-browser vet lint bench bench-go fuzz soak clean

all: build

## build: compile the broker into bin/custos
build: ui
	$(GO) build -o bin/custos ./cmd/custos

## ui: copy the web UI's npm packages (xterm.js) into web/ui/static/vendor
ui:
	web/ui/build.sh

## up: start the local stack (PostgreSQL, sshd, MinIO, Vault, broker) in .dev/; REPLICAS=2 starts two brokers
up: ui
	REPLICAS=$(REPLICAS) deploy/dev/up.sh

## down: stop everything `make up` started
down:
	deploy/dev/down.sh

## tools: install Debian packages and build MinIO and Vault into the tool cache
tools:
	deploy/dev/install.sh

## test: tools, go vet, the Go tests with -race, then the browser tests
test: tools ui vet test-go test-browser

test-go:
	$(GO) test $(TEST_FLAGS) $(PKGS)

## test-browser: the web UI's end-to-end tests (web/e2e), when they exist
test-browser:
	@if [ -x web/e2e/run.sh ]; then \
		web/e2e/run.sh; \
	elif [ -f web/e2e/package.json ]; then \
		cd web/e2e && npm ci --no-audit --no-fund && npm test; \
	else \
		echo "test-browser: no web/e2e yet, nothing to run"; \
	fi

vet:
	$(GO) vet $(PKGS)

## lint: go vet, and gofmt must have nothing to say
lint: vet
	@out="$$(gofmt -l $$(find . -name '*.go' -not -path './.dev/*' -not -path '*/node_modules/*' -not -path '*/testdata/*'))"; \
	if [ -n "$$out" ]; then echo "gofmt -l reports:"; echo "$$out"; exit 1; fi

## bench: measure the deployed broker (starts or reuses the stack); QUICK=1 runs a short subset; writes bench/results (docs/performance.md)
bench: ui
	$(GO) build -o bin/custos-bench ./cmd/custos-bench
	QUICK=$(QUICK) bin/custos-bench

## bench-go: the package testing.B benchmarks (harness figures) as one table (raw output in .dev/bench.txt)
bench-go:
	deploy/dev/bench.sh $(PKGS)

## fuzz: run every Fuzz target for FUZZTIME (default 20s) each
fuzz:
	deploy/dev/fuzz.sh $(PKGS)

## soak: SOAK_SSH ssh/scp sessions and SOAK_PG pgbench clients through one broker for
## SOAK_DURATION while grants are revoked; checks recordings and resources, prints a table
SOAK_DURATION ?= 5m
SOAK_SSH ?= 100
SOAK_PG ?= 200
soak:
	CI=true SOAK_DURATION=$(SOAK_DURATION) SOAK_SSH=$(SOAK_SSH) SOAK_PG=$(SOAK_PG) SOAK_OUT=$(CURDIR)/.dev/soak.txt SOAK_PROFILES=$(CURDIR)/.dev/soak-profiles \
		$(GO) test -tags soak -count=1 -timeout 45m -run '^TestSoak$$' -v ./cmd/custos

## clean: remove build output (not .dev/; `make down` first, then rm -rf .dev)
clean:
	rm -rf bin
