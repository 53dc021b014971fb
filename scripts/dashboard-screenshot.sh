#!/usr/bin/env bash
# Renders docs/dashboard.png, docs/operations.md's picture of the Grafana dashboard, from a real
# run:
#
#   1. Apache Kafka on loopback (scripts/kafka-cluster.sh, one node), `kafkad topic ensure`,
#      and the seed topology as six kafkad processes (release build), each with its own HTTP
#      endpoint: producer-1 and producer-2 at PRODUCE_RATE messages/s each, single-1,
#      single-2, batch-1, batch-2, from the shipped config/*.toml;
#   2. Debian's Prometheus scrapes the six every 2 s (the `instance` label is the process name);
#   3. a scenario an operator would want to see: a burst of BURST messages at BURST_RATE/s
#      from a third producer (lag builds up and drains), a few undecodable records of several kinds
#      produced with kcat (dead letters by reason), single-2 stopped and started again
#      (rebalances, a target down);
#   4. scripts/dashboard_render.py runs every query of deploy/grafana/kafkad.json over the run
#      against that Prometheus and draws the panels on the dashboard's grid, and headless
#      Chromium captures the page as a PNG.
#
#   scripts/dashboard-screenshot.sh                       # writes docs/dashboard.png
#   OUT=/tmp/d.png PHASE=20 scripts/dashboard-screenshot.sh   # shorter phases (seconds)
#
# Installs what it needs (the test dependencies for Kafka; prometheus, chromium, kcat and
# fonts-dejavu-core from Debian). Not part of `make test`. Everything it starts listens on
# 127.0.0.1 and is stopped when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-docs/dashboard.png}
PHASE=${PHASE:-40}
PRODUCE_RATE=${PRODUCE_RATE:-200}
BURST=${BURST:-1000000}
BURST_RATE=${BURST_RATE:-50000}

scripts/install-deps.sh test
scripts/kafka-cluster.sh install
need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || need_apt+=(fonts-dejavu-core)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "dashboard-screenshot: installing Debian packages: ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}"
fi

cargo build --release --quiet
kafkad=target/release/kafkad

work=$(mktemp -d)
export KAFKA_CLUSTER_DIR="$work/kafka"
declare -A pid_of=()
cleanup() {
  for name in "${!pid_of[@]}"; do
    kill "${pid_of[$name]}" 2>/dev/null || true
  done
  for name in "${!pid_of[@]}"; do
    wait "${pid_of[$name]}" 2>/dev/null || true
  done
  scripts/kafka-cluster.sh stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

echo "dashboard-screenshot: starting Kafka"
bootstrap=$(scripts/kafka-cluster.sh start --brokers 1 --owner $$)
export KAFKAD_KAFKA__BOOTSTRAP_SERVERS="$bootstrap"
# One broker: replication factor 1 for the topic and its dead-letter topic.
KAFKAD_TOPIC__REPLICATION_FACTOR=1 "$kafkad" topic ensure --config config/producer.toml \
  >"$work/topic-ensure.log" 2>&1 ||
  { cat "$work/topic-ensure.log" >&2; exit 1; }

declare -A port_of=()
names=(producer-1 producer-2 single-1 single-2 batch-1 batch-2 producer-burst)
for name in "${names[@]}"; do
  port_of[$name]=$(free_port)
done

# start NAME [VAR=VALUE...]: one kafkad process, its role and config from its name.
start() {
  local name=$1 role=${1%-*}
  shift
  [ "$role" = producer ] || [ "$role" = single ] || [ "$role" = batch ]
  env "$@" KAFKAD_HTTP__LISTEN="127.0.0.1:${port_of[$name]}" \
    KAFKAD_SINK__KIND=jsonl KAFKAD_SINK__PATH="$work/$name.jsonl" RUST_LOG=warn \
    "$kafkad" --role "$role" --config "config/$role.toml" >>"$work/$name.log" 2>&1 &
  pid_of[$name]=$!
}

targets=""
for name in "${names[@]}"; do
  targets+="
      - targets: ['127.0.0.1:${port_of[$name]}']
        labels: {instance: '$name'}"
done
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 2s
  evaluation_interval: 2s
scrape_configs:
  - job_name: kafkad
    static_configs:${targets}
EOF
prometheus_url="http://127.0.0.1:$(free_port)"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="${prometheus_url#http://}" >"$work/prometheus.log" 2>&1 &
pid_of[prometheus]=$!
for _ in $(seq 1 100); do
  curl -sf "$prometheus_url/-/ready" >/dev/null && break
  sleep 0.2
done
curl -sf "$prometheus_url/-/ready" >/dev/null ||
  { echo "dashboard-screenshot: Prometheus did not start:" >&2; cat "$work/prometheus.log" >&2; exit 1; }

start_time=$(date +%s)
echo "dashboard-screenshot: six kafkad processes at $PRODUCE_RATE messages/s per producer, phases of $PHASE s"
for name in single-1 single-2 batch-1 batch-2; do start "$name"; done
for name in producer-1 producer-2; do
  start "$name" KAFKAD_PRODUCER__PRODUCER_ID="$name" KAFKAD_PRODUCER__RATE="$PRODUCE_RATE"
done
sleep "$PHASE"

echo "dashboard-screenshot: a burst of $BURST messages at $BURST_RATE/s"
start producer-burst KAFKAD_PRODUCER__PRODUCER_ID=producer-burst KAFKAD_PRODUCER__RATE="$BURST_RATE" \
  KAFKAD_PRODUCER__COUNT="$BURST"
sleep "$PHASE"

echo "dashboard-screenshot: undecodable records"
for _ in $(seq 1 6); do
  printf 'not json\n' | kcat -P -b "$bootstrap" -t andrew-topic
  printf '\xff\xfe\n' | kcat -P -b "$bootstrap" -t andrew-topic
  printf '{"message_id": 1}\n{"message_id": 2}\n' | kcat -P -b "$bootstrap" -t andrew-topic
  printf '\n' | kcat -P -Z -b "$bootstrap" -t andrew-topic
  sleep $((PHASE / 6))
done

echo "dashboard-screenshot: single-2 stops, and starts again"
kill -TERM "${pid_of[single-2]}"
wait "${pid_of[single-2]}" || true
unset 'pid_of[single-2]'
sleep "$PHASE"
start single-2
sleep "$PHASE"
end_time=$(date +%s)

for name in "${names[@]}"; do
  if [ -n "${pid_of[$name]:-}" ] && ! kill -0 "${pid_of[$name]}" 2>/dev/null &&
    [ "$name" != producer-burst ]; then
    echo "dashboard-screenshot: $name exited early:" >&2
    tail -n 20 "$work/$name.log" >&2
    exit 1
  fi
done

version=$(prometheus --version 2>&1 | head -n1 | awk '{print $3}')
height=$(python3 scripts/dashboard_render.py --prometheus "$prometheus_url" \
  --start "$start_time" --end "$end_time" --job kafkad --out "$work/dashboard.html" \
  --subtitle "six kafkad processes on Apache Kafka: a burst of $BURST messages, bad records, single-2 restarted; Prometheus $version every 2 s")

mkdir -p "$(dirname "$OUT")"
chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
  --run-all-compositor-stages-before-draw --virtual-time-budget=10000 \
  --user-data-dir="$work/chromium" --window-size="1600,${height}" \
  --screenshot="$PWD/$OUT" "file://$work/dashboard.html" >"$work/chromium.log" 2>&1 ||
  { cat "$work/chromium.log" >&2; exit 1; }
echo "dashboard-screenshot: wrote $OUT"
