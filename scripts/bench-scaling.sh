#!/usr/bin/env bash
# Step time against batch size and MLP width, gradtau and (when it is installed) PyTorch,
# so users see where each wins. One training step (forward + backward + AdamW) per line of
# the table, as in scripts/bench.sh; each configuration runs gradtau, then PyTorch, right
# after each other (interleaved), ROUNDS times, keeping each side's best median.
#
#   scripts/bench-scaling.sh                      # MLP and CNN, 2 threads, 1 round
#   MODELS=mlp ROUNDS=3 scripts/bench-scaling.sh
#   BATCHES=32,128,512 WIDTHS=256,1024 scripts/bench-scaling.sh
#   TORCH=0 scripts/bench-scaling.sh              # gradtau only
#   RESULTS=raw.jsonl scripts/bench-scaling.sh    # also keep the raw JSON lines
#
# The batch sweep uses the MLP's default width (256); the width sweep (MLP only) uses
# batch 128. PyTorch comes from $TORCH_VENV (default .venv-torch, else .venv-bench); without
# an importable torch the table has gradtau's column only. On a machine shared with other
# work PyTorch's OpenMP threads suffer more than gradtau's pool (they spin, then wait for
# each other at every barrier): note the load average printed with the table.
set -euo pipefail

cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-1}"
MODELS="${MODELS:-mlp,cnn}"
BATCHES="${BATCHES:-32,64,128,256,512,1024}"
WIDTHS="${WIDTHS:-256,512,1024,2048}"
WARMUP="${WARMUP:-5}"
ITERS="${ITERS:-20}"
PEAK_SIZES="${PEAK_SIZES:-1024}"
TORCH="${TORCH:-1}"

py=""
if [[ "$TORCH" == 1 ]]; then
    for v in "${TORCH_VENV:-}" .venv-torch .venv-bench; do
        if [[ -n "$v" && -x "$v/bin/python" ]] && "$v/bin/python" -c "import torch" 2>/dev/null; then
            py="$v/bin/python"
            break
        fi
    done
    [[ -z "$py" ]] && echo "no importable torch: gradtau only" >&2
fi

cargo build --release --quiet --bin gradtau-bench
bench_bin="${CARGO_TARGET_DIR:-target}/release/gradtau-bench"
export MATMUL_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
if [[ -n "${RESULTS:-}" ]]; then
    results="$RESULTS"
    : >"$results"
else
    results="$(mktemp)"
    trap 'rm -f "$results"' EXIT
fi

one() { # model batch width
    local args=(--models "$1" --batch "$2" --width "$3" --threads "$THREADS"
        --warmup "$WARMUP" --iters "$ITERS" --peak-sizes "$PEAK_SIZES")
    "$bench_bin" "${args[@]}" | sed "s/^{/{\"width\":$3,/" >>"$results"
    if [[ -n "$py" ]]; then
        "$py" scripts/bench_torch_cpu.py "${args[@]}" | sed "s/^{/{\"width\": $3, /" >>"$results"
    fi
}

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= ROUNDS; r++)); do
    for m in ${MODELS//,/ }; do
        for b in ${BATCHES//,/ }; do
            echo "round $r: $m batch $b" >&2
            one "$m" "$b" 256
        done
    done
    if [[ ",$MODELS," == *",mlp,"* ]]; then
        for w in ${WIDTHS//,/ }; do
            [[ "$w" == 256 && ",$BATCHES," == *",128,"* ]] && continue # already measured
            echo "round $r: mlp width $w" >&2
            one mlp 128 "$w"
        done
    fi
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" "$THREADS" "$load_before" "$load_after" <<'EOF'
import json, sys
from collections import defaultdict

path, threads, lb, la = sys.argv[1:]
best = defaultdict(lambda: None)
peak = {}
for l in map(json.loads, (l for l in open(path) if l.startswith("{"))):
    if l["kind"] == "gemm_peak":
        peak[l["impl"]] = max(peak.get(l["impl"], 0.0), l["gflops"])
    if l["kind"] != "step":
        continue
    key = (l["impl"], l["model"], l["batch"], l["width"])
    if best[key] is None or l["median_ms"] < best[key]["median_ms"]:
        best[key] = l
impls = [i for i in ("gradtau", "torch") if any(k[0] == i for k in best)]
print(f"\nstep time, best median over the rounds, {threads} threads; "
      f"load average before {lb}, after {la}")
# One peak per side, the best any process measured: a single process's figure swings with
# the load, and a fraction over 100 % of it would say nothing.
print("GFLOP/s: GEMM-shaped work per step / median step time; % peak: of the best "
      "square-GEMM peak measured in the sweep" +
      "".join(f" ({i} {peak[i]:.0f} GFLOP/s)" for i in impls if i in peak))
head = "| model | batch | width |" + "".join(
    f" {i} ms | {i} GFLOP/s | {i} % peak | {i} RSS MiB |" for i in impls)
if len(impls) == 2:
    head += " gradtau/torch |"
print(head)
print("|" + "---|" * (head.count("|") - 1))
for key in sorted({k[1:] for k in best}, key=lambda k: (["mlp", "cnn"].index(k[0]), k[2], k[1])):
    row = f"| {key[0]} | {key[1]} | {key[2] if key[0] == 'mlp' else '-'} |"
    for i in impls:
        l = best[(i,) + key]
        if l is None:
            row += " - | - | - | - |"
            continue
        frac = l["gflops_at_median"] / peak[i] if peak.get(i) else None
        rss = l.get("peak_rss_mib")
        row += f" {l['median_ms']:.2f} | {l['gflops_at_median']:.1f} |"
        row += f" {100 * frac:.0f} % |" if frac is not None else " - |"
        row += f" {rss:.0f} |" if rss is not None else " - |"
    if len(impls) == 2:
        g, t = best[("gradtau",) + key], best[("torch",) + key]
        row += f" {g['median_ms'] / t['median_ms']:.2f} |" if g and t else " - |"
    print(row)
EOF
