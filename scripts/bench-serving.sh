#!/usr/bin/env bash
# Serving benchmark (not a test): for each example service, the load driver's figures over
# ROUNDS runs (default 3): prediction throughput during the unlearning run as a fraction of
# before it, p99 latency during vs before, and the unlearning time under load vs on an idle
# service. Prints one line per run and the medians; the README quotes them.
#   scripts/bench-serving.sh [cpp go java]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${GRADTAU_FASHION_DIR:-/usr/share/datasets/fashion-mnist}
ROUNDS=${ROUNDS:-3}
OUT=${CARGO_TARGET_DIR:-target}/serving-bench
mkdir -p "$OUT"
services=("$@")
[ ${#services[@]} -gt 0 ] || services=(cpp go java)
for s in "${services[@]}"; do
  for r in $(seq "$ROUNDS"); do
    python3 examples/serving/load_driver.py --service "examples/serving/$s/run.sh" \
      --service-arg=--data --service-arg="$DATA" --idle 8 --after 4 --min-predictions 0 \
      --json "$OUT/$s.$r.json" >/dev/null 2>"$OUT/$s.$r.log" || { cat "$OUT/$s.$r.log"; exit 1; }
  done
done
python3 - "$OUT" "$ROUNDS" "${services[@]}" <<'PY'
import json, statistics, sys
out, rounds, services = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print(f"{'service':8} {'idle/s':>8} {'during/s':>9} {'during/idle':>12} {'p99 idle ms':>12} "
      f"{'p99 during ms':>14} {'run loaded/idle':>16}")
for s in services:
    runs = [json.load(open(f"{out}/{s}.{r}.json")) for r in range(1, rounds + 1)]
    med = lambda f: statistics.median(f(j) for j in runs)
    print(f"{s:8} {med(lambda j: j['phases']['before']['per_second']):8.0f} "
          f"{med(lambda j: j['phases']['during']['per_second']):9.0f} "
          f"{med(lambda j: j['throughput_during_over_before']):12.2f} "
          f"{med(lambda j: j['phases']['before']['p99_ms']):12.2f} "
          f"{med(lambda j: j['phases']['during']['p99_ms']):14.2f} "
          f"{med(lambda j: j['unlearn_loaded_over_idle']):16.2f}")
PY
