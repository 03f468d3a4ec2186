#!/usr/bin/env bash
# Where ringloop's user-space instructions per echoed message go: one
# callgrind run of examples/echo (--loops 1, epoll) under the harness load
# (50 × 512 B by default), the same window as benches/callgrind.sh (zeroed
# after 2.5 s, dumped 3.5 s later), then the dump's total per message and
# where they go: the loop per event, the handler, the send, the turn.
#
#   benches/cg_echo_breakdown.sh [CONNS SIZE]
#   CG_ECHO=PATH benches/cg_echo_breakdown.sh     # another build of the echo
#   CG_KEEP=DIR  benches/cg_echo_breakdown.sh     # keep the dump in DIR
#   CG_ARGS="--et" benches/cg_echo_breakdown.sh   # extra arguments to the echo
#   CG_HARNESS=PATH benches/cg_echo_breakdown.sh  # a built harness (skips its build)
#
# The echo is built with line tables (`CARGO_PROFILE_RELEASE_DEBUG=
# line-tables-only`, the same code generation as a plain release build) into
# target-lt/, so callgrind_annotate and benches/cg_instructions.py can name
# source lines; for per-instruction costs of one function afterwards:
#
#   benches/cg_instructions.py DIR/cg.out target-lt/release/examples/echo 'REGEX' MESSAGES
#
# Messages are the calls of `ringloop::sys::io::write` (one per reply, see
# benches/cg_messages.awk). Needs valgrind; the server binds 127.0.0.1 and
# is stopped by pid.
set -euo pipefail

conns=${1:-50}
size=${2:-512}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
if [[ -z ${CG_ECHO:-} ]]; then
    CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR="$root/target-lt" \
        cargo build --release --example echo -p ringloop >&2
    CG_ECHO=$root/target-lt/release/examples/echo
fi
if [[ -z ${CG_HARNESS:-} ]]; then
    target_dir=$(bench_target_dir)
    CARGO_TARGET_DIR="$target_dir" cargo build --release --manifest-path benches/harness/Cargo.toml >&2
    CG_HARNESS=$target_dir/release/harness
fi
work=${CG_KEEP:-$(mktemp -d)}
mkdir -p "$work"
out=$work/cg.out
pid=
cleanup() {
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true
    [[ -n ${CG_KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

# shellcheck disable=SC2086
valgrind --tool=callgrind --dump-instr=yes --compress-pos=no --compress-strings=no \
    --callgrind-out-file="$out" "$CG_ECHO" tcp://127.0.0.1:0 --loops 1 ${CG_ARGS:-} \
    >"$work/server.log" 2>&1 &
pid=$!
port=$(bench_listening_port "$work/server.log")
"$CG_HARNESS" load "tcp://127.0.0.1:$port" --conns "$conns" --size "$size" --seconds 7 \
    --warmup 1.5 >"$work/load.log" 2>&1 &
load=$!
bench_callgrind_window "$pid"
wait "$load" || true
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
pid=
dump=$(ls "$out".* | head -1)
read -r messages per <<<"$(awk -f benches/cg_messages.awk "$dump")"
waits=$(awk '/^cfn=/ { epoll = /epoll_wait$/ } /^calls=/ { if (epoll) { split($0, a, /[= ]/); n += a[2] } epoll = 0 }
    END { print n + 0 }' "$dump")
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes'); $conns conns × $size B; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "messages $messages; instructions per message $per"
echo "epoll_wait calls $waits ($(awk -v m="$messages" -v w="$waits" 'BEGIN { printf "%.1f", m / w }') messages per turn)"
echo
# Self costs of the instructions of each piece, per message (the loop's
# turn is inlined into EventLoop::run: its instructions that run at least
# 0.9 times per message are the per-message path, the rest per turn).
piece() { # REGEX
    python3 benches/cg_instructions.py "$dump" "$CG_ECHO" "$1" "$messages" 0 |
        awk '$1 ~ /^[0-9.]+$/ && NF > 2 { if ($1 >= 0.9) hi += $1; else lo += $1 }
            END { printf "%.1f %.1f\n", hi, lo }'
}
read -r loop_hi loop_lo <<<"$(piece 'EventLoop<H>>::run$|EventLoop<H>::run$|EventLoop<H>>::serve$')"
read -r cb_hi cb_lo <<<"$(piece '::on_traffic$')"
read -r wr_hi wr_lo <<<"$(piece 'sys::io::write$')"
awk -v t="$per" -v lh="$loop_hi" -v ll="$loop_lo" -v ch="$cb_hi" -v cl="$cb_lo" \
    -v wh="$wr_hi" -v wl="$wr_lo" -v m="$messages" -v w="$waits" 'BEGIN {
    cb = ch + cl; wr = wh + wl; rest = t - lh - cb - wr
    printf "| where | instructions per message |\n|---|---|\n"
    printf "| the loop per event (EventLoop::serve, inlined fast path) | %.1f |\n", lh
    printf "| the handler call (on_traffic, with Conn::write inlined) | %.1f |\n", cb
    printf "| sys::io::write (the send, out of line) | %.1f |\n", wr
    printf "| per turn, amortised (wait, clock, mailbox, overflow, timers; %.0f per turn) | %.1f |\n", rest * m / w, rest
    printf "| total | %s |\n", t
}'
if [[ -n ${CG_KEEP:-} ]]; then
    echo
    echo "dump: $dump (messages $messages)"
fi
