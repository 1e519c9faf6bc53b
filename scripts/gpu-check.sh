#!/usr/bin/env bash
# One prepared GPU check for gradtau: device summary, CUDA build (or prebuilt binaries),
# the CUDA parity tests, and the ∇τ step benchmark (PyTorch and gradtau sides, compared). Prints
# a compact summary; meant to finish in well under 8 minutes.
#
# The GPU machine (one H200, driver 580 / CUDA 13, nvcc 13.0, PyTorch cu130 in python3) has
# no cargo and no network, so the Rust test binaries are built on the CPU machine (same
# x86-64) and carried over:
#
#   # on the CPU machine, in the repository root (no GPU or toolkit needed):
#   scripts/gpu-check.sh --prepare          # builds into .gpu/ (git-ignored), strips, lists
#   # then, through the device tool:  run(command="bash scripts/gpu-check.sh",
#   #                                     carry=[".gpu"], timeout_s=540)
#
# If cargo is present where the script runs, it builds there instead (--features cuda
# --release). The CUDA libraries are loaded at run time (cudarc dynamic loading): the script
# puts the toolkit's or the PyTorch wheels' libnvrtc.so.13 / libcublas.so.13 on
# LD_LIBRARY_PATH. Outputs go to $OUT (when set) as gpu-check.log and bench_torch.json.
set -u -o pipefail
cd "$(dirname "$0")/.."
GPU_DIR=.gpu

prepare() {
    set -e
    rm -rf "$GPU_DIR"
    mkdir -p "$GPU_DIR"
    EXCLUDE=$(git rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$EXCLUDE")"
    grep -qx "/$GPU_DIR/" "$EXCLUDE" 2>/dev/null || echo "/$GPU_DIR/" >> "$EXCLUDE"
    cargo test --features cuda --release --no-run --message-format=json 2>/dev/null \
        | python3 -c '
import json, sys, shutil
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        name, kind = m["target"]["name"], m["target"]["kind"]
        if "test" in kind:
            if not name.startswith("cuda_"):
                continue  # the CPU-only integration tests run in CI, not here
            dst = "'"$GPU_DIR"'/" + name
        elif "lib" in kind or "rlib" in kind:
            dst = "'"$GPU_DIR"'/lib_tests"
        else:
            continue  # the unit-test binaries of the bin targets
        shutil.copy(m["executable"], dst)
        print("built", dst)
'
    # The gradtau side of the ∇τ step benchmark (examples/bench_nabla_tau_step.rs).
    cargo build --features cuda --release --example bench_nabla_tau_step --message-format=json 2>/dev/null \
        | python3 -c '
import json, sys, shutil
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["name"] == "bench_nabla_tau_step":
        shutil.copy(m["executable"], "'"$GPU_DIR"'/bench_gradtau")
        print("built '"$GPU_DIR"'/bench_gradtau")
'
    for f in "$GPU_DIR"/*; do [ -x "$f" ] && strip --strip-debug "$f"; done
    du -sh "$GPU_DIR"/*
    echo "carry [\"$GPU_DIR\"] and run: bash scripts/gpu-check.sh"
}

if [ "${1:-}" = "--prepare" ]; then prepare; exit; fi

OUTDIR=${OUT:-/tmp/gpu-check}
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu-check.log"
exec > >(tee "$LOG") 2>&1
T0=$(date +%s)
echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 || echo "nvidia-smi failed"

# libnvrtc/libcublas: toolkit first, then the wheels PyTorch ships.
LIBDIRS=""
for pat in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64 \
           /usr/local/cuda-13*/targets/x86_64-linux/lib; do
    for d in $pat; do [ -e "$d/libnvrtc.so.13" ] || [ -e "$d/libcublas.so.13" ] && LIBDIRS="$LIBDIRS:$d"; done
done
SITE=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)
for s in $SITE; do
    for d in "$s"/nvidia/*/lib "$s"/nvidia/cu13/lib; do
        { [ -e "$d/libnvrtc.so.13" ] || [ -e "$d/libcublas.so.13" ]; } && LIBDIRS="$LIBDIRS:$d"
    done
done
export LD_LIBRARY_PATH="${LIBDIRS#:}:${LD_LIBRARY_PATH:-}"
# Here an unusable CUDA is a failure: the tests panic instead of skipping.
export GRADTAU_REQUIRE_CUDA=1
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

echo "== build"
if [ -x "$GPU_DIR/cuda_parity" ]; then
    PARITY="$GPU_DIR/cuda_parity"
    echo "using prebuilt $PARITY (from --prepare)"
elif command -v cargo >/dev/null; then
    timeout 300 cargo test --features cuda --release --no-run 2>&1 | tail -3
    PARITY=$(ls -t "${CARGO_TARGET_DIR:-target}"/release/deps/cuda_parity-* 2>/dev/null | grep -v '\.d$' | head -1)
else
    echo "no cargo here and no prebuilt binary"
fi
if [ ! -x "${PARITY:-}" ]; then
    echo "SUMMARY: no parity binary (run scripts/gpu-check.sh --prepare on the CPU machine and carry .gpu)"
    exit 2
fi

echo "== parity tests"
timeout 150 "$PARITY" --test-threads=1 --nocapture 2>&1 | tee "$OUTDIR/parity.txt"
PARITY_RC=${PIPESTATUS[0]}
E2E_RC=skipped
if [ -x "$GPU_DIR/cuda_e2e" ]; then
    echo "== end-to-end: ∇τ on digits, CUDA vs CPU audit"
    timeout 60 "$GPU_DIR/cuda_e2e" --nocapture 2>&1 | tee "$OUTDIR/e2e.txt" | tail -12
    E2E_RC=${PIPESTATUS[0]}
fi
if [ -x "$GPU_DIR/lib_tests" ]; then
    echo "== library tests (CPU paths and every kernel compiled by NVRTC, CUDA build)"
    timeout 60 "$GPU_DIR/lib_tests" -q 2>&1 | tail -3
fi

# The test verdicts first, so they are in the log even if a benchmark runs out of time.
echo "TESTS: parity rc=$PARITY_RC, end-to-end rc=$E2E_RC"
echo "== ∇τ step benchmark"
timeout 90 python3 scripts/bench_torch_cuda.py --json "$OUTDIR/bench_torch.json" 2>&1 | tail -20
BENCH_RC=$?
# The gradtau side (examples/bench_nabla_tau_step.rs, built by --prepare): same models,
# shapes, loss and optimizer; one JSON line per model.
if [ -x "$GPU_DIR/bench_gradtau" ]; then
    timeout 90 "$GPU_DIR/bench_gradtau" --device cuda --json "$OUTDIR/bench_gradtau.json" 2>&1 | tail -20
elif command -v cargo >/dev/null; then
    timeout 150 cargo run --features cuda --release --example bench_nabla_tau_step -- \
        --device cuda --json "$OUTDIR/bench_gradtau.json" 2>&1 | tail -20
fi

echo "== SUMMARY"
RESULT=$(grep -m1 '^test result:' "$OUTDIR/parity.txt")
SKIP=$(grep -o -m1 'SKIPPED: .*' "$OUTDIR/parity.txt")
CHECKS=$(grep -c '^parity ' "$OUTDIR/parity.txt")
WORST=$(grep '^parity ' "$OUTDIR/parity.txt" | awk '{print $NF, $0}' | sort -g | tail -3 | cut -d' ' -f2- | tr '\n' ';')
echo "parity: rc=$PARITY_RC ${RESULT:-no result line}; $CHECKS comparisons ${SKIP:+($SKIP)}"
echo "end-to-end (digits ∇τ, CUDA vs CPU audit): rc=$E2E_RC"
grep -E '^(thread|failures:|    [a-z_]+$)' "$OUTDIR/parity.txt" | head -20
echo "worst normalised errors: $WORST"
[ -f "$OUTDIR/bench_torch.json" ] && echo "torch bench: $(cat "$OUTDIR/bench_torch.json")" || echo "torch bench: rc=$BENCH_RC (no result)"
[ -f "$OUTDIR/bench_gradtau.json" ] && echo "gradtau bench: $(cat "$OUTDIR/bench_gradtau.json")" || echo "gradtau bench: no result"
if [ -f "$OUTDIR/bench_torch.json" ] && [ -f "$OUTDIR/bench_gradtau.json" ]; then
    python3 - "$OUTDIR/bench_torch.json" "$OUTDIR/bench_gradtau.json" <<'PY'
import json, sys
torch, ours = (json.load(open(p))["results"] for p in sys.argv[1:3])
t = {r["model"]: r for r in torch}
for r in ours:
    if r["model"] in t:
        print(f"{r['model']}: gradtau {r['median_ms']:.2f} ms / torch {t[r['model']]['median_ms']:.2f} ms "
              f"= {r['median_ms'] / t[r['model']]['median_ms']:.2f}x (batch {r['batch']})")
PY
fi
echo "wall: $(( $(date +%s) - T0 )) s"
