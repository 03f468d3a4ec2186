#!/usr/bin/env bash
# Runs the codec benchmarks RUNS times (default 3) and prints, per pair, the
# ratio of the codec's median time to its peer's median time in each run and
# the median of those ratios, as a markdown table. Pairing within one run
# keeps the ratios meaningful on a loaded machine, where absolute times are
# not. Needs jq. Usage: benches/codec-ratios.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
dir="${CARGO_TARGET_DIR:-target}/criterion"

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

declare -A ratios throughputs
for r in $(seq 1 "$runs"); do
  echo "==> run $r of $runs" >&2
  cargo bench --bench codec >/dev/null 2>&1
  for p in "${pairs[@]}"; do
    IFS='|' read -r a b label <<<"$p"
    ratio="$(awk -v x="$(median_ns "$a")" -v y="$(median_ns "$b")" 'BEGIN { printf "%.2f", x / y }')"
    ratios[$label]+="$ratio "
    throughputs[$label]+="$(thrpt "$a")/$(thrpt "$b") "
  done
done

echo "| pair | time ratio per run (codec / peer) | median ratio | MB/s per run (codec/peer) |"
echo "|---|---|---|---|"
for p in "${pairs[@]}"; do
  IFS='|' read -r a b label <<<"$p"
  med="$(tr ' ' '\n' <<<"${ratios[$label]}" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')"
  echo "| $label | ${ratios[$label]% } | **$med** | ${throughputs[$label]% } |"
done
