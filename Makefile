# ferry — the two commands a newcomer needs are `make run` and `make test`.
GO        ?= go
BIN       := bin/ferry
PKGS      := ./...
# Packages with goroutines of their own run under the race detector.
RACE_PKGS := ./reconciler/...

.PHONY: all build run test test-unit vet fmt-check staticcheck testbin bench clean test-faults

all: build

build:
	$(GO) build -o $(BIN) ./cmd/ferry

# The daemon on the bundled example with demo timings: a local plan
# repository made from examples/linkerd-eks, progress in .ferry/state,
# rendered overlays in out/rendered. Ctrl-C stops it; run it again to resume.
# RUN_ARGS adds flags, e.g. RUN_ARGS="--state-dir /tmp/s --out /tmp/o".
RUN_ARGS ?=
run: build
	./$(BIN) run --demo $(RUN_ARGS)

testbin:
	./test/testbin.sh

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null; git ls-files --others --exclude-standard '*.go' 2>/dev/null)); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

test: testbin vet fmt-check staticcheck
	$(GO) test -count=1 $(PKGS)
	$(GO) test -count=1 -race $(RACE_PKGS)

# Fault injection, results in RELIABILITY.md: the daemon as a real process
# against real API servers, git server and Prometheus (test/e2e: the crash
# test with 50 promotions instead of go test's 20, and every Fault
# scenario), then each fuzz target for FUZZTIME.
FUZZTIME ?= 20s
test-faults: testbin
	FERRY_FAULT_PROMOTIONS=50 $(GO) test -count=1 -run 'Crash|Fault' ./test/e2e/
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./plans/
	$(GO) test -run '^$$' -fuzz '^FuzzWebhook$$' -fuzztime $(FUZZTIME) ./reconciler/source/

# Benchmarks against DESIGN.md's budgets, written to BENCHMARKS.md
# (COUNT=3 and SLOW_COUNT=1 repetitions by default; see test/bench.sh).
bench:
	./test/bench.sh

clean:
	rm -rf bin
