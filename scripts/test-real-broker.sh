#!/usr/bin/env bash
# The real-broker tests (those named real_broker::*, on Apache Kafka), as `make test` runs them.
#
#   scripts/test-real-broker.sh [--jobs N]
#
# Builds the workspace's test binaries (a no-op when `cargo test` just built them), keeps those
# holding real_broker::* tests, and runs N of them at a time (default 2, or REAL_BROKER_JOBS):
# while one binary's tests run, the next one's JVM cluster starts. Each binary starts its own
# cluster with scripts/kafka-cluster.sh on free ports (tests/support/kafka.rs) and runs its own
# tests one at a time (--test-threads=1), as they expect; binaries share nothing but the CPU.
# Each binary's output (--nocapture: topic descriptions, reconciliation tables) goes to a file,
# target/debug/real-broker/NAME.log, and is printed whole once the binary ends, so outputs never
# interleave. Exits non-zero if any binary failed, once the others have finished, after a
# summary of every binary: its tests, its time, its outcome. `--jobs 1` runs them one by one.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
jobs="${REAL_BROKER_JOBS:-2}"
if [ "${1:-}" = --jobs ]; then
  jobs="${2:?--jobs needs a number}"
fi
case "$jobs" in
  '' | *[!0-9]* | 0)
    echo "test-real-broker: --jobs must be a positive number" >&2
    exit 2
    ;;
esac
filter="real_broker::"
cargo="${CARGO:-cargo}"

# `wait -n -p` (which of the running binaries ended) came with bash 5.1.
if ((BASH_VERSINFO[0] < 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] < 1))); then
  echo "test-real-broker: needs bash 5.1 or newer, this is $BASH_VERSION" >&2
  exit 2
fi

# The test binaries, as cargo reports them (the artifacts built with the test profile flag; the
# kafkad binaries the tests run are artifacts too); its progress and diagnostics go to stderr.
artifacts="$(mktemp)"
"$cargo" test --workspace --tests --no-run --message-format=json-render-diagnostics >"$artifacts"
mapfile -t executables < <(grep '"profile":{[^}]*"test":true' "$artifacts" \
  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
rm -f "$artifacts"

# Longest first (as measured on 2 cores: kafka_exactly_once, kafka_e2e and kafka_broker_faults
# take minutes, the others one or two at most), so that the long ones run side by side and the
# short ones fill in after them; a binary not named here runs last. The order only affects the
# total time.
longest_first=(kafka_exactly_once kafka_e2e kafka_broker_faults kafka_processing security kafka_replay
  kafka_dead_letters kafka_cluster_script)
name_of() {
  # target/debug/deps/kafka_e2e-0123abcd -> kafka_e2e
  local base
  base="$(basename "$1")"
  echo "${base%-*}"
}
declare -A tests_of=()
for exe in "${executables[@]}"; do
  listed="$("$exe" --list "$filter")"
  count="$(grep -c ': test$' <<<"$listed" || true)"
  if [ "$count" -gt 0 ]; then
    tests_of[$exe]=$count
  fi
done
queue=()
for name in "${longest_first[@]}"; do
  for exe in "${!tests_of[@]}"; do
    if [ "$(name_of "$exe")" = "$name" ]; then
      queue+=("$exe")
    fi
  done
done
for exe in "${!tests_of[@]}"; do
  case " ${longest_first[*]} " in
    *" $(name_of "$exe") "*) ;;
    *) queue+=("$exe") ;;
  esac
done
if [ ${#queue[@]} -eq 0 ]; then
  echo "test-real-broker: no test binary holds $filter tests" >&2
  exit 1
fi
total=0
for exe in "${queue[@]}"; do total=$((total + tests_of[$exe])); done
# Beside the binaries' own directory: target/debug/real-broker/NAME.log.
logs="$(dirname "$(dirname "${queue[0]}")")/real-broker"
echo "test-real-broker: $total tests in ${#queue[@]} binaries, $jobs at a time; logs in $logs"

rm -rf "$logs"
mkdir -p "$logs"
declare -A exe_of=() started_at=()
passed_in_all=0
failed=()
summary=()

# Ctrl-C, or this script failing, stops the binaries still running; their clusters stop with
# them (scripts/kafka-cluster.sh watches the process that started each one).
stop_all() {
  local pid
  for pid in "${!exe_of[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap 'stop_all; exit 130' INT TERM
trap stop_all EXIT

launch() {
  local exe="$1" name
  name="$(name_of "$exe")"
  "$exe" --nocapture --test-threads=1 "$filter" >"$logs/$name.log" 2>&1 </dev/null &
  exe_of[$!]=$exe
  started_at[$exe]=$SECONDS
  echo "test-real-broker: started $name (${tests_of[$exe]} tests)"
}

# Waits for one of the running binaries to end and prints its output whole.
reap() {
  local pid="" rc=0 exe name elapsed passed outcome
  wait -n -p pid "${!exe_of[@]}" || rc=$?
  [ -n "$pid" ] || return 0
  exe="${exe_of[$pid]}"
  unset "exe_of[$pid]"
  name="$(name_of "$exe")"
  elapsed=$((SECONDS - started_at[$exe]))
  passed="$(sed -n 's/^test result: .* \([0-9][0-9]*\) passed.*/\1/p' "$logs/$name.log" | tail -n1)"
  passed_in_all=$((passed_in_all + ${passed:-0}))
  outcome=ok
  if [ "$rc" != 0 ]; then
    outcome="FAILED (exit $rc)"
    failed+=("$name")
  fi
  echo
  echo "==== $name: $outcome, ${passed:-0} of ${tests_of[$exe]} passed, ${elapsed}s ===="
  cat "$logs/$name.log"
  echo "==== end of $name ===="
  summary+=("$(printf '%-24s %3s tests %5ss  %s' \
    "$name" "${tests_of[$exe]}" "$elapsed" "$outcome")")
}

for exe in "${queue[@]}"; do
  while [ ${#exe_of[@]} -ge "$jobs" ]; do reap; done
  launch "$exe"
done
while [ ${#exe_of[@]} -gt 0 ]; do reap; done

echo
echo "test-real-broker: $passed_in_all of $total tests passed," \
  "${#queue[@]} binaries, $jobs at a time, ${SECONDS}s in all"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "test-real-broker: FAILED: ${failed[*]} (their logs: $logs)" >&2
  exit 1
fi
