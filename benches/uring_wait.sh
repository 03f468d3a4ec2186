#!/usr/bin/env bash
# Issue 14/15, the io_uring wait policy: plain waits below a receive batch of
# RINGLOOP_URING_PLAIN_BELOW (the default, 4: the first completion ends the
# wait, no near timer) against the batched / send-grace waits of before
# (RINGLOOP_URING_PLAIN_BELOW=0), the same echo binary, env differing,
# alternated every round; epoll beside them for the ratio.
#   benches/uring_wait.sh                     # 3 rounds, 1x512,50x512,1000x512,100x16384
#   WAIT_ROUNDS=5 WAIT_SCENARIOS=1x512 benches/uring_wait.sh
#   WAIT_BIN=/tmp/echo benches/uring_wait.sh  # another echo binary
#   BENCH_HARNESS=PATH ...                    # a harness built already (see lib.sh)
# Per run: a 3.5 s closed-loop `harness load` (0.5 s warm-up); over 2 s in
# its middle the server's utime + stime (/proc/PID/stat) and perf counts of
# kernel timers started (timer:hrtimer_start: each near one costs ~6.5 us
# on a VM, benches/timer_cost.sh), io_uring_enter and all system calls, per
# message (= the load's msgs/s x 2 s). Servers bind 127.0.0.1, stopped by pid.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
bench_build_echo
bench_workdir
echo_bin=${WAIT_BIN:-$bin/examples/echo}
rounds=${WAIT_ROUNDS:-3}
IFS=, read -r -a scen <<<"${WAIT_SCENARIOS:-1x512,50x512,1000x512,100x16384}"
servers=(plain batched epoll)
hz=$(getconf CLK_TCK)
events=timer:hrtimer_start,syscalls:sys_enter_io_uring_enter,raw_syscalls:sys_enter

server_cmd() { # NAME
    local echo="$echo_bin tcp://127.0.0.1:0 --loops 1"
    case $1 in
        plain) echo "env RINGLOOP_URING_PLAIN_BELOW=${WAIT_PLAIN:-4} $echo --backend io-uring" ;;
        batched) echo "env RINGLOOP_URING_PLAIN_BELOW=0 $echo --backend io-uring" ;;
        epoll) echo "$echo --backend epoll" ;;
    esac
}

# measure NAME CONNS SIZE: "msgs/s cpu_us/msg timers/msg enters/msg syscalls/msg"
measure() {
    bench_serve_under_load "$(server_cmd "$1")" "$work/server.$RANDOM" "$2" "$3" 3.5 0.5 "$work/load" ||
        { echo "0 0 0 0 0"; return; }
    sleep 1.2
    local u0 s0 u1 s1
    read -r u0 s0 < <(awk '{ print $14, $15 }' "/proc/$served/stat")
    : >"$work/perf"
    timeout 10 perf stat -x, -e "$events" -p "$served" -o "$work/perf" -- sleep 2 >/dev/null 2>&1 || sleep 2
    read -r u1 s1 < <(awk '{ print $14, $15 }' "/proc/$served/stat")
    wait "$loading" || true
    bench_stop "$served"
    awk -F, -v rate="$(bench_load_rate "$work/load")" -v hz="$hz" -v cpu=$((u1 - u0 + s1 - s0)) '
        /hrtimer_start/ { t = $1 } /io_uring_enter/ { e = $1 } /raw_syscalls/ { n = $1 }
        END { m = rate * 2; d = (m ? m : 1)
              printf "%d %.2f %.3f %.3f %.3f\n", rate, cpu * 1e6 / hz / d, t / d, e / d, n / d }' "$work/perf"
}

echo "### io_uring wait policy ($(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD), $rounds rounds, load $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "| scenario | server | round | msgs/s | CPU µs/msg | timers/msg | io_uring_enter/msg | syscalls/msg | load 1m |"
echo "|---|---|---|---|---|---|---|---|---|"
summary=$work/summary
: >"$summary"
for s in "${scen[@]}"; do
    for round in $(seq 1 "$rounds"); do
        for i in 0 1 2; do
            name=${servers[$(((i + round - 1) % 3))]}
            read -r rate cpu t e n <<<"$(measure "$name" "${s%x*}" "${s#*x}")"
            echo "| $s | $name | $round | $rate | $cpu | $t | $e | $n | $(cut -d' ' -f1 /proc/loadavg) |"
            echo "$s $round $name $rate $cpu" >>"$summary"
        done
    done
done
echo
echo "Per-round ratios, median (range):"
echo
echo "| scenario | plain ÷ batched CPU/msg | plain ÷ batched msgs/s | plain ÷ epoll CPU/msg | batched ÷ epoll CPU/msg |"
echo "|---|---|---|---|---|"
ratio() { # SCENARIO A B FIELD
    awk -v s="$1" -v a="$2" -v b="$3" -v f="$4" '$1 == s { v[$2, $3] = $f; r[$2] = 1 }
        END { for (k in r) if (v[k, a] > 0 && v[k, b] > 0) print v[k, a] / v[k, b] }' "$summary" | bench_spread 3
}
for s in "${scen[@]}"; do
    echo "| $s | $(ratio "$s" plain batched 5) | $(ratio "$s" plain batched 4) | $(ratio "$s" plain epoll 5) | $(ratio "$s" batched epoll 5) |"
done
echo
echo "Load after: $(cut -d' ' -f1-3 /proc/loadavg)"
