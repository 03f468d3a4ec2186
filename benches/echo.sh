#!/usr/bin/env bash
# End-to-end echo benchmark: builds ringloop's echo example and the harness in
# release mode, then runs `harness bench` with this script's arguments, e.g.
#   benches/echo.sh --quick
#   benches/echo.sh --skip-ringloop          # tokio vs epoll only
# The markdown report goes to stdout, progress to stderr. See benches/harness/README.md.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

skip_ringloop=0
ringloop_given=0
for arg in "$@"; do
    case $arg in
        --skip-ringloop) skip_ringloop=1 ;;
        --ringloop | --ringloop=*) ringloop_given=1 ;;
    esac
done

# Where cargo puts binaries, honouring CARGO_TARGET_DIR and build.target-dir.
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
target_dir=$(bench_target_dir) || exit 1

extra=()
if [[ $skip_ringloop == 0 && $ringloop_given == 0 ]]; then
    if [[ ! -f examples/echo.rs && ! -f examples/echo/main.rs ]]; then
        echo "echo.sh: ringloop's echo example (examples/echo.rs) does not exist yet." >&2
        echo "echo.sh: run with --skip-ringloop to compare tokio and epoll only." >&2
        exit 2
    fi
    cargo build --release --example echo -p ringloop
    extra=(--ringloop "$target_dir/release/examples/echo")
fi
CARGO_TARGET_DIR="$target_dir" cargo build --release --manifest-path benches/harness/Cargo.toml

exec "$target_dir/release/harness" bench ${extra[@]+"${extra[@]}"} "$@"
