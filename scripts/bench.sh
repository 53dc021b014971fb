#!/usr/bin/env bash
# `make bench`: kafkad's roles against a raw-librdkafka reference (`kafkad-bench`, the bench/
# crate), on librdkafka's mock cluster
# and on a real Kafka-protocol broker (tansu, started on loopback by scripts/test-broker.sh),
# plus the codec's criterion benchmarks; then writes BENCHMARKS.md from what was measured.
#
#   scripts/bench.sh            everything (about 5 minutes on 2 cores, after the build)
#   scripts/bench.sh tansu      internal: the broker part, run inside test-broker.sh
#
# Sizes can be changed with BENCH_MESSAGES (mock, produce/consume), BENCH_TANSU_MESSAGES,
# BENCH_RUNS. Raw outputs go to target/bench/.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/target/bench"
kafkad="$root/target/release/kafkad"
bench="$root/target/release/kafkad-bench"
runs="${BENCH_RUNS:-3}"

# KAFKAD_* variables of the caller's shell would change the settings under measurement.
clean() {
  local unset=()
  for name in $(env | grep -o '^KAFKAD_[A-Za-z0-9_]*' || true); do unset+=(-u "$name"); done
  env "${unset[@]}" "$@"
}

# One `kafkad-bench` invocation; its output (table, then the JSON line) is kept.
measure() {
  local name=$1
  shift
  echo "== $name: kafkad-bench $*" >&2
  clean "$bench" "$@" --json | tee "$out/$name.txt"
}

if [ "${1:-}" = "tansu" ]; then
  bootstrap="${TEST_BROKER_BOOTSTRAP:?run inside scripts/test-broker.sh run}"
  n="${BENCH_TANSU_MESSAGES:-200000}"
  measure tansu-produce produce --bootstrap "$bootstrap" --messages "$n" --runs "$runs"
  measure tansu-consume consume --bootstrap "$bootstrap" --messages "$((n / 2))" --runs "$runs"
  measure tansu-roundtrip roundtrip --bootstrap "$bootstrap" --messages 3000 --rate 1000 --runs 2
  exit 0
fi

mkdir -p "$out"
rm -f "$out"/*.txt
cd "$root"
scripts/install-deps.sh >/dev/null
scripts/test-broker.sh install
# The daemon (for its version line) and the benchmark, the workspace's two binaries.
cargo build --release --workspace

n="${BENCH_MESSAGES:-300000}"
measure mock-produce produce --messages "$n" --runs "$runs"
measure mock-consume consume --messages "$n" --runs "$runs"
measure mock-roundtrip roundtrip --messages 3000 --rate 1000 --runs 2
# The mock answers a fetch only after fetch.wait.max.ms when no data waits (a real broker
# answers as soon as data arrives), so its default-config latency is mostly that wait; this
# run shows the client side alone.
measure mock-roundtrip-short-wait roundtrip --messages 3000 --rate 1000 --runs 2 \
  --set kafka.fetch.wait.max.ms=5

scripts/test-broker.sh run -- "$0" tansu

cargo bench --bench codec -- --warm-up-time 1 --measurement-time 5 | tee "$out/codec.txt"

{
  echo "nproc=$(nproc)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "kernel=$(uname -sr)"
  echo "memory=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "kafkad=$("$kafkad" version | head -1)"
  echo "librdkafka=$("$kafkad" version | sed -n 2p)"
  echo "rustc=$(rustc -V)"
  echo "tansu=$("${TANSU_BIN:-tansu}" --version 2>/dev/null | head -1)"
  echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
  echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo '+changes')"
} >"$out/machine.txt"

python3 scripts/bench_report.py "$out" benches/analysis.md >BENCHMARKS.md
echo "bench: wrote BENCHMARKS.md" >&2
