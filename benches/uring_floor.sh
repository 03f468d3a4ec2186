#!/usr/bin/env bash
# Issue 14's floor: how cheap can an io_uring echo get at all on this
# machine, against the hand-written mio loop (`epoll`) and ringloop on
# epoll? The servers of `harness bench` plus the lean io_uring echo's
# variants (`lean+fixed+regring`, ..., see
# benches/harness/src/serve_uring_lean.rs), 1 loop / thread each, same run,
# alternated and rotated per round, server on CPU 0 and load on CPU 1
# (`--pin`). Prints the markdown of `harness bench` (with the user / kernel
# split of the server's CPU per message) on stdout.
#
#   benches/uring_floor.sh                               # uring client, 5 rounds
#   FLOOR_SERVERS=epoll,lean,lean+coop,lean+single benches/uring_floor.sh
#   FLOOR_CLIENT=mio FLOOR_ROUNDS=3 benches/uring_floor.sh
#   FLOOR_PROFILE=lean+fixed+regring+bufs=32 benches/uring_floor.sh  # perf profiles instead
#                          # (cpu-clock, -g) of that server and the mio loop
#   BENCH_HARNESS=PATH ...  # a harness built already (see lib.sh)
#
# Measurements belong under the shared lock, at most ~6 min each:
#   flock /tmp/bench.lock benches/uring_floor.sh
# 6 servers x 3 scenarios x 5 rounds of 2.5 s fit in about 5.5 min.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
bench_build_echo
servers=${FLOOR_SERVERS:-epoll,ringloop-epoll,uring,lean+bufs=256,lean+fixed+regring+bufs=32,ringloop-io-uring}
client=${FLOOR_CLIENT:-uring}
rounds=${FLOOR_ROUNDS:-5}
seconds=${FLOOR_SECONDS:-2}
scenarios=${FLOOR_SCENARIOS:-50x512,1000x512,100x16384}
export BENCH_IDLE_WAIT=${BENCH_IDLE_WAIT:-10}

if [[ -n ${FLOOR_PROFILE:-} ]]; then
    bench_workdir
    conns=${FLOOR_CONNS:-50}
    size=${FLOOR_SIZE:-512}
    for name in epoll "$FLOOR_PROFILE"; do
        out=$work/$name.srv
        taskset -c 0 "$harness" serve "$name" tcp://127.0.0.1:0 >"$out" 2>&1 &
        pid=$!
        pids+=("$pid")
        for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
        url=$(grep -o 'tcp://[0-9.:]*' "$out")
        timeout 20 "$harness" load "$url" --conns "$conns" --size "$size" --seconds 5 \
            --warmup 0.5 --client "$client" --cpu 1 --pid "$pid" >"$work/$name.load" 2>&1 &
        load=$!
        sleep 1.5
        perf record -e cpu-clock -F 4000 -g -p "$pid" -o "$work/$name.data" -- sleep 3 \
            >/dev/null 2>&1 || true
        wait "$load" || true
        kill "$pid"
        wait "$pid" || true
        echo "#### $name, ${conns}x$size: $(tail -1 "$work/$name.load"), load $(cut -d' ' -f1 /proc/loadavg)"
        echo
        perf report -i "$work/$name.data" --no-children --sort dso,sym --stdio \
            >"$work/$name.report" 2>/dev/null || true
        echo '```'
        bench_perf_categories "$work/$name.report" |
            awk '{ s = $1; $1 = ""; printf "%5.1f %%%s\n", s, $0 }'
        echo
        awk '/^ +[0-9.]+%/ && n++ < 30' "$work/$name.report"
        echo '```'
        echo
    done
    exit 0
fi

echo "# The io_uring floor ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, Linux $(uname -r), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo
echo "Load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$harness" bench --servers "$servers" --peers epoll,ringloop-epoll --ringloop-loops 1 \
    --tokio-threads 1 --scenarios "$scenarios" --seconds "$seconds" --rounds "$rounds" \
    --idle-conns 0 --pin --ringloop "$bin/examples/echo" --client "$client" \
    --title "The io_uring floor: lean io_uring echoes against the mio loop ($client client)"
echo
echo "Load after: $(cut -d' ' -f1-3 /proc/loadavg)"
