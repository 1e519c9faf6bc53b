#!/usr/bin/env bash
# One prepared GPU check for gradtau: device and library versions, the CUDA test binaries
# (each test in its own process), and the ∇τ step benchmark (PyTorch and gradtau sides,
# compared). Prints a compact summary; meant to finish in a few minutes.
#
# The GPU machine has no cargo and no network, so everything the check runs is built on the
# CPU machine (same x86-64) and carried over:
#
#   # on the CPU machine, in the repository root (no GPU or toolkit needed):
#   scripts/gpu-check.sh --prepare          # builds into .gpu/ (git-ignored), strips, lists
#   # then, through the device tool:  run(command="bash scripts/gpu-check.sh",
#   #                                     carry=[".gpu"], timeout_s=540)
#
# --prepare builds every CUDA test binary (tests/cuda_*.rs), the library's unit tests (the
# kernel compile check and the version report) and the gradtau side of the benchmark, and
# records the newest glibc symbol version they need; the check uses the prebuilt binaries
# only where the machine's glibc is at least that (else it builds with cargo, if present).
#
# The CUDA libraries are loaded at run time (cudarc dynamic loading). The toolkit's (or the
# PyTorch wheels') library directories are put on LD_LIBRARY_PATH for gradtau's processes
# only: PyTorch loads its own copies, and a toolkit libcublasLt ahead of its wheel's is a
# known cause of undefined-symbol errors.
#
# Each test runs alone with CUDA_LAUNCH_BLOCKING=1: a faulting kernel poisons its CUDA
# context, so in a shared process every later test would fail under its own name; alone, the
# fault is reported by the launch that caused it, under the right test. Outputs go to $OUT
# (when set): gpu-check.log, one log per test under tests/, bench_*.json.
set -u -o pipefail
cd "$(dirname "$0")/.."
GPU_DIR=.gpu

# The newest GLIBC_x.y symbol version any of the given binaries needs.
glibc_needed() {
    for f in "$@"; do objdump -T "$f" 2>/dev/null; done \
        | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1
}

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
        elif m["target"]["name"] == "gradtau" and ("lib" in kind or "rlib" in kind):
            dst = "'"$GPU_DIR"'/lib_tests"
        else:
            continue  # the unit-test binaries of the other crates and bin targets
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
    for need in lib_tests cuda_parity cuda_limits cuda_e2e bench_gradtau; do
        [ -x "$GPU_DIR/$need" ] || { echo "--prepare: $GPU_DIR/$need was not built"; exit 1; }
    done
    glibc_needed "$GPU_DIR"/* > "$GPU_DIR/GLIBC_REQUIRED"
    echo "needs glibc >= $(cat "$GPU_DIR/GLIBC_REQUIRED")"
    du -sh "$GPU_DIR"/*
    echo "carry [\"$GPU_DIR\"] and run: bash scripts/gpu-check.sh"
}

if [ "${1:-}" = "--prepare" ]; then prepare; exit; fi

OUTDIR=${OUT:-/tmp/gpu-check}
mkdir -p "$OUTDIR/tests"
LOG="$OUTDIR/gpu-check.log"
exec > >(tee "$LOG") 2>&1
T0=$(date +%s)
echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 || echo "nvidia-smi failed"

# libnvrtc/libcublas for gradtau: toolkit first, then the wheels PyTorch ships. Not exported.
LIBDIRS=""
for pat in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64 \
           /usr/local/cuda-13*/targets/x86_64-linux/lib; do
    for d in $pat; do
        { [ -e "$d/libnvrtc.so.13" ] || [ -e "$d/libcublas.so.13" ]; } && LIBDIRS="$LIBDIRS:$d"
    done
done
SITE=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)
for s in $SITE; do
    for d in "$s"/nvidia/*/lib "$s"/nvidia/cu13/lib; do
        { [ -e "$d/libnvrtc.so.13" ] || [ -e "$d/libcublas.so.13" ]; } && LIBDIRS="$LIBDIRS:$d"
    done
done
GRADTAU_LD_PATH="${LIBDIRS#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "gradtau's LD_LIBRARY_PATH=$GRADTAU_LD_PATH"
# A gradtau process: the CUDA library path, and an unusable CUDA is a failure (the tests
# panic instead of skipping).
gt() { env LD_LIBRARY_PATH="$GRADTAU_LD_PATH" GRADTAU_REQUIRE_CUDA=1 CUDA_LAUNCH_BLOCKING=1 "$@"; }

echo "== build"
BIN=""
HAVE_GLIBC=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
if [ -x "$GPU_DIR/cuda_parity" ]; then
    NEED=$(cat "$GPU_DIR/GLIBC_REQUIRED" 2>/dev/null || glibc_needed "$GPU_DIR"/*)
    if [ -n "$NEED" ] && [ -n "$HAVE_GLIBC" ] \
            && [ "$(printf '%s\n%s\n' "$NEED" "$HAVE_GLIBC" | sort -V | head -1)" = "$NEED" ]; then
        BIN=$GPU_DIR
        echo "using the prebuilt binaries in $GPU_DIR (need glibc $NEED, have $HAVE_GLIBC)"
    else
        echo "prebuilt binaries need glibc ${NEED:-?}, this machine has ${HAVE_GLIBC:-?}: not using them"
    fi
fi
if [ -z "$BIN" ] && command -v cargo >/dev/null; then
    timeout 300 cargo test --features cuda --release --no-run 2>&1 | tail -3
    BIN=$(mktemp -d)
    for t in cuda_parity cuda_limits cuda_e2e; do
        f=$(ls -t "${CARGO_TARGET_DIR:-target}"/release/deps/$t-* 2>/dev/null | grep -v '\.d$' | head -1)
        [ -n "$f" ] && cp "$f" "$BIN/$t"
    done
    f=$(ls -t "${CARGO_TARGET_DIR:-target}"/release/deps/gradtau-* 2>/dev/null | grep -v '\.\(d\|rlib\|so\|a\)$' | head -1)
    [ -n "$f" ] && cp "$f" "$BIN/lib_tests"
fi
if [ -z "$BIN" ] || [ ! -x "$BIN/cuda_parity" ]; then
    echo "SUMMARY: no usable test binaries (run scripts/gpu-check.sh --prepare on the CPU machine and carry .gpu)"
    exit 2
fi

echo "== CUDA libraries loaded"
if [ -x "$BIN/lib_tests" ]; then
    gt timeout 60 "$BIN/lib_tests" --exact backend::cuda::real::context::tests::report_loaded_cuda_versions \
        --nocapture 2>&1 | grep -E 'CUDA versions|SKIPPED|panicked|FAILED' || echo "version report failed"
fi

# Runs every test of binary $1 (whose name contains $3, if given) in its own process, with
# a time limit of $2 s each; prints one verdict per test and appends "PASS|FAIL|SKIP
# binary::test" to $OUTDIR/verdicts.
: > "$OUTDIR/verdicts"
run_each() {
    local bin=$1 limit=$2 filter=${3:-} name log rc verdict
    [ -x "$BIN/$bin" ] || { echo "FAIL $bin (binary missing)" | tee -a "$OUTDIR/verdicts"; return; }
    for name in $("$BIN/$bin" --list --format=terse $filter 2>/dev/null | sed -n 's/: test$//p'); do
        log="$OUTDIR/tests/$bin.${name//::/.}.txt"
        gt timeout "$limit" "$BIN/$bin" --exact "$name" --nocapture --test-threads=1 > "$log" 2>&1
        rc=$?
        if [ $rc -ne 0 ]; then
            verdict=FAIL
        elif grep -q 'SKIPPED' "$log"; then
            verdict=SKIP
        else
            verdict=PASS
        fi
        echo "$verdict $bin::$name (rc=$rc, $(grep -c '^parity ' "$log") comparisons)" | tee -a "$OUTDIR/verdicts"
        [ $verdict = FAIL ] && grep -E "panicked|error|Error" "$log" | head -4 | sed 's/^/    /'
    done
}

echo "== the CUDA backend's unit tests (kernel table, NVRTC compile of every kernel file)"
run_each lib_tests 90 backend::cuda
echo "== parity and limit tests (one process each, CUDA_LAUNCH_BLOCKING=1)"
run_each cuda_parity 120
run_each cuda_limits 120
echo "== end-to-end: ∇τ on digits, CUDA vs CPU audit"
run_each cuda_e2e 120

echo "== ∇τ step benchmark"
# PyTorch with its own libraries: none of gradtau's library path.
timeout 90 python3 scripts/bench_torch_cuda.py --json "$OUTDIR/bench_torch.json" 2>&1 | tail -20
BENCH_RC=$?
if [ -x "$BIN/bench_gradtau" ]; then
    gt timeout 90 "$BIN/bench_gradtau" --device cuda --json "$OUTDIR/bench_gradtau.json" 2>&1 | tail -20
elif command -v cargo >/dev/null; then
    gt timeout 150 cargo run --features cuda --release --example bench_nabla_tau_step -- \
        --device cuda --json "$OUTDIR/bench_gradtau.json" 2>&1 | tail -20
fi

echo "== SUMMARY"
for v in PASS FAIL SKIP; do printf '%s %s  ' "$v" "$(grep -c "^$v " "$OUTDIR/verdicts")"; done; echo
grep -E '^(FAIL|SKIP) ' "$OUTDIR/verdicts" | head -20
WORST=$(cat "$OUTDIR"/tests/*.txt 2>/dev/null | grep '^parity .*e[-+][0-9]*$' \
    | awk '{print $NF, $0}' | sort -g | tail -3 | cut -d' ' -f2- | tr '\n' ';')
echo "worst normalised errors: ${WORST:-none}"
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
# Non-zero when any test failed, so the caller sees it without reading the log.
! grep -q '^FAIL ' "$OUTDIR/verdicts"
