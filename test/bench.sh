#!/usr/bin/env bash
# bench.sh runs ferry's benchmarks and writes BENCHMARKS.md (make bench):
# the machine, the exact commands, a table of results next to the budgets
# of DESIGN.md ("Performance budgets"), benchstat's summary and the raw
# output.
#
#   COUNT=3       runs of each Go benchmark that takes about a second or less
#                 per operation (go test -count), and of `ferry render`
#   SLOW_COUNT=1  runs of the benchmarks that take minutes per operation:
#                 validating 1,000 plan files, `kustomize build` of one
#                 cluster's overlay, 10,000 load cycles
#
# COUNT was 5 until the whole run took 23 minutes on 2 cores; with 3, and
# without the in-process krusty comparison (BenchmarkKrustyBuild, run it by
# hand), it stays near 20.
#   OUT=BENCHMARKS.md
#
# Go benchmarks run one package at a time (-p 1) so that no two compete for
# the two cores; whole-process figures come from GNU time (/usr/bin/time -v,
# Debian package "time", installed here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-3}
SLOW_COUNT=${SLOW_COUNT:-1}
OUT=${OUT:-BENCHMARKS.md}
# Pinned: a golang.org/x/perf that builds with this machine's Go 1.26
# (GOTOOLCHAIN=local); `go run pkg@version` leaves go.mod alone.
BENCHSTAT_VERSION=v0.0.0-20260908200009-22c9c6c9d4da
KUSTOMIZE_VERSION=v5.8.1 # as test/testbin.sh builds it

started=$(date -u +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 1' INT TERM

log() { printf '%s bench: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---- what the benchmarks need -----------------------------------------------
if ! /usr/bin/time -V >/dev/null 2>&1; then
	log "installing GNU time"
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq time
fi
# kube-apiserver, etcd, the CRDs and kustomize (idempotent, < 1 s when built).
./test/testbin.sh >&2
TESTBIN=${FERRY_TESTBIN:-$HOME/.cache/ferry/testbin}
KUSTOMIZE=$TESTBIN/kustomize-$KUSTOMIZE_VERSION/kustomize
BENCHSTAT=(go run "golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION")
"${BENCHSTAT[@]}" -h >/dev/null 2>&1 || { log "benchstat $BENCHSTAT_VERSION does not build"; exit 1; }

# ---- the machine --------------------------------------------------------------
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2/1024/1024}' /proc/meminfo)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
revision=$(git describe --always --dirty 2>/dev/null || echo unknown)

# ---- Go benchmarks --------------------------------------------------------------
GOTEST=(go test -p 1 -timeout 60m -run '^$' -benchmem)
commands=()
quote() { # quote ARGS...: the words as a shell would need them
	local a out=()
	for a in "$@"; do
		if [[ $a =~ ^[A-Za-z0-9_./=:,+-]+$ ]]; then out+=("$a"); else out+=("'$a'"); fi
	done
	printf '%s' "${out[*]}"
}
run() { # run OUTFILE ARGS...: one go test invocation, recorded and teed
	local out=$1
	shift
	commands+=("$(quote "$@")")
	log "$*"
	"$@" | tee -a "$out" >&2
}

# -bench splits a pattern at top-level '|' into alternatives and each of
# those at '/' into one pattern per sub-benchmark level.
fast='^BenchmarkDecide2000$|^BenchmarkProject2000$|^BenchmarkValidate1000Files$/^files=(100|300)$|^BenchmarkRenderCold$|^BenchmarkRenderOneChange$|^BenchmarkRenderOneAdded$|^BenchmarkNoopPoll$|^BenchmarkFetchNewCommit10k$|^BenchmarkApply1000$'
run "$WORK/go.txt" "${GOTEST[@]}" -count "$COUNT" -bench "$fast" ./plans ./renderer ./reconciler/source ./reconciler/apply
# Alone in its process, so that its peak RSS is its own.
run "$WORK/go.txt" "${GOTEST[@]}" -count "$COUNT" -bench '^BenchmarkMemoryHeld2000x4$' ./renderer
run "$WORK/slow.txt" "${GOTEST[@]}" -count "$SLOW_COUNT" -benchtime 1x \
	-bench '^BenchmarkValidate1000Files$/^files=1000$|^BenchmarkKubectlKustomize$' ./plans ./renderer
run "$WORK/slow.txt" "${GOTEST[@]}" -count "$SLOW_COUNT" -benchtime 10000x -bench '^BenchmarkLoadCycles$' ./plans
# The daemon as a process against two real API servers and git http-backend:
# commit → applied (20 commits each way), a steady state of $STEADY, and the
# resident set with 2,000 services × 4 clusters.
STEADY=${STEADY:-5m}
FERRY_STEADY=$STEADY run "$WORK/daemon.txt" "${GOTEST[@]}" -count 1 -benchtime 20x \
	-bench '^BenchmarkCommitToApplied$|^BenchmarkSteadyState$|^BenchmarkRSS2000x4$' ./test/e2e

# ---- whole process: ferry render of 2,000 services × 4 clusters ----------------
# The same shape as the renderer's benchmarks: alpha dc1→eks (linkerd) and
# beta dc2→gke (istio), 2,000 services each in 10 waves over 37 namespaces,
# every fifth with a targetPort and a pod selector; every wave at weight 10.
PLANS=$WORK/plans
mkdir -p "$PLANS"
gen_plans() {
	awk -v n=2000 'BEGIN {
		print "clusters:"
		split("dc1 eks dc2 gke", cl, " ")
		for (c = 1; c <= 4; c++) printf "  %s: {context: %s}\n", cl[c], cl[c]
		print "migrations:"
		split("alpha beta", names, " "); split("dc1 dc2", from, " "); split("eks gke", to, " ")
		split("linkerd istio", prov, " ")
		for (m = 1; m <= 2; m++) {
			printf "  %s:\n    from: %s\n    to: %s\n    provider: %s\n", names[m], from[m], to[m], prov[m]
			print "    steps: [0, 10, 50, 100]"
			print "    services:"
			for (j = 0; j < n; j++) {
				svc = sprintf("team-%02d/svc-%d-%04d", j % 37, m - 1, j)
				if (j % 5 == 0)
					printf "      %s: {port: %d, targetPort: 8080, podSelector: {app: svc-%d-%04d, track: stable}}\n", svc, 80 + j % 3, m - 1, j
				else
					printf "      %s: {port: %d}\n", svc, 80 + j % 3
			}
			print "    waves:"
			for (w = 0; w < 10; w++) {
				printf "      - name: wave-%d\n        services:\n", w
				for (j = w; j < n; j += 10) printf "          - team-%02d/svc-%d-%04d\n", j % 37, m - 1, j
			}
		}
	}'
}
gen_plans >"$PLANS/plans.yaml"
log "building ferry"
go build -o "$WORK/ferry" ./cmd/ferry
wave_flags=()
for m in alpha beta; do
	for w in 0 1 2 3 4 5 6 7 8 9; do wave_flags+=(--wave "$m/wave-$w=10"); done
done
render_cmd=("$WORK/ferry" render "$PLANS" --out "$WORK/out" "${wave_flags[@]}")
: >"$WORK/time.txt"
for i in $(seq 1 "$COUNT"); do
	rm -rf "$WORK/out"
	log "ferry render, run $i of $COUNT"
	/usr/bin/time -v -o "$WORK/time-$i.txt" "${render_cmd[@]}" >/dev/null
	cat "$WORK/time-$i.txt" >>"$WORK/time.txt"
done
objects=$(grep -c '^kind:' "$WORK"/out/*/manifests.yaml | awk -F: '{s += $2} END {print s}')
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- summaries ------------------------------------------------------------------
log "benchstat"
"${BENCHSTAT[@]}" "$WORK/go.txt" >"$WORK/benchstat.txt" 2>&1 || true
"${BENCHSTAT[@]}" "$WORK/slow.txt" >"$WORK/benchstat-slow.txt" 2>&1 || true

# med FILE NAME UNIT: the median of UNIT over the lines of benchmark NAME.
med() {
	awk -v name="$2" -v unit="$3" '
		$1 ~ "^" name "(-[0-9]+)?$" { for (i = 3; i < NF; i += 2) if ($(i + 1) == unit) v[n++] = $i }
		END {
			if (n == 0) { print "NaN"; exit }
			for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
			print (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
		}' "$1"
}
# gnutime FIELD: the median over the runs of a /usr/bin/time -v field.
gnutime() {
	awk -F': ' -v f="$1" '
		function secs(s,   p, k, t) { k = split(s, p, ":"); t = 0; for (i = 1; i <= k; i++) t = t * 60 + p[i]; return t }
		$1 ~ "^[ \t]*" f { v[n++] = (f ~ /Elapsed/) ? secs($2) : $2 }
		END {
			for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
			print (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
		}' "$WORK/time.txt"
}
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
verdict() { awk -v ok="${2:-within}" -v bad="${3:-**over**}" "BEGIN { print ($1) ? ok : bad }"; }

cold=$(med "$WORK/go.txt" BenchmarkRenderCold ns/op)
one=$(med "$WORK/go.txt" BenchmarkRenderOneChange ns/op)
added=$(med "$WORK/go.txt" BenchmarkRenderOneAdded ns/op)
kust=$(med "$WORK/slow.txt" BenchmarkKubectlKustomize ns/op)
heap=$(med "$WORK/go.txt" BenchmarkMemoryHeld2000x4 heap-inuse-MiB)
rss=$(med "$WORK/go.txt" BenchmarkMemoryHeld2000x4 rss-MiB)
hwm=$(med "$WORK/go.txt" BenchmarkMemoryHeld2000x4 peak-rss-MiB)
wall=$(gnutime 'Elapsed \\(wall clock\\)')
usr=$(gnutime 'User time')
sys=$(gnutime 'System time')
maxrss=$(gnutime 'Maximum resident set size')
v100=$(med "$WORK/go.txt" BenchmarkValidate1000Files/files=100 ns/op)
v300=$(med "$WORK/go.txt" BenchmarkValidate1000Files/files=300 ns/op)
v1000=$(med "$WORK/slow.txt" BenchmarkValidate1000Files/files=1000 ns/op)
v1000b=$(med "$WORK/slow.txt" BenchmarkValidate1000Files/files=1000 B/op)
h100=$(med "$WORK/slow.txt" BenchmarkLoadCycles heap-MiB-after-100)
hall=$(med "$WORK/slow.txt" BenchmarkLoadCycles heap-MiB-after-all)
loadop=$(med "$WORK/slow.txt" BenchmarkLoadCycles ns/op)
noop=$(med "$WORK/go.txt" BenchmarkNoopPoll ns/op)
fetch=$(med "$WORK/go.txt" BenchmarkFetchNewCommit10k/ferry ns/op)
gitfetch=$(med "$WORK/go.txt" BenchmarkFetchNewCommit10k/git-cli ns/op)
created=$(med "$WORK/go.txt" BenchmarkApply1000 created-objects/s)
unchanged=$(med "$WORK/go.txt" BenchmarkApply1000 unchanged-objects/s)
swrites=$(med "$WORK/go.txt" BenchmarkApply1000 steady-writes)
srv=$(med "$WORK/go.txt" BenchmarkApply1000 steady-rv-changes)
decide=$(med "$WORK/go.txt" BenchmarkDecide2000 ns/op)
project=$(med "$WORK/go.txt" BenchmarkProject2000 ns/op)
hookp50=$(med "$WORK/daemon.txt" BenchmarkCommitToApplied/webhook p50-ms)
hookp95=$(med "$WORK/daemon.txt" BenchmarkCommitToApplied/webhook p95-ms)
pollp50=$(med "$WORK/daemon.txt" BenchmarkCommitToApplied/poll5s p50-ms)
pollp95=$(med "$WORK/daemon.txt" BenchmarkCommitToApplied/poll5s p95-ms)
steadyferry=$(med "$WORK/daemon.txt" BenchmarkSteadyState ferry-writes)
steadyall=$(med "$WORK/daemon.txt" BenchmarkSteadyState writes)
steadycpu=$(med "$WORK/daemon.txt" BenchmarkSteadyState cpu-s)
drss=$(med "$WORK/daemon.txt" BenchmarkRSS2000x4 rss-MiB)
dhwm=$(med "$WORK/daemon.txt" BenchmarkRSS2000x4 hwm-MiB)
elapsed=$(($(date -u +%s) - started))

# ---- BENCHMARKS.md ----------------------------------------------------------------
{
	cat <<EOF
# Benchmarks

Written by \`make bench\` (\`test/bench.sh\`) on $(date -u '+%Y-%m-%d %H:%M UTC'), at revision \`$revision\`; the
whole run took $((elapsed / 60)) min $((elapsed % 60)) s. Run it again to replace this file; \`COUNT\` and \`SLOW_COUNT\`
set the repetitions (here COUNT=$COUNT, SLOW_COUNT=$SLOW_COUNT).

## Machine

| | |
|---|---|
| CPU | $cpu, $(nproc) cores |
| memory | $mem |
| Go | $(go version | cut -d' ' -f3-) |
| kernel | $(uname -sr) |
| load average (1, 5, 15 min) | before: $load_before; after: $load_after |

The load average counts everything the machine ran, not only these benchmarks: a load above the core count
means other processes competed for the CPU and the times below are slower than on a quiet machine.

## Results

Medians; "test process" figures are the Go heap or resident set of the \`go test\` binary that holds the data,
"whole process" figures are GNU time's of the \`ferry\` binary. Budgets are DESIGN.md's "Performance budgets".

| what | measured | budget | |
|---|---|---|---|
| render 2,000 services × 4 clusters, cold (in process, BenchmarkRenderCold) | $(calc '%.0f ms' "$cold/1e6") | < 1 s | $(verdict "$cold < 1e9") |
| render after one service moved a step (warm renderer, BenchmarkRenderOneChange) | $(calc '%.1f ms' "$one/1e6") | < 20 ms | $(verdict "$one < 20e6") |
| render after one service was added to a wave (BenchmarkRenderOneAdded) | $(calc '%.1f ms' "$added/1e6") | — | |
| \`kustomize build\` ($KUSTOMIZE_VERSION, separate process) of one cluster's overlay (4,000 objects; BenchmarkKubectlKustomize), × 4 for the plan | $(calc '%.1f s × 4 = %.1f s' "$kust/1e9, 4*$kust/1e9") | — | ferry's cold render is $(calc '%.0f' "4*$kust/$cold")× faster |
| \`ferry render\` of 2,000 services × 4 clusters ($objects objects), whole process: wall / user / system | $(calc '%.2f s / %.2f s / %.2f s' "$wall, $usr, $sys") | — | includes loading and validating the 2 migrations and writing the overlays |
| \`ferry render\` of 2,000 services × 4 clusters, whole process: maximum resident set | $(calc '%.0f MiB' "$maxrss/1024") | < 150 MiB | $(verdict "$maxrss/1024 < 150") |
| 2,000 services × 4 clusters held by a warm renderer (test process, BenchmarkMemoryHeld2000x4): Go heap in use / VmRSS / VmHWM | $(calc '%.0f MiB / %.0f MiB / %.0f MiB' "$heap, $rss, $hwm") | < 150 MiB | $(verdict "$rss < 150") (VmRSS) |
| apply 1,000 new TrafficSplits into one real API server (BenchmarkApply1000) | $(calc '%.0f objects/s' "$created") | — | |
| re-apply the unchanged 1,000 (server-side dry-run compare) | $(calc '%.0f objects/s' "$unchanged") | — | |
| API writes during that re-apply / resourceVersions changed (TrafficSplits and inventory) | $(calc '%g / %g' "$swrites, $srv") | 0 | $(verdict "$swrites == 0 && $srv == 0") |
| commit pushed → applied on 2 clusters, signed webhook, p50 / p95 (\`ferry run\` process, BenchmarkCommitToApplied/webhook, 20 commits) | $(calc '%.0f ms / %.0f ms' "$hookp50, $hookp95") | < 1 s | $(verdict "$hookp95 < 1000") |
| commit pushed → applied on 2 clusters, 5 s poll, p50 / p95 (BenchmarkCommitToApplied/poll5s, 20 commits at random points of the poll cycle) | $(calc '%.2f s / %.2f s' "$pollp50/1000, $pollp95/1000") | < poll interval | $(verdict "$pollp95 < 5000") |
| steady state of $STEADY, nothing changing (BenchmarkSteadyState): API writes by ferry / all API writes / daemon CPU | $(calc '%g / %g / %.2f s' "$steadyferry, $steadyall, $steadycpu") | 0 writes | $(verdict "$steadyferry == 0") (all writes are the API servers' own identity Lease renewals) |
| \`ferry run\` with 2,000 services × 4 clusters, directory mode (BenchmarkRSS2000x4): VmRSS / VmHWM after the first render | $(calc '%.0f MiB / %.0f MiB' "$drss, $dhwm") | < 150 MiB | $(verdict "$dhwm < 150") |
| no-op poll against a local \`git http-backend\` (BenchmarkNoopPoll) | $(calc '%.1f ms' "$noop/1e6") | — | |
| one new commit of a 10,000-file repository: ferry / \`git fetch --depth 1\` (BenchmarkFetchNewCommit10k) | $(calc '%.0f ms / %.0f ms' "$fetch/1e6, $gitfetch/1e6") | — | |
| validate 100 / 300 / 1,000 plan files (BenchmarkValidate1000Files) | $(calc '%.2f s / %.2f s / %.1f s' "$v100/1e9, $v300/1e9, $v1000/1e9") | — | 1,000 files allocate $(calc '%.1f GB' "$v1000b/1e9") |
| load the linkerd-eks example 10,000 times (BenchmarkLoadCycles): Go heap in use after GC, after 100 / after 10,000 | $(calc '%.1f MiB / %.1f MiB (%.1f ms a load)' "$h100, $hall, $loadop/1e6") | no growth | $(verdict "$hall <= $h100 * 1.1 + 1" "no growth" "**grows**") |
| wave engine: decide 2,000 services / project a year (BenchmarkDecide2000, BenchmarkProject2000) | $(calc '%.1f ms / %.2f s' "$decide/1e6, $project/1e9") | — | |

Notes:

- By default the counts are lowered to keep \`make bench\` near 20 minutes on 2 cores: COUNT=3 (5 took 23 minutes),
  and SLOW_COUNT=1 for validating 1,000 files, \`kustomize build\` and the 10,000 load cycles, so those rows are
  one run each, with no spread (benchstat shows none). The in-process krusty comparison (BenchmarkKrustyBuild) is
  left out for the same reason.
- The kustomize ratio compares ferry's in-process cold render of all four clusters with four times one
  \`kustomize build\` process on one cluster's overlay (the overlays are the same size); BenchmarkKubectlKustomize
  also checks that kustomize prints ferry's manifests.yaml byte for byte.
- The < 150 MiB budget is for the daemon: the \`ferry run\` row, with its default \`--memory-limit 80MiB\`. The
  test-process row holds a warm renderer and its result; the \`ferry render\` row is a one-shot command that sets
  no memory limit, loads the plans and writes the overlays.
- Zero re-renders in a steady state is a property of the reconciler's cached renderer and is not measured here.

## Commands

Every Go benchmark ran with \`-p 1\`, one package at a time:

\`\`\`sh
EOF
	for c in "${commands[@]}"; do printf '%s\n' "$c"; done
	cat <<EOF
# whole process, $COUNT runs, on a generated plans.yaml (2 migrations × 2,000 services, 10 waves each):
/usr/bin/time -v ferry render PLANS --out OUT ${wave_flags[*]}
# summaries:
go run golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION go.txt
go run golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION slow.txt
\`\`\`

## benchstat

\`\`\`
EOF
	cat "$WORK/benchstat.txt"
	echo
	cat "$WORK/benchstat-slow.txt"
	cat <<EOF
\`\`\`

## Raw output

<details><summary>go test output (go.txt, slow.txt) and GNU time of each \`ferry render\`</summary>

\`\`\`
EOF
	cat "$WORK/go.txt" "$WORK/slow.txt" "$WORK/daemon.txt" "$WORK/time.txt"
	cat <<EOF
\`\`\`

</details>
EOF
} >"$OUT"
log "wrote $OUT in $((elapsed / 60)) min $((elapsed % 60)) s"
