#!/usr/bin/env bash
# Echo with a load generator that does not set the rate (issues 12 and 14):
# ringloop on io_uring and on epoll, tokio current_thread, monoio and the
# hand-written mio loop, 1 loop / thread each, same run, alternated and
# rotated per round, driven by the io_uring client (`--client uring`) with
# every server on CPU 0 and the load on CPU 1 (`--pin`), so the server's
# core, not the client's, is what runs out.
#
#   benches/echo_server_bound.sh            # ~7 min on an idle machine; markdown on stdout
#   ECHO_SB_ROUNDS=1 ECHO_SB_SECONDS=2 benches/echo_server_bound.sh   # quick (~2 min)
#
# A. The comparison: `harness bench --client uring --pin`, scenarios
#    ECHO_SB_SCENARIOS (default 50x512,1000x512,100x16384; connections x
#    message bytes, one message in flight per connection), ECHO_SB_ROUNDS
#    rounds (default 3) of ECHO_SB_SECONDS measured seconds (default 3).
#    Each row gives the server's and the client's CPU per message and as a
#    share of a core: a server-bound row has the server near 100 % and the
#    client well below.
# B. The same servers and scenarios with the old default client (mio,
#    readiness) under the same pinning, ECHO_SB_MIO_ROUNDS rounds (default
#    1; 0 skips it): what the client costs per message when it is the mio
#    one, so A's client figures have their reference.
#
# ECHO_SB_SERVERS / ECHO_SB_PEERS replace the server and peer lists (harness
# names); ECHO_SB_RINGLOOP is the echo binary (default the release build
# here), e.g. a wrapper that adds `--lt` unless `--et` is given, so
# `ringloop-epoll` is level-triggered and `ringloop-et` edge-triggered, the
# same binary in one run. BENCH_HARNESS=PATH uses a harness built already.
# Every row carries the 1-minute load average at the start of its runs;
# each `harness bench` first waits for an idle machine, at most
# BENCH_IDLE_WAIT seconds (default here 60, then measured anyway and said
# so). Servers bind 127.0.0.1 and are stopped by pid by the harness.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
bench_build_echo
rounds=${ECHO_SB_ROUNDS:-3}
seconds=${ECHO_SB_SECONDS:-3}
mio_rounds=${ECHO_SB_MIO_ROUNDS:-1}
scenarios=${ECHO_SB_SCENARIOS:-50x512,1000x512,100x16384}
servers=${ECHO_SB_SERVERS:-ringloop-io-uring,ringloop-epoll,tokio,monoio,epoll}
peers=${ECHO_SB_PEERS:-ringloop-epoll,tokio,monoio}
echo_bin=${ECHO_SB_RINGLOOP:-$bin/examples/echo}
export BENCH_IDLE_WAIT=${BENCH_IDLE_WAIT:-60}

common=(--servers "$servers" --peers "$peers" --ringloop-loops 1 --tokio-threads 1
    --scenarios "$scenarios" --seconds "$seconds" --idle-conns 0 --pin
    --ringloop "$echo_bin")

echo "# Echo, server-bound: the io_uring load client ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, Linux $(uname -r), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo
echo "Load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "## A. io_uring client, server on CPU 0, client on CPU 1"
echo
echo "\`harness bench ${common[*]} --client uring --rounds $rounds\`"
echo
"$harness" bench "${common[@]}" --client uring --rounds "$rounds" \
    --title "Echo, 1 loop, io_uring client, pinned (issues 12 and 14)"
echo
echo "Load after A: $(cut -d' ' -f1-3 /proc/loadavg)"

if ((mio_rounds > 0)); then
    echo
    echo "## B. The same with the mio client (the default, readiness), same pinning"
    echo
    echo "\`harness bench ${common[*]} --client mio --rounds $mio_rounds\`"
    echo
    "$harness" bench "${common[@]}" --client mio --rounds "$mio_rounds" \
        --title "Echo, 1 loop, mio client, pinned (reference for the client's cost)"
    echo
    echo "Load after B: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
