#!/usr/bin/env bash
# `make bench`: kafkad's roles against a raw-librdkafka reference, a codec-inclusive reference
# and, on Apache Kafka, the seed's Python system and the clients users would pick instead (a
# franz-go program and Kafka's own perf tools) (`kafkad-bench`, the bench/ crate), on
# librdkafka's mock cluster and on a 3-broker Apache Kafka cluster on loopback
# (scripts/kafka-cluster.sh), plus the codec's criterion benchmarks; then writes BENCHMARKS.md
# from what was measured.
#
#   scripts/bench.sh            everything (10-15 minutes on 2 cores, after the build, before the
#                               peers and the million-record consumers added several)
#   scripts/bench.sh kafka      internal: the Apache Kafka part, run inside kafka-cluster.sh run
#
# Sizes can be changed with BENCH_MESSAGES (mock, consume), BENCH_PRODUCE_MESSAGES (mock,
# produce), BENCH_KAFKA_MESSAGES (Kafka, consume), BENCH_KAFKA_PRODUCE_MESSAGES, BENCH_RUNS.
# Producers send many more messages than librdkafka's queue holds (100,000): the window opens
# at the first acknowledgement, and with fewer messages everything was already queued by then,
# so it measured librdkafka draining its queue instead of the sending loop. Raw outputs go to target/bench/. The seed's Python system runs from a virtual
# environment in target/bench-venv, with the confluent-kafka of bench/python/requirements.txt.
# The franz-go peer is built from bench/go into target/ with the Go toolchain (its modules come
# from the Go module proxy into Go's own cache); without `go` on PATH the bench says so and runs
# without it. Kafka's perf tools run from the cluster script's jars, with the window probe of
# bench/java compiled against them into target/bench-java.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/target/bench"
kafkad="$root/target/release/kafkad"
bench="$root/target/release/kafkad-bench"
venv="$root/target/bench-venv"
requirements="$root/bench/python/requirements.txt"
franz_go="$root/target/kafkad-bench-franz-go"
probe="$root/target/bench-java"
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

# The seed's Python client, pinned, in a virtual environment of its own (made again when the
# requirements change).
python_env() {
  if [ -x "$venv/bin/python" ] && cmp -s "$requirements" "$venv/requirements.installed"; then
    return 0
  fi
  echo "bench: installing the seed's Python client into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.installed"
}

# The peers' programs: the franz-go one where Go is installed, and the probe that times Kafka's
# perf tools, compiled against the jars they run from.
build_peers() {
  rm -f "$franz_go"
  if command -v go >/dev/null 2>&1; then
    (cd "$root/bench/go" && go build -o "$franz_go" .)
  else
    echo "bench: Go is not installed (no go on PATH): the franz-go columns are skipped" >&2
  fi
  local libs
  libs="$(scripts/kafka-cluster.sh libs)"
  rm -rf "$probe"
  javac --release 17 -cp "$libs/*" -d "$probe" "$root"/bench/java/kafkad/bench/*.java
  cp "$root/bench/java/log4j2.xml" "$probe/"
}

# kafkad-bench's options for the peers that were built.
peer_options() {
  if [ -x "$franz_go" ]; then
    echo --franz-go "$franz_go"
  fi
  echo --kafka-tools "$(scripts/kafka-cluster.sh libs)" --java-probe "$probe"
}

if [ "${1:-}" = "kafka" ]; then
  bootstrap="${KAFKA_BOOTSTRAP:?run inside scripts/kafka-cluster.sh run}"
  # A million records, as many as the producers send: Kafka's perf tools compile their hot
  # paths while they read, and over 100,000 records that was most of ConsumerPerformance's
  # window (a quarter of its rate over a million, at 3-4x the CPU per record).
  n="${BENCH_KAFKA_MESSAGES:-1000000}"
  np="${BENCH_KAFKA_PRODUCE_MESSAGES:-1000000}"
  seed=(--seed-python "$venv/bin/python")
  # Paths without spaces (the repository's and Kafka's cache), so word splitting is safe.
  # shellcheck disable=SC2207
  peers=($(peer_options))
  # Freshly started brokers run their first requests in the JVM's interpreter: the first runs
  # were 2-4x slower than later ones. One unrecorded pass warms up produce and fetch.
  echo "== kafka warm-up (not recorded)" >&2
  clean "$bench" consume --bootstrap "$bootstrap" --messages "$((n < 200000 ? n : 200000))" \
    --runs 1 >"$out/kafka-warmup.log" 2>&1
  measure kafka-produce produce --bootstrap "$bootstrap" --messages "$np" --runs "$runs" \
    "${seed[@]}" "${peers[@]}"
  measure kafka-consume consume --bootstrap "$bootstrap" --messages "$n" --runs "$runs" \
    "${seed[@]}" "${peers[@]}"
  measure kafka-roundtrip roundtrip --bootstrap "$bootstrap" --messages 3000 --rate 1000 \
    --runs "$runs" "${seed[@]}"
  exit 0
fi

mkdir -p "$out"
rm -f "$out"/*.txt
cd "$root"
# The build toolchain, a JDK and Maven (for the Kafka brokers), python3's venv module.
scripts/install-deps.sh bench >/dev/null
scripts/kafka-cluster.sh install
python_env
# The daemon (for its version line) and the benchmark, the workspace's two binaries.
cargo build --release --workspace
build_peers

n="${BENCH_MESSAGES:-300000}"
measure mock-produce produce --messages "${BENCH_PRODUCE_MESSAGES:-600000}" --runs "$runs"
measure mock-consume consume --messages "$n" --runs "$runs"
measure mock-roundtrip roundtrip --messages 3000 --rate 1000 --runs 2
# The mock answers a fetch only after fetch.wait.max.ms when no data waits (a real broker
# answers as soon as data arrives), so its default-config latency is mostly that wait; this
# run shows the client side alone.
measure mock-roundtrip-short-wait roundtrip --messages 3000 --rate 1000 --runs 2 \
  --set kafka.fetch.wait.max.ms=5
# `[consumer] concurrency` against a downstream answering in 20 ms: 16 calls at once vs 1.
measure mock-concurrency concurrency --messages 1000 --keys 1000 --delay-ms 20 --concurrency 16

# Its own state directory: a cluster started by tests or by hand elsewhere is left alone.
KAFKA_CLUSTER_DIR="$root/target/bench-kafka" scripts/kafka-cluster.sh run --brokers 3 -- "$0" kafka

cargo bench --bench codec -- --warm-up-time 1 --measurement-time 5 | tee "$out/codec.txt"

{
  echo "nproc=$(nproc)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "kernel=$(uname -sr)"
  echo "memory=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "kafkad=$("$kafkad" version | head -1)"
  echo "librdkafka=$("$kafkad" version | sed -n 2p)"
  echo "rustc=$(rustc -V)"
  echo "kafka=Apache Kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)"
  echo "java=$(java -version 2>&1 | head -1)"
  if [ -x "$franz_go" ]; then
    echo "franz_go=franz-go $(sed -n 's:^require github.com/twmb/franz-go \(v[^ ]*\)$:\1:p' bench/go/go.mod), $(go version | cut -d' ' -f3)"
  else
    echo "franz_go=not measured: Go is not installed (no go on PATH)"
  fi
  echo "java_tools=Apache Kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml), JVM started as Kafka's perf-test scripts start it (-Xmx512M, G1)"
  echo "python=$("$venv/bin/python" -c 'import sys, confluent_kafka as c; v = c.version(); v = v if isinstance(v, str) else v[0]; print(f"Python {sys.version.split()[0]}, confluent-kafka {v} (librdkafka {c.libversion()[0]})")')"
  echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
  echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo '+changes')"
} >"$out/machine.txt"

python3 scripts/bench_report.py "$out" benches/analysis.md >BENCHMARKS.md
echo "bench: wrote BENCHMARKS.md" >&2
