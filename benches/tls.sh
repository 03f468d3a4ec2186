#!/usr/bin/env bash
# TLS benchmarks (issue 15), all against a peer measured in the same run,
# alternated: builds the echo and proxy examples and the harness in release
# mode, then runs `tls-bench` (benches/harness/src/bin/tls_bench.rs):
#   benches/tls.sh                 # echo 50x512 B and 100x16 KiB, full handshakes,
#                                  # idle RSS (2,000 connections): ringloop against
#                                  # tokio + tokio-rustls, server CPU from /proc
#   benches/tls.sh proxy           # TLS-terminating proxy against HAProxy
#                                  # (bind ... ssl crt), msgs/s and CPU per message
#   benches/tls.sh callgrind       # instructions per message / handshake under
#                                  # valgrind --tool=callgrind (load-insensitive)
#   benches/tls.sh --backend io-uring        # ringloop on its io_uring driver (the
#                                  # echo example's --backend, the proxy's --driver);
#                                  # also with `proxy` and `callgrind`
# Other arguments go to tls-bench (`--rounds N --seconds S`, see --help).
# Results and how they were taken: benches/RESULTS-tls.md.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
target_dir=$(bench_target_dir) || exit 1

cargo build --release -p ringloop --example echo --example proxy
CARGO_TARGET_DIR="$target_dir" cargo build --release --manifest-path benches/harness/Cargo.toml

need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "tls.sh: $1 is missing; installing the Debian package $2" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" >&2 ||
            { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" >&2; }
    fi
    command -v "$1" >/dev/null 2>&1 || { echo "tls.sh: $1 is missing (Debian package $2)" >&2; exit 1; }
}
case ${1:-} in
    proxy) need haproxy haproxy ;;
    callgrind) need valgrind valgrind ;;
esac

exec "$target_dir/release/tls-bench" "$@" \
    --echo-bin "$target_dir/release/examples/echo" \
    --proxy-bin "$target_dir/release/examples/proxy"
