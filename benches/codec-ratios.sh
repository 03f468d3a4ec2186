#!/usr/bin/env bash
# Runs the codec benchmarks RUNS times (default 3) and prints, per pair, the
# ratio of the codec's median time to its peer's median time in each run and
# the median and range of those ratios, as a markdown table, with the load
# average of each run. Pairing within one run keeps the ratios meaningful on
# a loaded machine, where absolute times are not. It first waits for an idle
# machine (benches/lib.sh) and says what it found above the table. Needs jq.
# Usage: benches/codec-ratios.sh [RUNS]   (at least 3)
# CODEC_BENCH_ARGS: criterion options for every run, e.g. shorter windows
# ("--warm-up-time 0.1 --measurement-time 0.3", as remeasure.sh --quick does).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
runs="${1:-3}"
((runs >= 3)) || { echo "codec-ratios.sh: $runs runs raised to 3, the fewest a median and range rest on" >&2; runs=3; }
dir="$(bench_target_dir)/criterion"

# codec benchmark | peer benchmark | label (paths under target/criterion)
pairs=(
  "decode/line_LineCodec|decode/line_std-slice-split|line, 20-120 B lines: LineCodec vs std slice split"
  "decode/line_LineCodec|decode/line_naive-position-loop|line: LineCodec vs naive position loop"
  "decode/delimiter-4B_DelimiterCodec|decode/delimiter-4B_naive-windows-search|CRLF CRLF, 100-2000 B frames: DelimiterCodec vs naive windows search"
  "decode/fixed-64B_FixedLengthCodec|decode/fixed-64B_std-chunks-exact|fixed 64 B: FixedLengthCodec vs std chunks_exact"
  "decode/length-field_LengthFieldCodec/64|decode/length-field_hand-written/64|length field, 64 B payloads: LengthFieldCodec vs hand-written"
  "decode/length-field_LengthFieldCodec/1024|decode/length-field_hand-written/1024|length field, 1 KiB payloads: LengthFieldCodec vs hand-written"
  "echo-over-loopback/Framed-LengthFieldCodec/64|echo-over-loopback/plain-EventHandler/64|echo 1000 x 64 B frames: Framed vs plain EventHandler"
  "echo-over-loopback/Framed-LengthFieldCodec/1024|echo-over-loopback/plain-EventHandler/1024|echo 200 x 1 KiB frames: Framed vs plain EventHandler"
)

median_ns() { jq '.median.point_estimate' "$dir/$1/new/estimates.json"; }
thrpt() { # MB/s (10^6 bytes) from the benchmark's throughput and median time
  local bytes; bytes="$(jq '.throughput.Bytes // 0' "$dir/$1/new/benchmark.json")"
  awk -v b="$bytes" -v t="$(median_ns "$1")" 'BEGIN { printf "%.0f", b / t * 1000 }'
}

bench_wait_idle codec-ratios
# Each run below checks again, briefly, and the load of every run is listed.
export BENCH_IDLE_WAIT=${BENCH_IDLE_WAIT_AFTER:-30}
cargo bench --bench codec --no-run >&2
declare -A ratios throughputs
loads=""
for r in $(seq 1 "$runs"); do
  echo "==> run $r of $runs" >&2
  loads+="$(cut -d' ' -f1 /proc/loadavg) "
  # shellcheck disable=SC2086 # CODEC_BENCH_ARGS: criterion options, split on spaces
  cargo bench --bench codec -- ${CODEC_BENCH_ARGS:-} >/dev/null 2>&1
  for p in "${pairs[@]}"; do
    IFS='|' read -r a b label <<<"$p"
    ratio="$(awk -v x="$(median_ns "$a")" -v y="$(median_ns "$b")" 'BEGIN { printf "%.2f", x / y }')"
    ratios[$label]+="$ratio "
    throughputs[$label]+="$(thrpt "$a")/$(thrpt "$b") "
  done
done

echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs; before measuring: $BENCH_IDLE_LINE;" \
  "1-minute load average at the start of each run: ${loads% }."
echo
echo "| pair | time ratio per run (codec / peer) | median (range) | MB/s per run (codec/peer) |"
echo "|---|---|---|---|"
for p in "${pairs[@]}"; do
  IFS='|' read -r a b label <<<"$p"
  med="$(bench_spread 2 <<<"${ratios[$label]}")"
  echo "| $label | ${ratios[$label]% } | **$med** | ${throughputs[$label]% } |"
done
