# mcpgate — build and test. `make test` is what CI runs (.ci/run).
GO ?= go
PKGS := ./...
CACHE := .cache
# An execution count, not a duration: Go 1.26's fuzz coordinator can report a
# spurious "context deadline exceeded" when a duration expires under CPU load
# (golang/go#75804, fixed in Go 1.27). A count has no deadline to race.
FUZZTIME ?= 30000x
FUZZ_TARGETS := ./internal/mcp/:FuzzPeek ./internal/mcp/:FuzzHeaderValue ./internal/mcp/:FuzzSSEReader \
	./internal/dpop/:FuzzVerify ./internal/resource/:FuzzAuthenticate ./internal/resource/:FuzzChallengeQuoting \
	./internal/policy/:FuzzFilterResult ./internal/oauth/:FuzzParseChallenges ./internal/oauth/:FuzzMetadata \
	./internal/p256/:FuzzVerifyMatchesStdlib \
	./internal/mcp/:FuzzRoutingKey ./internal/gateway/:FuzzListFilter \
	./internal/gateway/:FuzzActorClaim

.PHONY: all build test test-fast vet fmt-check unit e2e e2e-deps bench fuzz release helm manifests image load soak perf

all: build

build:
	$(GO) build -o bin/mcpgate ./cmd/mcpgate

vet:
	$(GO) vet $(PKGS)
	$(GO) vet -tags e2e ./e2e/...
	@echo "== the e2e package builds without its tests (vet type-checks it with them, so a helper defined only in a _test.go file slips through)"
	$(GO) build -tags e2e -o /dev/null ./e2e/
	cd $(HELM_VALIDATE) && $(GO) vet ./...
	@echo "== one static binary for every OS: cross-builds"
	@for p in windows/amd64 darwin/arm64; do CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build -o /dev/null ./cmd/mcpgate || exit 1; done

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
	@echo "== fuzzing, $(FUZZTIME) per target (executions)"
	@rm -f $(CACHE)/fuzz.json
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 0 -json $$pkg >> $(CACHE)/fuzz.json || true; done
	@echo "== e2e bench (real OpenID provider, MCP servers, clients, conformance suite, Chromium)"
	@$(GO) test -tags e2e -count=1 -timeout 15m -json ./e2e/ > $(CACHE)/e2e.json || true
	@echo "== Helm chart: every documented values combination rendered and strictly decoded (deploy/helm/validate)"
	@# A run that cannot even start (no modules) must still count as a failure.
	@cd $(HELM_VALIDATE) && $(GO) test -count=1 -json ./... > $(CURDIR)/$(CACHE)/helm.json || \
		echo '{"Action":"fail","Package":"github.com/mcpgate/mcpgate/deploy/helm/validate"}' >> $(CURDIR)/$(CACHE)/helm.json
	@$(GO) run ./scripts/testsummary $(CACHE)/unit.json $(CACHE)/fuzz.json $(CACHE)/e2e.json $(CACHE)/helm.json

bench: build e2e-deps
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...
	$(GO) run ./scripts/bridgebench -mcpgate bin/mcpgate -mcp-remote e2e/node_modules/mcp-remote/dist/proxy.js

# fuzz: every fuzz target for 60s each (CI runs each for $(FUZZTIME) executions).
fuzz:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime 60s $$pkg || exit 1; done

# release: static binaries for linux/darwin/windows x amd64/arm64 in dist/,
# stamped with the version (VERSION, default: `git describe`) and commit so
# `mcpgate version` prints them, their SHA256SUMS, and a CycloneDX SBOM of
# the modules linked into the binary (cyclonedx-gomod app mode, pinned).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
RELEASE_PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
CYCLONEDX := github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0
release:
	@rm -rf dist && mkdir -p dist
	@for p in $(RELEASE_PLATFORMS); do os=$${p%/*}; arch=$${p#*/}; ext=""; [ $$os = windows ] && ext=.exe; \
		echo "== dist/mcpgate-$$os-$$arch$$ext"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -buildvcs=false \
			-ldflags "-s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)" \
			-o dist/mcpgate-$$os-$$arch$$ext ./cmd/mcpgate || exit 1; done
	@$(GO) run $(CYCLONEDX) app -licenses=false -json -main cmd/mcpgate -output dist/mcpgate.cdx.json . >/dev/null
	@cd dist && sha256sum mcpgate-* mcpgate.cdx.json > SHA256SUMS && cat SHA256SUMS
	@./dist/mcpgate-$$($(GO) env GOOS)-$$($(GO) env GOARCH) version

# helm: render the chart with every documented values combination and decode
# each object strictly into the Kubernetes API types (a module of its own:
# Helm and k8s.io/api stay out of the gateway's go.mod). manifests: rewrite
# deploy/manifests/ from the chart's defaults and each combination's
# config.yaml in deploy/helm/validate/testdata/configs (make test fails
# when either is stale).
HELM_VALIDATE := deploy/helm/validate
helm:
	cd $(HELM_VALIDATE) && $(GO) test -count=1 ./...

manifests:
	cd $(HELM_VALIDATE) && $(GO) test -count=1 -run 'TestManifestsUpToDate|TestCombinations' ./... -update

# image: the container image from the Dockerfile with Debian's buildah (no
# daemon). GO_IMAGE defaults to the official golang image; where no image
# registry is reachable, e2e/container_test.go assembles one from the host's
# Go toolchain.
IMAGE ?= localhost/mcpgate:$(VERSION)
image:
	buildah --storage-driver vfs bud --isolation chroot --layers=false -t $(IMAGE) \
		--build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) \
		--build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) \
		--build-arg GOPROXY=$$($(GO) env GOPROXY) --build-arg GOFLAGS=$$($(GO) env GOFLAGS) \
		$(if $(GO_IMAGE),--build-arg GO_IMAGE=$(GO_IMAGE)) .

# load: one run of the load generator (scripts/loadgen) against a gateway it
# starts on loopback; LOAD_ARGS picks the scenario, e.g.
#   make load LOAD_ARGS='-scenario streams -hold 9900'
#   make load LOAD_ARGS='-gateway-arg=--redis-url=redis://127.0.0.1:6379/0'
# Runs under nice: the machine is shared. Not part of `make test`.
LOAD_ARGS ?= -scenario mix -rate 200 -duration 60s
load: build
	$(GO) build -o bin/loadgen ./scripts/loadgen
	nice -n 10 bin/loadgen -gateway bin/mcpgate $(LOAD_ARGS)

# perf: memory vs Redis vs the bare reverse proxy side by side, alternated
# (scripts/perf-compare.sh: c=1 latency, CPU and Redis round trips per
# request kind, 1,000 sessions, idle streams, 100 stdio sessions, the hop
# between replicas); outputs in .cache/perf/. PERF_STEPS, PERF_ROUNDS,
# PERF_DURATION select and size it. Not part of `make test`.
perf:
	./scripts/perf-compare.sh

# soak: SOAK_DURATION of steady mixed load (SOAK_RATE operations/s), the
# gateway's RSS, PSS, private memory and goroutines sampled every 10 s to
# SOAK_CSV; fails (exit 3) when the mean of the last third exceeds the mean
# of the first third, after a 2-minute warm-up, by more than SOAK_TOLERANCE
# (+1 MiB, +8 goroutines of absolute slack). A leak check, not a timing
# check. Not part of `make test`.
SOAK_DURATION ?= 30m
SOAK_RATE ?= 100
SOAK_TOLERANCE ?= 0.10
SOAK_CSV ?= $(CACHE)/soak.csv
SOAK_ARGS ?=
soak: build
	@mkdir -p $(CACHE)
	$(GO) build -o bin/loadgen ./scripts/loadgen
	nice -n 10 bin/loadgen -gateway bin/mcpgate -scenario soak -duration $(SOAK_DURATION) -rate $(SOAK_RATE) \
		-tolerance $(SOAK_TOLERANCE) -sample-every 10s -warmup 2m -csv $(SOAK_CSV) $(SOAK_ARGS)
