#!/usr/bin/env bash
# Per-message costs of the echo servers that do not depend on the neighbours:
#   * system calls per message, counted by perf's syscall tracepoints;
#   * user-space instructions per message, counted by callgrind.
# Servers: ringloop `echo --loops 1`, tokio current_thread, the hand-written
# mio loop, each under the same closed-loop load (50 conns × 512 B by default).
#
#   benches/costs.sh [CONNS SIZE]      # ~3 minutes; markdown on stdout
#   COSTS_RUNS=1 benches/costs.sh      # one run per server (~1 minute)
#   RINGLOOP_BACKEND=io-uring benches/costs.sh   # ringloop on io_uring
#
# Each server is measured COSTS_RUNS times (default 3), runs of the servers
# alternated; a row per run, then per server the median and range of the
# totals. It first waits for an idle machine (benches/lib.sh) and gives the
# load beside every row.
#
# Needs perf (tracepoints are enough; hardware counters are not used) and
# valgrind. Servers bind 127.0.0.1 only and are stopped by pid. Honours
# CARGO_TARGET_DIR.
set -euo pipefail

conns=${1:-50}
size=${2:-512}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
bench_build_echo
bench_workdir

# Every server binds port 0 and prints "… listening on tcp://127.0.0.1:PORT …".
server_cmd() { # NAME
    case $1 in
        ringloop) echo "$bin/examples/echo tcp://127.0.0.1:0 --loops 1" ;;
        tokio) echo "$harness serve tokio tcp://127.0.0.1:0 --current-thread" ;;
        epoll) echo "$harness serve epoll tcp://127.0.0.1:0" ;;
    esac
}

events='syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_writev,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_io_uring_enter'

# syscalls NAME: "read recvfrom write sendto writev epoll_wait epoll_ctl
# io_uring_enter" per message.
syscalls() {
    bench_perf_under_load "$(server_cmd "$1")" "$conns" "$size" "$events" "$work/perf" "$work/load"
    # Messages echoed while perf counted = send calls (one per message on
    # epoll, for all three); on io_uring sends go through the ring, so the
    # load's msgs/s x the 2 s counted (as benches/uring.sh does).
    awk -F, -v rate="$(bench_load_rate "$work/load")" '/syscalls/ { n[$3] = $1 }
        END {
            m = n["syscalls:sys_enter_sendto"] + n["syscalls:sys_enter_write"] + n["syscalls:sys_enter_writev"]
            if (n["syscalls:sys_enter_io_uring_enter"] > 0) m = rate * 2
            split("read recvfrom write sendto writev epoll_wait epoll_ctl io_uring_enter", k, " ")
            printf "%d", m
            for (i = 1; i <= 8; i++) printf " %.3f", n["syscalls:sys_enter_" k[i]] / (m ? m : 1)
            printf "\n"
        }' "$work/perf"
}

# instructions NAME: user-space instructions per message (callgrind, counters
# zeroed after warm-up, dumped before the load ends; messages = calls of
# glibc's send, or for ringloop, which makes the system call itself, of
# ringloop::sys::io::write; on io_uring, whose sends go through the ring,
# the load's msgs/s x the 3.5 s between zeroing and dump, all inside the
# load's measured time).
instructions() {
    bench_serve_under_load "valgrind --tool=callgrind --callgrind-out-file=$work/cg.$1 $(server_cmd "$1")" \
        "$work/vg.$1" "$conns" "$size" 5 1.5 "$work/cgload"
    sleep 2
    callgrind_control -z "$served" >/dev/null
    sleep 3.5
    callgrind_control -d "$served" >/dev/null
    wait "$loading"
    bench_stop "$served"
    local dump
    dump=$(ls "$work/cg.$1".* | head -1)
    local counted
    counted=$(awk -f "$root/benches/cg_messages.awk" "$dump")
    if [ "${counted%% *}" = 0 ]; then
        # No send call (io_uring): counters zeroed 2 s in and dumped 3.5 s
        # later, inside the load's 5 s measured after its 1.5 s warm-up.
        awk -v rate="$(bench_load_rate "$work/cgload")" '/^summary:/ { t = $2 }
            END { m = rate * 3.5; if (m) printf "%d %.0f\n", m, t / m; else print "0 ?" }' "$dump"
    else
        echo "$counted"
    fi
}

bench_wait_idle costs.sh
echo "### Per-message costs: system calls and user-space instructions ($conns conns × $size B, 1 thread)"
echo
runs=${COSTS_RUNS:-3}
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs, Linux $(uname -r); before measuring: $BENCH_IDLE_LINE. $runs run(s) per server, servers alternated. System calls: perf syscall tracepoints over 2 s of load; user-space instructions: callgrind (the server runs ~50× slower in user space, the kernel at full speed), counters zeroed after warm-up; messages = \`send\` calls."
echo
echo "ringloop's driver: ${RINGLOOP_BACKEND:-epoll} (RINGLOOP_BACKEND). On io_uring the messages are the load's msgs/s x the seconds counted (no send call to count)."
echo
echo "| server | run | read | recvfrom | write | sendto | writev | epoll_wait | epoll_ctl | io_uring_enter | syscalls per msg | messages counted | user-space instructions per msg | messages counted | load 1m after |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
declare -A totals instrs
for run in $(seq 1 "$runs"); do
    for name in ringloop tokio epoll; do
        echo "costs.sh: $name, run $run of $runs" >&2
        read -r m r rf w s wv ew ec ue <<<"$(syscalls "$name")"
        read -r cm ir <<<"$(instructions "$name")"
        total=$(awk -v a="$r" -v b="$rf" -v c="$w" -v d="$s" -v e="$wv" -v f="$ew" -v g="$ec" -v h="$ue" \
            'BEGIN { printf "%.2f", a + b + c + d + e + f + g + h }')
        totals[$name]+="$total "
        instrs[$name]+="$ir "
        echo "| $name | $run | $r | $rf | $w | $s | $wv | $ew | $ec | $ue | $total | $m | $ir | $cm | $(cut -d' ' -f1 /proc/loadavg) |"
    done
done
echo
echo "| server | syscalls per msg, median (range) | user-space instructions per msg, median (range) |"
echo "|---|---|---|"
for name in ringloop tokio epoll; do
    echo "| $name | $(bench_spread 2 <<<"${totals[$name]}") | $(bench_spread 0 <<<"${instrs[$name]}") |"
done
