#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback, from Debian's `postgresql` package
# (scripts/install-deps.sh test installs it). Tests, benchmarks and anyone trying the postgres
# sink by hand use it.
#
#   scripts/postgres.sh start [--port P] [--owner PID] [--tls]
#                                     initialise and start a server; waits until it accepts
#                                     connections; prints its URL (without the password) on
#                                     stdout
#   scripts/postgres.sh stop          stop it (fast shutdown) and remove its data
#   scripts/postgres.sh kill          SIGKILL the server (a crash)
#   scripts/postgres.sh url           print the URL again
#   scripts/postgres.sh ca            print the path of the CA certificate (--tls servers only)
#   scripts/postgres.sh psql [ARGS...]
#                                     psql connected to it (verifying the certificate, --tls)
#   scripts/postgres.sh run [--port P] [--tls] [-- CMD...]
#                                     start; run CMD with POSTGRES_URL and
#                                     POSTGRES_PASSWORD_FILE set (and POSTGRES_CA, --tls), or
#                                     wait for Ctrl-C; always stop afterwards
#
# The server has one user, `kafkad`, whose password (random, in $POSTGRES_DIR/password) is
# required over TCP (scram-sha-256), and one database, `kafkad`. It listens on 127.0.0.1 only,
# on a free port unless --port says. It is stopped once the owner process (--owner, default
# the caller) is gone, so a crashed test binary leaves no server behind. PostgreSQL refuses
# to run as root: as root the server runs as the `postgres` user the package creates, with
# its data in a directory of that user's under /tmp.
#
# Without --tls, TCP clients talk plain text and the URL says `sslmode=disable`. With --tls
# the server speaks TLS only: a CA made for this server alone (its certificate in
# $POSTGRES_DIR/ca.pem, its key thrown away once it has signed) issues the server a
# certificate for 127.0.0.1 and localhost, a TCP client without TLS is refused, and the URL
# says `sslmode=require`. A client verifies the server by trusting ca.pem (kafkad: [sink] ca;
# libpq: sslrootcert with sslmode=verify-full). Needs the openssl command.
#
# Environment:
#   POSTGRES_DIR          state: URL, password, pid, log, ca.pem (--tls) (default
#                         target/postgres); one directory per server
#   POSTGRES_BINDIR       the server's binaries (default: `pg_config --bindir`, else the
#                         newest /usr/lib/postgresql/*/bin)
#   POSTGRES_START_TIMEOUT  seconds to wait for the server (default 60)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/local-server.sh
. "$root/scripts/lib/local-server.sh"
script="$root/scripts/postgres.sh"
state="${POSTGRES_DIR:-$root/target/postgres}"
start_timeout="${POSTGRES_START_TIMEOUT:-60}"

fail() {
  echo "postgres: $*" >&2
  exit 1
}

bindir() {
  local dir="${POSTGRES_BINDIR:-}"
  if [ -z "$dir" ]; then
    # Debian's libpq-dev pg_config answers /usr/bin, where the server is not: check.
    if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
      dir="$(pg_config --bindir)"
    else
      dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
    fi
  fi
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] ||
    fail "no PostgreSQL server binaries (initdb, pg_ctl) found; scripts/install-deps.sh test installs Debian's postgresql package, or set POSTGRES_BINDIR"
  echo "$dir"
}

# Runs the command as the server's user: ourselves, or `postgres` when we are root.
as_server() {
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || fail "running as root needs the postgres user (Debian's postgresql package creates it)"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

load_state() {
  [ -f "$state/server.env" ] || fail "no server runs from $state (start one: $script start)"
  # A server started before --tls existed has no `tls` line: it is a plain one.
  tls=0
  # shellcheck disable=SC1091
  . "$state/server.env"
}

url() {
  load_state
  if [ "$tls" = 1 ]; then
    echo "postgres://kafkad@127.0.0.1:$port/kafkad?sslmode=require"
  else
    echo "postgres://kafkad@127.0.0.1:$port/kafkad?sslmode=disable"
  fi
}

ca() {
  load_state
  [ "$tls" = 1 ] || fail "the server in $state has no TLS (start it with --tls)"
  echo "$state/ca.pem"
}

# A CA of its own, and the server's certificate and key it signs, in $1; the CA's certificate
# goes to $2. Clients verify the server against that CA alone, so the test of a client that
# does not trust it, or that connects by a name the certificate lacks, is real.
make_certificates() {
  local dir="$1" ca_out="$2"
  command -v openssl >/dev/null 2>&1 || fail "--tls needs the openssl command (Debian's openssl package)"
  mkdir -p "$dir"
  (
    # Keys are written owner-only from the start.
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=kafkad throwaway test CA" \
      -keyout "$dir/ca.key" -out "$dir/ca.pem" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -new -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
      -keyout "$dir/server.key" -out "$dir/server.csr"
    # Host-name checks read the subjectAltName only: both names the URL may use are there.
    cat >"$dir/server.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
EOF
    openssl x509 -req -in "$dir/server.csr" -days 30 -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
      -set_serial "0x$(openssl rand -hex 16)" -extfile "$dir/server.ext" -out "$dir/server.crt"
  ) >"$state/openssl.log" 2>&1 || fail "making the certificates failed; openssl's output: $state/openssl.log"
  # Nothing else is ever signed by this CA: it exists to vouch for this one server.
  rm -f "$dir/ca.key" "$dir/server.csr" "$dir/server.ext"
  cp "$dir/ca.pem" "$ca_out"
  chmod 644 "$ca_out"
}

start() {
  local port="" owner="$PPID" tls=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --port) port="$2"; shift 2 ;;
      --owner) owner="$2"; shift 2 ;;
      --tls) tls=1; shift ;;
      *) fail "start: unknown argument $1 (see $script for usage)" ;;
    esac
  done
  command -v python3 >/dev/null 2>&1 || fail "python3 not found: it picks a free port"
  local bin
  bin="$(bindir)"
  if [ -f "$state/server.env" ]; then
    (load_state; as_server "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1) &&
      fail "a server already runs from $state (stop it first: $script stop)"
    # In a subshell: the stale state it loads must not overwrite this start's own --port,
    # --owner and --tls.
    (stop) >/dev/null 2>&1 || true
  fi
  rm -rf "$state"
  mkdir -p "$state"
  [ -n "$port" ] || port="$(free_port)"
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && fail "port $port is taken by another process"
  local data
  data="$(mktemp -d "${TMPDIR:-/tmp}/kafkad-postgres.XXXXXX")"
  python3 -c 'import secrets; print(secrets.token_urlsafe(18))' >"$state/password"
  chmod 600 "$state/password"
  cp "$state/password" "$data/pwfile"
  cat >"$state/server.env" <<EOF
port=$port
data=$data/cluster
bin=$bin
owner=$owner
tls=$tls
EOF
  trap 'stop >/dev/null 2>&1' EXIT
  if [ "$tls" = 1 ]; then
    make_certificates "$data/tls" "$state/ca.pem"
  fi
  # The data, and the TLS key, are the server user's: it refuses a key that is not its
  # user's (or root's), or that others can read.
  if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres "$data"
  fi
  if ! as_server "$bin/initdb" -D "$data/cluster" -U kafkad --pwfile="$data/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$state/initdb.log" 2>&1; then
    fail "initdb failed; its log: $state/initdb.log"
  fi
  rm -f "$data/pwfile"
  # Loopback only, the socket inside the data directory; small and quick to stop.
  cat >>"$data/cluster/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data'
max_connections = 100
shared_buffers = 64MB
fsync = on
logging_collector = off
EOF
  if [ "$tls" = 1 ]; then
    cat >>"$data/cluster/postgresql.conf" <<EOF
ssl = on
ssl_cert_file = '$data/tls/server.crt'
ssl_key_file = '$data/tls/server.key'
EOF
    # First match wins: the socket (this script's own set-up) stays as initdb made it, TCP
    # without TLS is refused outright, and TCP with TLS still needs the password. So a
    # client that got in over TCP was talking TLS, whatever it was asked to do.
    cat >"$data/cluster/pg_hba.conf" <<EOF
# TYPE     DATABASE  USER  ADDRESS       METHOD
local      all       all                 trust
hostnossl  all       all   all           reject
hostssl    all       all   127.0.0.1/32  scram-sha-256
EOF
  fi
  if ! as_server "$bin/pg_ctl" -D "$data/cluster" -l "$data/server.log" -w -t "$start_timeout" start \
    >"$state/pg_ctl.log" 2>&1; then
    fail "the server did not start; its log: $data/server.log"
  fi
  ln -sf "$data/server.log" "$state/server.log"
  as_server "$bin/psql" -h "$data" -p "$port" -U kafkad -d postgres -qAt \
    -c "CREATE DATABASE kafkad" >/dev/null || fail "cannot create the database kafkad"
  trap - EXIT
  start_watcher "$owner" "$state" server.env POSTGRES_DIR "$script"
  if [ "$tls" = 1 ]; then
    echo "postgres: server up on 127.0.0.1:$port, TLS only; password in $state/password; CA certificate $state/ca.pem; log $state/server.log" >&2
  else
    echo "postgres: server up on 127.0.0.1:$port; password in $state/password; log $state/server.log" >&2
  fi
  url
}

stop() {
  [ -f "$state/server.env" ] || return 0
  load_state
  if [ -f "$data/postmaster.pid" ]; then
    as_server "$bin/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
      kill -KILL "$(head -n1 "$data/postmaster.pid")" 2>/dev/null || true
  fi
  rm -f "$state/server.env"
  rm -rf "$(dirname "$data")"
  stop_watcher "$state"
}

kill_server() {
  load_state
  [ -f "$data/postmaster.pid" ] || fail "the server is not running"
  crash "$(head -n1 "$data/postmaster.pid")"
}

psql_() {
  load_state
  if [ "$tls" = 1 ]; then
    # libpq's `require` would not check the certificate: verify it as kafkad does.
    export PGSSLMODE=verify-full PGSSLROOTCERT="$state/ca.pem"
  fi
  PGPASSWORD="$(cat "$state/password")" "$bin/psql" -h 127.0.0.1 -p "$port" -U kafkad -d kafkad "$@"
}

run() {
  local start_args=() cmd=()
  begin_run "$@"
  local server_url
  server_url="$(start --owner $$ "${start_args[@]}")"
  local ca_file=""
  [ -f "$state/ca.pem" ] && ca_file="$state/ca.pem"
  if [ ${#cmd[@]} -gt 0 ]; then
    if [ -n "$ca_file" ]; then
      POSTGRES_URL="$server_url" POSTGRES_PASSWORD_FILE="$state/password" POSTGRES_CA="$ca_file" "${cmd[@]}"
    else
      POSTGRES_URL="$server_url" POSTGRES_PASSWORD_FILE="$state/password" "${cmd[@]}"
    fi
  else
    wait_for_ctrl_c "postgres: $server_url (password in $state/password${ca_file:+; CA certificate $ca_file}); Ctrl-C stops the server"
  fi
}

verb="${1:-}"
[ $# -gt 0 ] && shift
case "$verb" in
  start) start "$@" ;;
  stop) stop ;;
  kill) kill_server ;;
  url) url ;;
  ca) ca ;;
  psql) psql_ "$@" ;;
  run) run "$@" ;;
  *) usage ;;
esac
