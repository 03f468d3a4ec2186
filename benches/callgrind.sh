#!/usr/bin/env bash
# User-space instructions per echoed message or per HTTP request, counted by
# callgrind (the counts do not depend on the machine's load, unlike every
# wall-clock figure), for ringloop and its peers at one loop / one thread.
#
#   benches/callgrind.sh echo [CONNS SIZE]   # ringloop echo --loops 1, tokio current_thread,
#                                            # the hand-written mio loop (default 50 × 512 B)
#   benches/callgrind.sh http [DEPTH]        # ringloop examples/http --loops 1 and tokio +
#                                            # httparse (current_thread), wrk -t1 -c50, DEPTH
#                                            # pipelined requests per write (default 1)
#   CG_RUNS=2 benches/callgrind.sh echo      # runs per server (default 1), alternated
#   CG_KEEP=DIR benches/callgrind.sh …       # keep the callgrind dumps in DIR
#   CG_HTTP=PATH benches/callgrind.sh http 16 # another build of examples/http as
#                                            # `ringloop` (an A/B of two commits)
#   CG_ECHO=PATH benches/callgrind.sh echo   # another build of examples/echo, likewise
#   CG_BACKEND=io-uring benches/callgrind.sh …  # ringloop on its io_uring driver
#                                            # (default epoll); CG_BACKEND=both: a
#                                            # row for each, same run
#   CG_SERVERS="ringloop-io-uring ringloop" … # only these rows (names as printed)
#
# Each server runs under valgrind --tool=callgrind; the load starts, the
# counters are zeroed after 2.5 s of warm-up and dumped 3.5–4 s later. The
# figure is the dump's total divided by the messages it covers: calls of
# glibc's `send` (tokio, the mio loop) or of `ringloop::sys::io::write`
# (ringloop on epoll makes the system call itself), or, on io_uring, of
# `ringloop::sys::uring::ring::Ring::send` (a send handed to the ring: the
# loop keeps one in flight per connection and a closed-loop client has one
# message out per connection), one reply per call — for HTTP
# times DEPTH (wrk writes DEPTH requests and waits for their DEPTH replies,
# which every server answers with one write; checked against httparse's
# parse calls). The kernel checks the count: the bytes the server's sockets
# sent over the same window (`ss -ti`'s bytes_sent summed over its
# connections, read right after the zeroing and right after the dump) per
# message counted, which must be the message size (echo) or the response's
# length (http; bytes_sent ÷ bytes per response = the kernel's count), give
# or take the few ms between valgrind's and ss's snapshots. Output: one
# markdown row per run. Needs valgrind, ss and, for http, wrk. Servers bind
# 127.0.0.1 only and are stopped by pid.
set -euo pipefail

mode=${1:-echo}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
target_dir=$(bench_target_dir)
cargo build --release --example echo --example http -p ringloop >&2
bin=$target_dir/release
if [[ -n ${BENCH_HARNESS:-} ]]; then
    harness=$BENCH_HARNESS # a harness built already (see lib.sh)
else
    CARGO_TARGET_DIR="$target_dir" cargo build --release --manifest-path benches/harness/Cargo.toml >&2
    harness=$bin/harness
fi
work=${CG_KEEP:-$(mktemp -d)}
mkdir -p "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    [[ -n ${CG_KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

case $mode in
    echo)
        conns=${2:-50}
        size=${3:-512}
        depth=1
        servers=(tokio epoll)
        ;;
    http)
        depth=${2:-1}
        servers=(tokio)
        ;;
    *)
        echo "usage: benches/callgrind.sh echo [CONNS SIZE] | http [DEPTH]" >&2
        exit 2
        ;;
esac

case ${CG_BACKEND:-epoll} in
    epoll) servers=(ringloop "${servers[@]}") ;;
    io-uring) servers=(ringloop-io-uring "${servers[@]}") ;;
    both) servers=(ringloop-io-uring ringloop "${servers[@]}") ;;
    *)
        echo "CG_BACKEND: epoll, io-uring or both" >&2
        exit 2
        ;;
esac
if [[ -n ${CG_SERVERS:-} ]]; then
    read -r -a servers <<<"$CG_SERVERS"
fi

server_cmd() { # NAME
    case $mode:$1 in
        echo:ringloop) echo "${CG_ECHO:-$bin/examples/echo} tcp://127.0.0.1:0 --loops 1" ;;
        echo:ringloop-io-uring) echo "${CG_ECHO:-$bin/examples/echo} tcp://127.0.0.1:0 --loops 1" ;;
        echo:tokio) echo "$harness serve tokio tcp://127.0.0.1:0 --current-thread" ;;
        echo:epoll) echo "$harness serve epoll tcp://127.0.0.1:0" ;;
        http:ringloop) echo "${CG_HTTP:-$bin/examples/http} tcp://127.0.0.1:0 --loops 1" ;;
        http:ringloop-io-uring) echo "${CG_HTTP:-$bin/examples/http} tcp://127.0.0.1:0 --loops 1" ;;
        http:tokio) echo "$harness serve tokio-http tcp://127.0.0.1:0 --threads 1" ;;
    esac
}

sent_bytes() { # PORT: bytes sent so far by the server's connections on PORT
    ss -tinH state established "( sport = :$1 )" |
        awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^bytes_sent:/) { sub(/^bytes_sent:/, "", $i); n += $i } }
             END { printf "%d\n", n }'
}

poke() { # PORT COUNT: opens and closes COUNT connections to PORT, in a row
    (
        for _ in $(seq "$2"); do
            exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0 # refused: it has stopped
            exec 3>&-
        done
    ) 2>/dev/null
}

measure() { # NAME RUN: prints "MESSAGES INSTRUCTIONS-PER-MESSAGE BYTES-PER-MESSAGE"
    local out=$work/cg.$mode.$1.$2
    local backend=epoll
    [[ $1 == *-io-uring ]] && backend=io-uring
    # shellcheck disable=SC2046
    RINGLOOP_BACKEND=$backend valgrind --tool=callgrind --callgrind-out-file="$out" $(server_cmd "$1") >"$out.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    local p
    p=$(bench_listening_port "$out.log")
    if [[ $mode == echo ]]; then
        "$harness" load "tcp://127.0.0.1:$p" --conns "$conns" --size "$size" --seconds 7 \
            --warmup 1.5 >/dev/null &
    elif [[ $depth == 1 ]]; then
        wrk -t1 -c50 -d8s "http://127.0.0.1:$p/plaintext" >"$out.wrk" &
    else
        wrk -t1 -c50 -d8s -s benches/harness/pipeline.lua "http://127.0.0.1:$p/plaintext" \
            -- "$depth" >"$out.wrk" &
    fi
    local load=$!
    # The window of bench_callgrind_window, with the kernel's byte counts.
    sleep 2.5
    callgrind_control -z "$pid" >/dev/null
    local b0 b1
    b0=$(sent_bytes "$p")
    sleep 3.5
    callgrind_control -d "$pid" >/dev/null
    b1=$(sent_bytes "$p")
    wait "$load" || true
    kill -TERM "$pid" 2>/dev/null || true
    # Under valgrind, ringloop on io_uring does not stop on SIGTERM by itself:
    # the loop thread waits in io_uring_enter holding valgrind's global lock,
    # so the thread that took the signal never runs (a valgrind artefact,
    # liburing issue #657; seen with strace: the signal thread has the
    # SIGTERM and waits for the lock). A connection to the server's port
    # ends that wait, but the loop thread gives the lock up only when its
    # time slice is spent, so one connection is not enough: an idle server
    # took ~1,000 opened and closed in a row (~1 s). So connections until it
    # has stopped cleanly (its "stopped" line in $out.log); the dump is taken
    # already, so after 10 s it is killed all the same.
    local until=$(($(date +%s%N) + 10000000000))
    while kill -0 "$pid" 2>/dev/null && (($(date +%s%N) < until)); do
        poke "$p" 20
    done
    if kill -KILL "$pid" 2>/dev/null; then
        echo "callgrind.sh: $1 did not stop within 10 s of SIGTERM: killed" >&2
    fi
    wait "$pid" 2>/dev/null || true
    local dump
    dump=$(ls "$out".* | grep -v '\.log$\|\.wrk$' | head -1)
    local m i
    read -r m i <<<"$(awk -v depth="$depth" -f benches/cg_messages.awk "$dump")"
    echo "$m $i $(awk -v b=$((b1 - b0)) -v m="$m" 'BEGIN { if (m > 0) printf "%.1f", b / m; else print "?" }')"
}

runs=${CG_RUNS:-1}
if [[ $mode == echo ]]; then
    what="echoed message ($conns conns × $size B, harness load generator)"
else
    what="HTTP request (wrk -t1 -c50, $depth per write)"
fi
echo "### User-space instructions per $what, 1 loop / 1 thread (callgrind)"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs, Linux $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg) (instruction counts do not depend on it); commit $(git rev-parse --short HEAD)."
echo
echo "| server | run | messages counted | instructions per message | bytes sent per message counted (kernel) |"
echo "|---|---|---|---|---|"
for run in $(seq 1 "$runs"); do
    for name in "${servers[@]}"; do
        echo "callgrind.sh: $mode $name, run $run of $runs" >&2
        read -r m i b <<<"$(measure "$name" "$run")"
        echo "| $name | $run | $m | $i | $b |"
    done
done
