#!/usr/bin/env bash
# Issue 14: the HTTP plaintext and kv (RESP) examples on the io_uring
# driver beside the same binaries on epoll; 1 loop each, same run,
# alternated (the order flips every round).
#
#   benches/uring_apps.sh                  # ~2 min; markdown on stdout
#   APPS_ROUNDS=1 APPS_SECONDS=2 benches/uring_apps.sh    # quick
#
# HTTP: `examples/http` under wrk (1 thread, APPS_CONNS connections, each
# pipelining APPS_DEPTH requests of `GET /plaintext`), 1 s unmeasured then
# APPS_SECONDS s measured. kv: `examples/kv` under redis-benchmark (50
# clients, -P 16, SET then GET, APPS_KV_REQUESTS each). Per run: requests
# per second (the tool's), and server CPU per request (the CPU time of every
# thread of the server, from /proc/PID/task/*/schedstat, over the measured
# run, divided by the requests the tool counted). Ratios are io_uring ÷ epoll of the same round: a req/s
# ratio above 1 and a CPU ratio below 1 favour io_uring. The load average
# is printed beside every row: these machines are shared.
# Needs wrk and redis-benchmark (Debian: wrk, redis-tools). Servers bind
# 127.0.0.1 and are stopped by pid.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
rounds=${APPS_ROUNDS:-3}
seconds=${APPS_SECONDS:-5}
conns=${APPS_CONNS:-64}
depth=${APPS_DEPTH:-16}
kv_requests=${APPS_KV_REQUESTS:-1000000}
for tool in wrk redis-benchmark; do
    command -v "$tool" >/dev/null || { echo "uring_apps.sh: $tool is not installed" >&2; exit 1; }
done
target_dir=$(bench_target_dir)
cargo build --release --example http --example kv -p ringloop >&2
bin=$target_dir/release
bench_workdir

cat >"$work/pipeline.lua" <<EOF
-- $depth pipelined GET /plaintext per write (as TechEmpower's plaintext test).
init = function(args)
    local r = {}
    for i = 1, $depth do r[i] = wrk.format(nil, "/plaintext") end
    req = table.concat(r)
end
request = function() return req end
EOF

# cpu_ns PID: CPU time of every thread of the process so far, in ns
# (schedstat: finer than the clock ticks of /proc/PID/stat).
cpu_ns() {
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ t += $1 } END { printf "%.0f\n", t }'
}

# start EXAMPLE BACKEND: starts the example on a free port; sets served, port.
start() {
    "$bin/examples/$1" tcp://127.0.0.1:0 --loops 1 --backend "$2" >"$work/$1-$2.out" 2>&1 &
    served=$!
    pids+=("$served")
    port=$(bench_listening_port "$work/$1-$2.out") || { bench_stop "$served"; return 1; }
    grep -q "on $2" "$work/$1-$2.out" || {
        echo "uring_apps.sh: $1 does not run on $2: $(cat "$work/$1-$2.out")" >&2
        bench_stop "$served"
        return 1
    }
}

# http BACKEND: "req/s cpu-µs-per-request"
http() {
    start http "$1"
    local url="http://127.0.0.1:$port/plaintext" t0 t1
    wrk -t1 -c"$conns" -d1s -s "$work/pipeline.lua" "$url" >/dev/null
    t0=$(cpu_ns "$served")
    wrk -t1 -c"$conns" -d"${seconds}s" -s "$work/pipeline.lua" "$url" >"$work/wrk.out"
    t1=$(cpu_ns "$served")
    bench_stop "$served"
    awk -v t="$((t1 - t0))" '
        / requests in / { n = $1 }
        /^Requests\/sec:/ { rps = $2 }
        END { printf "%.0f %.3f\n", rps, (n ? t / 1e3 / n : 0) }' "$work/wrk.out"
}

# kv BACKEND: "req/s cpu-µs-per-request" (SET and GET together)
kv() {
    start kv "$1"
    local t0 t1
    redis-benchmark -p "$port" -c 50 -n 20000 -P 16 -t set -q >/dev/null
    t0=$(cpu_ns "$served")
    redis-benchmark -p "$port" -c 50 -n "$kv_requests" -P 16 -t set,get --csv >"$work/kv.out"
    t1=$(cpu_ns "$served")
    bench_stop "$served"
    # requests over the time both tests took (n / rps each).
    awk -F, -v t="$((t1 - t0))" -v n="$kv_requests" '
        /"(SET|GET)"/ { gsub(/"/, "", $2); secs += n / $2; total += n }
        END { printf "%.0f %.3f\n", (secs ? total / secs : 0), (total ? t / 1e3 / total : 0) }' "$work/kv.out"
}

echo "# HTTP and kv examples on io_uring beside epoll ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, Linux $(uname -r))"
echo
echo "Load before: $(cut -d' ' -f1-3 /proc/loadavg) (uptime: $(uptime))"
echo
echo "HTTP: wrk -t1 -c$conns, $depth pipelined GET /plaintext, ${seconds} s measured after 1 s; kv: redis-benchmark -c 50 -P 16 -t set,get -n $kv_requests. 1 loop each; $rounds round(s), the order flipping every round."
echo
echo "| app | round | backend | req/s | server CPU µs/req | load 1m |"
echo "|---|---|---|---|---|---|"
declare -A rps cpu
for app in http kv; do
    for round in $(seq 1 "$rounds"); do
        order=(io-uring epoll)
        ((round % 2)) || order=(epoll io-uring)
        for backend in "${order[@]}"; do
            echo "uring_apps.sh: $app round $round $backend" >&2
            read -r r c <<<"$($app "$backend")"
            rps[$app,$round,$backend]=$r
            cpu[$app,$round,$backend]=$c
            echo "| $app | $round | $backend | $r | $c | $(cut -d' ' -f1 /proc/loadavg) |"
        done
    done
done
echo
echo "## Ratios io_uring ÷ epoll (median of the per-round ratios, range in brackets)"
echo
echo "| app | req/s | server CPU per request |"
echo "|---|---|---|"
for app in http kv; do
    r_ratios=() c_ratios=()
    for round in $(seq 1 "$rounds"); do
        r_ratios+=("$(awk -v a="${rps[$app,$round,io-uring]}" -v b="${rps[$app,$round,epoll]}" 'BEGIN { printf "%.3f", (b ? a / b : 0) }')")
        c_ratios+=("$(awk -v a="${cpu[$app,$round,io-uring]}" -v b="${cpu[$app,$round,epoll]}" 'BEGIN { printf "%.3f", (b ? a / b : 0) }')")
    done
    echo "| $app | $(echo "${r_ratios[@]}" | bench_spread) | $(echo "${c_ratios[@]}" | bench_spread) |"
done
echo
echo "Load after: $(cut -d' ' -f1-3 /proc/loadavg)"
