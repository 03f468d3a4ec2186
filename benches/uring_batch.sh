#!/usr/bin/env bash
# Issue 14, the io_uring wait loop: system calls, server CPU and msgs/s per
# echoed message of ringloop's io_uring driver with its batched waits (the
# default), with them off (RINGLOOP_URING_BATCH=0: one completion ends a
# wait, as on a kernel without the min-wait), and without deferred task
# running (RINGLOOP_URING_DEFER=0), beside ringloop on epoll, tokio
# current_thread and monoio; 1 loop / 1 thread each, same run, the order
# rotated every round.
#
#   benches/uring_batch.sh                       # 3 rounds, 3 scenarios
#   BATCH_ROUNDS=1 BATCH_SCENARIOS=50x512 benches/uring_batch.sh
#   BENCH_IDLE_WAIT=0 ...   # measure at once (default: wait up to 300 s for
#                           # an idle machine, see lib.sh; the load is
#                           # reported either way)
#
# Per run: a 3.5 s closed-loop `harness load` (0.5 s warm-up); over 2 s in
# its middle, perf counts raw_syscalls:sys_enter and io_uring_enter of every
# thread of the server, and the server's utime+stime (/proc/PID/stat) is
# read before and after, and so are the voluntary context switches of its
# threads (sleeps: each one a wake-up); messages = the load's msgs/s x 2 s. The system
# call counts do not depend on the machine's load the way wall-clock
# figures do, but a busy machine makes batches bigger (a server that falls
# behind finds more completions per wake-up): compare rows of one run, and
# read the load average beside each. Needs perf (tracepoints only). Servers
# bind 127.0.0.1 and are stopped by pid.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
bench_build_echo
bench_workdir
rounds=${BATCH_ROUNDS:-3}
scenarios=${BATCH_SCENARIOS:-50x512,1000x512,100x16384}
servers=(io-uring io-uring-unbatched io-uring-undeferred epoll tokio monoio)

server_cmd() { # NAME
    local echo="$bin/examples/echo tcp://127.0.0.1:0 --loops 1"
    case $1 in
        io-uring) echo "$echo --backend io-uring" ;;
        io-uring-unbatched) echo "env RINGLOOP_URING_BATCH=0 $echo --backend io-uring" ;;
        io-uring-undeferred) echo "env RINGLOOP_URING_DEFER=0 $echo --backend io-uring" ;;
        epoll) echo "$echo --backend epoll" ;;
        tokio) echo "$harness serve tokio tcp://127.0.0.1:0 --current-thread" ;;
        monoio) echo "$harness serve monoio tcp://127.0.0.1:0" ;;
    esac
}

# sleeps PID: voluntary context switches of every thread of PID so far
# (each is the thread going to sleep: one wake-up later).
sleeps() {
    cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ { n += $2 } END { print n + 0 }'
}

# measure NAME CONNS SIZE: "msgs/s syscalls/msg enters/msg cpu_us/msg sleeps/msg"
measure() {
    # A fresh output file per run: a reused one still names the last port.
    bench_serve_under_load "$(server_cmd "$1")" "$work/server.$1.$2x$3.$RANDOM" "$2" "$3" 3.5 0.5 "$work/load" ||
        { echo "0 0 0 0 0"; return; }
    # `env` execs the server: the pid is the server's.
    sleep 1.2
    local t0 t1 s0 s1
    s0=$(sleeps "$served")
    t0=$(awk '{ print $14 + $15 }' "/proc/$served/stat")
    timeout 10 perf stat -x, -e raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter \
        -p "$served" -o "$work/perf" -- sleep 2 >/dev/null 2>&1 || true
    t1=$(awk '{ print $14 + $15 }' "/proc/$served/stat")
    s1=$(sleeps "$served")
    wait "$loading" || true
    bench_stop "$served"
    awk -F, -v rate="$(bench_load_rate "$work/load")" -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v sleeps=$((s1 - s0)) '
        /sys_enter/ { n[$3] = $1 }
        END {
            m = rate * 2; d = (m ? m : 1)
            printf "%d %.3f %.3f %.2f %.3f\n", rate, n["raw_syscalls:sys_enter"] / d,
                n["syscalls:sys_enter_io_uring_enter"] / d, ticks / hz * 1e6 / d, sleeps / d
        }' "$work/perf"
}

echo "### io_uring batched waits ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, Linux $(uname -r), commit $(git rev-parse --short HEAD))"
echo
echo "\`benches/uring_batch.sh\` with BATCH_ROUNDS=$rounds BATCH_SCENARIOS=$scenarios; load before: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
bench_wait_idle uring_batch.sh
echo "$BENCH_IDLE_LINE."
echo
echo "| scenario | server | round | msgs/s | syscalls/msg | io_uring_enter/msg | server CPU µs/msg | server sleeps/msg | load 1m |"
echo "|---|---|---|---|---|---|---|---|---|"
IFS=, read -r -a scen <<<"$scenarios"
for s in "${scen[@]}"; do
    for round in $(seq 1 "$rounds"); do
        for i in $(seq 0 $((${#servers[@]} - 1))); do
            name=${servers[$(((i + round - 1) % ${#servers[@]}))]}
            echo "uring_batch.sh: $s $name round $round" >&2
            read -r rate sys enters cpu naps <<<"$(measure "$name" "${s%x*}" "${s#*x}")"
            echo "| $s | $name | $round | $rate | $sys | $enters | $cpu | $naps | $(cut -d' ' -f1 /proc/loadavg) |"
        done
    done
done
echo
echo "Load after: $(cut -d' ' -f1-3 /proc/loadavg)"
