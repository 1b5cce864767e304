# mcpgate — build and test. `make test` is what CI runs (.ci/run).
GO ?= go
PKGS := ./...

.PHONY: all build test test-fast vet fmt-check unit e2e bench fuzz

all: build

build:
	$(GO) build -o bin/mcpgate ./cmd/mcpgate

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit:
	$(GO) test -race -count=1 $(PKGS)

# test-fast: the inner loop; skips the e2e suites. CI never uses it.
test-fast: fmt-check vet unit

test: fmt-check vet unit
