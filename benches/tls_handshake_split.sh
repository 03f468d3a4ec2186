#!/usr/bin/env bash
# Where the echo server's CPU per full TLS handshake goes (issue 15), on each
# driver, with the tokio-rustls peer of the same tls-bench round beside it:
# `perf record -e cpu-clock` on both servers during one
# `tls-bench --only handshakes` round per driver (the drivers alternate each
# round), each profile split into microseconds per handshake of kernel,
# crypto (ring's primitives), other user code, and libc.
#   benches/tls_handshake_split.sh [ROUNDS] [ECHO_BIN]  # default: 3 rounds, target/release/examples/echo
# Needs perf (Debian: linux-perf) and root or perf_event_paranoid <= 1; build
# first with benches/tls.sh. Run it under `flock /tmp/bench.lock`.
# Results: benches/results/hs15-session9-20261205.md.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
target_dir=$(bench_target_dir) || exit 1
bench=$(bench_tls_bench) || exit 1
rounds=${1:-3}
bin=$(realpath "${2:-$target_dir/release/examples/echo}")
rate=4999
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# record RUN PATTERN FILE: perf record on the newest child of RUN matching
# PATTERN (waited for up to 30 s) until it exits.
record() {
    local pid=""
    for _ in $(seq 1 1500); do
        pid=$(pgrep -n -P "$1" -f "$2" || true)
        [[ -n $pid ]] && break
        sleep 0.02
    done
    [[ -n $pid ]] && perf record -F "$rate" -e cpu-clock -p "$pid" -o "$3" >/dev/null 2>&1 || true
}

# split FILE HANDSHAKES LABEL: the profile in microseconds per handshake.
split() {
    perf report -i "$1" --no-children --sort dso,sym -n --stdio -g none 2>/dev/null | awk \
        -v n="$2" -v hz="$rate" -v who="$3" '
        /^#/ || NF < 4 { next }
        { s = $2; t += s }
        / \[k\] / { k += s; next }
        /libc/ { l += s; next }
        /ring_core|ring::|fe4_|fe_|ecp_nistz|sha512|sha256|x25519|p256/ { c += s; next }
        { u += s }
        END {
            f = 1e6 / hz / n
            printf "  %-9s %6d handshakes, µs per handshake: total %.1f = kernel %.1f + crypto %.1f + other user %.1f + libc %.1f\n",
                who, n, t * f, k * f, c * f, u * f, l * f
        }'
}

uptime
for r in $(seq 1 "$rounds"); do
    backends=(io-uring epoll)
    ((r % 2)) || backends=(epoll io-uring)
    for backend in "${backends[@]}"; do
        tag=$backend-$r
        "$bench" --rounds 1 --seconds 4 --only handshakes --idle 0 --backend "$backend" \
            --echo-bin "$bin" >"$out/$tag.log" 2>&1 &
        run=$!
        record "$run" "^$bin " "$out/$tag.data" &
        record "$run" "tls-bench serve-tokio" "$out/$tag-tokio.data" &
        wait
        ours=$(grep -oP 'ringloop\s+handshakes: \K\d+' "$out/$tag.log")
        theirs=$(grep -oP 'tokio-tls handshakes: \K\d+' "$out/$tag.log")
        echo "round $r, ringloop on $backend: CPU ratio to tokio-rustls $(grep '^| handshakes' "$out/$tag.log" | awk -F'|' '{print $7}')"
        split "$out/$tag.data" "$ours" ringloop
        split "$out/$tag-tokio.data" "$theirs" tokio
    done
done
uptime
