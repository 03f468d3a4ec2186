#!/usr/bin/env bash
# How long the io_uring echo server's waits last during full TLS handshakes
# (issue 15): one `tls-bench --only handshakes --idle 0` round against ECHO_BIN
# with perf recording the server's io_uring_enter entries and exits, then per
# handshake: enters, enters that waited (min_complete > 0), and those waits
# sorted by length. A batched wait ended by its 100 µs min-wait (the ring's
# SEND_GRACE / BATCH_WAIT, src/event_loop/driver/uring.rs) lasts 100-150 µs;
# a wait answered by the peer's bytes ends when they come.
#   benches/tls_handshake_waits.sh ECHO_BIN [TLS_BENCH_ARGS]
#   e.g. benches/tls_handshake_waits.sh target/release/examples/echo --backend io-uring
#        RINGLOOP_URING_BATCH=0 benches/tls_handshake_waits.sh ...   # batched waits off
# Needs perf (Debian: linux-perf) and the built harness (benches/tls.sh).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
bench=$(bench_tls_bench) || exit 1
bin=$(realpath "${1:?usage: $0 ECHO_BIN [TLS_BENCH_ARGS]}")
shift
out=$(mktemp -d)
[[ -n ${WAITS_KEEP:-} ]] && echo "kept: $out" || trap 'rm -rf "$out"' EXIT
uptime
"$bench" --rounds 1 --seconds 3 --only handshakes --idle 0 --echo-bin "$bin" "$@" \
    >"$out/bench.log" 2>&1 &
run=$!
pid=
for _ in $(seq 1 1200); do
    pid=$(pgrep -n -P "$run" -f "^$bin " || true)
    [[ -n $pid ]] && break
    sleep 0.05
done
[[ -n $pid ]] || { echo "no server started" >&2; cat "$out/bench.log" >&2; exit 1; }
perf record -q -o "$out/perf.data" \
    -e syscalls:sys_enter_io_uring_enter,syscalls:sys_exit_io_uring_enter -p "$pid" \
    >/dev/null 2>&1 &
perf_pid=$!
while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
wait "$perf_pid" || true
wait "$run"
grep '^round' "$out/bench.log"
perf script -i "$out/perf.data" -F tid,time,event,trace 2>/dev/null >"$out/trace.txt"
python3 - "$out" <<'PY'
import os, re, sys
out = sys.argv[1]
made = 0
for line in open(os.path.join(out, "bench.log")):
    m = re.match(r"round \d+ ringloop\s+handshakes: (\d+),", line)
    if m:
        made = int(m.group(1))
start, waits, enters = {}, [], 0
for line in open(os.path.join(out, "trace.txt")):
    m = re.match(r"\s*(\d+)\s+([\d.]+):\s+(\S+):.*?(min_complete: (0x[0-9a-f]+))?", line)
    if not m:
        continue
    tid, t, event = m.group(1), float(m.group(2)), m.group(3)
    if "sys_enter" in event:
        enters += 1
        mc = re.search(r"min_complete: (0x[0-9a-f]+)", line)
        start[tid] = (t, int(mc.group(1), 16) if mc else 0)
    elif tid in start:
        t0, mc = start.pop(tid)
        if mc > 0:
            waits.append((t - t0) * 1e6)
if not made:
    sys.exit("no handshakes counted")
bands = [(0, 20), (20, 95), (95, 150), (150, 1000), (1000, 1e12)]
cells = []
for lo, hi in bands:
    n = [w for w in waits if lo <= w < hi]
    cells.append(f"{lo:g}-{hi:g} µs {len(n) / made:.3f} ({sum(n) / made:.0f} µs)"
                 .replace("-1e+12", "+"))
print(f"ringloop: {made} handshakes; per handshake: io_uring_enter {enters / made:.3f}, "
      f"waits {len(waits) / made:.3f}, time waiting {sum(waits) / made:.0f} µs")
print("  waits per handshake by length (and the time they took): " + "; ".join(cells))
PY
uptime
