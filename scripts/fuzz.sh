#!/usr/bin/env bash
# Runs each cargo-fuzz target of fuzz/ for a set time, one after another, and prints one
# summary line per target (target, seconds, executions, result).
#   scripts/fuzz.sh [SECONDS] [TARGET...]    default 60 s each, every target
# Needs a nightly toolchain and cargo-fuzz (cargo install cargo-fuzz). Seeds come from
# fuzz/corpus/<target> (committed, read only); what the fuzzer learns goes to
# fuzz/corpus-work/<target> and crashes to fuzz/artifacts/<target> (both git-ignored).
# Exits non-zero if any target crashed. FUZZ_NICE=1 runs the fuzzers under nice -n 10.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi
nice_cmd=()
[ "${FUZZ_NICE:-0}" = 1 ] && nice_cmd=(nice -n 10)

# One build for all targets (release with debug assertions, address sanitizer).
"${nice_cmd[@]}" bash -c 'cd fuzz && cargo +nightly fuzz build -O'

failed=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus-work/$t" "fuzz/artifacts/$t"
  log=$(mktemp)
  rc=0
  # -rss_limit_mb: the readers must stay far below it whatever the input (the IDX targets cap
  # at 16 MiB); -timeout: one input taking this long is a hang.
  (cd fuzz && "${nice_cmd[@]}" cargo +nightly fuzz run -O "$t" "corpus-work/$t" "corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1) >"$log" 2>&1 || rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  if [ "$rc" = 0 ]; then
    result="0 crashes"
  else
    result="CRASH (exit $rc; input in fuzz/artifacts/$t)"
    failed=1
    tail -40 "$log"
  fi
  printf 'fuzz: %-12s %6ss %12s execs  %s\n' "$t" "$secs" "${runs:-?}" "$result"
  rm -f "$log"
done
exit "$failed"
