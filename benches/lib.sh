# Shared by the benchmark scripts in benches/ (source it; it runs nothing by
# itself): cargo's target directory, the idle-machine check, and the median
# and range of repeated figures. The thresholds match benches/common/mod.rs
# (the Rust benches) and benches/harness/src/machine.rs (the harness):
#   BENCH_IDLE_WAIT   longest wait for an idle machine, seconds (default 300;
#                     0 measures at once, still reporting the load)
#   BENCH_IDLE_LOAD   highest 1-minute load average counted as idle
#                     (default: a quarter of the CPU count)
#   BENCH_IDLE_SHARE  lowest idle share of the CPUs over a 1 s /proc/stat
#                     sample counted as idle (default 0.90)
# A machine that stays busy is measured anyway and said so beside the figures.

# A ringloop server that is not told its driver runs on epoll here, so a
# "ringloop" row keeps meaning epoll now that the library's default is
# auto (io_uring where the kernel allows it); rows on io_uring pass
# `--backend io-uring`, which wins over the environment. Set
# RINGLOOP_BACKEND=auto (or io-uring) to measure the default instead.
export RINGLOOP_BACKEND="${RINGLOOP_BACKEND:-epoll}"

# bench_target_dir: where cargo puts binaries (honours CARGO_TARGET_DIR and
# build.target-dir); prints it, or fails with a message.
bench_target_dir() {
    local dir
    dir=$(cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    if [[ -z $dir ]]; then
        echo "benches: could not find cargo's target directory" >&2
        return 1
    fi
    echo "$dir"
}

# bench_tls_bench: the built tls-bench binary (benches/tls.sh builds it), in
# cargo's target directory or the harness's own.
bench_tls_bench() {
    local target_dir bench
    target_dir=$(bench_target_dir) || return 1
    bench="$target_dir/release/tls-bench"
    [[ -x $bench ]] || bench="$root/benches/harness/target/release/tls-bench"
    echo "$bench"
}

# bench_cpu_sample: "LOAD1 IDLE_SHARE" from /proc/loadavg and a 1 s sample of
# the first line of /proc/stat (idle + iowait over user..steal).
bench_cpu_sample() {
    local a b
    a=$(head -1 /proc/stat)
    sleep 1
    b=$(head -1 /proc/stat)
    awk -v a="$a" -v b="$b" -v l="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
        n = split(a, x, " "); split(b, y, " ")
        for (i = 2; i <= 9 && i <= n; i++) { t += y[i] - x[i] }
        idle = (y[5] - x[5]) + (y[6] - x[6])
        printf "%s %.3f\n", l, (t > 0 ? idle / t : 0)
    }'
}

# bench_wait_idle WHAT: waits up to BENCH_IDLE_WAIT s for an idle machine,
# then sets BENCH_IDLE_LINE (one sentence for a report) and BENCH_IDLE (1 or
# 0), and says what it found on stderr. Never fails.
bench_wait_idle() {
    local what=$1 bound=${BENCH_IDLE_WAIT:-300} cpus max_load min_share start said=-60
    cpus=$(nproc --all)
    max_load=${BENCH_IDLE_LOAD:-$(awk -v c="$cpus" 'BEGIN { print c / 4 }')}
    min_share=${BENCH_IDLE_SHARE:-0.90}
    start=$SECONDS
    while :; do
        local load share waited
        read -r load share <<<"$(bench_cpu_sample)"
        waited=$((SECONDS - start))
        if awk -v l="$load" -v s="$share" -v ml="$max_load" -v ms="$min_share" \
            'BEGIN { exit !(l <= ml && s >= ms) }'; then
            BENCH_IDLE=1
            BENCH_IDLE_LINE="idle machine (load $load, CPUs $(awk -v s="$share" 'BEGIN { printf "%.0f", s * 100 }')% idle; waited $waited s)"
            break
        fi
        if awk -v w="$waited" -v b="$bound" 'BEGIN { exit !(w >= b) }'; then
            BENCH_IDLE=0
            BENCH_IDLE_LINE="MEASURED UNDER LOAD: still busy after waiting $waited s (load $load, CPUs $(awk -v s="$share" 'BEGIN { printf "%.0f", s * 100 }')% idle); these figures are not for the README"
            break
        fi
        if ((waited - said >= 15)); then
            said=$waited
            echo "$what: waiting for an idle machine (load $load, idle share $share; $waited of $bound s)" >&2
        fi
    done
    echo "$what: $BENCH_IDLE_LINE" >&2
}

# bench_spread [DECIMALS]: reads numbers (one per line or space-separated) on
# stdin and prints "median (min–max)", or "?" for none.
bench_spread() {
    tr ' ' '\n' | { grep -E '^-?[0-9.]+$' || true; } | sort -g |
        awk -v d="${1:-2}" '{ v[NR] = $1 }
            END {
                if (NR == 0) { print "?"; exit }
                m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                printf "%.*f (%.*f–%.*f)\n", d, m, d, v[1], d, v[NR]
            }'
}

# bench_listening_port OUTPUT-FILE: waits up to 30 s for a server's
# "… listening on tcp://127.0.0.1:PORT …" line in OUTPUT-FILE, prints PORT.
bench_listening_port() {
    for _ in $(seq 300); do
        local p
        p=$(sed -n 's/.*listening on tcp:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$1" | head -1)
        if [[ -n $p ]]; then
            echo "$p"
            return 0
        fi
        sleep 0.1
    done
    echo "benches: the server did not say where it listens (see $1)" >&2
    return 1
}

# bench_stop PID: SIGTERM, then SIGKILL after 5 s.
bench_stop() {
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}

# bench_serve_under_load SERVER-COMMAND SERVER-OUT CONNS SIZE SECONDS WARMUP LOAD-OUT:
# starts SERVER-COMMAND (word-split; it prints "… listening on
# tcp://127.0.0.1:PORT …" into SERVER-OUT, a file of the caller's: a
# reused one may still hold the last run's port) and drives it with a
# closed-loop `$harness load` of CONNS connections x SIZE bytes for WARMUP
# then SECONDS seconds in the background (LOAD-OUT gets its report). Sets
# served (the server's pid, also added to the caller's pids array, whose
# EXIT trap stops what is left) and loading (the load's pid). Returns 1,
# the server stopped, when it never said where it listens.
bench_serve_under_load() {
    # shellcheck disable=SC2086
    $1 >"$2" 2>&1 &
    served=$!
    pids+=("$served")
    local p
    p=$(bench_listening_port "$2") || { bench_stop "$served"; return 1; }
    "$harness" load "tcp://127.0.0.1:$p" --conns "$3" --size "$4" --seconds "$5" --warmup "$6" \
        >"$7" 2>&1 &
    loading=$!
}

# bench_load_rate LOAD-OUT: the msgs/s a `harness load` reported (0: none).
bench_load_rate() {
    local rate
    rate=$(grep -o '[0-9]* msgs/s' "$1" | head -1 | cut -d' ' -f1) || true
    echo "${rate:-0}"
}

# bench_perf_under_load SERVER-COMMAND CONNS SIZE EVENTS PERF-OUT LOAD-OUT:
# runs SERVER-COMMAND under a 3.5 s load (bench_serve_under_load), counts
# the perf EVENTS (comma-separated tracepoints) of every thread of the
# server for the 2 s in the middle (`perf stat -x,` into PERF-OUT), then
# stops the server. Needs $harness and $work. Returns the load's status.
bench_perf_under_load() {
    bench_serve_under_load "$1" "$work/server.out.$RANDOM" "$2" "$3" 3.5 0.5 "$6" || return 1
    sleep 1.2 # connections set up and warmed
    timeout 10 perf stat -x, -e "$4" -p "$served" -o "$5" -- sleep 2 >/dev/null 2>&1
    local status=0
    wait "$loading" || status=$?
    bench_stop "$served"
    return "$status"
}

# bench_build_echo: builds the echo example and the harness in release and
# sets target_dir, bin (their release directory) and harness
# (BENCH_HARNESS=PATH: a harness built already, not rebuilt).
# bench_perf_categories REPORT: "share category" lines, largest first, from
# a `perf report --no-children --sort dso,sym --stdio` text: user space, the
# kernel's io_uring code, descriptor lookups, wake-ups/scheduling, system
# call entry with epoll, and the rest (mostly TCP over loopback).
bench_perf_categories() {
    awk '/^ +[0-9.]+%/ {
            p = $1; sub(/%/, "", p); d = $2; s = $4
            if (d !~ /kernel/) c = "user"
            else if (s ~ /^(io_|__io_|io_uring)/) c = "kernel io_uring"
            else if (s ~ /^(fget|fput|sock_from_file)$/) c = "kernel fget/fput/sock_from_file"
            else if (s ~ /(finish_task_switch|schedule|_raw_spin_unlock_irqrestore|try_to_wake_up|ttwu|enqueue|dequeue|pick_next)/) c = "kernel wake-ups/scheduling"
            else if (s ~ /^(entry_SYSCALL|do_syscall|syscall_|__x64_sys|__do_sys|ep_|do_epoll)/) c = "kernel system call entry + epoll"
            else c = "kernel TCP/loopback and other"
            t[c] += p
        }
        END { for (c in t) printf "%.1f %s\n", t[c], c }' "$1" | sort -rn
}

bench_build_echo() {
    target_dir=$(bench_target_dir)
    cargo build --release --example echo -p ringloop >&2
    bin=$target_dir/release
    if [[ -n ${BENCH_HARNESS:-} ]]; then
        harness=$BENCH_HARNESS
        return
    fi
    CARGO_TARGET_DIR="$target_dir" cargo build --release --manifest-path benches/harness/Cargo.toml >&2
    harness=$bin/harness
}

# bench_workdir: a fresh temporary directory in $work and an empty pids
# list; at exit, every pid in the list is sent SIGTERM and the directory
# removed.
bench_workdir() {
    work=$(mktemp -d)
    pids=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    rm -rf "$work"
}

# bench_callgrind_window PID: the window every callgrind figure covers:
# waits 2.5 s of warm-up, zeroes the counters of the valgrind process PID,
# and dumps them 3.5 s later.
bench_callgrind_window() {
    sleep 2.5
    callgrind_control -z "$1" >/dev/null
    sleep 3.5
    callgrind_control -d "$1" >/dev/null
}
