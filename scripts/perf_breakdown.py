#!/usr/bin/env python3
"""Turns `perf script` output of a gradtau-bench run into the tables of docs/PERFORMANCE.md.

    perf record -F 300 --call-graph dwarf,16384 -o run.data \
        target/release/gradtau-bench --models mlp --iters 1 --warmup 0 --peak-sizes "" \
        --unlearn-runs 1 --modes paper
    perf script -i run.data -F tid,ip,sym | python3 scripts/perf_breakdown.py

Two tables, both over the samples taken inside `Method::run` only (the benchmark's synthetic
data generation and its step timing are left out):

- phase / op: attributed from the calling thread's stack, outermost frame first. The calling
  thread always takes part in its kernels' work (src/backend/cpu/parallel.rs), so its samples
  split the run's wall time; pool helpers' stacks end at the pool, so they cannot say which
  op they work for and are left out of this table.
- kernel: the innermost frame of every sample, helpers included: where the cycles go.
"""
import collections
import sys

# Phase, by the outermost frame that matches (a substring of the symbol).
PHASES = [
    ("check_overlap", "overlap check (forget vs retain, forget vs validation)"),
    ("check_inputs", "input checks"),
    ("Monitor::new", "adaptive: monitor set-up (reference losses)"),
    ("Monitor::check", "adaptive: membership checks"),
    ("Monitor", "adaptive: monitor, other"),
    ("first_tau", "tau: validation passes"),
    ("next_tau", "tau: validation passes"),
    ("train_step", "training steps"),
    ("check_final_outputs", "final output check"),
    ("check_divergence", "final output check"),
    ("transact", "weight copies and other run overhead"),
]

# Inside a training step: forward op, backward op, optimizer.
STEP_OPS = [
    ("optim::", "optimizer (AdamW)"),
    ("LinearBackward", "backward: linear"),
    ("ConvBackward", "backward: conv2d"),
    ("Conv2dBackward", "backward: conv2d"),
    ("MaxPoolBackward", "backward: max_pool2d"),
    ("ActivationBackward", "backward: relu"),
    ("CrossEntropyBackward", "backward: cross_entropy"),
    ("ops::loss", "forward: cross_entropy"),
    ("ops::linear", "forward: linear"),
    ("ops::conv", "forward: conv2d"),
    ("ops::pool", "forward: max_pool2d"),
    ("ops::activation", "forward: relu"),
    ("ops::shape", "forward: reshape"),
    ("Tape::backward", "backward: other (gradient sums, tape)"),
    ("nn::model::Model::forward", "forward: other"),
]

# Innermost frame -> kernel class.
KERNELS = [
    ("sgemm_kernel", "GEMM micro-kernel"),
    ("gemm_avx512::kernel", "GEMM micro-kernel"),
    ("gemm_avx512::pack_b", "GEMM packing"),
    ("gemm_avx512::copy_rows", "GEMM packing"),
    ("gemm_avx512::pack_transposed", "GEMM packing"),
    ("gemm_avx512::copy_tile", "GEMM packing"),
    ("transpose_16x16", "GEMM packing"),
    ("gemm_avx512", "GEMM other"),
    ("packing::pack", "GEMM packing"),
    ("matrixmultiply", "GEMM other"),
    ("im2col", "im2col"),
    ("col2im", "col2im"),
    ("conv::direct::forward", "conv direct: forward and dX kernel"),
    # The forward's register tile, when it shows as a frame of its own (inlined).
    ("conv::direct::tile_", "conv direct: forward and dX kernel"),
    ("conv::direct::weight_grad", "conv direct: dW kernel"),
    ("conv::direct::reduce_lanes", "conv direct: dW kernel"),
    ("conv::direct", "conv direct: padded copies in and out"),
    ("max_pool", "max_pool2d forward"),
    ("MaxPoolBackward", "max_pool2d backward"),
    ("clear_page", "page faults (fresh memory)"),
    ("page_fault", "page faults (fresh memory)"),
    ("memset", "memset (zeroing)"),
    ("memmove", "memcpy"),
    ("memcpy", "memcpy"),
    ("malloc", "malloc/free"),
    ("free", "malloc/free"),
    ("relu", "relu fwd/bwd"),
    ("adam", "AdamW update"),
    ("Hasher", "hashing (overlap check)"),
    ("hash", "hashing (overlap check)"),
    ("shared_rows", "overlap check, other"),
    ("Rows", "overlap check, other"),
    ("softmax", "softmax / cross-entropy"),
    ("cross_entropy", "softmax / cross-entropy"),
    ("parallel::", "thread pool (hand-off, waiting)"),
    ("rayon", "thread pool (hand-off, waiting)"),
    ("futex", "thread pool (hand-off, waiting)"),
    ("sched", "thread pool (hand-off, waiting)"),
]


def by_priority(frames, table, default):
    """The first entry of `table` whose key occurs anywhere on the stack."""
    for key, name in table:
        if any(key in f for f in frames):
            return name
    return default


def innermost(frames, table):
    """The class of the innermost frame that matches, or the innermost real function."""
    for f in frames[:8]:
        for key, name in table:
            if key in f:
                return name
    real = next((f for f in frames if "(inlined)" not in f), frames[0] if frames else "?")
    return "other: " + real.split("<")[0][:60]


def samples(stream):
    tid, frames = None, []
    for line in stream:
        if not line.strip():
            if tid is not None:
                yield tid, frames
            tid, frames = None, []
        elif not line.startswith("\t"):  # frames are tab-indented; the tid may be padded
            tid, frames = line.split()[0], []
        else:
            parts = line.split(None, 1)
            frames.append(parts[1].strip() if len(parts) > 1 else "")
    if tid is not None:
        yield tid, frames


def main():
    all_samples = list(samples(sys.stdin))
    if not all_samples:
        sys.exit("no samples on stdin")
    main_tid = all_samples[0][0]
    in_run = [(t, f) for t, f in all_samples if t != main_tid or any("unlearn::Method::run" in x for x in f)]
    main_run = [(t, f) for t, f in in_run if t == main_tid]
    phase = collections.Counter()
    for _, f in main_run:
        p = by_priority(f, PHASES, "run, other")
        if p == "training steps":
            p = "step: " + by_priority(f, STEP_OPS, "other")
        phase[p] += 1
    kernel = collections.Counter(innermost(f, KERNELS) for _, f in in_run)
    n_main, n_all = sum(phase.values()), sum(kernel.values())
    print(f"calling thread, by phase / op ({n_main} samples inside the run)")
    print("| phase / op | share |\n|---|---:|")
    for k, v in sorted(phase.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {100 * v / n_main:.1f} % |")
    print(f"\nall threads, by innermost frame ({n_all} samples inside the run)")
    print("| kernel | share |\n|---|---:|")
    other = 0
    for k, v in sorted(kernel.items(), key=lambda kv: -kv[1]):
        if 100 * v / n_all < 0.5:
            other += v
            continue
        print(f"| {k} | {100 * v / n_all:.1f} % |")
    if other:
        print(f"| (each under 0.5 %) | {100 * other / n_all:.1f} % |")


if __name__ == "__main__":
    main()
