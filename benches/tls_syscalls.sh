#!/usr/bin/env bash
# System calls and context switches per message of the TLS servers (issue 15),
# counted by perf tracepoints: figures that do not depend on the machine's load.
#   benches/tls_syscalls.sh echo [ECHO_BIN]    # ringloop's echo and the tokio-rustls peer,
#                                              # one `tls-bench` round, per 1 s interval
#   benches/tls_syscalls.sh proxy [PROXY_BIN]  # the TLS-terminating proxy and HAProxy, whole runs
# Binaries default to target/release/examples/{echo,proxy}; the harness must be
# built (benches/tls.sh builds both). Needs perf (Debian: linux-perf) and root or
# perf_event_paranoid <= 1. Results: benches/results/tls-unbuffered-20261205-0250.md.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
target_dir=$(bench_target_dir) || exit 1
bench="$target_dir/release/tls-bench"
[[ -x $bench ]] || bench="$root/benches/harness/target/release/tls-bench"
mode=${1:-echo}
bin=$(realpath "${2:-$target_dir/release/examples/$mode}")
events=raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_writev,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,context-switches
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# pid_of PATTERN: the newest process of ours matching PATTERN, waited for.
pid_of() {
    local pid
    for _ in $(seq 1 600); do
        pid=$(pgrep -n -f "$1" || true)
        [[ -n $pid ]] && { echo "$pid"; return 0; }
        sleep 0.05
    done
    return 1
}

# count WHO PID: perf stat on PID, in 1 s intervals, until it exits.
count() {
    perf stat -I 1000 -x, -e "$events" -p "$2" -o "$out/$1.csv" &
    local perf=$!
    while kill -0 "$2" 2>/dev/null; do sleep 0.2; done
    wait "$perf" || true
}

uptime
case $mode in
    echo)
        "$bench" --rounds 1 --seconds 3 --idle 200 --echo-bin "$bin" >"$out/bench.log" 2>&1 &
        run=$!
        count ringloop "$(pid_of "^$bin ")"
        count tokio "$(pid_of "tls-bench serve-tokio")"
        ;;
    proxy)
        "$bench" proxy --rounds 1 --seconds 3 --proxy-bin "$bin" >"$out/bench.log" 2>&1 &
        run=$!
        count ringloop-proxy "$(pid_of "^$bin ")"
        count haproxy "$(pid_of "^haproxy .*/tls-bench-$run/")"
        ;;
    *) echo "usage: $0 echo|proxy [BIN]" >&2; exit 2 ;;
esac
wait "$run"
grep '^round' "$out/bench.log"
# Per interval (echo) or summed (proxy): sends are messages for the echo and
# twice the messages for the proxy (one send to each side).
python3 - "$out" "$mode" <<'EOF'
import collections, glob, os, sys
out, mode = sys.argv[1], sys.argv[2]
for path in sorted(glob.glob(os.path.join(out, "*.csv"))):
    rows = collections.OrderedDict()
    for line in open(path):
        f = line.strip().split(",")
        if line.startswith("#") or len(f) < 4:
            continue
        try:
            rows.setdefault(f[0], collections.Counter())[f[3]] += float(f[1])
        except ValueError:
            pass
    if mode == "proxy":
        total = collections.Counter()
        for d in rows.values():
            total.update(d)
        rows = collections.OrderedDict(all=total)
    print(os.path.basename(path)[:-4])
    for t, d in rows.items():
        sends = sum(d[k] for k in d if k.split("_")[-1] in ("write", "sendto", "sendmsg", "writev"))
        reads = d["syscalls:sys_enter_read"] + d["syscalls:sys_enter_recvfrom"]
        msgs = sends / (2 if mode == "proxy" else 1)
        if msgs < 5000:
            continue
        print(f"  {t}: {msgs:.0f} messages; per message: syscalls {d['raw_syscalls:sys_enter'] / msgs:.3f}, "
              f"reads {reads / msgs:.3f}, sends {sends / msgs:.3f}, "
              f"epoll_wait {d['syscalls:sys_enter_epoll_wait'] / msgs:.3f}, "
              f"context switches {d['context-switches'] / msgs:.3f}")
EOF
uptime
