#!/usr/bin/env bash
# Times the README's two commands as a new user meets them: each run is a fresh clone of this
# repository's committed HEAD (or --rev) with an empty target/ (cargo's download cache and the
# Kafka jars in ~/.cache/kafkad may be warm), then `make demo` or `make test` in it.
#
#   scripts/time-first-run.sh [--runs N] [--rev REV] [demo|test|both]
#
# Default: 3 runs of both, of HEAD; --rev times another commit the same way (an older one, to
# compare).
#
# Prints one line per run (wall seconds, exit status, the CPU seconds of the command's processes
# (the Kafka brokers' JVMs, which outlive the processes that start them, are not counted), the
# load average before and after) and keeps each run's whole output, every line stamped with the
# time, under $TIME_FIRST_RUN_DIR (default /tmp/kafkad-first-run); each clone is deleted after
# its run. The figures mean something on a quiet machine only: check `uptime` first; a load
# average above about 1 makes a run slower than a new user would see it.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
runs=3
rev=HEAD
what=both
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --rev) rev="$2"; shift 2 ;;
    demo | test | both) what="$1"; shift ;;
    *) echo "usage: $0 [--runs N] [--rev REV] [demo|test|both]" >&2; exit 2 ;;
  esac
done
commands=()
case "$what" in
  demo) commands=(demo) ;;
  test) commands=(test) ;;
  both) commands=(demo test) ;;
esac

out="${TIME_FIRST_RUN_DIR:-/tmp/kafkad-first-run}"
mkdir -p "$out"
# A build of the clone's own, as a new user gets: no target directory or build settings from
# this shell.
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR CARGO_INCREMENTAL RUSTFLAGS CFLAGS

load() { cut -d' ' -f1-3 /proc/loadavg; }
# cpu_seconds: user plus system CPU seconds of this shell's ended children, from the `times`
# builtin (run in this shell, not in a $(...) subshell, which has children of its own).
cpu_now() {
  times >"$out/.times"
  cpu_seconds="$(tail -n1 "$out/.times" | awk '{
    total = 0
    for (i = 1; i <= 2; i++) { split($i, t, "m"); total += t[1] * 60 + t[2] }
    printf "%d", total
  }')"
}

commit="$(git -C "$root" rev-parse --verify "$rev^{commit}")"
short="$(git -C "$root" rev-parse --short "$commit")"
echo "time-first-run: $short ($(git -C "$root" log -1 --format=%s "$commit" | cut -c1-70))"
echo "time-first-run: $(nproc) cores; $runs run(s) of: ${commands[*]}; logs in $out"
results=()
for run in $(seq 1 "$runs"); do
  for command in "${commands[@]}"; do
    clone="$(mktemp -d /tmp/kafkad-clone.XXXXXX)"
    git clone --quiet --no-hardlinks "$root" "$clone/kafkad"
    git -C "$clone/kafkad" checkout --quiet "$commit"
    log="$out/$short-$command-$run.log"
    before="$(load)"
    echo "time-first-run: run $run, make $command (load before: $before)"
    started=$SECONDS
    cpu_now
    cpu_before=$cpu_seconds
    set +e
    (cd "$clone/kafkad" && make "$command") 2>&1 \
      | while IFS= read -r line || [ -n "$line" ]; do printf '%(%T)T %s\n' -1 "$line"; done >"$log"
    status=${PIPESTATUS[0]}
    set -e
    elapsed=$((SECONDS - started))
    cpu_now
    cpu=$((cpu_seconds - cpu_before))
    after="$(load)"
    line="$(printf 'run %s  make %-4s  %5ss  exit %s  cpu %5ss  load before %s  after %s' \
      "$run" "$command" "$elapsed" "$status" "$cpu" "$before" "$after")"
    echo "time-first-run: $line"
    results+=("$line")
    rm -rf "$clone"
  done
done

echo
echo "time-first-run: $(nproc) cores, fresh clones of $short:"
printf '  %s\n' "${results[@]}"
