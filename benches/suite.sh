#!/usr/bin/env bash
# The end-to-end benchmark suite of issues 3 to 5: builds the servers and the
# harness in release mode, then runs, each section bounded in time:
#   A. core echo at 1 thread   ringloop --loops 1 vs tokio current_thread vs the hand-written loop
#   B. core echo at 2 threads  ringloop --loops 2 vs tokio with 2 workers
#   C. TCP modes               acceptor vs --reuseport vs --lt (ringloop --loops 2)
#   D. UDP echo                ringloop vs tokio UDP, at 1 thread (and 2 in full mode)
#   E. worker pool             echo_pool vs tokio spawn_blocking, --delay-ms 1 and 100
#   F. async writes            ConnHandle::async_write vs crossbeam-channel + eventfd
#   G. frames from workers     FrameHandle::send_frame vs plain async_write (issue 13 item 1)
#
#   benches/suite.sh            # full: ~12 minutes
#   benches/suite.sh --quick    # ~2.5 minutes, 2 rounds of 1 s: a smoke test, noisy
#
# Markdown goes to stdout, progress to stderr, e.g.
#   benches/suite.sh > suite.md
# Honours CARGO_TARGET_DIR. Exit status 1 if any section failed or reported a
# problem (a lost or stalled connection, a server that did not stop cleanly);
# the other sections still run. See benches/harness/README.md.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

quick=0
for arg in "$@"; do
    case $arg in
        --quick) quick=1 ;;
        -h | --help)
            sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "suite.sh: unknown argument $arg (only --quick)" >&2
            exit 2
            ;;
    esac
done

if ((quick)); then
    rounds3=2 rounds2=2 rounds_udp=2 secs=1 pool100_secs=2 aw_rounds=2 aw_secs=1 aw_rates=20000,0
    limit=300
else
    # At least 3 rounds everywhere: each figure is a median with its range.
    rounds3=3 rounds2=3 rounds_udp=3 secs=5 pool100_secs=5 aw_rounds=4 aw_secs=3 aw_rates=5000,50000,0
    limit=900
fi

# Where cargo puts binaries, honouring CARGO_TARGET_DIR and build.target-dir.
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
target_dir=$(bench_target_dir) || exit 1
echo "suite.sh: building (release)" >&2
cargo build --release --example echo --example echo_pool -p ringloop >&2 || exit 1
CARGO_TARGET_DIR="$target_dir" cargo build --release --manifest-path benches/harness/Cargo.toml >&2 || exit 1
harness=$target_dir/release/harness
echo_bin=$target_dir/release/examples/echo

status=0
started=$SECONDS
# run TITLE-FOR-PROGRESS COMMAND...: bounded by `timeout`; the harness's
# servers die with it (PR_SET_PDEATHSIG), so nothing outlives a killed section.
run() {
    local what=$1
    shift
    local t0=$SECONDS
    echo "suite.sh: ── $what" >&2
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    if ((rc != 0)); then
        status=1
        if ((rc == 124 || rc == 137)); then
            echo -e "\n**$what: stopped after the ${limit} s limit.**"
        else
            echo -e "\n**$what: exit status $rc (see Problems above, or the progress log).**"
        fi
    fi
    echo "suite.sh: ── $what took $((SECONDS - t0)) s" >&2
    echo
}

# `timeout` runs programs, not shell functions.
bench=("$harness" bench --ringloop "$echo_bin")

bench_wait_idle suite.sh
# Every section's harness checks again, briefly, and reports the load.
export BENCH_IDLE_WAIT=${BENCH_IDLE_WAIT_AFTER:-30}

echo "# ringloop end-to-end benchmark suite"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)); \
Linux $(uname -r); load average at start $(cut -d' ' -f1-3 /proc/loadavg); before measuring: $BENCH_IDLE_LINE; \
mode: $( ((quick)) && echo "quick (2 rounds × 1 s: a smoke test, too noisy for conclusions)" || echo "full")."
echo

run "A. core echo, 1 thread" "${bench[@]}" \
    --title "A. Core echo at 1 thread: ringloop --loops 1, tokio current_thread, hand-written loop" \
    --servers ringloop,tokio,epoll --peers tokio,epoll \
    --ringloop-loops 1 --tokio-threads 1 \
    --rounds "$rounds3" --seconds "$secs" --idle-conns 10000

run "B. core echo, 2 threads" "${bench[@]}" \
    --title "B. Core echo at 2 threads: ringloop --loops 2, tokio with 2 worker threads" \
    --servers ringloop,tokio --peers tokio \
    --ringloop-loops 2 --tokio-threads 2 \
    --rounds "$rounds2" --seconds "$secs" --idle-conns 10000

run "C. TCP modes" "${bench[@]}" \
    --title "C. TCP modes: acceptor + edge-triggered (ringloop, the default on epoll) vs --reuseport vs --lt, 2 loops" \
    --servers ringloop,ringloop-reuseport,ringloop-lt --peers ringloop \
    --ringloop-loops 2 --scenarios 50x512,1000x512 \
    --rounds "$rounds3" --seconds "$secs" --idle-conns 0

run "D. UDP echo, 1 thread" "${bench[@]}" --udp \
    --title "D. UDP echo at 1 thread: ringloop --loops 1, tokio current_thread" \
    --servers ringloop,tokio-udp --peers tokio-udp \
    --ringloop-loops 1 --tokio-threads 1 --scenarios 50x512,200x64 \
    --rounds "$rounds_udp" --seconds "$secs"

if ((!quick)); then
    run "D. UDP echo, 2 threads" "${bench[@]}" --udp \
        --title "D. UDP echo at 2 threads: ringloop --loops 2, tokio 2 worker threads" \
        --servers ringloop,tokio-udp --peers tokio-udp \
        --ringloop-loops 2 --tokio-threads 2 --scenarios 50x512,200x64 \
        --rounds "$rounds_udp" --seconds "$secs"
fi

run "E. worker pool, 1 ms" "${bench[@]}" \
    --title "E. Worker pool, 1 ms of blocking work per message: echo_pool vs tokio spawn_blocking (1 I/O thread, 50 workers each)" \
    --servers echo-pool,tokio-blocking --peers tokio-blocking \
    --ringloop-loops 1 --tokio-threads 1 --delay-ms 1 --workers 50 --scenarios 50x512 \
    --rounds "$rounds2" --seconds "$secs" --idle-conns 0

run "E. worker pool, 100 ms" "${bench[@]}" \
    --title "E. Worker pool, 100 ms of blocking work per message: echo_pool vs tokio spawn_blocking (1 I/O thread, 50 workers each)" \
    --servers echo-pool,tokio-blocking --peers tokio-blocking \
    --ringloop-loops 1 --tokio-threads 1 --delay-ms 100 --workers 50 --scenarios 50x512 \
    --rounds "$rounds_udp" --seconds "$pool100_secs" --idle-conns 0

run "F. async writes" "$harness" async-write \
    --title "F. Cross-thread async writes: 2 worker threads → 1 loop, 64 connections, 64-byte messages" \
    --loops 1 --workers 2 --conns 64 --size 64 \
    --rates "$aw_rates" --rounds "$aw_rounds" --seconds "$aw_secs"

run "G. frames from workers" "$harness" async-write \
    --title "G. Frames from workers: FrameHandle::send_frame vs plain async_write of the same bytes, 2 workers → 1 loop, 64 connections, 64-byte messages" \
    --designs framed,ringloop --loops 1 --workers 2 --conns 64 --size 64 \
    --rates "$aw_rates" --rounds "$aw_rounds" --seconds "$aw_secs"

echo "Suite finished in $((SECONDS - started)) s; load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
exit $status
