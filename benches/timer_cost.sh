#!/usr/bin/env bash
# What arming and cancelling a kernel timer costs on this machine, by how far
# away it is (issue 15, benches/results/hs-session10-20261205.md): a timer
# that becomes the CPU's earliest makes the kernel reprogram the local APIC
# timer when it is armed and again when it is cancelled; in a virtual
# machine each reprogramming can exit to the hypervisor. A loop's wait with
# a near timeout (io_uring's 100 µs min-wait or send grace) pays this every
# time it sleeps; tokio's wait with no timer never does.
#   benches/timer_cost.sh [PAIRS]   # default 200000 arm+disarm pairs per distance, on CPU 1
# Prints CPU and wall time per arm+disarm pair of a timerfd (the same
# hrtimer code as a wait's timeout). Needs a C compiler (cc). Load-sensitive
# only in its wall time; run it under `flock /tmp/bench.lock` all the same.
set -euo pipefail
pairs=${1:-200000}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/timer_cost.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <sys/timerfd.h>
#include <time.h>
static double now(clockid_t c) { struct timespec t; clock_gettime(c, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    long long ns = atoll(argv[2]);
    int fd = timerfd_create(CLOCK_MONOTONIC, 0);
    struct itimerspec on = {{0, 0}, {ns / 1000000000LL, ns % 1000000000LL}}, off = {{0, 0}, {0, 0}};
    double c0 = now(CLOCK_PROCESS_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC);
    for (long i = 0; i < n; i++) {
        timerfd_settime(fd, 0, &on, 0);
        timerfd_settime(fd, 0, &off, 0);
    }
    double c1 = now(CLOCK_PROCESS_CPUTIME_ID), w1 = now(CLOCK_MONOTONIC);
    printf("timer %9.3f ms away: %6.3f us CPU, %6.3f us wall per arm+cancel\n", ns / 1e6, (c1 - c0) / n * 1e6, (w1 - w0) / n * 1e6);
    return 0;
}
C
cc -O2 -o "$dir/timer_cost" "$dir/timer_cost.c"
uptime
for ns in 100000 300000 1000000 2000000 5000000 10000000000; do
    taskset -c 1 "$dir/timer_cost" "$pairs" "$ns"
done
