#!/usr/bin/env bash
# The project's test broker: tansu 0.6.0, a Kafka-protocol broker in Rust, on loopback.
#
#   scripts/test-broker.sh install          install tansu (with in-memory storage) if needed
#   scripts/test-broker.sh start            start one on a free port; prints host:port
#   scripts/test-broker.sh stop             stop the one `start` started
#   scripts/test-broker.sh run -- CMD...    start, run CMD with TEST_BROKER_BOOTSTRAP set,
#                                           always stop afterwards (trap), exit with CMD's code
#
# (Its variables avoid the KAFKAD_ prefix: kafkad reads every KAFKAD_* variable as
# configuration and rejects unknown keys.)
#
# The Rust tests that still use tansu (tests/security.rs) start their own broker per test
# (tests/support/tansu.rs) through the same command line; this script installs it for them.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
state="${TEST_BROKER_DIR:-$root/target/test-broker}"
tansu_bin="${TANSU_BIN:-tansu}"

# tansu's in-memory storage (memory://) lives behind the `dynostore` cargo feature; a tansu
# built without it starts, then exits with FeatureNotEnabled. Check the real thing.
tansu_works() {
  command -v "$tansu_bin" >/dev/null 2>&1 || return 1
  local port pid ok=1
  port="$(free_port)"
  "$tansu_bin" broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://tansu/ \
    >/dev/null 2>&1 &
  pid=$!
  if wait_for_port "$port" 10; then ok=0; fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return $ok
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits until something accepts connections on 127.0.0.1:$1, at most $2 seconds.
wait_for_port() {
  local deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  return 1
}

install() {
  if tansu_works; then
    echo "test-broker: $(command -v "$tansu_bin") works with in-memory storage"
    return 0
  fi
  echo "test-broker: installing tansu 0.6.0 with in-memory storage (about 12 minutes on 2 cores)"
  cargo install tansu --version 0.6.0 --locked --features dynostore --force
  tansu_works || { echo "test-broker: tansu still cannot start with memory:// storage" >&2; exit 1; }
}

start() {
  mkdir -p "$state"
  if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
    echo "127.0.0.1:$(cat "$state/port")"
    return 0
  fi
  local port pid
  port="$(free_port)"
  "$tansu_bin" broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://tansu/ \
    >"$state/tansu.log" 2>&1 &
  pid=$!
  echo "$pid" >"$state/pid"
  echo "$port" >"$state/port"
  if ! wait_for_port "$port" 20; then
    echo "test-broker: tansu did not accept connections on port $port; its log:" >&2
    cat "$state/tansu.log" >&2
    stop
    exit 1
  fi
  echo "127.0.0.1:$port"
}

stop() {
  if [ -f "$state/pid" ]; then
    local pid
    pid="$(cat "$state/pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$state/pid" "$state/port"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  run)
    shift
    [ "${1:-}" = "--" ] && shift
    bootstrap="$(start)"
    trap stop EXIT INT TERM
    TEST_BROKER_BOOTSTRAP="$bootstrap" "$@"
    ;;
  *)
    echo "usage: $0 install | start | stop | run -- COMMAND..." >&2
    exit 2
    ;;
esac
