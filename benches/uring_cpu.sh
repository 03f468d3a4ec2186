#!/usr/bin/env bash
# Issue 14, server CPU per echoed message on io_uring against epoll: where
# it goes (user and kernel apart) and what sending an echo from its
# received buffer saves. Servers, 1 loop each, same run, the order rotated
# every round:
#   io-uring       ringloop's echo on its io_uring driver (the default:
#                  an echoed input is sent from its provided buffer)
#   io-uring-copy  the same with RINGLOOP_URING_FORWARD=0 (every write is
#                  copied into the connection's queue first, as before)
#   io-uring-fixed the same with RINGLOOP_URING_FIXED=1 (a registered file
#                  table: operations name table entries, not descriptors)
#   io-uring-batch16  the same with RINGLOOP_URING_BATCH=16 (a turn's wait
#                  gathers at most 16 connections' receives)
#   io-uring-fwd512   the same with RINGLOOP_URING_FORWARD_MIN=512 (echoes of
#                  512 bytes and more are sent from their provided buffer,
#                  not copied into the queue: the default)
#   io-uring-fwd4k the same with RINGLOOP_URING_FORWARD_MIN=4096 (from 4 KiB,
#                  the default before session 8)
#   epoll          the same binary on epoll
#
#   benches/uring_cpu.sh                                  # 5 rounds, 3 scenarios
#   CPU_ROUNDS=3 CPU_SCENARIOS=100x16384 benches/uring_cpu.sh
#   CPU_SERVERS=io-uring,epoll benches/uring_cpu.sh
#   CPU_OTHER=/tmp/echo-old CPU_SERVERS=epoll,epoll-other,io-uring,io-uring-other \
#       benches/uring_cpu.sh   # another build of the echo beside this one
#   CPU_SERVERS=epoll,mio benches/uring_cpu.sh  # the hand-written mio loop
#                          # (`harness serve epoll`) beside ringloop on epoll
#   BENCH_HARNESS=PATH ... # a harness built already (see lib.sh)
#   BENCH_IDLE_WAIT=0 ...  # measure at once (default: wait up to 300 s for
#                          # an idle machine, see lib.sh; the load is
#                          # reported either way)
#
# Per run: a 3.5 s closed-loop `harness load` (0.5 s warm-up, every byte
# verified); over 2 s in its middle the server's utime and stime
# (/proc/PID/stat) and, with perf, its system calls; messages = the load's
# msgs/s x 2 s. Then, per round, the ratios io-uring / epoll and
# io-uring-copy / epoll (CPU per message and msgs/s), summarised as median
# (range) over the rounds. Needs perf (tracepoints only; without it the
# system-call column says ?). Servers bind 127.0.0.1 and are stopped by pid.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
bench_build_echo
bench_workdir
rounds=${CPU_ROUNDS:-5}
scenarios=${CPU_SCENARIOS:-50x512,1000x512,100x16384}
IFS=, read -r -a servers <<<"${CPU_SERVERS:-io-uring,io-uring-copy,epoll}"
hz=$(getconf CLK_TCK)

server_cmd() { # NAME
    local echo="$bin/examples/echo tcp://127.0.0.1:0 --loops 1"
    case $1 in
        io-uring) echo "$echo --backend io-uring" ;;
        io-uring-copy) echo "env RINGLOOP_URING_FORWARD=0 $echo --backend io-uring" ;;
        io-uring-fixed) echo "env RINGLOOP_URING_FIXED=1 $echo --backend io-uring" ;;
        io-uring-batch16) echo "env RINGLOOP_URING_BATCH=16 $echo --backend io-uring" ;;
        io-uring-fwd512) echo "env RINGLOOP_URING_FORWARD_MIN=512 $echo --backend io-uring" ;;
        io-uring-fwd4k) echo "env RINGLOOP_URING_FORWARD_MIN=4096 $echo --backend io-uring" ;;
        epoll) echo "$echo --backend epoll" ;;
        mio) echo "$harness serve epoll tcp://127.0.0.1:0" ;;
        # Another build of the echo (CPU_OTHER=PATH), for A/B runs.
        epoll-other | io-uring-other)
            [[ -n ${CPU_OTHER:-} ]] || { echo "uring_cpu.sh: $1 needs CPU_OTHER=PATH" >&2; return 1; }
            echo "$CPU_OTHER tcp://127.0.0.1:0 --loops 1 --backend ${1%-other}" ;;
        *) echo "uring_cpu.sh: unknown server $1" >&2; return 1 ;;
    esac
}

# measure NAME CONNS SIZE: "msgs/s cpu_us/msg user_us/msg sys_us/msg syscalls/msg"
measure() {
    # A fresh output file per run: a reused one still names the last port.
    bench_serve_under_load "$(server_cmd "$1")" "$work/server.$1.$2x$3.$RANDOM" "$2" "$3" 3.5 0.5 "$work/load" ||
        { echo "0 0 0 0 0"; return; }
    # `env` execs the server: the pid is the server's.
    sleep 1.2
    local u0 s0 u1 s1
    read -r u0 s0 < <(awk '{ print $14, $15 }' "/proc/$served/stat")
    : >"$work/perf"
    timeout 10 perf stat -x, -e raw_syscalls:sys_enter -p "$served" -o "$work/perf" -- sleep 2 \
        >/dev/null 2>&1 || sleep 2
    read -r u1 s1 < <(awk '{ print $14, $15 }' "/proc/$served/stat")
    wait "$loading" || true
    bench_stop "$served"
    awk -F, -v rate="$(bench_load_rate "$work/load")" -v hz="$hz" \
        -v user=$((u1 - u0)) -v sys=$((s1 - s0)) '
        /sys_enter/ { n = $1 }
        END {
            m = rate * 2; d = (m ? m : 1); us = 1e6 / hz / d
            printf "%d %.2f %.2f %.2f %s\n", rate, (user + sys) * us, user * us, sys * us,
                (n == "" ? "?" : sprintf("%.3f", n / d))
        }' "$work/perf"
}

echo "### io_uring CPU per message ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, Linux $(uname -r), commit $(git rev-parse --short HEAD))"
echo
echo "\`benches/uring_cpu.sh\` with CPU_ROUNDS=$rounds CPU_SCENARIOS=$scenarios; load before: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
bench_wait_idle uring_cpu.sh
echo "$BENCH_IDLE_LINE."
echo
echo "| scenario | server | round | msgs/s | server CPU µs/msg | user µs/msg | kernel µs/msg | syscalls/msg | load 1m |"
echo "|---|---|---|---|---|---|---|---|---|"
summary=$work/summary
: >"$summary"
IFS=, read -r -a scen <<<"$scenarios"
for s in "${scen[@]}"; do
    for round in $(seq 1 "$rounds"); do
        for i in $(seq 0 $((${#servers[@]} - 1))); do
            name=${servers[$(((i + round - 1) % ${#servers[@]}))]}
            echo "uring_cpu.sh: $s $name round $round" >&2
            read -r rate cpu user sys calls <<<"$(measure "$name" "${s%x*}" "${s#*x}")"
            echo "| $s | $name | $round | $rate | $cpu | $user | $sys | $calls | $(cut -d' ' -f1 /proc/loadavg) |"
            echo "$s $round $name $rate $cpu $user $sys" >>"$summary"
        done
    done
done
echo
echo "Load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "Per-round ratios against epoll in the same round, median (range):"
echo
echo "| scenario | server | CPU/msg ÷ epoll | user µs/msg | kernel µs/msg | msgs/s ÷ epoll |"
echo "|---|---|---|---|---|---|"
for s in "${scen[@]}"; do
    for name in "${servers[@]}"; do
        [[ $name == epoll ]] && continue
        ratios() { # FIELD: the per-round ratios of NAME's FIELD to epoll's
            awk -v s="$s" -v n="$name" -v f="$1" '$1 == s { v[$2, $3] = $f; r[$2] = 1 }
                END { for (k in r) if (v[k, "epoll"] > 0 && v[k, n] > 0) print v[k, n] / v[k, "epoll"] }' "$summary"
        }
        values() { # FIELD: NAME's FIELD over the rounds
            awk -v s="$s" -v n="$name" -v f="$1" '$1 == s && $3 == n { print $f }' "$summary"
        }
        echo "| $s | $name | $(ratios 5 | bench_spread) | $(values 6 | bench_spread) | $(values 7 | bench_spread) | $(ratios 4 | bench_spread) |"
    done
    echo "| $s | epoll | — | $(awk -v s="$s" '$1 == s && $3 == "epoll" { print $6 }' "$summary" | bench_spread) | $(awk -v s="$s" '$1 == s && $3 == "epoll" { print $7 }' "$summary" | bench_spread) | — |"
done
