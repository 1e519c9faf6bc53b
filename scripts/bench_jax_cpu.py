#!/usr/bin/env python3
"""JAX side of the benchmark (see crates/gradtau-bench/src/main.rs and scripts/bench_torch_cpu.py).

Same models, shapes, initialisation scheme and optimizer (AdamW, lr 1e-3, weight decay 0.01,
PyTorch's formulation), on the CPU. Each step is one jit-compiled function (forward, backward
and the AdamW update fused by XLA); compilation happens in the warm-up and is not timed. XLA
sizes its own thread pool from the CPUs it may run on, so bench.sh restricts the process with
taskset to as many cores as the other peers get threads. Prints one JSON object per line:
  {"kind": "step", "impl": "jax", "model": ..., "median_ms": ..., "min_ms": ...}
  {"kind": "unlearn", "impl": "jax", "model": ..., "seconds": ..., "steps": ...}

The "unlearn" lines time a whole ∇τ run in the authors' recipe (gradtau's paper mode), the
same loop as bench_torch_cpu.py's, with each optimisation step jit-compiled and the data kept
in NumPy (batches are gathered on the host, as a data loader would). The functions are
compiled before the timer starts, for every batch shape the run meets; the time that took
is reported separately as "compile_seconds", since a user running ∇τ once pays it too.
"""

import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import bench_common as common
from bench_common import BATCH, CLASSES


def linear_params(fan_in, fan_out, rng):
    bound = 1.0 / fan_in**0.5
    return [
        jnp.asarray(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)),
        jnp.asarray(rng.uniform(-bound, bound, (fan_out,)).astype(np.float32)),
    ]


def conv_params(c_in, c_out, k, rng):
    bound = 1.0 / (c_in * k * k) ** 0.5
    return [
        jnp.asarray(rng.uniform(-bound, bound, (c_out, c_in, k, k)).astype(np.float32)),
        jnp.asarray(rng.uniform(-bound, bound, (c_out,)).astype(np.float32)),
    ]


def mlp(rng):
    dims = [784, 256, 256, CLASSES]
    params = []
    for a, b in zip(dims, dims[1:]):
        params += linear_params(a, b, rng)

    def forward(p, x):
        h = jax.nn.relu(x @ p[0].T + p[1])
        h = jax.nn.relu(h @ p[2].T + p[3])
        return h @ p[4].T + p[5]

    return params, forward, [784]


def conv(x, w, b):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y + b[None, :, None, None]


def max_pool2(x):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")


def cnn(rng):
    params = conv_params(1, 16, 3, rng) + conv_params(16, 32, 3, rng)
    params += linear_params(32 * 7 * 7, CLASSES, rng)

    def forward(p, x):
        h = max_pool2(jax.nn.relu(conv(x, p[0], p[1])))
        h = max_pool2(jax.nn.relu(conv(h, p[2], p[3])))
        h = h.reshape(h.shape[0], -1)
        return h @ p[4].T + p[5]

    return params, forward, [1, 28, 28]


def cross_entropy(logits, y):
    """Per-sample cross-entropy."""
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1)[:, 0]


def adamw_init(params):
    return [jnp.zeros_like(p) for p in params], [jnp.zeros_like(p) for p in params]


def adamw_update(params, grads, m, v, t, lr, wd=0.01, b1=0.9, b2=0.999, eps=1e-8):
    """torch.optim.AdamW's step (decoupled weight decay, bias-corrected moments)."""
    out_p, out_m, out_v = [], [], []
    for p, g, mi, vi in zip(params, grads, m, v):
        p = p * (1.0 - lr * wd)
        mi = b1 * mi + (1 - b1) * g
        vi = b2 * vi + (1 - b2) * g * g
        mhat = mi / (1 - b1**t)
        vhat = vi / (1 - b2**t)
        out_p.append(p - lr * mhat / (jnp.sqrt(vhat) + eps))
        out_m.append(mi)
        out_v.append(vi)
    return out_p, out_m, out_v


def bench_model(name, build, args, rng):
    params, forward, sample = build(rng)
    x = jnp.asarray(rng.standard_normal([BATCH] + sample).astype(np.float32))
    y = jnp.asarray(rng.integers(0, CLASSES, BATCH).astype(np.int32))

    @jax.jit
    def step(params, m, v, t):
        loss, grads = jax.value_and_grad(lambda p: cross_entropy(forward(p, x), y).mean())(params)
        params, m, v = adamw_update(params, grads, m, v, t, 1e-3)
        return params, m, v, loss

    m, v = adamw_init(params)
    times = []
    loss = None
    for i in range(args.warmup + args.iters):
        t0 = time.perf_counter()
        params, m, v, loss = step(params, m, v, float(i + 1))
        jax.block_until_ready(params)
        dt = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(dt * 1e3)
    print(json.dumps({"kind": "step", "impl": "jax", "model": name, "batch": BATCH,
                      "warmup": args.warmup, "iters": args.iters,
                      "median_ms": statistics.median(times), "min_ms": min(times),
                      "final_loss": float(loss), "jax_version": jax.__version__}), flush=True)


def paper_functions(forward):
    """The jit-compiled pieces of the run: one optimisation step and a validation-loss sum."""

    @jax.jit
    def step(params, m, v, t, lr, alpha, tau, xb_f, yb_f, xb_r, yb_r):
        def objective(p):
            lf = cross_entropy(forward(p, xb_f), yb_f).mean()
            lr_ = cross_entropy(forward(p, xb_r), yb_r).mean()
            return alpha * jax.nn.relu(tau - lf) ** 2 + (1 - alpha) * lr_, (lf, lr_)

        (_, (lf, lr_)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        params, m, v = adamw_update(params, grads, m, v, t, lr)
        return params, m, v, lf, lr_

    @jax.jit
    def loss_sum(params, xb, yb):
        return cross_entropy(forward(params, xb), yb).sum()

    return step, loss_sum


def bench_unlearn(name, build, rng):
    params, forward, sample = build(rng)

    def synthetic(n):
        return (rng.standard_normal([n] + sample).astype(np.float32),
                rng.integers(0, CLASSES, n).astype(np.int32))

    (xf, yf), (xr, yr), (xv, yv) = [synthetic(n) for n in (common.UNLEARN_FORGET,
                                                            common.UNLEARN_RETAIN,
                                                            common.UNLEARN_VAL)]
    jit_step, loss_sum = paper_functions(forward)
    batch = common.UNLEARN_BATCH
    state = {"params": params}
    state["m"], state["v"] = adamw_init(params)

    def step(t, lr, alpha, tau, fidx, ridx):
        state["params"], state["m"], state["v"], lf, lr_ = jit_step(
            state["params"], state["m"], state["v"], float(t), lr, alpha, tau, xf[fidx],
            yf[fidx], xr[ridx], yr[ridx])
        return float(lf), float(lr_)

    def val_loss():
        return sum(float(loss_sum(state["params"], xv[i:i + batch], yv[i:i + batch]))
                   for i in range(0, len(yv), batch)) / len(yv)

    # Compile for every batch shape of the run: forget batches of 256 and the last one of
    # each epoch (1500 = 5 · 256 + 220), retain batches of 256 and the last one of each pass
    # (8500 = 33 · 256 + 52), validation batches of 256 and the last one (2000 = 7 · 256 + 208).
    t0 = time.perf_counter()
    for nfb in {batch, len(yf) % batch or batch}:
        for nrb in {batch, len(yr) % batch or batch}:
            jax.block_until_ready(jit_step(params, state["m"], state["v"], 1.0, 1e-3, 0.1, 1.0,
                                           xf[:nfb], yf[:nfb], xr[:nrb], yr[:nrb]))
    for nvb in {batch, len(yv) % batch or batch}:
        jax.block_until_ready(loss_sum(params, xv[:nvb], yv[:nvb]))
    compile_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    steps, epochs = common.nabla_tau_paper(len(yf), len(yr), step, val_loss, rng.permutation)
    jax.block_until_ready(state["params"])
    seconds = time.perf_counter() - t0
    print(json.dumps(common.unlearn_line("jax", name, seconds, steps, epochs,
                                         compile_seconds=compile_seconds)), flush=True)


def main():
    args = common.parse_args(__doc__, peak_sizes=False)
    rng = np.random.default_rng(0x67726164)
    builders = {"mlp": mlp, "cnn": cnn}
    # The text model has no JAX peer (see bench_common.RUN_ONLY).
    models = [m for m in args.models if m not in common.RUN_ONLY]
    for name in models:
        bench_model(name, builders[name], args, rng)
    for name in models:
        for _ in range(args.unlearn_runs):
            bench_unlearn(name, builders[name], rng)


if __name__ == "__main__":
    main()
