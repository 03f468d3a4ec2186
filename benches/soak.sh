#!/usr/bin/env bash
# Soak test: builds the harness and ringloop's soak server in release mode,
# then runs `harness soak` — the server as a child process on loopback under
# echo load, churn, slow readers, idle timeouts and resets for a fixed time
# (default 3 minutes) — and prints a markdown report: peak memory,
# descriptors, every error. Exits non-zero on any error.
#   benches/soak.sh                    # 180 s
#   benches/soak.sh --seconds 600      # longer
#   SOAK_SECONDS=60 benches/soak.sh    # same, from the environment
# Other flags: --loops N, --idle-timeout-ms MS, --echo-conns N (see
# `harness --help`). Progress goes to stderr, the report to stdout.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# Where cargo puts binaries, honouring CARGO_TARGET_DIR and build.target-dir.
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
target_dir=$(bench_target_dir) || exit 1

seconds=()
if [[ -n ${SOAK_SECONDS:-} ]]; then
    seconds=(--seconds "$SOAK_SECONDS")
fi

CARGO_TARGET_DIR="$target_dir" cargo build --release --manifest-path benches/harness/Cargo.toml --bins
exec "$target_dir/release/harness" soak --server "$target_dir/release/soak-server" \
    ${seconds[@]+"${seconds[@]}"} "$@"
