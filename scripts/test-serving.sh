#!/usr/bin/env bash
# The example services of examples/serving (C++, Go, Java), each driven by
# examples/serving/load_driver.py: 2 clients predict before, during and after one unlearning
# run on the model the service serves; the driver fails on any error, any GRADTAU_BUSY, any
# answer that is neither the model before nor the model after, fewer than 10 000
# predictions, or unlearned weights that differ from the same run on an idle service.
# Needs Fashion-MNIST (Debian package dataset-fashion-mnist); skips loudly without it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

DATA=${GRADTAU_FASHION_DIR:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ]; then
  echo "SKIPPED serving examples: Fashion-MNIST not found in $DATA (apt-get install dataset-fashion-mnist)"
  exit 0
fi
OUT=${CARGO_TARGET_DIR:-target}/serving-results
mkdir -p "$OUT"
services=(cpp go java)
ran=0
for s in "${services[@]}"; do
  run=examples/serving/$s/run.sh
  [ -x "$run" ] || { echo "no $run"; exit 1; }
  printf '\n-- %s service\n' "$s"
  python3 examples/serving/load_driver.py --service "$run" --service-arg=--data \
    --service-arg="$DATA" --idle "${SERVING_IDLE:-12}" --after "${SERVING_AFTER:-8}" \
    --json "$OUT/$s.json"
  ran=$((ran + 1))
done
# The three services run the same computation through three bindings: the same weights.
files=()
for s in "${services[@]}"; do files+=("$OUT/$s.json"); done
hashes=$(python3 -c 'import json, sys; print(" ".join(json.load(open(f))["weights_hash"] for f in sys.argv[1:]))' \
  "${files[@]}")
echo "unlearned weights per service (${services[*]}): $hashes"
if [ "$(tr ' ' '\n' <<<"$hashes" | sort -u | wc -l)" != 1 ]; then
  echo "the services' unlearned weights differ" >&2
  exit 1
fi
echo "serving examples: $ran passed, 0 failed"
