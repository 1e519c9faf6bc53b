"""What the Python peers of the benchmark share (bench_torch_cpu.py, bench_jax_cpu.py): the
command line, the sizes, and the whole ∇τ run in the authors' recipe (gradtau's paper mode),
written once with the framework-specific parts passed in."""

import argparse
import math

BATCH = 128
CLASSES = 10
UNLEARN_BATCH = 256
UNLEARN_FORGET, UNLEARN_RETAIN, UNLEARN_VAL = 1500, 8500, 2000
MODELS = ("mlp", "cnn", "text")
# Models with the whole-run benchmark only (no training-step benchmark, no JAX peer).
RUN_ONLY = ("text",)
# The text model (data/specs/spam_mlp.json): token ids, an embedding averaged over the tokens.
TEXT_VOCAB, TEXT_TOKENS, TEXT_DIM, TEXT_HIDDEN, TEXT_CLASSES = 16384, 256, 32, 64, 2


def parse_args(description, peak_sizes=True):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--iters", type=int, default=50)
    if peak_sizes:
        ap.add_argument("--peak-sizes", default="1024,2048")
    ap.add_argument("--unlearn-runs", type=int, default=0)
    # Step benchmark sizes (the whole runs keep the recipe's sizes); JAX reads only the batch.
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--width", type=int, default=256, help="MLP hidden width")
    args = ap.parse_args()
    args.models = [m for m in args.models.split(",") if m]
    for m in args.models:
        if m not in MODELS:
            raise SystemExit(f"unknown model {m} (expected mlp, cnn or text)")
    return args


def nabla_tau_paper(n_forget, n_retain, step, val_loss, permutation, batch=UNLEARN_BATCH):
    """The authors' recipe: each step minimises
    alpha * relu(tau - mean forget loss)^2 + (1 - alpha) * mean retain loss over one forget batch
    and the next retain batch (the last batch of a retain pass may be smaller); alpha0 = 5/3 of
    the forget fraction decays linearly to 0 over E = 3 * retain batches // forget batches
    forget-epochs; tau is the mean validation loss, recomputed every 5 forget-epochs; AdamW
    (1e-3, weight decay 0.01) with the rate decaying linearly to 0.1x over the epochs.

    `step(t, lr, alpha, tau, forget_idx, retain_idx)` takes one optimisation step (t counts from
    1) and returns the two mean losses as floats; `val_loss()` returns tau;
    `permutation(n)` returns a random order of range(n). Returns (steps, epochs)."""
    fb, rb = math.ceil(n_forget / batch), math.ceil(n_retain / batch)
    epochs = max(3 * rb // fb, 1)
    alpha0 = min(5.0 / 3.0 * n_forget / (n_forget + n_retain), 1.0)

    def retain_batches():
        while True:
            order = permutation(n_retain)
            for start in range(0, n_retain, batch):
                yield order[start:start + batch]

    retain = retain_batches()
    tau, alpha, steps = val_loss(), alpha0, 0
    for epoch in range(epochs):
        if epoch > 0 and epoch % 5 == 0:
            tau = val_loss()
        lr = 1e-3 * (1.0 + (0.1 - 1.0) * epoch / epochs)
        order = permutation(n_forget)
        for start in range(0, n_forget, batch):
            lf, lr_ = step(steps + 1, lr, alpha, tau, order[start:start + batch], next(retain))
            # What a training loop logs (and gradtau checks for NaN) every step.
            if not (math.isfinite(lf) and math.isfinite(lr_)):
                raise RuntimeError(f"losses became non-finite at step {steps}")
            steps += 1
        alpha = max(alpha - alpha0 / epochs, 0.0)
    return steps, epochs


def unlearn_line(impl, model, seconds, steps, epochs, **extra):
    """The JSON object of one timed ∇τ run."""
    return {"kind": "unlearn", "impl": impl, "model": model, "mode": "paper",
            "seconds": seconds, "steps": steps, "epochs": epochs, "forget": UNLEARN_FORGET,
            "retain": UNLEARN_RETAIN, "val": UNLEARN_VAL, **extra}


def reset_peak_rss():
    """Resets this process's peak resident memory (VmHWM) to its current size, as the Rust
    side does, so a line's peak covers its own work (Linux 4.0+; elsewhere a no-op)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mib():
    """Peak resident memory since the last reset, in MiB (Linux only; None elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None
