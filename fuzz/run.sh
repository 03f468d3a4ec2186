#!/usr/bin/env bash
# Runs every fuzz target (the codecs and the PROXY header parser) for a
# bounded time with libFuzzer, on stable Rust (no nightly, no cargo-fuzz).
# See README.md.
#
# Environment knobs:
#   FUZZ_SECONDS      seconds per target (default 60)
#   FUZZ_TARGETS      space-separated targets (default: all seven)
#   FUZZ_MAX_LEN      largest input libFuzzer tries, in bytes (default 16384)
#   FUZZ_TARGET_DIR   cargo target dir (default fuzz/target)
# Extra arguments are passed to every libFuzzer run (e.g. -jobs=2).
#
# Corpora grow in fuzz/corpus/<target>, crashes land in
# fuzz/artifacts/<target>/, logs in fuzz/logs/<target>.log. Exits non-zero
# if any target found a failure.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-line delimiter fixed length_field proxy_header tls tls_client}"
max_len="${FUZZ_MAX_LEN:-16384}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"

# What the build needs: cargo (any stable toolchain) and a C++ compiler,
# which libfuzzer-sys uses to build libFuzzer itself.
if ! command -v cargo >/dev/null; then
    echo "run.sh: cargo is needed (https://rustup.rs)" >&2
    exit 1
fi
if ! command -v c++ >/dev/null && ! command -v g++ >/dev/null && ! command -v clang++ >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "==> installing a C++ compiler for libFuzzer"
        apt-get install -y --no-install-recommends g++
    else
        echo "run.sh: a C++ compiler (g++ or clang++) is needed to build libFuzzer" >&2
        exit 1
    fi
fi

# Instrument like cargo-fuzz does, minus the sanitizer (-Zsanitizer is
# nightly-only; the codecs have no unsafe code for it to check):
# SanitizerCoverage edge counters and comparison tracing for libFuzzer's
# feedback, `cfg(fuzzing)`, and overflow checks / debug assertions so that
# arithmetic mistakes are failures. `--target` keeps these flags off build
# scripts, which cannot link without libFuzzer.
host="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing -Cdebug-assertions -Coverflow-checks"

echo "==> building the fuzz targets ($host)"
cargo build --release --target "$host" --bins

mkdir -p logs
failed=()
summary=()
for t in $targets; do
    bin="$CARGO_TARGET_DIR/$host/release/$t"
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "==> fuzzing $t for ${seconds}s"
    status=0
    "$bin" "corpus/$t" \
        -max_total_time="$seconds" \
        -max_len="$max_len" \
        -rss_limit_mb=2048 \
        -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" \
        "$@" >"logs/$t.log" 2>&1 || status=$?
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -1 || true)"
    cov="$( (grep -o 'cov: [0-9]*' "logs/$t.log" || true) | tail -1 | cut -d' ' -f2)"
    corpus="$(find "corpus/$t" -type f | wc -l)"
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        tail -n 40 "logs/$t.log"
    fi
    summary+=("$(printf '%-14s %4ss  %12s execs  cov %6s  corpus %6s  %s' \
        "$t" "$seconds" "${runs:-?}" "${cov:-?}" "$corpus" \
        "$([ "$status" -eq 0 ] && echo ok || echo "FAILED (exit $status)")")")
done

echo
echo "==> summary"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "failures in: ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/logs/)" >&2
    exit 1
fi
