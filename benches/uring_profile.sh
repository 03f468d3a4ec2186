#!/usr/bin/env bash
# Issue 14: where a 1-loop echo server's CPU goes under a closed-loop load,
# from a perf cpu-clock profile (no hardware counters needed), by category:
# user space, the kernel's io_uring code, the descriptor lookups (fget, fput,
# sock_from_file), wake-ups and scheduling (with the tails of irq-off
# sections that cpu-clock samples land on), system call entry, and the
# rest (TCP over loopback, mostly). Shares of samples are steadier on a
# loaded machine than CPU per message; compare servers run back to back.
#
#   benches/uring_profile.sh                      # io-uring and epoll, 1000x512
#   PROF_SERVERS="io-uring io-uring-fixed" PROF_CONNS=50 benches/uring_profile.sh
#   PROF_ECHO=/tmp/echo-old benches/uring_profile.sh   # another build's echo
#   PROF_KEEP=/tmp/prof benches/uring_profile.sh  # keep the perf.data files
#
# Servers: io-uring, io-uring-fixed (RINGLOOP_URING_FIXED=1), epoll,
# monoio (the harness's). Per server: a 6 s `harness load` (0.5 s
# warm-up), a 4 s profile in its middle (`perf record -e cpu-clock -F 4000
# -g -p PID`), then the categories and the top symbols. Servers bind
# 127.0.0.1 and are stopped by pid.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
bench_build_echo
bench_workdir
conns=${PROF_CONNS:-1000}
size=${PROF_SIZE:-512}
echo_bin=${PROF_ECHO:-$bin/examples/echo}
read -r -a servers <<<"${PROF_SERVERS:-io-uring epoll}"

server_cmd() { # NAME
    local echo="$echo_bin tcp://127.0.0.1:0 --loops 1"
    case $1 in
        io-uring) echo "$echo --backend io-uring" ;;
        io-uring-fixed) echo "env RINGLOOP_URING_FIXED=1 $echo --backend io-uring" ;;
        epoll) echo "$echo --backend epoll" ;;
        monoio) echo "$harness serve monoio tcp://127.0.0.1:0" ;;
        *) echo "uring_profile.sh: unknown server $1" >&2; return 1 ;;
    esac
}

echo "### Where the server's CPU goes: ${conns}x${size}, 1 loop ($(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg))"
for name in "${servers[@]}"; do
    out=$work/$name.out
    bench_serve_under_load "$(server_cmd "$name")" "$out" "$conns" "$size" 6 0.5 "$work/load" || continue
    sleep 1.2
    perf record -e cpu-clock -F 4000 -g -p "$served" -o "$work/$name.data" -- sleep 4 >/dev/null 2>&1 || true
    wait "$loading" || true
    bench_stop "$served"
    echo
    echo "#### $name: $(bench_load_rate "$work/load") msgs/s, load $(cut -d' ' -f1 /proc/loadavg)"
    echo
    echo "| share of samples | category |"
    echo "|---|---|"
    perf report -i "$work/$name.data" --no-children --sort dso,sym --stdio \
        >"$work/$name.report" 2>/dev/null || true
    bench_perf_categories "$work/$name.report" | awk '{ s = $1; $1 = ""; printf "| %s %% |%s |\n", s, $0 }'
    echo
    echo '```'
    awk '/^ +[0-9.]+%/ && n++ < 25' "$work/$name.report"
    echo '```'
    if [[ -n ${PROF_KEEP:-} ]]; then
        mkdir -p "$PROF_KEEP"
        cp "$work/$name.data" "$PROF_KEEP/$name.data"
    fi
done
