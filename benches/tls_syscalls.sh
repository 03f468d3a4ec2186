#!/usr/bin/env bash
# System calls and context switches per message of the TLS servers (issue 15),
# counted by perf tracepoints: figures that do not depend on the machine's load.
#   benches/tls_syscalls.sh echo [ECHO_BIN] [TLS_BENCH_ARGS]  # ringloop's echo and the tokio-rustls
#                                              # peer: one `tls-bench --only SCENARIO` round per
#                                              # echo scenario, each server counted over its whole
#                                              # life and divided by the messages it echoed
#                                              # (e.g. `echo target/release/examples/echo --backend io-uring`)
#   benches/tls_syscalls.sh proxy [PROXY_BIN] [TLS_BENCH_ARGS]  # the TLS-terminating proxy and HAProxy, whole runs
#   benches/tls_syscalls.sh handshakes [ECHO_BIN] [TLS_BENCH_ARGS]  # full handshakes (`tls-bench
#                                              # --only handshakes`, one round): each echo server's
#                                              # calls divided by the handshakes it made
# Binaries default to target/release/examples/{echo,proxy}; the harness must be
# built (benches/tls.sh builds both). Needs perf (Debian: linux-perf) and root or
# perf_event_paranoid <= 1. Results: benches/results/tls-unbuffered-20261205-0250.md,
# benches/results/tlsu-session6-20261205.md.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
target_dir=$(bench_target_dir) || exit 1
bench=$(bench_tls_bench) || exit 1
mode=${1:-echo}
shift || true
bin=$target_dir/release/examples/$mode
[[ $mode == handshakes ]] && bin=$target_dir/release/examples/echo
if [[ $# -gt 0 && $1 != --* ]]; then
    bin=$1
    shift
fi
bin=$(realpath "$bin")
extra=("$@")
events=raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_writev,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_close,syscalls:sys_enter_madvise,syscalls:sys_enter_accept4,syscalls:sys_enter_getpeername,syscalls:sys_enter_setsockopt,page-faults,context-switches
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# pid_of PATTERN [any]: the newest child of this run's bench ($run) matching
# PATTERN (with `any`: the newest process of ours), waited for (up to 60 s).
# Only its children by default: other people's benchmarks on the machine
# run servers of the same name.
pid_of() {
    local pid parent=(-P "$run")
    [[ ${2:-} == any ]] && parent=()
    for _ in $(seq 1 1200); do
        pid=$(pgrep -n "${parent[@]}" -f "$1" || true)
        [[ -n $pid ]] && { echo "$pid"; return 0; }
        sleep 0.05
    done
    return 1
}

# count WHO PID: perf stat on PID, over its whole life.
count() {
    perf stat -x, -e "$events" -p "$2" -o "$out/$1.csv" &
    local perf=$!
    while kill -0 "$2" 2>/dev/null; do sleep 0.2; done
    wait "$perf" || true
}

uptime
case $mode in
    echo)
        for scenario in 512 16KiB; do
            "$bench" --rounds 1 --seconds 3 --only "$scenario" --echo-bin "$bin" "${extra[@]}" \
                >"$out/bench-$scenario.log" 2>&1 &
            run=$!
            # Both watchers start now, so perf is attached to each server
            # from its first moments (the second starts when the first ends).
            count "ringloop-$scenario" "$(pid_of "^$bin ")" &
            count "tokio-$scenario" "$(pid_of "tls-bench serve-tokio")" &
            wait
            grep '^round' "$out/bench-$scenario.log"
        done
        ;;
    handshakes)
        "$bench" --rounds 1 --seconds 3 --only handshakes --idle 0 --echo-bin "$bin" "${extra[@]}" \
            >"$out/bench-handshakes.log" 2>&1 &
        run=$!
        count "ringloop-handshakes" "$(pid_of "^$bin ")" &
        count "tokio-handshakes" "$(pid_of "tls-bench serve-tokio")" &
        wait
        grep '^round' "$out/bench-handshakes.log"
        ;;
    proxy)
        "$bench" proxy --rounds 1 --seconds 3 --proxy-bin "$bin" "${extra[@]}" >"$out/bench.log" 2>&1 &
        run=$!
        count ringloop-proxy "$(pid_of "^$bin ")" &
        count haproxy "$(pid_of "^haproxy .*/tls-bench-$run/" any)" &
        wait
        grep '^round' "$out/bench.log"
        ;;
    *) echo "usage: $0 echo|handshakes|proxy [BIN] [TLS_BENCH_ARGS]" >&2; exit 2 ;;
esac
# Per message: the echo's messages are those tls-bench counted for that
# server and scenario (its few handshakes are included in the counts); the
# proxy's are its sends / 2 (one send to each side; on io_uring, whose sends
# are no system calls, the proxy gets no per-message figure).
python3 - "$out" "$mode" <<'PY'
import collections, glob, os, re, sys
out, mode = sys.argv[1], sys.argv[2]
msgs = {}
for log in glob.glob(os.path.join(out, "bench*.log")):
    for line in open(log):
        m = re.match(r"round \d+ (\S+)\s+echo \S+: (\d+) msgs", line)
        if m:
            who = "ringloop" if m.group(1) == "ringloop" else "tokio"
            scenario = "512" if "x512" in line else "16KiB"
            msgs[f"{who}-{scenario}"] = int(m.group(2))
        m = re.match(r"round \d+ (\S+)\s+handshakes: (\d+),", line)
        if m:
            who = "ringloop" if m.group(1) == "ringloop" else "tokio"
            msgs[f"{who}-handshakes"] = int(m.group(2))
for path in sorted(glob.glob(os.path.join(out, "*.csv"))):
    d = collections.Counter()
    for line in open(path):
        f = line.strip().split(",")
        if line.startswith("#") or len(f) < 3:
            continue
        try:
            d[f[2]] += float(f[0])
        except ValueError:
            pass
    name = os.path.basename(path)[:-4]
    sends = sum(d[k] for k in d if k.split("_")[-1] in ("write", "sendto", "sendmsg", "writev"))
    reads = d["syscalls:sys_enter_read"] + d["syscalls:sys_enter_recvfrom"]
    n = msgs.get(name) or sends / 2
    if not n:
        print(f"{name}: no messages counted")
        continue
    unit = "handshake" if name.endswith("handshakes") else "message"
    print(f"{name}: {n:.0f} {unit}s; per {unit}: syscalls {d['raw_syscalls:sys_enter'] / n:.3f}, "
          f"reads {reads / n:.3f}, sends {sends / n:.3f}, "
          f"epoll_wait {d['syscalls:sys_enter_epoll_wait'] / n:.3f}, "
          f"epoll_ctl {d['syscalls:sys_enter_epoll_ctl'] / n:.3f}, "
          f"io_uring_enter {d['syscalls:sys_enter_io_uring_enter'] / n:.3f}, "
          f"close {d['syscalls:sys_enter_close'] / n:.3f}, "
          f"madvise {d['syscalls:sys_enter_madvise'] / n:.3f}, "
          f"accept4 {d['syscalls:sys_enter_accept4'] / n:.3f}, "
          f"getpeername {d['syscalls:sys_enter_getpeername'] / n:.3f}, "
          f"setsockopt {d['syscalls:sys_enter_setsockopt'] / n:.3f}, "
          f"page faults {d['page-faults'] / n:.3f}, "
          f"context switches {d['context-switches'] / n:.3f}")
PY
uptime
