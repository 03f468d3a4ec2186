#!/usr/bin/env bash
# End-to-end proxy benchmark: ringloop's proxy example (examples/proxy.rs)
# against HAProxy in `mode tcp`, both in front of the harness's epoll echo
# backend, under the same verified load, alternated. Builds the example and
# the harness in release mode, installs HAProxy if it is missing (Debian
# package `haproxy`, when run as root with apt-get; otherwise it says so and
# runs ringloop alone), then runs `harness proxy-bench` with this script's
# arguments, e.g.
#   benches/proxy.sh --quick              # ~1 min: 1 round × 2 s per run
#   benches/proxy.sh                      # ~4 min: 3 rounds × 5 s per run
#   benches/proxy.sh --rounds 3 > out.md  # the report is markdown on stdout
# See benches/RESULTS-proxy.md and benches/harness/README.md.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

skip_haproxy=0
haproxy_given=0
ringloop_given=0
for arg in "$@"; do
    case $arg in
        --skip-haproxy) skip_haproxy=1 ;;
        --haproxy | --haproxy=*) haproxy_given=1 ;;
        --ringloop | --ringloop=*) ringloop_given=1 ;;
    esac
done

# Where cargo puts binaries, honouring CARGO_TARGET_DIR and build.target-dir.
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
target_dir=$(bench_target_dir) || exit 1

extra=()
if [[ $skip_haproxy == 0 && $haproxy_given == 0 ]] && ! command -v haproxy >/dev/null 2>&1; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "proxy.sh: haproxy is missing; installing the Debian package" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y haproxy >&2 ||
            { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y haproxy >&2; } ||
            true
    fi
    if ! command -v haproxy >/dev/null 2>&1; then
        echo "proxy.sh: HAProxy is MISSING and could not be installed (needs root and apt-get):" >&2
        echo "proxy.sh: running ringloop alone, without the HAProxy comparison." >&2
        extra+=(--skip-haproxy)
    fi
fi
# The harness starts its own haproxy processes and stops each one by pid
# (SIGUSR1, HAProxy's clean soft stop); the package's service is not used.

if [[ $ringloop_given == 0 ]]; then
    cargo build --release --example proxy -p ringloop
    extra+=(--ringloop "$target_dir/release/examples/proxy")
fi
CARGO_TARGET_DIR="$target_dir" cargo build --release --manifest-path benches/harness/Cargo.toml

exec "$target_dir/release/harness" proxy-bench ${extra[@]+"${extra[@]}"} "$@"
