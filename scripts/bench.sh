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
#   scripts/bench.sh file       only the producer reading a file of lines beside
#                               kafka-console-producer and kcat -P (a few minutes), into
#                               target/bench/kafka-produce-file.txt; BENCHMARKS.md is rewritten
#                               from what target/bench/ holds
#   scripts/bench.sh kafka      internal: the Apache Kafka part, run inside kafka-cluster.sh run
#
# Sizes can be changed with BENCH_MESSAGES (mock, consume), BENCH_PRODUCE_MESSAGES (mock,
# produce), BENCH_KAFKA_MESSAGES (Kafka, consume), BENCH_KAFKA_PRODUCE_MESSAGES,
# BENCH_FILE_LINES (the file the producers read), BENCH_RUNS.
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

# The producer reading a file of BENCH_FILE_LINES lines (the seed's messages, as JSON lines)
# beside Kafka's kafka-console-producer and Debian's kcat -P, each into a topic of its own with
# the producer role's settings (acks=all, idempotence, lz4, linger.ms=5, one request in flight);
# every side must leave exactly the file's lines in its topic. Each run is timed from start to
# exit (start-up and the final flush included), with its CPU time and peak RSS.
produce_file() {
  local bootstrap="$1" lines="${BENCH_FILE_LINES:-1000000}"
  local file="$out/lines.jsonl"
  if [ ! -f "$file" ] || [ "$(wc -l <"$file")" != "$lines" ]; then
    python3 - "$file" "$lines" <<'PY'
import sys
path, lines = sys.argv[1], int(sys.argv[2])
with open(path, "w") as out:
    for n in range(1, lines + 1):
        out.write('{"message_id": %d, "content": "Message %d from file", "producer_id": "file", '
                  '"timestamp": "2026-11-25T18:08:06.906824Z", "metadata": {"source": "bench"}}\n' % (n, n))
PY
  fi
  local settings=(acks=all enable.idempotence=true compression.type=lz4 linger.ms=5
    max.in.flight.requests.per.connection=1)
  # kafkad twice: checking each line is JSON (format = "json"), and sending it unchecked
  # (format = "bytes"), as the other two do.
  local sides=(kafkad kafkad-bytes kafka-console-producer)
  command -v kcat >/dev/null 2>&1 && sides+=(kcat)
  local run side topic
  for side in "${sides[@]}"; do
    for run in $(seq 1 "$runs"); do
      topic="bench-file-$side-$run-$$"
      "$root/scripts/kafka-cluster.sh" tool kafka-topics --create --topic "$topic" \
        --partitions 3 --replication-factor 3 --config min.insync.replicas=2 >/dev/null
      case "$side" in
        kafkad | kafkad-bytes)
          local unset=() format=json
          [ "$side" = kafkad ] || format=bytes
          for name in $(env | grep -o '^KAFKAD_[A-Za-z0-9_]*' || true); do unset+=(-u "$name"); done
          timed "$side" "$topic" "$lines" env ${unset[@]+"${unset[@]}"} \
            KAFKAD_KAFKA__BOOTSTRAP_SERVERS="$bootstrap" \
            KAFKAD_TOPIC="$topic" KAFKAD_PRODUCER__SOURCE__FILE="$file" \
            KAFKAD_PRODUCER__FORMAT="$format" KAFKAD_PRODUCER__RATE=0 KAFKAD_HTTP__LISTEN= \
            KAFKAD_LOG__LEVEL=warn "$kafkad" --role producer --config "$root/config/producer.toml"
          ;;
        kafka-console-producer)
          local props=()
          for setting in "${settings[@]}"; do props+=(--producer-property "$setting"); done
          timed "$side" "$topic" "$lines" "$root/scripts/kafka-cluster.sh" tool \
            kafka-console-producer --topic "$topic" "${props[@]}" <"$file"
          ;;
        kcat)
          local props=()
          for setting in "${settings[@]}"; do props+=(-X "$setting"); done
          timed "$side" "$topic" "$lines" kcat -P -b "$bootstrap" -t "$topic" "${props[@]}" <"$file"
          ;;
      esac
    done
  done | python3 -c '
import json, sys
runs = [json.loads(line) for line in sys.stdin]
best = {}
for run in runs:
    if run["side"] not in best or run["msgs_per_s"] > best[run["side"]]["msgs_per_s"]:
        best[run["side"]] = run
report = {"workload": "produce-file", "lines": runs[0]["lines"], "bytes": runs[0]["bytes"],
          "runs": runs, "best": best, "date": sys.argv[1], "commit": sys.argv[2]}
for side, run in best.items():
    if side != "kafkad":
        report["ratio_" + side] = best["kafkad"]["msgs_per_s"] / run["msgs_per_s"]
print(json.dumps(report))
' "$(date -u +%Y-%m-%dT%H:%MZ)" "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" |
    tee "$out/kafka-produce-file.txt"
}

# Runs a side's command (standard input as given), then checks its topic holds every line;
# prints one JSON line: wall time, msgs/s, MB/s, CPU seconds and peak RSS of the process tree.
timed() {
  local side="$1" topic="$2" lines="$3"
  shift 3
  echo "== file producer: $side into $topic" >&2
  python3 -c '
import json, os, resource, subprocess, sys, time
side, lines, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
start = time.monotonic()
code = subprocess.call(sys.argv[4:])
wall = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
if code != 0:
    sys.exit(f"{side} exited {code}")
size = os.path.getsize(path)
print(json.dumps({"side": side, "lines": lines, "bytes": size, "wall_s": wall,
                  "msgs_per_s": lines / wall, "mb_per_s": size / wall / 1e6,
                  "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}))
' "$side" "$lines" "$out/lines.jsonl" "$@"
  local written
  written="$("$root/scripts/kafka-cluster.sh" tool kafka-get-offsets --topic "$topic" |
    awk -F: '{sum += $3} END {print sum + 0}')"
  [ "$written" = "$lines" ] || {
    echo "bench: $side left $written records in $topic, not $lines" >&2
    exit 1
  }
}

if [ "${1:-}" = "file-kafka" ]; then
  produce_file "${KAFKA_BOOTSTRAP:?run inside scripts/kafka-cluster.sh run}"
  exit 0
fi

if [ "${1:-}" = "file" ]; then
  mkdir -p "$out"
  cd "$root"
  scripts/install-deps.sh bench >/dev/null
  scripts/kafka-cluster.sh install
  cargo build --release -p kafkad
  KAFKA_CLUSTER_DIR="$root/target/bench-kafka" scripts/kafka-cluster.sh run --brokers 3 -- "$0" file-kafka
  if [ -f "$out/machine.txt" ]; then
    python3 scripts/bench_report.py "$out" benches/analysis.md >BENCHMARKS.md
    echo "bench: rewrote BENCHMARKS.md" >&2
  fi
  exit 0
fi

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
  produce_file "$bootstrap"
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
