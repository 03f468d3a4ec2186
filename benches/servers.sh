#!/usr/bin/env bash
# Server benchmarks: builds ringloop's http and kv examples and the harness in
# release mode, then runs
#   harness bench-http   examples/http vs tokio + httparse vs may_minihttp, driven by wrk
#   harness bench-kv     examples/kv (1 and 2 loops) vs redis-server, driven by redis-benchmark
# e.g.
#   benches/servers.sh --quick          # both, 1 round, short runs (~2 min)
#   benches/servers.sh                  # both, 3 rounds (~9 min)
#   benches/servers.sh --rounds 3 kv    # only kv, 3 rounds
#   benches/servers.sh --pin http       # http with every server on CPU 0 and wrk on CPU 1
#   benches/servers.sh --client harness http   # http driven by the harness's own client
#                                       # (`harness http-load`, cheaper than wrk) instead of wrk
# wrk shares the machine's 2 cores with the server: unpinned, the rate can be
# wrk's rather than the server's (the http report gives both processes' CPU
# share to tell). --pin gives each its own core, the same for every server,
# so req/s follows the server's cost per request (needs 2 CPUs).
# The markdown report goes to stdout, progress to stderr. Needs wrk, redis-tools
# and redis-server (Debian packages); see benches/harness/README.md.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

common=()
http_only=()
which=()
while (($#)); do
    case $1 in
        --quick) common+=(--quick) ;;
        --rounds) common+=(--rounds "${2:?--rounds needs a value}"); shift ;;
        --rounds=*) common+=("$1") ;;
        --pin) http_only+=(--pin) ;;
        --client) http_only+=(--client "${2:?--client needs wrk or harness}"); shift ;;
        http | kv) which+=("$1") ;;
        *) echo "servers.sh: unknown argument $1 (use --quick, --rounds N, --pin, --client wrk|harness, http, kv)" >&2; exit 2 ;;
    esac
    shift
done
((${#which[@]})) || which=(http kv)

missing=()
for tool in wrk redis-benchmark redis-server; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "servers.sh: missing ${missing[*]}; install them with" >&2
    echo "  apt-get install -y --no-install-recommends wrk redis-tools redis-server" >&2
    exit 2
fi

# Where cargo puts binaries, honouring CARGO_TARGET_DIR and build.target-dir.
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
target_dir=$(bench_target_dir) || exit 1

cargo build --release -p ringloop --example http --example kv
CARGO_TARGET_DIR="$target_dir" cargo build --release --manifest-path benches/harness/Cargo.toml

status=0
for bench in "${which[@]}"; do
    extra=()
    [[ $bench == http ]] && extra=(${http_only[@]+"${http_only[@]}"})
    "$target_dir/release/harness" "bench-$bench" \
        --ringloop "$target_dir/release/examples/$bench" ${common[@]+"${common[@]}"} \
        ${extra[@]+"${extra[@]}"} || status=1
    echo
done
exit $status
