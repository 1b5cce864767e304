# mcpgate — build and test. `make test` is what CI runs (.ci/run).
GO ?= go
PKGS := ./...
CACHE := .cache

.PHONY: all build test test-fast vet fmt-check unit e2e e2e-deps bench fuzz

all: build

build:
	$(GO) build -o bin/mcpgate ./cmd/mcpgate

vet:
	$(GO) vet $(PKGS)
	$(GO) vet -tags e2e ./e2e/...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit:
	$(GO) test -race -count=1 -cover $(PKGS)

# e2e-deps installs the bench's pinned third-party components (scripts/deps.sh).
e2e-deps:
	./scripts/deps.sh

e2e: e2e-deps
	$(GO) test -tags e2e -count=1 -timeout 15m -v ./e2e/

# test-fast: the inner loop; skips the e2e suites. CI never uses it.
test-fast: fmt-check vet unit

# test: everything, with a summary whose last line is "N passed, N failed".
test: fmt-check vet e2e-deps
	@mkdir -p $(CACHE)
	@echo "== unit tests (race detector, coverage)"
	@$(GO) test -race -count=1 -cover -json $(PKGS) > $(CACHE)/unit.json || true
	@echo "== e2e bench (real OpenID provider, MCP servers, clients, conformance suite, Chromium)"
	@$(GO) test -tags e2e -count=1 -timeout 15m -json ./e2e/ > $(CACHE)/e2e.json || true
	@$(GO) run ./scripts/testsummary $(CACHE)/unit.json $(CACHE)/e2e.json

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzPeek -fuzztime 30s ./internal/mcp/
	$(GO) test -run '^$$' -fuzz FuzzVerify -fuzztime 30s ./internal/dpop/
	$(GO) test -run '^$$' -fuzz FuzzAuthenticate -fuzztime 30s ./internal/resource/
	$(GO) test -run '^$$' -fuzz FuzzFilterResult -fuzztime 30s ./internal/policy/
