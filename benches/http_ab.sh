#!/usr/bin/env bash
# HTTP plaintext at one loop / one thread under `harness http-load` (the
# harness's cheap pipelining client, not wrk), servers alternated within
# each round, a fresh server per run: req/s, the client's round-trip p50/p99,
# server and client CPU per request from /proc, and the load average at
# each run. For A/B comparisons the harness's bench-http cannot make (two
# builds or two modes of examples/http).
#
#   benches/http_ab.sh [DEPTH ROUNDS [SERVER ...]]
#     DEPTH    requests per write (default 1); ROUNDS (default 5)
#     SERVER   `ringloop` (target/release/examples/http), `tokio` (harness
#              serve tokio-http, current_thread), or a command line whose
#              first word is a path to another build of the example, e.g.
#              "/tmp/http-old" or "target/release/examples/http --edge-triggered".
#              Default: ringloop tokio.
#   HTTP_AB_CONNS=256 HTTP_AB_SECONDS=3 HTTP_AB_WARMUP=1
#   HTTP_AB_PIN=1      servers on CPU 0, the client on CPU 1
#   BENCH_HARNESS=PATH a harness built already (not rebuilt)
#
# Output: one markdown row per run, then per server the median and range of
# req/s, p99 and server CPU per request. Servers bind 127.0.0.1 only and are
# stopped by pid.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
target_dir=$(bench_target_dir)
cargo build --release --example http -p ringloop >&2
bin=$target_dir/release
if [[ -n ${BENCH_HARNESS:-} ]]; then
    harness=$BENCH_HARNESS
else
    CARGO_TARGET_DIR="$target_dir" cargo build --release --manifest-path benches/harness/Cargo.toml >&2
    harness=$bin/harness
fi
bench_workdir

depth=${1:-1}
rounds=${2:-5}
shift $(($# < 2 ? $# : 2))
servers=("$@")
((${#servers[@]})) || servers=(ringloop tokio)
conns=${HTTP_AB_CONNS:-256}
seconds=${HTTP_AB_SECONDS:-3}
warmup=${HTTP_AB_WARMUP:-1}
server_pin=() client_pin=()
if [[ ${HTTP_AB_PIN:-0} == 1 ]]; then
    server_pin=(taskset -c 0) client_pin=(taskset -c 1)
fi

server_cmd() { # SERVER
    case $1 in
        ringloop) echo "$bin/examples/http tcp://127.0.0.1:0 --loops 1" ;;
        tokio) echo "$harness serve tokio-http tcp://127.0.0.1:0 --threads 1" ;;
        *)
            read -r path rest <<<"$1"
            echo "$path tcp://127.0.0.1:0 --loops 1 $rest"
            ;;
    esac
}

bench_wait_idle "http_ab.sh"
echo "### HTTP plaintext under harness http-load: $conns conns, $depth per write, 1 loop / 1 thread"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs, Linux $(uname -r); $BENCH_IDLE_LINE; commit $(git rev-parse --short HEAD); ${seconds} s measured after ${warmup} s, $rounds round(s), servers alternated$([[ ${HTTP_AB_PIN:-0} == 1 ]] && echo ', servers on CPU 0 and the client on CPU 1')."
echo
echo "| round | server | load avg | req/s | p50 ms | p99 ms | server µs/req | server % core | client µs/req | client % core |"
echo "|---|---|---|---|---|---|---|---|---|---|"
declare -A rates p99s cpus
for round in $(seq 1 "$rounds"); do
    for s in "${servers[@]}"; do
        out=$work/server.out
        : >"$out"
        # shellcheck disable=SC2046
        "${server_pin[@]}" $(server_cmd "$s") >"$out" 2>&1 &
        pid=$!
        pids+=("$pid")
        port=$(bench_listening_port "$out")
        load=$(cut -d' ' -f1 /proc/loadavg)
        line=$("${client_pin[@]}" "$harness" http-load "tcp://127.0.0.1:$port" --conns "$conns" \
            --depth "$depth" --seconds "$seconds" --warmup "$warmup" --pid "$pid")
        bench_stop "$pid"
        # "... R req/s, p50 A ms, p99 B ms, server CPU C µs/req (D % of a core), client CPU E µs/req (F % of a core), stalled 0"
        read -r rate p50 p99 scpu sshare ccpu cshare <<<"$(sed -E \
            's/.* ([0-9]+) req\/s, p50 ([0-9.]+) ms, p99 ([0-9.]+) ms, server CPU ([0-9.?]+)[^(]*\(([0-9]+) %[^,]*, client CPU ([0-9.?]+)[^(]*\(([0-9]+) %.*/\1 \2 \3 \4 \5 \6 \7/' <<<"$line")"
        echo "| $round | $s | $load | $rate | $p50 | $p99 | $scpu | $sshare | $ccpu | $cshare |"
        rates[$s]+="$rate "
        p99s[$s]+="$p99 "
        cpus[$s]+="$scpu "
    done
done
echo
echo "| server | req/s | p99 ms | server µs/req |"
echo "|---|---|---|---|"
for s in "${servers[@]}"; do
    echo "| $s | $(bench_spread 0 <<<"${rates[$s]}") | $(bench_spread 3 <<<"${p99s[$s]}") | $(bench_spread 3 <<<"${cpus[$s]}") |"
done
echo
echo "Load after: $(uptime)"
