#!/usr/bin/env bash
# System calls per echoed message on the server side, by kind, for ringloop
# (epoll, edge-triggered by default and `--lt`) and its 1-thread peers, counted with
# `perf trace -s` over a window of a steady closed-loop load. The counts per
# message do not depend on the machine's load (beyond how many events one
# epoll_wait returns), unlike every wall-clock figure.
#
#   benches/syscalls.sh [CONNS SIZE]    # default 50 × 512 B
#
# Output: one markdown row per server: messages in the window, then calls
# per message of each system call (failed calls in brackets, e.g. reads
# that found nothing: EAGAIN). Needs perf (Debian package
# linux-perf) with tracepoints readable (root, or perf_event_paranoid <= -1).
# Servers bind 127.0.0.1 only and are stopped by pid.
set -euo pipefail

conns=${1:-50}
size=${2:-512}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
bench_build_echo
bench_workdir

server_cmd() { # NAME
    case $1 in
        ringloop) echo "$bin/examples/echo tcp://127.0.0.1:0 --loops 1" ;;
        ringloop-lt) echo "$bin/examples/echo tcp://127.0.0.1:0 --loops 1 --lt" ;;
        tokio) echo "$bin/harness serve tokio tcp://127.0.0.1:0 --current-thread" ;;
        epoll) echo "$bin/harness serve epoll tcp://127.0.0.1:0" ;;
    esac
}

echo "### System calls per echoed message ($conns conns × $size B, 1 loop / 1 thread, perf trace -s)"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs, Linux $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD)."
echo
echo "| server | messages | calls per message (failed) |"
echo "|---|---|---|"
for name in ringloop ringloop-lt tokio epoll; do
    bench_serve_under_load "$(server_cmd "$name")" "$work/$name.log" "$conns" "$size" 4 0.5 /dev/null
    sleep 1.5
    perf trace -s -p "$served" -o "$work/$name.trace" -- sleep 2 >/dev/null 2>&1
    wait "$loading" || true
    bench_stop "$served"
    # One reply per message: the sends (sendto, or write) count the messages.
    awk -v name="$name" '
        /^ *[a-z_0-9]+ +[0-9]+ +[0-9]+ / { calls[$1] = $2; errs[$1] = $3; order[++n] = $1 }
        END {
            m = calls["sendto"] + calls["write"] + calls["send"]
            if (!m) { printf "| %s | 0 | ? |\n", name; exit }
            row = ""
            for (i = 1; i <= n; i++) {
                c = order[i]
                row = row sprintf("%s%s %.3f", (row == "" ? "" : ", "), c, calls[c] / m)
                if (errs[c] > 0) row = row sprintf(" (%.3f)", errs[c] / m)
            }
            printf "| %s | %d | %s |\n", name, m, row
        }' "$work/$name.trace"
done
