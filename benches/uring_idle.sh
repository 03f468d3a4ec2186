#!/usr/bin/env bash
# Idle memory per connection (issue 14: io_uring <= 256 B at 10,000
# connections): the echo example's VmRSS growth per idle connection, each
# confirmed by a one-byte echo (`harness idle`, benches/harness/src/idle.rs:
# it warms the server with 16 connections first and reads VmRSS 2.5 s after
# the last echo), on io_uring and on epoll,
# alternated round by round. Faster and narrower than benches/uring.sh
# section A (no throughput scenarios), and able to compare builds:
#
#   benches/uring_idle.sh                        # release build of this tree
#   IDLE_ROUNDS=5 IDLE_CONNS=10000 benches/uring_idle.sh
#   IDLE_BUILD=0 IDLE_BINS="before=/tmp/echo-main after=target/release/examples/echo" \
#       IDLE_HARNESS=target/release/harness benches/uring_idle.sh
#
#   IDLE_BINS     space-separated LABEL=ECHO-BINARY pairs (default:
#                 "ringloop=<target>/release/examples/echo")
#   IDLE_BUILD    0: build nothing (IDLE_BINS and IDLE_HARNESS given)
#   IDLE_HARNESS  the harness binary (default: the release build's)
#   IDLE_BACKENDS backends to measure (default "io-uring epoll")
#   IDLE_ROUNDS   rounds (default 3); IDLE_CONNS connections (default 10000)
# Markdown on stdout; servers bind 127.0.0.1 and are stopped by pid.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh

rounds=${IDLE_ROUNDS:-3}
conns=${IDLE_CONNS:-10000}
backends=${IDLE_BACKENDS:-io-uring epoll}
if [[ ${IDLE_BUILD:-1} != 0 ]]; then
    bench_build_echo
    bins=${IDLE_BINS:-ringloop=$bin/examples/echo}
else
    bins=${IDLE_BINS:?IDLE_BUILD=0 needs IDLE_BINS}
    harness=${IDLE_HARNESS:?IDLE_BUILD=0 needs IDLE_HARNESS}
fi
ulimit -n "$(ulimit -Hn)"
bench_workdir

echo "# Idle memory per connection ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, Linux $(uname -r))"
echo
echo "$conns connections, $rounds rounds, alternated; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
declare -A figures
cases=()
for b in $bins; do for be in $backends; do cases+=("${b%%=*}:$be"); done; done
for round in $(seq "$rounds"); do
    # Rotate the order every round.
    order=("${cases[@]:$(((round - 1) % ${#cases[@]}))}" "${cases[@]:0:$(((round - 1) % ${#cases[@]}))}")
    for c in "${order[@]}"; do
        label=${c%%:*} backend=${c#*:}
        exe=
        for b in $bins; do [[ ${b%%=*} == "$label" ]] && exe=${b#*=}; done
        out=$work/server.$round.$label.$backend
        "$exe" tcp://127.0.0.1:0 --loops 1 --backend "$backend" >"$out" 2>&1 &
        pid=$!
        pids+=("$pid")
        port=$(bench_listening_port "$out")
        line=$("$harness" idle "tcp://127.0.0.1:$port" --conns "$conns" --pid "$pid" | tail -1)
        bench_stop "$pid"
        per=$(sed -n 's/.* \([0-9]*\) bytes per connection.*/\1/p' <<<"$line")
        figures[$c]+="$per "
        echo "round $round $label $backend: $line (load $(cut -d' ' -f1 /proc/loadavg))"
    done
done
echo
echo "| build | backend | bytes per idle connection, each round |"
echo "|---|---|---|"
for c in "${cases[@]}"; do
    echo "| ${c%%:*} | ${c#*:} | ${figures[$c]}|"
done
echo
echo "Load after: $(cut -d' ' -f1-3 /proc/loadavg)"
