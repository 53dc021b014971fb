# shellcheck shell=bash
# What scripts/kafka-cluster.sh and scripts/postgres.sh share: the parts of running a throwaway
# server on loopback for as long as its owner lives that do not depend on the server. Sourced
# by both, never run; the callers define `start` and `stop`.

# A loopback port nothing listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# The watcher of the server whose state is in directory $2: once process $1 (the owner) is
# gone, it runs `$5 stop` with the variable $4 naming that directory, unless the server's state
# file $3 there is gone already (someone stopped it). Detached, so the owner's end does not
# take it along.
start_watcher() {
  local owner="$1" state="$2" state_file="$3" dir_var="$4" script="$5"
  setsid bash -c '
    while kill -0 "$1" 2>/dev/null && [ -f "$2/$3" ]; do sleep 1; done
    [ -f "$2/$3" ] && env "$4=$2" "$5" stop
  ' _ "$owner" "$state" "$state_file" "$dir_var" "$script" </dev/null >/dev/null 2>&1 &
  echo $! >"$state/watcher.pid"
}

# Ends the watcher of the server in directory $1, which has nothing left to watch once the
# server is stopped, unless the watcher is the one stopping it (this script's parent).
stop_watcher() {
  local state="$1" watcher
  [ -f "$state/watcher.pid" ] || return 0
  watcher="$(cat "$state/watcher.pid")"
  [ "$watcher" = "$PPID" ] || kill "$watcher" 2>/dev/null || true
  rm -f "$state/watcher.pid"
}

# SIGKILL process $1 (a crash), and wait until it is gone.
crash() {
  kill -KILL "$1"
  while kill -0 "$1" 2>/dev/null; do sleep 0.1; done
}

# The start of `run ARGS [-- CMD...]`: the arguments before `--` go into the caller's array
# start_args (for `start`), those after it into its array cmd; from now on the server is
# stopped when the script exits, Ctrl-C included.
# shellcheck disable=SC2034 # start_args and cmd are the caller's, read by its `run`
begin_run() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --) shift; cmd=("$@"); break ;;
      *) start_args+=("$1"); shift ;;
    esac
  done
  trap 'stop' EXIT
  trap 'exit 130' INT TERM
}

# `run` without a command: says so ($1, on stderr), and keeps the server until Ctrl-C.
wait_for_ctrl_c() {
  echo "$1" >&2
  while :; do sleep 3600; done
}

# The usage: the script's header comment, up to its `set -euo pipefail` line; exit 2.
usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}
