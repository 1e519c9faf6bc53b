#!/usr/bin/env bash
# Benchmark: gradtau against PyTorch on the CPU, same models, same threads. Times one training
# step, and one whole ∇τ run in the authors' recipe (paper mode: 102 steps of a forget and a
# retain batch of 256, τ on 2000 validation samples every 5 epochs), which PyTorch runs as
# the same loop written in PyTorch (scripts/bench_torch_cpu.py).
#
#   scripts/bench.sh                # every model, 2 threads, 3 interleaved rounds (the text
#                                   # model, a spam filter, has the whole run only)
#   UNLEARN_RUNS=0 scripts/bench.sh # training steps only
#   JAX=0 scripts/bench.sh          # without the JAX peer (scripts/bench_jax_cpu.py)
#   THREADS=1 ROUNDS=5 MODELS=mlp scripts/bench.sh
#   PROFILE=1 scripts/bench.sh      # also print gradtau's per-op breakdown
#   MODES=paper,adaptive scripts/bench.sh   # also time gradtau's whole run in adaptive mode
#                                           # (the peers have only the paper loop)
#   MALLOC_VARIANT=1 scripts/bench.sh   # add a gradtau run with MALLOC_TOP_PAD_=64MiB, to see
#                                       # how much first-touch page faults still cost
#
# PyTorch comes from PyPI into a git-ignored virtual environment (.venv-bench/, or $BENCH_VENV).
# PyPI has no CPU-only torch for x86-64 Linux: the plain wheel imports only with its CUDA
# libraries present (it preloads libcudart/libcublas), so the full install (~5.5 GB) is made
# once and reused; no GPU is used.
#
# Each round runs gradtau, then PyTorch; the table keeps each side's best median over the
# rounds, because on a shared machine a neighbour's burst inflates whichever run it hits
# (PyTorch's OpenMP barriers suffer most), and the best round is the closest to a quiet one.
set -euo pipefail

cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-3}"
MODELS="${MODELS:-mlp,cnn,text}"
WARMUP="${WARMUP:-20}"
ITERS="${ITERS:-50}"
PEAK_SIZES="${PEAK_SIZES:-1024,2048}"
VENV="${BENCH_VENV:-.venv-bench}"
MALLOC_VARIANT="${MALLOC_VARIANT:-0}"
UNLEARN_RUNS="${UNLEARN_RUNS:-1}"
MODES="${MODES:-paper}"
JAX="${JAX:-1}"

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "installing PyTorch into $VENV (first run only)..." >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet torch numpy
fi
if [[ "$JAX" == 1 ]] && ! "$VENV/bin/python" -c "import jax" 2>/dev/null; then
    echo "installing JAX (CPU) into $VENV (first run only)..." >&2
    "$VENV/bin/pip" install --quiet "jax[cpu]"
fi
# XLA sizes its thread pool from the CPUs the process may use, so JAX runs pinned to THREADS
# cores (the other peers get THREADS threads).
jax_pin=()
if command -v taskset >/dev/null 2>&1; then
    jax_pin=(taskset -c "0-$((THREADS - 1))")
fi

cargo build --release --quiet --bin gradtau-bench
target_dir="${CARGO_TARGET_DIR:-target}"
bench_bin="$target_dir/release/gradtau-bench"

export MATMUL_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
profile_flag=()
[[ "${PROFILE:-0}" == 1 ]] && profile_flag=(--profile)
steps_only=(--models "$MODELS" --threads "$THREADS" --warmup "$WARMUP" --iters "$ITERS")
common=("${steps_only[@]}" --peak-sizes "$PEAK_SIZES" --unlearn-runs "$UNLEARN_RUNS")
for ((r = 1; r <= ROUNDS; r++)); do
    echo "round $r/$ROUNDS..." >&2
    "$bench_bin" "${common[@]}" "${profile_flag[@]}" --modes "$MODES" |
        sed "s/^{/{\"round\":$r,/" >>"$results"
    if [[ "$MALLOC_VARIANT" == 1 ]]; then
        # Same binary, but glibc keeps 64 MiB at the top of the heap instead of returning
        # freed activations to the kernel and faulting them in again on the next step.
        MALLOC_TOP_PAD_=67108864 "$bench_bin" "${steps_only[@]}" --peak-sizes "" |
            sed -e "s/^{/{\"round\":$r,/" -e 's/"impl":"gradtau"/"impl":"gradtau_pad"/' >>"$results"
    fi
    "$VENV/bin/python" scripts/bench_torch_cpu.py "${common[@]}" |
        sed "s/^{/{\"round\": $r, /" >>"$results"
    if [[ "$JAX" == 1 ]]; then
        "${jax_pin[@]}" "$VENV/bin/python" scripts/bench_jax_cpu.py "${steps_only[@]}" \
            --unlearn-runs "$UNLEARN_RUNS" 2>/dev/null | sed "s/^{/{\"round\": $r, /" >>"$results"
    fi
done

echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
"$VENV/bin/python" - "$results" "$THREADS" <<'EOF'
import json, statistics, sys
from collections import defaultdict

path, threads = sys.argv[1], sys.argv[2]
ORDER = ["mlp", "cnn", "text"]
lines = [json.loads(l) for l in open(path) if l.startswith("{")]
steps = defaultdict(list)
runs = defaultdict(list)
peaks = defaultdict(list)
prof = defaultdict(list)
for l in lines:
    if l["kind"] == "step":
        steps[(l["impl"], l["model"])].append(l)
    elif l["kind"] == "unlearn" and l.get("mode", "paper") == "paper":
        runs[(l["impl"], l["model"])].append(l)
    elif l["kind"] == "unlearn":
        runs[(l["impl"] + "_" + l["mode"], l["model"])].append(l)
    elif l["kind"] == "gemm_peak":
        peaks[(l["impl"], l["size"])].append(l["gflops"])
    elif l["kind"] == "profile":
        prof[(l["model"], l["index"], l["phase"], l["op"])].append(l["ms"])

def best(impl, model):
    runs = steps.get((impl, model))
    return min(runs, key=lambda r: r["median_ms"]) if runs else None

print(f"\nstep time (ms), batch 128, {threads} threads. med: best median of the rounds; "
      "min: fastest single step of all rounds.")
if any(k[0] == "gradtau_pad" for k in steps):
    print("gradtau_pad: gradtau with MALLOC_TOP_PAD_=64MiB (freed buffers stay in the heap "
          "instead of being faulted in again every step)")
impls = [i for i in ("gradtau", "gradtau_pad", "torch", "jax") if any(k[0] == i for k in steps)]
peers = [i for i in ("torch", "jax") if i in impls]
head = "".join(f" {i + ' ' + st:>16}" for st in ("med", "min") for i in impls)
pairs = [(i, p) for p in peers for i in impls if i.startswith("gradtau")]
head += "".join(f" {i + '/' + p + ' ' + st:>20}" for st in ("med", "min") for i, p in pairs)
print(f"{'model':<6}{head}")
models = sorted({m for (_, m) in steps}, key=lambda m: ORDER.index(m))
for m in models:
    med = {i: (best(i, m) or {}).get("median_ms") for i in impls}
    mn = {i: min((x["min_ms"] for x in steps.get((i, m), [])), default=None) for i in impls}
    f = lambda v: f" {v:16.3f}" if v is not None else f" {'-':>16}"
    r = lambda a, b: f" {a / b:20.2f}" if a is not None and b is not None else f" {'-':>20}"
    row = "".join(f(d[i]) for d in (med, mn) for i in impls)
    row += "".join(r(d[i], d[p]) for d in (med, mn) for i, p in pairs)
    print(f"{m:<6}{row}")

if runs:
    some = next(iter(runs.values()))[0]
    print(f"\nwhole ∇τ run, paper mode ({some['steps']} steps, {some['forget']} forget / "
          f"{some['retain']} retain / {some['val']} validation samples), seconds. "
          "best / median of the rounds")
    print("(JAX: compiled before the timer; its compile time is the last column)")
    run_peers = [p for p in ("torch", "jax") if any(k[0] == p for k in runs)]
    cols = ["gradtau"] + run_peers
    head = "".join(f" {c + ' best':>13}" for c in cols)
    head += "".join(f" {'gradtau/' + p + ' best':>19}" for p in run_peers)
    head += "".join(f" {'gradtau/' + p + ' med':>18}" for p in run_peers)
    if "jax" in run_peers:
        head += f" {'jax compile':>12}"
    print(f"{'model':<6}{head}")
    for m in sorted({m for (_, m) in runs}, key=lambda m: ORDER.index(m)):
        secs = {c: [r["seconds"] for r in runs.get((c, m), [])] for c in cols}
        if not secs["gradtau"]:
            continue
        row = "".join(f" {min(secs[c]):13.3f}" if secs[c] else f" {'-':>13}" for c in cols)
        for agg, w in ((min, 19), (statistics.median, 18)):
            row += "".join(f" {agg(secs['gradtau']) / agg(secs[p]):{w}.2f}" if secs[p]
                           else f" {'-':>{w}}" for p in run_peers)
        if "jax" in run_peers:
            comp = [r["compile_seconds"] for r in runs.get(("jax", m), [])]
            row += f" {statistics.median(comp):12.2f}" if comp else f" {'-':>12}"
        print(f"{m:<6}{row}")
    for (impl, m), v in sorted(runs.items()):
        if impl.startswith("gradtau_"):
            med = statistics.median(r["seconds"] for r in v)
            fast = min(v, key=lambda r: r["seconds"])
            print(f"{m:<6} gradtau, {impl[8:]} mode: best {fast['seconds']:.3f} s, "
                  f"median {med:.3f} s, {v[0]['steps']} steps (stop: {v[0].get('stop_reason')})")
            if fast.get("trained_forget_acc") is not None:
                print(f"       on a model trained first (forget accuracy {fast['trained_forget_acc']:.3f}, "
                      f"validation {fast['trained_val_acc']:.3f}); of its best run: steps "
                      f"{fast['steps'] * (fast['median_step_s'] or 0):.3f} s, set-up {fast['setup_s']:.3f} s, "
                      f"{fast['checks']} checks {fast['check_s']:.3f} s")
    for (impl, m), v in sorted(runs.items()):
        if impl == "gradtau" and v and "checks" in v[0]:
            fast = min(v, key=lambda r: r["seconds"])
            print(f"{m:<6} gradtau, paper mode, its best run: steps "
                  f"{fast['steps'] * fast['median_step_s']:.3f} s, set-up {fast['setup_s']:.3f} s, "
                  f"{fast['checks']} τ validation passes {fast['check_s']:.3f} s")
    print("\npeak RSS on the whole run (MiB, largest of the rounds)")
    for m in sorted({m for (_, m) in runs}, key=lambda m: ORDER.index(m)):
        cells = []
        for c in ["gradtau"] + run_peers:
            v = [r["peak_rss_mib"] for r in runs.get((c, m), []) if r.get("peak_rss_mib")]
            cells.append(f"{c} {max(v):.0f}" if v else f"{c} -")
        print(f"  {m:<5} " + "  ".join(cells))

print("\nGEMM peak, square sgemm, best of the rounds (GFLOP/s)")
for impl, label in [("gradtau", "gradtau GEMM"), ("torch", "torch.mm")]:
    sizes = sorted(s for (i, s) in peaks if i == impl)
    print(f"  {label:<15}" + "  ".join(f"{s}^3: {max(peaks[(impl, s)]):7.1f}" for s in sizes))

g = best("gradtau", "mlp")
if g:
    peak = max((max(v) for (i, _), v in peaks.items() if i == "gradtau"), default=None)
    flops = g["gemm_gflop_per_step"]
    line = (f"\nMLP step GEMM throughput: {flops * 1e3:.1f} MFLOP/step of GEMM, gradtau "
            f"{g['gemm_gflops_at_median']:.1f} GFLOP/s at the median step")
    if peak:
        line += f" = {g['gemm_gflops_at_median'] / peak:.1%} of gradtau's GEMM peak ({peak:.1f})"
    t = best("torch", "mlp")
    if t:
        tpeak = max((max(v) for (i, _), v in peaks.items() if i == "torch"), default=None)
        line += f"; torch {t['gemm_gflops_at_median']:.1f} GFLOP/s"
        if tpeak:
            line += f" = {t['gemm_gflops_at_median'] / tpeak:.1%} of torch.mm's peak ({tpeak:.1f})"
    print(line)

print("\nstep GFLOP/s (GEMM-shaped products, at the best median step) and peak RSS")
for m in models:
    cells = []
    for i in impls:
        b = best(i, m)
        if not b or "gflops_at_median" not in b:
            continue
        pk = max((max(v) for (j, _), v in peaks.items() if j == i.split("_")[0]), default=None)
        frac = f" = {b['gflops_at_median'] / pk:.0%} of {pk:.0f}" if pk else ""
        rss = f", {b['peak_rss_mib']:.0f} MiB" if b.get("peak_rss_mib") else ""
        cells.append(f"{i} {b['gflops_at_median']:.1f}{frac}{rss}")
    print(f"  {m:<5} " + ";  ".join(cells))

if prof:
    print("\ngradtau per-op breakdown (median ms over the timed steps, median of the rounds)")
    for (m, idx, phase, op), v in sorted(prof.items()):
        print(f"  {m:<4} {phase:<10} {op:<14} {statistics.median(v):8.3f}")
EOF
