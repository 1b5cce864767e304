#!/bin/sh
# perf-compare.sh — the measurements of docs/performance.md "Memory and
# Redis side by side" in one command (`make perf`): one replica in memory
# vs one on Redis (a redis-server from the Debian package, started by the
# load generator on a free loopback port, empty and with zeroed INFO
# commandstats for each run) vs the bare reverse proxy, alternated round by
# round so that a shared machine's noise hits every variant alike. Each
# step's output goes to $OUT/<step>.out; `uptime` is recorded before each.
# Not part of `make test`: these are measurements, not pass/fail checks.
#
# PERF_ROUNDS (default 3), PERF_DURATION (default 20s), PERF_STREAMS
# (default 9900: each idle stream holds two descriptors in the gateway, so
# RLIMIT_NOFILE caps it; see docs/performance.md), PERF_STEPS (default all:
# latency latency-quiet sessions streams stdio hop), PERF_NICE (default 10:
# the machine is shared; 0 measures what a process competing at equal
# priority sees — every extra process hop, such as a Redis round trip,
# waits for a CPU behind the others' work at nice 10).
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-.cache/perf}
ROUNDS=${PERF_ROUNDS:-3}
DUR=${PERF_DURATION:-20s}
STREAMS=${PERF_STREAMS:-9900}
STEPS=${PERF_STEPS:-latency latency-quiet sessions streams stdio hop}
NICE=${PERF_NICE:-10}
GO=${GO:-go}
mkdir -p "$OUT" bin
$GO build -o bin/mcpgate ./cmd/mcpgate
$GO build -o bin/loadgen ./scripts/loadgen
MEM='-variant=memory='
RED='-variant=redis=--redis-url={redis}'
YARD='-variant=yardstick='

step() {
	name=$1
	shift
	echo "== $name: loadgen $*"
	{ echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) nice $NICE, uptime: $(uptime)"; echo "# loadgen $*"; } > "$OUT/$name.out"
	nice -n "$NICE" bin/loadgen -gateway bin/mcpgate "$@" >> "$OUT/$name.out" 2>&1 || echo "   (exit $?; see $OUT/$name.out)"
	echo "   uptime after: $(uptime)" | tee -a "$OUT/$name.out"
}

for s in $STEPS; do
	case $s in
	# c=1, one client (one subject): its rate-limit tokens are borrowed in batches
	latency) step latency -scenario latency -mix stateless=3,dpop=1,session=1 -subjects 1 \
		-duration "$DUR" -rounds "$ROUNDS" $MEM $RED $YARD ;;
	# c=1 spread over 100 subjects: each subject is quiet, each request borrows
	latency-quiet) step latency-quiet -scenario latency -mix stateless=3,dpop=1,session=1 -subjects 100 \
		-duration "$DUR" -rounds "$ROUNDS" $MEM $RED $YARD ;;
	sessions) step sessions -scenario sessions -hold 1000 -rate 200 -duration "$DUR" -rounds "$ROUNDS" $MEM $RED $YARD ;;
	streams) step streams -scenario streams -hold "$STREAMS" -subjects 1000 -rounds 1 $MEM $RED ;;
	stdio) step stdio -scenario stdio -hold 100 -rate 100 -duration "$DUR" -rounds "$ROUNDS" $MEM $RED ;;
	hop) step hop -scenario hop -hold 10 -duration "$DUR" -rounds "$ROUNDS" $RED ;;
	*) echo "unknown step $s" >&2; exit 2 ;;
	esac
done
echo "outputs in $OUT/"
