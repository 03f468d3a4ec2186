#!/usr/bin/env bash
# Issue 14's benchmark: ringloop's echo on its io_uring driver against the
# same binary on epoll, tokio current_thread, monoio (io_uring, one thread)
# and the hand-written mio loop; one loop / thread each, same run,
# alternated (the harness rotates the order every round).
#
#   benches/uring.sh                 # ~15 min on an idle machine; markdown on stdout
#   URING_ROUNDS=1 URING_SECONDS=2 URING_IDLE_CONNS=2000 benches/uring.sh   # quick
#
# A. `harness bench`: msgs/s, server CPU µs per message (from the server's
#    /proc/PID/stat utime+stime over the load), idle memory per connection at
#    URING_IDLE_CONNS (default 10,000) connections; scenarios 50x512,
#    1000x512, 100x16384 (connections x message bytes, closed loop).
# B. System calls per echoed message: perf's raw_syscalls:sys_enter (every
#    system call of every thread of the server) counted for 2 s in the
#    middle of a 3.5 s load; messages = the load's msgs/s x 2 s (the load's
#    rate is measured over its whole window, so this is an estimate good to
#    a few per cent). Also io_uring_enter, epoll_wait and the
#    send/write-type calls alone.
# Every table gives the load average beside it: these machines are shared.
# Needs perf (tracepoints only). Servers bind 127.0.0.1 and are stopped by pid.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
bench_build_echo
rounds=${URING_ROUNDS:-3}
seconds=${URING_SECONDS:-5}
idle_conns=${URING_IDLE_CONNS:-10000}
scenarios=${URING_SCENARIOS:-50x512,1000x512,100x16384}
servers=ringloop-io-uring,ringloop-epoll,tokio,monoio,epoll
bench_workdir

echo "# io_uring driver benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, Linux $(uname -r))"
echo
echo "Load before: $(cut -d' ' -f1-3 /proc/loadavg) (uptime: $(uptime))"
echo
echo "## A. Throughput, server CPU per message, idle memory"
echo
echo "\`harness bench --servers $servers --peers ringloop-epoll,tokio,monoio --ringloop-loops 1 --tokio-threads 1 --scenarios $scenarios --rounds $rounds --seconds $seconds --idle-conns $idle_conns\`"
echo
BENCH_IDLE_WAIT=${BENCH_IDLE_WAIT:-0} "$harness" bench --servers "$servers" \
    --peers ringloop-epoll,tokio,monoio --ringloop-loops 1 --tokio-threads 1 \
    --scenarios "$scenarios" --rounds "$rounds" --seconds "$seconds" --idle-conns "$idle_conns" \
    --ringloop "$bin/examples/echo" --title "io_uring driver (issue 14)"
echo
echo "Load after A: $(cut -d' ' -f1-3 /proc/loadavg)"

server_cmd() { # NAME
    case $1 in
        ringloop-io-uring) echo "$bin/examples/echo tcp://127.0.0.1:0 --loops 1 --backend io-uring" ;;
        ringloop-epoll) echo "$bin/examples/echo tcp://127.0.0.1:0 --loops 1 --backend epoll" ;;
        tokio) echo "$harness serve tokio tcp://127.0.0.1:0 --current-thread" ;;
        monoio) echo "$harness serve monoio tcp://127.0.0.1:0" ;;
        epoll) echo "$harness serve epoll tcp://127.0.0.1:0" ;;
    esac
}

events='raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_writev,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom'

# syscalls NAME CONNS SIZE: "msgs total io_uring_enter epoll_wait sends reads" per message.
syscalls() {
    bench_perf_under_load "$(server_cmd "$1")" "$2" "$3" "$events" "$work/perf" "$work/load" || true
    awk -F, -v rate="$(bench_load_rate "$work/load")" '/sys_enter/ { n[$3] = $1 }
        END {
            m = rate * 2
            d = (m ? m : 1)
            s = n["syscalls:sys_enter_write"] + n["syscalls:sys_enter_sendto"] + n["syscalls:sys_enter_writev"]
            r = n["syscalls:sys_enter_read"] + n["syscalls:sys_enter_recvfrom"]
            printf "%d %.3f %.4f %.3f %.3f %.3f\n", m, n["raw_syscalls:sys_enter"] / d,
                n["syscalls:sys_enter_io_uring_enter"] / d, n["syscalls:sys_enter_epoll_wait"] / d, s / d, r / d
        }' "$work/perf"
}

echo
echo "## B. System calls per echoed message"
echo
echo "perf raw_syscalls:sys_enter over 2 s of a 3.5 s closed-loop load, every thread of the server; messages = load msgs/s x 2 s. $rounds run(s), servers alternated."
echo
echo "| scenario | server | run | all syscalls/msg | io_uring_enter/msg | epoll_wait/msg | write+sendto+writev/msg | read+recvfrom/msg | msgs counted | load 1m |"
echo "|---|---|---|---|---|---|---|---|---|---|"
IFS=, read -r -a scen <<<"$scenarios"
IFS=, read -r -a names <<<"$servers"
for s in "${scen[@]}"; do
    conns=${s%x*}
    size=${s#*x}
    for run in $(seq 1 "$rounds"); do
        # Rotate the order each run, as the harness does.
        for i in $(seq 0 $((${#names[@]} - 1))); do
            name=${names[$(((i + run - 1) % ${#names[@]}))]}
            echo "uring.sh: syscalls $s $name run $run" >&2
            read -r m all ue ew snd rcv <<<"$(syscalls "$name" "$conns" "$size")"
            echo "| $s | $name | $run | $all | $ue | $ew | $snd | $rcv | $m | $(cut -d' ' -f1 /proc/loadavg) |"
        done
    done
done
echo
echo "Load after B: $(cut -d' ' -f1-3 /proc/loadavg)"
