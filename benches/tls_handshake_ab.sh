#!/usr/bin/env bash
# Same-run, alternated A/B of two echo binaries on full TLS handshakes
# (issue 15): each round runs `benches/tls_syscalls.sh handshakes` once per
# binary (order alternating), which makes one `tls-bench --only handshakes`
# round of that binary against tokio-rustls and counts both servers' system
# calls, page faults and context switches per handshake with perf.
#   benches/tls_handshake_ab.sh BIN_A BIN_B [ROUNDS] [TLS_BENCH_ARGS]
#   e.g. benches/tls_handshake_ab.sh /tmp/echo-base /tmp/echo-new 6 --backend io-uring
# AB_ENV_A / AB_ENV_B: space-separated VAR=VALUE settings for that side's runs
# only (e.g. AB_ENV_B=RINGLOOP_URING_BATCH=0 with the same binary as A and B).
# Prints, per binary, the median (range) of: ringloop / tokio CPU per
# handshake (same tls-bench round), and ringloop's per-handshake counts.
# Needs what tls_syscalls.sh needs (perf, the built harness).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
a=$(realpath "$1")
b=$(realpath "$2")
shift 2
rounds=6
if [[ $# -gt 0 && $1 != --* ]]; then
    rounds=$1
    shift
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
uptime
for r in $(seq 1 "$rounds"); do
    if ((r % 2)); then order=("A:$a" "B:$b"); else order=("B:$b" "A:$a"); fi
    for pair in "${order[@]}"; do
        who=${pair%%:*}
        side_env=AB_ENV_$who
        # shellcheck disable=SC2086 # the settings are words on purpose
        env ${!side_env:-} "$root/benches/tls_syscalls.sh" handshakes "${pair#*:}" "$@" >"$out/$who-$r.log" 2>&1 || {
            echo "round $r $who failed:" >&2
            cat "$out/$who-$r.log" >&2
            exit 1
        }
    done
done
python3 - "$out" "$a" "$b" <<'PY'
import glob, os, re, statistics, sys
out, names = sys.argv[1], {"A": sys.argv[2], "B": sys.argv[3]}
def cell(v):
    if not v:
        return "n/a"
    return f"{statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})"
keys = ["syscalls", "reads", "sends", "epoll_wait", "epoll_ctl", "io_uring_enter", "close",
        "accept4", "getpeername", "setsockopt",
        "madvise", "page faults", "context switches"]
for who in "AB":
    ratio, rate, tokio_cs, counts = [], [], [], {k: [] for k in keys}
    for log in sorted(glob.glob(os.path.join(out, f"{who}-*.log"))):
        text = open(log).read()
        cpu, made = {}, {}
        for m in re.finditer(r"round \d+ (\S+)\s+handshakes: (\d+), ([\d.]+)(\S+) CPU", text):
            made[m.group(1)] = int(m.group(2))
            unit = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}[m.group(4)]
            cpu[m.group(1)] = float(m.group(3)) * unit / max(int(m.group(2)), 1)
        if "ringloop" in cpu and len(cpu) == 2:
            other = [v for k, v in cpu.items() if k != "ringloop"][0]
            ratio.append(cpu["ringloop"] / other)
            rate.append(made["ringloop"] / max([v for k, v in made.items() if k != "ringloop"][0], 1))
        for line in text.splitlines():
            if line.startswith("ringloop-handshakes:"):
                for k in keys:
                    m = re.search(rf"{k} ([\d.]+)", line)
                    if m:
                        counts[k].append(float(m.group(1)))
            if line.startswith("tokio-handshakes:"):
                m = re.search(r"context switches ([\d.]+)", line)
                if m:
                    tokio_cs.append(float(m.group(1)))
    print(f"{who} = {names[who]} {os.environ.get('AB_ENV_' + who, '')}")
    print(f"  CPU per handshake, ringloop / tokio-rustls: {cell(ratio)}")
    print(f"  handshakes made in the round (2 client threads), ringloop / tokio-rustls: {cell(rate)}")
    for k in keys:
        print(f"  {k} per handshake: {cell(counts[k])}")
    print(f"  tokio-rustls context switches per handshake: {cell(tokio_cs)}")
PY
uptime
