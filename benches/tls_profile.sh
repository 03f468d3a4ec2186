#!/usr/bin/env bash
# Where a TLS echo server's CPU goes (issue 15): `perf record -e cpu-clock`
# on ringloop's echo server (epoll) during `tls-bench --only 512` rounds, the
# tokio-rustls peer alongside, and each profile split into shares that do not
# depend on the machine's load: kernel, user space, and within user space
# rustls, AEAD (ring), allocation and copies, ringloop's TLS glue; plus the
# kernel's read path (`read(2)`'s file layer against `recvfrom(2)`'s).
#   benches/tls_profile.sh [ROUNDS] [ECHO_BIN...]   # default: 1 round, target/release/examples/echo
# With several binaries they are alternated within each round (an A/B).
# Needs perf (Debian: linux-perf) and root or perf_event_paranoid <= 1; build
# first with benches/tls.sh (or the two cargo commands it runs).
# Results: benches/results/tlsr-session8-20261205.md.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
target_dir=$(bench_target_dir) || exit 1
bench=$target_dir/release/tls-bench
rounds=${1:-1}
shift || true
bins=("$@")
[[ ${#bins[@]} -gt 0 ]] || bins=("$target_dir/release/examples/echo")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# record NAME PATTERN: perf record on the newest process matching PATTERN
# (waited for up to 30 s) until it exits.
record() {
    local pid=""
    for _ in $(seq 1 600); do
        pid=$(pgrep -n -f "$2" || true)
        [[ -n $pid ]] && break
        sleep 0.05
    done
    [[ -n $pid ]] && perf record -F 2999 -e cpu-clock -p "$pid" -o "$out/$1.data" >/dev/null 2>&1 || true
}

# split NAME: the profile's shares.
split() {
    perf report -i "$out/$1.data" --sort sym -n --stdio 2>/dev/null | awk -v who="$1" '
        /%/ && NF >= 4 { t += $2 }
        / \[k\] / { k += $2 }
        / \[k\] (vfs_read|fdget_pos|sock_read_iter|ksys_read|rw_verify_area|__x64_sys_read|security_file_permission|__sys_recvfrom|__x64_sys_recvfrom)$/ { rp += $2 }
        / \[\.\] / {
            if (/rustls/) r += $2
            else if (/ring_core|ring::aead|aes_gcm|chacha|poly1305/) a += $2
            else if (/malloc|free|memmove|memcpy|memset|_int_|__rdl_|__rust_dealloc|__rust_alloc/) m += $2
            else if (/ringloop::tls|tls_io|deliver_tls/) g += $2
        }
        END {
            if (!t) { print who ": no samples"; exit }
            printf "%s: %d samples; kernel %.1f%% (read path %.2f%%), user %.1f%%: rustls %.1f%%, AEAD %.1f%%, alloc+copy %.1f%%, ringloop TLS glue %.1f%%\n",
                who, t, 100*k/t, 100*rp/t, 100*(t-k)/t, 100*r/t, 100*a/t, 100*m/t, 100*g/t
        }'
}

uptime
for r in $(seq 1 "$rounds"); do
    for bin in "${bins[@]}"; do
        bin=$(realpath "$bin")
        tag=$(basename "$bin")-$r
        "$bench" --rounds 1 --seconds 4 --only 512 --backend epoll --echo-bin "$bin" >"$out/$tag.log" 2>&1 &
        record "$tag" "^$bin " &
        record "tokio-$tag" "^$bench serve-tokio" &
        wait
        grep '^round' "$out/$tag.log"
        echo "$tag CPU/msg ratio to tokio-rustls: $(grep '^| echo 50x512' "$out/$tag.log" | awk -F'|' '{print $7}')"
        split "$tag"
        split "tokio-$tag"
    done
done
uptime
