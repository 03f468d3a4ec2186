#!/usr/bin/env bash
# Issue 14: user-space CPU per echoed message of two (or more) builds of the
# echo example on io_uring, from perf cpu-clock profiles taken alternately
# (benches/uring_profile.sh per run: a 6 s closed-loop load, a 4 s profile
# at 4,000 Hz in its middle). On a loaded machine the shares of samples and
# the samples per message of named symbols are steadier than /proc CPU.
#
#   PROF_AB="parent=/tmp/echo-parent new=target/release/examples/echo" \
#       PROF_ROUNDS=3 benches/uring_profile_ab.sh
#   PROF_CONNS=50 ...        # other load (see uring_profile.sh)
#   BENCH_HARNESS=PATH ...   # a harness built already (see lib.sh)
#
# Prints, per run: msgs/s, server CPU and user-space CPU per message (each
# sample is 250 µs of the server's CPU), the user share; then per build,
# over its runs: user µs/msg and the user symbols' samples per 1,000
# messages. Servers bind 127.0.0.1 and are stopped by pid.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
rounds=${PROF_ROUNDS:-3}
read -r -a builds <<<"${PROF_AB:?PROF_AB=\"name=PATH name=PATH\"}"
keep=$(mktemp -d)
trap 'rm -rf "$keep"' EXIT

# counts DATA: "samples dso symbol" lines of a profile's user-space samples
counts() {
    perf report -i "$1" -n --no-children --sort dso,sym --stdio 2>/dev/null |
        awk '/^ +[0-9.]+%/ && $3 !~ /kernel/ { n = $2; $1 = $2 = $3 = $4 = ""; sub(/^ +/, ""); print n, $0 }'
}

echo "### User-space CPU per message on io_uring, ${PROF_CONNS:-1000}x${PROF_SIZE:-512}, 1 loop ($(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "| build | round | msgs/s | server CPU µs/msg | user µs/msg | user share | load 1m |"
echo "|---|---|---|---|---|---|---|"
for r in $(seq "$rounds"); do
    for b in "${builds[@]}"; do
        name=${b%%=*}
        path=${b#*=}
        out=$(PROF_ECHO=$path PROF_SERVERS=io-uring PROF_KEEP=$keep/$name-$r benches/uring_profile.sh 2>/dev/null) || true
        rate=$(sed -n 's/^#### io-uring: \([0-9]*\) msgs.*/\1/p' <<<"$out")
        data=$keep/$name-$r/io-uring.data
        [[ -n $rate && -f $data ]] || { echo "| $name | $r | failed | | | | |"; continue; }
        echo "$rate" >"$keep/$name-$r/rate"
        perf report -i "$data" -n --no-children --sort dso --stdio 2>/dev/null |
            awk -v rate="$rate" -v name="$name" -v r="$r" -v load="$(cut -d' ' -f1 /proc/loadavg)" '
                /^ +[0-9.]+%/ { t += $2; if ($3 !~ /kernel/) u += $2 }
                END { m = rate * 4; printf "| %s | %d | %d | %.2f | %.3f | %.1f %% | %s |\n",
                      name, r, rate, t * 250 / m, u * 250 / m, 100 * u / t, load }'
    done
done
for b in "${builds[@]}"; do
    name=${b%%=*}
    msgs=0
    : >"$keep/$name.counts"
    for r in $(seq "$rounds"); do
        [[ -f $keep/$name-$r/rate ]] || continue
        msgs=$((msgs + $(cat "$keep/$name-$r/rate") * 4))
        counts "$keep/$name-$r/io-uring.data" >>"$keep/$name.counts"
    done
    echo
    awk -v m="$msgs" -v name="$name" '{ u += $1 } END {
        printf "#### %s: %.3f user µs/msg over its runs; user samples per 1,000 messages by symbol\n", name, u * 250 / (m ? m : 1) }' "$keep/$name.counts"
    echo
    echo '```'
    awk -v m="$msgs" '{ n = $1; $1 = ""; s[$0] += n } END { for (k in s) printf "%8.4f %s\n", s[k] * 1000 / (m ? m : 1), k }' \
        "$keep/$name.counts" | sort -rn | head -25
    echo '```'
done
