#!/usr/bin/env bash
# Page faults and CPU per echoed message, server side, read from
# /proc/PID/stat (minflt, utime+stime) before and after a closed-loop load:
# counts that do not depend on how loaded the machine is (page faults) or
# depend on it less than msgs/s (CPU per message). Servers alternate, in a
# rotated order every round, so the ratios compare like with like.
#
#   benches/uring_faults.sh                         # 100x16384, 3 rounds
#   FAULTS_SCENARIOS=100x16384,50x512 FAULTS_ROUNDS=5 benches/uring_faults.sh
#   FAULTS_SERVERS="new-uring new-epoll old-uring" OLD_ECHO=/path/to/echo benches/uring_faults.sh
#
# Servers: new-uring / new-epoll (this tree's release echo example, 1 loop,
# --backend io-uring / epoll), old-uring / old-epoll (OLD_ECHO, the same
# example built from an older commit), tokio, monoio (the harness's).
# HARNESS: a prebuilt harness binary (default: build benches/harness).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
target_dir=$(bench_target_dir)
cargo build --release --example echo -p ringloop >&2
if [[ -z ${HARNESS:-} ]]; then
    CARGO_TARGET_DIR="$target_dir" cargo build --release --manifest-path benches/harness/Cargo.toml >&2
    HARNESS=$target_dir/release/harness
fi
harness=$HARNESS # what bench_serve_under_load runs
echo_bin=$target_dir/release/examples/echo
rounds=${FAULTS_ROUNDS:-3}
seconds=${FAULTS_SECONDS:-4}
scenarios=${FAULTS_SCENARIOS:-100x16384}
read -r -a servers <<<"${FAULTS_SERVERS:-new-uring new-epoll tokio monoio}"
bench_workdir

server_cmd() { # NAME
    case $1 in
        new-uring) echo "$echo_bin tcp://127.0.0.1:0 --loops 1 --backend io-uring" ;;
        new-epoll) echo "$echo_bin tcp://127.0.0.1:0 --loops 1 --backend epoll" ;;
        old-uring) echo "${OLD_ECHO:?OLD_ECHO} tcp://127.0.0.1:0 --loops 1 --backend io-uring" ;;
        old-epoll) echo "${OLD_ECHO:?OLD_ECHO} tcp://127.0.0.1:0 --loops 1 --backend epoll" ;;
        tokio) echo "$HARNESS serve tokio tcp://127.0.0.1:0 --current-thread" ;;
        monoio) echo "$HARNESS serve monoio tcp://127.0.0.1:0" ;;
    esac
}

# minflt utime+stime (ticks) of PID
stat_of() { awk '{ print $10, $14 + $15 }' "/proc/$1/stat"; }

# measure NAME CONNS SIZE SCENARIO ROUND: one table row (non-zero: the run failed).
measure() {
    # A file of its own: the background redirection may truncate a shared
    # one only after the port is read from it (the last run's port).
    local out=$work/out.$1.$4.$5
    local f0 c0 f1 c1 t0 t1 rate
    # Warm up (connections, buffers), then measure a window.
    bench_serve_under_load "$(server_cmd "$1")" "$out" "$2" "$3" "$seconds" 1 "$work/load" || return 1
    local pid=$served load=$loading
    sleep 1.2
    read -r f0 c0 <<<"$(stat_of "$pid")" || { bench_stop "$pid"; return 1; }
    t0=$(date +%s.%N)
    sleep "$((seconds - 1))"
    read -r f1 c1 <<<"$(stat_of "$pid")" || { bench_stop "$pid"; return 1; }
    t1=$(date +%s.%N)
    wait "$load" || true
    bench_stop "$pid"
    rate=$(bench_load_rate "$work/load")
    if [[ $rate == 0 ]]; then
        echo "| $4 | $1 | $5 | (the load reported no rate: $(tail -1 "$work/load")) | | | |"
        return 0
    fi
    awk -v f="$((f1 - f0))" -v c="$((c1 - c0))" -v t0="$t0" -v t1="$t1" -v r="${rate:-0}" \
        -v tick="$tick" -v s="$4" -v n="$1" -v round="$5" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
        'BEGIN { m = r * (t1 - t0); if (m < 1) m = 1
                 printf "| %s | %s | %d | %d | %.3f | %.2f | %s |\n", s, n, round, r, f / m, c / tick * 1e6 / m, l }'
}

echo "# Server page faults and CPU per echoed message ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "uptime before: $(uptime)"
echo
echo "| scenario | server | round | msgs/s | minor faults/msg | server CPU µs/msg | load 1m |"
echo "|---|---|---|---|---|---|---|"
tick=$(getconf CLK_TCK)
IFS=, read -r -a scen <<<"$scenarios"
for s in "${scen[@]}"; do
    conns=${s%x*}
    size=${s#*x}
    for round in $(seq 1 "$rounds"); do
        for i in $(seq 0 $((${#servers[@]} - 1))); do
            name=${servers[$(((i + round - 1) % ${#servers[@]}))]}
            measure "$name" "$conns" "$size" "$s" "$round" ||
                echo "| $s | $name | $round | (run failed: $(tail -1 "$work/out.$name.$s.$round" 2>/dev/null)) | | | |"
        done
    done
done
echo
echo "uptime after: $(uptime)"
echo
echo "msgs = the load's msgs/s (over its whole window) x the measured window; faults and CPU are the server's (every thread) over that window."
