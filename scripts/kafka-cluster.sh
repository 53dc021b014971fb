#!/usr/bin/env bash
# A local Apache Kafka cluster on loopback, in KRaft mode, like the seed's: each node is a
# combined broker and controller. Tests, make targets and anyone trying kafkad by hand use it.
#
#   scripts/kafka-cluster.sh install                 fetch the pinned Kafka jars (no-op when cached)
#   scripts/kafka-cluster.sh libs                    install, then print the jars' directory (for
#                                                    running Kafka's classes another way, e.g.
#                                                    its perf tools under kafkad-bench)
#   scripts/kafka-cluster.sh start [--brokers N] [--port P] [--listeners L,...] [--owner PID]
#                                                    format and start N nodes (1 or 3, default 3);
#                                                    waits until the cluster reports N brokers;
#                                                    prints the bootstrap list on stdout
#   scripts/kafka-cluster.sh stop                    stop every node (SIGTERM, then SIGKILL)
#   scripts/kafka-cluster.sh kill I                  SIGKILL node I (a crash)
#   scripts/kafka-cluster.sh stop-broker I           SIGTERM node I (controlled shutdown)
#   scripts/kafka-cluster.sh restart I               start node I again (stopping it first if
#                                                    it runs); waits until it serves again
#   scripts/kafka-cluster.sh bootstrap [LISTENER]    print the bootstrap list (of PLAINTEXT, or
#                                                    of another listener --listeners added, by
#                                                    its name)
#   scripts/kafka-cluster.sh tool NAME ARGS...       run one of Kafka's tools against the cluster
#                                                    (kafka-topics, kafka-consumer-groups,
#                                                    kafka-configs, kafka-console-consumer,
#                                                    kafka-acls, kafka-metadata-quorum, ...);
#                                                    --bootstrap-server is added when not given
#   scripts/kafka-cluster.sh run [--brokers N] [--port P] [-- CMD...]
#                                                    start; run CMD with KAFKA_BOOTSTRAP set, or
#                                                    wait for Ctrl-C; always stop afterwards
#
# Nodes are numbered 0..N-1. `--port P` puts the client listeners on P, P+1, ... (9092 makes the
# shipped config/*.toml work as they are); without it every port is a free one. Every node has a
# PLAINTEXT listener (brokers talk to each other over it); `--listeners SSL,SASL_SSL` adds more
# on free ports, whose TLS and SASL settings come from KAFKA_NODE_CONFIG. A listener is a
# security protocol (SSL, SASL_SSL, SASL_PLAINTEXT), named after it, or NAME:PROTOCOL for a
# second listener of the same protocol with settings of its own (`--listeners SSL,MTLS:SSL`,
# then `listener.name.mtls.ssl.client.auth=required` in KAFKA_NODE_CONFIG). A node that does
# not come up names its log file. Every node `start` started is stopped when the caller exits:
# a watcher stops the cluster once the owner process (--owner, default the caller) is gone, so a
# test binary that crashes leaves no Java process behind. `run` stops it through a trap.
#
# Environment (no KAFKAD_ prefix: kafkad reads those as its own configuration):
#   KAFKA_CLUSTER_DIR     state: configs, data, logs, pids (default target/kafka-cluster);
#                         one directory per cluster, so test binaries each run their own
#   KAFKA_CACHE_DIR       where the jars go (default ~/.cache/kafkad/kafka-<version>)
#   KAFKA_HEAP            heap per node (default 512m)
#   KAFKA_START_TIMEOUT   seconds to wait for the cluster (default 180)
#   JAVA_HOME             the JDK to run (default: java on PATH); Kafka 4 needs Java 17 or newer
#   KAFKA_NODE_CONFIG     a file of extra server properties appended to every node's config
#                         (TLS keystores, SASL mechanisms, an authorizer, ...); @NODE@ and @DIR@
#                         in it are replaced by the node number and its directory
#   KAFKA_SCRAM_USERS     "name=password ..." SCRAM-SHA-512 users written into the cluster
#                         metadata when it is formatted (KRaft has no ZooKeeper to add them to)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/local-server.sh
. "$root/scripts/lib/local-server.sh"
script="$root/scripts/kafka-cluster.sh"
pom="$root/scripts/kafka/pom.xml"
kafka_version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")"
cache="${KAFKA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kafkad/kafka-$kafka_version}"
state="${KAFKA_CLUSTER_DIR:-$root/target/kafka-cluster}"
heap="${KAFKA_HEAP:-512m}"
start_timeout="${KAFKA_START_TIMEOUT:-180}"
# The JDK of JAVA_HOME when it is set, as Kafka's own scripts do; else java on PATH.
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"

fail() {
  echo "kafka-cluster: $*" >&2
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || fail "$1 not found: $2"
}

# ---------------------------------------------------------------------------------------------
# install

install() {
  if [ -f "$cache/complete" ]; then
    return 0
  fi
  need "$java" "a JDK 17 or newer runs the Kafka brokers (scripts/install-deps.sh test installs one)"
  need mvn "Maven fetches the Kafka jars (scripts/install-deps.sh test installs it)"
  echo "kafka-cluster: fetching Apache Kafka $kafka_version from Maven Central into $cache" >&2
  mkdir -p "$cache"
  rm -rf "$cache/libs"
  if ! mvn -B -q -f "$pom" dependency:copy-dependencies \
    -DoutputDirectory="$cache/libs" -DincludeScope=runtime >"$cache/mvn.log" 2>&1; then
    fail "Maven could not fetch Kafka $kafka_version; its output: $cache/mvn.log"
  fi
  cp "$root/scripts/kafka/log4j2.xml" "$cache/log4j2.xml"
  touch "$cache/complete"
}

# ---------------------------------------------------------------------------------------------
# helpers

java_cmd() {
  # $1 = heap, then the main class and its arguments.
  local heap_size="$1"
  shift
  # Serial GC and a small metaspace keep three nodes and the tests within two cores.
  "$java" -Xms64m "-Xmx$heap_size" -XX:+UseSerialGC -XX:MaxMetaspaceSize=256m \
    -Djava.awt.headless=true "-Dlog4j2.configurationFile=$cache/log4j2.xml" \
    -cp "$cache/libs/*" "$@"
}

port_taken() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

node_pid() {
  local file="$state/node-$1/pid"
  [ -f "$file" ] && cat "$file"
}

node_running() {
  local pid
  pid="$(node_pid "$1")" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

load_state() {
  [ -f "$state/cluster.env" ] || fail "no cluster in $state (run: $script start)"
  # shellcheck disable=SC1091
  . "$state/cluster.env"
}

check_node() {
  load_state
  [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -lt "$brokers" ] ||
    fail "no node $1: the cluster has nodes 0..$((brokers - 1))"
}

# Starts node $1's JVM in the background, its output appended to its log.
launch_node() {
  local node="$1" dir="$state/node-$1"
  echo "--- started $(date -u +%FT%TZ)" >>"$dir/server.log"
  # setsid: the node is not in the caller's process group, so a Ctrl-C meant for a test does
  # not kill the brokers mid-scenario; the watcher or `stop` ends them.
  setsid "$java" -Xms64m "-Xmx$heap" -XX:+UseSerialGC \
    -XX:MaxMetaspaceSize=256m -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$cache/log4j2.xml" -cp "$cache/libs/*" \
    kafka.Kafka "$dir/server.properties" </dev/null >>"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
}

# Lines of node $1's log after its latest start.
log_since_start() {
  awk '/^--- started /{buf=""} {buf = buf $0 "\n"} END {printf "%s", buf}' \
    "$state/node-$1/server.log"
}

# Waits until node $1 says it started (after its latest launch), or fails naming its log.
wait_node() {
  local node="$1" deadline=$((SECONDS + start_timeout)) log="$state/node-$1/server.log"
  while :; do
    if log_since_start "$node" | grep -q 'Kafka Server started'; then
      return 0
    fi
    if ! node_running "$node"; then
      local cause
      cause="$(log_since_start "$node" | grep -m1 -E 'Address already in use|ERROR|Exception' || true)"
      fail "node $node exited while starting${cause:+ ($cause)}; its log: $log"
    fi
    if [ $SECONDS -ge $deadline ]; then
      fail "node $node did not start within ${start_timeout}s; its log: $log"
    fi
    sleep 0.5
  done
}

# Waits until the cluster's metadata lists `$1` brokers, asked through Kafka's own tool.
wait_brokers() {
  local want="$1" deadline=$((SECONDS + start_timeout)) seen=0
  while :; do
    seen="$(tool kafka-broker-api-versions 2>/dev/null | grep -c '^[^ ].* (id: [0-9]* rack: ' || true)"
    [ "$seen" -ge "$want" ] && return 0
    [ $SECONDS -ge $deadline ] &&
      fail "the cluster reports $seen of $want brokers after ${start_timeout}s; logs: $state/node-*/server.log"
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------------------------
# verbs

start() {
  local brokers=3 port_base="" owner="$PPID" extra_listeners=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --brokers) brokers="$2"; shift 2 ;;
      --port) port_base="$2"; shift 2 ;;
      --listeners) extra_listeners="${2//,/ }"; shift 2 ;;
      --owner) owner="$2"; shift 2 ;;
      *) fail "start: unknown argument $1 (see $script for usage)" ;;
    esac
  done
  [ "$brokers" = 1 ] || [ "$brokers" = 3 ] || fail "start: --brokers takes 1 or 3, not $brokers"
  local listener name protocol protocol_map="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  local named=() names=" PLAINTEXT CONTROLLER "
  for listener in $extra_listeners; do
    name="${listener%%:*}"
    protocol="${listener#*:}"
    case "$protocol" in
      SSL | SASL_SSL | SASL_PLAINTEXT) ;;
      *) fail "start: --listeners takes SSL, SASL_SSL, SASL_PLAINTEXT or NAME:one of them, not $listener" ;;
    esac
    [[ "$name" =~ ^[A-Z][A-Z0-9_]*$ ]] ||
      fail "start: listener name $name: upper-case letters, digits and _ only"
    [[ "$names" != *" $name "* ]] || fail "start: listener $name given twice (or reserved)"
    names+="$name "
    named+=("$name")
    protocol_map+=",$name:$protocol"
  done
  need "$java" "a JDK 17 or newer runs the Kafka brokers (scripts/install-deps.sh test installs one)"
  need python3 "it picks free ports"
  install
  if [ -f "$state/cluster.env" ]; then
    local running=0 i
    # shellcheck disable=SC1091
    for i in $( . "$state/cluster.env"; seq 0 $((brokers - 1)) ); do
      node_running "$i" && running=1
    done
    [ $running = 0 ] || fail "a cluster already runs from $state (stop it first: $script stop)"
  fi
  rm -rf "$state"
  mkdir -p "$state"

  local client_ports=() controller_ports=() i
  for i in $(seq 0 $((brokers - 1))); do
    if [ -n "$port_base" ]; then
      client_ports+=($((port_base + i)))
    else
      client_ports+=("$(free_port)")
    fi
    controller_ports+=("$(free_port)")
  done
  for i in $(seq 0 $((brokers - 1))); do
    if port_taken "${client_ports[$i]}"; then
      rm -rf "$state"
      fail "port ${client_ports[$i]} (node $i) is taken by another process"
    fi
  done

  local voters="" bootstrap="" listeners=() advertised=()
  for i in $(seq 0 $((brokers - 1))); do
    voters+="${voters:+,}$i@127.0.0.1:${controller_ports[$i]}"
    bootstrap+="${bootstrap:+,}127.0.0.1:${client_ports[$i]}"
    listeners[$i]="PLAINTEXT://127.0.0.1:${client_ports[$i]}"
  done
  advertised=("${listeners[@]}")
  for name in ${named[@]+"${named[@]}"}; do
    local list="" port
    for i in $(seq 0 $((brokers - 1))); do
      port="$(free_port)"
      listeners[$i]+=",$name://127.0.0.1:$port"
      advertised[$i]+=",$name://127.0.0.1:$port"
      list+="${list:+,}127.0.0.1:$port"
    done
    echo "$list" >"$state/bootstrap-$name"
  done
  local scram_args=() user
  for user in ${KAFKA_SCRAM_USERS:-}; do
    scram_args+=(--add-scram "SCRAM-SHA-512=[name=${user%%=*},password=${user#*=}]")
  done
  # Internal topics replicated like the seed's: 3 copies with 3 nodes, 2 in sync to write.
  local rf=$brokers min_isr=$((brokers > 1 ? 2 : 1))
  local cluster_id
  cluster_id="$(java_cmd 128m kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
  [ -n "$cluster_id" ] || fail "kafka-storage random-uuid printed nothing (is $cache/libs complete?)"

  for i in $(seq 0 $((brokers - 1))); do
    local dir="$state/node-$i"
    mkdir -p "$dir/data"
    cat >"$dir/server.properties" <<EOF
# Node $i of a $brokers-node KRaft test cluster written by scripts/kafka-cluster.sh.
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=${listeners[$i]},CONTROLLER://127.0.0.1:${controller_ports[$i]}
advertised.listeners=${advertised[$i]}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocol_map
log.dirs=$dir/data
num.partitions=3
default.replication.factor=$((brokers > 1 ? 2 : 1))
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
auto.create.topics.enable=false
# Tests join groups often: no 3 s wait for more members before the first rebalance.
group.initial.rebalance.delay.ms=0
# A crashed member of a consumer-protocol group (KIP-848) is noticed after 10 s rather than
# the production default of 45 s (classic groups set session.timeout.ms on the client).
group.consumer.min.session.timeout.ms=6000
group.consumer.session.timeout.ms=10000
group.consumer.min.heartbeat.interval.ms=1000
group.consumer.heartbeat.interval.ms=2000
# Small machines: fewer threads than a production broker.
num.network.threads=2
num.io.threads=4
num.replica.fetchers=1
log.segment.bytes=67108864
EOF
    if [ -n "${KAFKA_NODE_CONFIG:-}" ]; then
      sed -e "s|@NODE@|$i|g" -e "s|@DIR@|$dir|g" "$KAFKA_NODE_CONFIG" >>"$dir/server.properties"
    fi
    if ! java_cmd 256m kafka.tools.StorageTool format -t "$cluster_id" \
      -c "$dir/server.properties" "${scram_args[@]}" >"$dir/format.log" 2>&1; then
      fail "formatting node $i failed; its log: $dir/format.log"
    fi
  done

  cat >"$state/cluster.env" <<EOF
brokers=$brokers
bootstrap=$bootstrap
client_ports=(${client_ports[*]})
owner=$owner
EOF
  echo "$bootstrap" >"$state/bootstrap"

  # From here on a failure stops whatever started.
  trap 'stop >/dev/null 2>&1' EXIT
  for i in $(seq 0 $((brokers - 1))); do
    launch_node "$i"
  done
  for i in $(seq 0 $((brokers - 1))); do
    wait_node "$i"
  done
  wait_brokers "$brokers"
  trap - EXIT

  start_watcher "$owner" "$state" cluster.env KAFKA_CLUSTER_DIR "$script"
  echo "kafka-cluster: $brokers node(s) of Kafka $kafka_version up; logs: $state/node-*/server.log" >&2
  echo "$bootstrap"
}

# SIGTERM the given nodes, wait up to $grace seconds, then SIGKILL what is left.
terminate_nodes() {
  local grace="$1" i pid
  shift
  for i in "$@"; do
    pid="$(node_pid "$i" || true)"
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  local deadline=$((SECONDS + grace))
  for i in "$@"; do
    pid="$(node_pid "$i" || true)"
    [ -n "$pid" ] || continue
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  done
}

stop() {
  [ -f "$state/cluster.env" ] || return 0
  local brokers
  # shellcheck disable=SC1091
  brokers="$( . "$state/cluster.env"; echo "$brokers")"
  # With every node stopping at once the quorum goes away and a controlled shutdown can wait
  # for a controller that is gone: 10 s of grace, then SIGKILL.
  terminate_nodes 10 $(seq 0 $((brokers - 1)))
  rm -f "$state/cluster.env"
  stop_watcher "$state"
}

kill_node() {
  check_node "$1"
  local pid
  pid="$(node_pid "$1" || true)"
  node_running "$1" || fail "node $1 is not running"
  crash "$pid"
}

stop_node() {
  check_node "$1"
  node_running "$1" || fail "node $1 is not running"
  # A controlled shutdown moves leadership away first; it finishes in seconds while the
  # other nodes keep the quorum. Bounded all the same.
  terminate_nodes 60 "$1"
}

restart_node() {
  check_node "$1"
  node_running "$1" && terminate_nodes 60 "$1"
  launch_node "$1"
  wait_node "$1"
  wait_brokers "$brokers"
}

tool() {
  local name="${1:-}"
  [ -n "$name" ] || fail "tool: which one? (kafka-topics, kafka-consumer-groups, ...)"
  shift
  local class
  case "$name" in
    kafka-topics) class=org.apache.kafka.tools.TopicCommand ;;
    kafka-consumer-groups) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    kafka-configs) class=kafka.admin.ConfigCommand ;;
    kafka-console-consumer) class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    kafka-console-producer) class=org.apache.kafka.tools.ConsoleProducer ;;
    kafka-acls) class=org.apache.kafka.tools.AclCommand ;;
    kafka-metadata-quorum) class=org.apache.kafka.tools.MetadataQuorumCommand ;;
    kafka-broker-api-versions) class=org.apache.kafka.tools.BrokerApiVersionsCommand ;;
    kafka-get-offsets) class=org.apache.kafka.tools.GetOffsetShell ;;
    kafka-storage) class=kafka.tools.StorageTool ;;
    *) fail "tool: unknown tool $name" ;;
  esac
  local args=("$@")
  if [ "$name" != kafka-storage ] && [[ " ${args[*]-} " != *" --bootstrap-server "* ]]; then
    load_state
    args=(--bootstrap-server "$bootstrap" "${args[@]}")
  fi
  # Tools start fast with the client compiler only and log warnings only.
  "$java" -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dkafka.test.log.level=WARN "-Dlog4j2.configurationFile=$cache/log4j2.xml" \
    -cp "$cache/libs/*" "$class" "${args[@]}"
}

run() {
  local start_args=() cmd=()
  begin_run "$@"
  local bootstrap
  bootstrap="$(start --owner $$ "${start_args[@]}")"
  if [ ${#cmd[@]} -gt 0 ]; then
    KAFKA_BOOTSTRAP="$bootstrap" "${cmd[@]}"
  else
    wait_for_ctrl_c "kafka-cluster: bootstrap servers $bootstrap; Ctrl-C stops the cluster"
  fi
}

verb="${1:-}"
[ $# -gt 0 ] && shift
case "$verb" in
  install) install ;;
  libs)
    install
    echo "$cache/libs"
    ;;
  start) start "$@" ;;
  stop) stop ;;
  kill) kill_node "${1:-}" ;;
  stop-broker) stop_node "${1:-}" ;;
  restart) restart_node "${1:-}" ;;
  bootstrap)
    if [ -n "${1:-}" ] && [ "$1" != PLAINTEXT ]; then
      [ -f "$state/bootstrap-$1" ] || fail "no $1 listener (start it with --listeners $1)"
      cat "$state/bootstrap-$1"
    else
      load_state
      echo "$bootstrap"
    fi
    ;;
  tool) tool "$@" ;;
  run) run "$@" ;;
  *) usage ;;
esac
