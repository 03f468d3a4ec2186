#!/usr/bin/env bash
# Re-measures everything the README's benchmark tables and benches/RESULTS-*.md
# rest on, in order, into one results file: for every measurement its date,
# exact command, the idle check and the load average before and after, how
# long it took, its exit status, and its full output.
#
#   benches/remeasure.sh            # full: ~55 min on an idle 2-core machine, plus the build
#   benches/remeasure.sh --quick    # ~10 min idle (22 min at load average 20 to 30): checks that
#                                   # every step works end to end; its figures are a smoke test only
#   benches/remeasure.sh --only mailbox,codec     # some sections (names below)
#
# Sections, in order (each bounded by `timeout`; a failed section is reported
# and the others still run):
#   mailbox-throughput  cargo bench --bench ring          (README "Mailbox" table, RESULTS-mailbox.md)
#   mailbox-latency     cargo bench --bench mailbox_latency (latency and doorbell lines, RESULTS-mailbox.md)
#   suite               benches/suite.sh                  (README "Servers" echo table, RESULTS-suite.md)
#   idle-memory         harness bench --idle-only, 3 times (README idle memory, RESULTS-reliability.md)
#   costs               benches/costs.sh                  (system calls and instructions per message)
#   servers             benches/servers.sh                (http and kv tables, RESULTS-servers.md)
#   proxy               benches/proxy.sh                  (proxy vs HAProxy, RESULTS-proxy.md)
#   codec               benches/codec-ratios.sh 3         (codec ratios, RESULTS-codec.md)
#   soak                benches/soak.sh                   (soak, RESULTS-reliability.md)
#
# Every measurement first waits for an idle machine (benches/lib.sh; the Rust
# benches and the harness do the same): up to BENCH_IDLE_WAIT seconds (full
# default 600 for the first section, then BENCH_IDLE_WAIT_AFTER = 120 for
# each later one; quick: 5). A machine that stays busy is measured anyway and
# every section then says MEASURED UNDER LOAD.
#
# Output: benches/results/remeasure-<UTC date>[-quick].md (markdown) and a
# .log next to it (progress). Set RESULTS=path to choose the file. Servers
# bind 127.0.0.1 only and every load is bounded in time. Needs (Debian): wrk,
# redis-server, redis-tools, haproxy, linux-perf, valgrind, jq; when run as
# root it installs the missing ones with apt-get, otherwise the sections that
# need them are skipped and say so.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source benches/lib.sh

quick=0
only=""
while (($#)); do
    case $1 in
        --quick) quick=1 ;;
        --only) only=",${2:?--only needs a list},"; shift ;;
        --only=*) only=",${1#--only=}," ;;
        -h | --help) sed -n '2,35p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "remeasure.sh: unknown argument $1 (--quick, --only LIST)" >&2; exit 2 ;;
    esac
    shift
done

stamp=$(date -u '+%Y%m%d-%H%M')
mode=full
((quick)) && mode=quick
results=${RESULTS:-$root/benches/results/remeasure-$stamp$( ((quick)) && echo -quick).md}
mkdir -p "$(dirname "$results")"
log=${results%.md}.log
: >"$results"
: >"$log"
# Progress of everything below goes to the log and the terminal.
exec 2> >(tee -a "$log" >&2)

if ((quick)); then
    first_wait=${BENCH_IDLE_WAIT:-5}
    later_wait=${BENCH_IDLE_WAIT_AFTER:-5}
else
    first_wait=${BENCH_IDLE_WAIT:-600}
    later_wait=${BENCH_IDLE_WAIT_AFTER:-120}
fi

say() { printf '%s\n' "$*" >>"$results"; }

# Tools: install what is missing when we can (as proxy.sh does for haproxy).
missing_pkgs=()
for pair in wrk:wrk redis-server:redis-server redis-benchmark:redis-tools haproxy:haproxy \
    perf:linux-perf valgrind:valgrind jq:jq; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing_pkgs+=("${pair#*:}")
done
if ((${#missing_pkgs[@]})) && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "remeasure.sh: installing ${missing_pkgs[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing_pkgs[@]}" >&2 ||
        { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing_pkgs[@]}" >&2; } ||
        true
fi
have() { command -v "$1" >/dev/null 2>&1; }

echo "remeasure.sh: building (release): benches, examples, harness" >&2
target_dir=$(bench_target_dir) || exit 1
cargo build --release --benches --examples -p ringloop >&2 || exit 1
CARGO_TARGET_DIR="$target_dir" cargo build --release --manifest-path benches/harness/Cargo.toml --bins >&2 || exit 1

say "# Re-measurement of the README and benches/RESULTS-*.md figures ($mode)"
say ""
say "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)); Linux $(uname -r); $(rustc --version); commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)'); load average at the start $(cut -d' ' -f1-3 /proc/loadavg)."
say ""
if ((quick)); then
    say "**Quick mode: short runs that check every step works end to end. These figures are a smoke test, not for the README.**"
    say ""
fi

summary=()
status=0
n=0

# section NAME LIMIT_SECONDS FORMAT(text|md) COMMAND...: waits for an idle
# machine, runs COMMAND bounded by `timeout`, and records it.
section() {
    local name=$1 limit=$2 format=$3
    shift 3
    if [[ -n $only && $only != *",$name,"* ]]; then
        return 0
    fi
    n=$((n + 1))
    local wait=$later_wait
    ((n == 1)) && wait=$first_wait
    BENCH_IDLE_WAIT=$wait bench_wait_idle "remeasure.sh $name"
    local idle_line=$BENCH_IDLE_LINE load_before t0=$SECONDS started rc
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)
    started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
    local cmd="" a
    for a in "$@"; do # quote the words with spaces, for copy and paste
        [[ $a == *[[:space:]]* ]] && a="'$a'"
        cmd+="${cmd:+ }$a"
    done
    echo "remeasure.sh: ── $name: $cmd" >&2
    say "## $n. $name"
    say ""
    say "* started $started; command: \`$cmd\`"
    say "* before measuring: $idle_line; load average $load_before"
    local out
    out=$(mktemp)
    # The tools check again (and scripts before each of their steps); after
    # this wait they only wait briefly.
    BENCH_IDLE_WAIT=$later_wait BENCH_IDLE_WAIT_AFTER=$later_wait \
        timeout --kill-after=15 "$limit" "$@" >"$out"
    rc=$?
    local took=$((SECONDS - t0))
    say "* finished $(date -u '+%H:%M:%S UTC'), took $took s, exit status $rc$( ((rc == 124 || rc == 137)) && echo " (stopped at the $limit s limit)"); load average after $(cut -d' ' -f1-3 /proc/loadavg)"
    say ""
    if [[ $format == text ]]; then
        say '```text'
        cat "$out" >>"$results"
        say '```'
    else
        cat "$out" >>"$results"
    fi
    say ""
    rm -f "$out"
    ((rc == 0)) || status=1
    local state=idle
    ((BENCH_IDLE)) || state=LOADED
    summary+=("| $name | $rc | $took s | $state | $load_before |")
}

skip() { # NAME REASON
    if [[ -n $only && $only != *",$1,"* ]]; then
        return 0
    fi
    n=$((n + 1))
    say "## $n. $1"
    say ""
    say "**Skipped: $2.**"
    say ""
    status=1
    summary+=("| $1 | skipped | — | — | $2 |")
}

harness=$target_dir/release/harness

if ((quick)); then
    section mailbox-throughput 400 text env RING_ROUNDS=3 cargo bench --bench ring -- none
    section mailbox-latency 400 text env LAT_ROUNDS=3 LAT_SAMPLES=2000 LAT_SENDS=20000 \
        cargo bench --bench mailbox_latency
    section suite 600 md benches/suite.sh --quick
    section idle-memory 200 md "$harness" bench --idle-only --idle-conns 2000 \
        --ringloop "$target_dir/release/examples/echo" --servers ringloop,tokio --peers tokio \
        --ringloop-loops 2 --tokio-threads 2 --title "Idle memory, 2,000 connections (quick)"
else
    section mailbox-throughput 2400 text cargo bench --bench ring -- --warm-up-time 1 --measurement-time 3
    section mailbox-latency 2400 text cargo bench --bench mailbox_latency
    section suite 1800 md benches/suite.sh
    for i in 1 2 3; do
        section idle-memory 600 md "$harness" bench --idle-only --idle-conns 10000 \
            --ringloop "$target_dir/release/examples/echo" --servers ringloop,tokio,epoll \
            --peers tokio,epoll --ringloop-loops 2 --tokio-threads 2 \
            --title "Idle memory, 10,000 connections, run $i of 3"
    done
fi

if have perf && have valgrind; then
    if ((quick)); then
        section costs 300 md env COSTS_RUNS=1 benches/costs.sh
    else
        section costs 900 md benches/costs.sh
    fi
else
    skip costs "needs perf and valgrind (Debian: linux-perf valgrind)"
fi

if have wrk && have redis-benchmark && have redis-server; then
    if ((quick)); then
        section servers 600 md benches/servers.sh --quick
    else
        section servers 2400 md benches/servers.sh --rounds 3
    fi
else
    skip servers "needs wrk, redis-benchmark and redis-server (Debian: wrk redis-tools redis-server)"
fi

if ((quick)); then
    section proxy 300 md benches/proxy.sh --quick
    section codec 400 md env CODEC_BENCH_ARGS="--warm-up-time 0.1 --measurement-time 0.3" \
        benches/codec-ratios.sh 3
    section soak 150 md benches/soak.sh --seconds 20
else
    section proxy 1800 md benches/proxy.sh --rounds 3
    section codec 1200 md benches/codec-ratios.sh 3
    section soak 600 md benches/soak.sh --seconds 180
fi

say "## Summary"
say ""
say "| section | exit status | took | machine before | load average before |"
say "|---|---|---|---|---|"
for row in "${summary[@]}"; do say "$row"; done
say ""
say "Finished $(date -u '+%Y-%m-%d %H:%M UTC'); load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
echo "remeasure.sh: results in $results (progress in $log)" >&2
exit $status
