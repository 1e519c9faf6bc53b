#!/usr/bin/env python3
"""PyTorch side of the training-step benchmark (see crates/gradtau-bench/src/main.rs).

Same models, shapes, initialisation scheme and optimizer (AdamW, lr 1e-3, weight decay 0.01)
as the Rust side, on the CPU with a fixed number of threads. Prints one JSON object per line:
  {"kind": "step", "impl": "torch", "model": ..., "median_ms": ..., "min_ms": ...}
  {"kind": "gemm_peak", "impl": "torch", "size": ..., "gflops": ...}
  {"kind": "unlearn", "impl": "torch", "model": ..., "seconds": ..., "steps": ...}

The "unlearn" lines (with --unlearn-runs N) time a whole ∇τ run in the authors' recipe
(gradtau's paper mode), written here the way one would write it in PyTorch, on synthetic data
of the same sizes as the Rust side.
"""

import json
import statistics
import time

import torch
import torch.nn.functional as F

import bench_common as common
from bench_common import CLASSES


def linear_params(fan_in, fan_out, gen):
    # PyTorch's default Linear/Conv init bound, drawn explicitly so both sides match.
    bound = 1.0 / fan_in**0.5
    return [
        (torch.rand(fan_out, fan_in, generator=gen) * 2 - 1) * bound,
        (torch.rand(fan_out, generator=gen) * 2 - 1) * bound,
    ]


def conv_params(c_in, c_out, k, gen):
    fan_in = c_in * k * k
    bound = 1.0 / fan_in**0.5
    return [
        (torch.rand(c_out, c_in, k, k, generator=gen) * 2 - 1) * bound,
        (torch.rand(c_out, generator=gen) * 2 - 1) * bound,
    ]


def mlp(gen, batch=common.BATCH, width=256):
    dims = [784, width, width, CLASSES]
    params = []
    for a, b in zip(dims, dims[1:]):
        params += linear_params(a, b, gen)

    def forward(p, x):
        h = F.relu(F.linear(x, p[0], p[1]))
        h = F.relu(F.linear(h, p[2], p[3]))
        return F.linear(h, p[4], p[5])

    # GEMM FLOPs per step, counted as on the Rust side: forward and dW for every layer,
    # dX for all but the first.
    prods = [2.0 * batch * a * b for a, b in zip(dims, dims[1:])]
    return params, forward, [batch, 784], 2 * sum(prods) + sum(prods[1:])


def cnn(gen, batch=common.BATCH, width=None):
    params = conv_params(1, 16, 3, gen) + conv_params(16, 32, 3, gen)
    params += linear_params(32 * 7 * 7, CLASSES, gen)

    def forward(p, x):
        h = F.max_pool2d(F.relu(F.conv2d(x, p[0], p[1], padding=1)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, p[2], p[3], padding=1)), 2)
        return F.linear(h.flatten(1), p[4], p[5])

    # The im2col-shaped products, counted as on the Rust side (not all of the CNN's work).
    per = 2.0 * (2 * 16 * 784 * 9 + 3 * 32 * 196 * 144 + 3 * 15680)
    return params, forward, [batch, 1, 28, 28], per * batch


def text(gen, batch=common.BATCH, width=None):
    """The spam filter: the embedding bag PyTorch offers for this (mean over each row of
    ids), then the MLP. nn.Embedding's init, N(0, 1), as gradtau's."""
    params = [torch.randn(common.TEXT_VOCAB, common.TEXT_DIM, generator=gen)]
    params += linear_params(common.TEXT_DIM, common.TEXT_HIDDEN, gen)
    params += linear_params(common.TEXT_HIDDEN, common.TEXT_CLASSES, gen)

    def forward(p, ids):
        h = F.embedding_bag(ids, p[0], mode="mean")
        h = F.relu(F.linear(h, p[1], p[2]))
        return F.linear(h, p[3], p[4])

    return params, forward, [batch, common.TEXT_TOKENS], None


def synthetic_data(name, sample, n, gen):
    """`n` inputs and labels: standard-normal features and CLASSES classes, or for the text
    model uniform token ids and its classes."""
    if name == "text":
        return (torch.randint(0, common.TEXT_VOCAB, (n, *sample), generator=gen),
                torch.randint(0, common.TEXT_CLASSES, (n,), generator=gen))
    return torch.randn(n, *sample, generator=gen), torch.randint(0, CLASSES, (n,), generator=gen)


def bench_model(name, build, args, gen):
    common.reset_peak_rss()
    params, forward, in_shape, flops = build(gen, args.batch, args.width)
    params = [p.requires_grad_() for p in params]
    x = torch.randn(*in_shape, generator=gen)
    y = torch.randint(0, CLASSES, (in_shape[0],), generator=gen)
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    times = []
    loss = None
    for i in range(args.warmup + args.iters):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(params, x), y)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(dt * 1e3)
    med = statistics.median(times)
    line = {
        "kind": "step",
        "impl": "torch",
        "model": name,
        "batch": in_shape[0],
        "threads": torch.get_num_threads(),
        "warmup": args.warmup,
        "iters": args.iters,
        "median_ms": med,
        "min_ms": min(times),
        "final_loss": loss.item(),
        "torch_version": torch.__version__,
    }
    line["gflop_per_step"] = flops / 1e9
    line["gflops_at_median"] = flops / (med * 1e-3) / 1e9
    if args.peak is not None:
        line["peak_gflops"] = args.peak
        line["peak_fraction"] = line["gflops_at_median"] / args.peak
    if name == "mlp":
        line["gemm_gflop_per_step"] = line["gflop_per_step"]
        line["gemm_gflops_at_median"] = line["gflops_at_median"]
    line["peak_rss_mib"] = common.peak_rss_mib()
    print(json.dumps(line), flush=True)


def bench_unlearn(name, build, gen):
    params, forward, in_shape, _ = build(gen)
    params = [p.requires_grad_() for p in params]
    sample = in_shape[1:]

    (xf, yf), (xr, yr), (xv, yv) = [synthetic_data(name, sample, n, gen)
                                    for n in (common.UNLEARN_FORGET, common.UNLEARN_RETAIN,
                                              common.UNLEARN_VAL)]
    common.reset_peak_rss()
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    batch = common.UNLEARN_BATCH

    def step(_t, lr, alpha, tau, fidx, ridx):
        for g in opt.param_groups:
            g["lr"] = lr
        lf = F.cross_entropy(forward(params, xf[fidx]), yf[fidx])
        lr_ = F.cross_entropy(forward(params, xr[ridx]), yr[ridx])
        loss = alpha * F.relu(tau - lf) ** 2 + (1 - alpha) * lr_
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return lf.item(), lr_.item()

    def val_loss():
        with torch.no_grad():
            total = sum(F.cross_entropy(forward(params, xv[i:i + batch]), yv[i:i + batch],
                                        reduction="sum").item()
                        for i in range(0, len(yv), batch))
        return total / len(yv)

    t0 = time.perf_counter()
    steps, epochs = common.nabla_tau_paper(len(yf), len(yr), step, val_loss,
                                           lambda n: torch.randperm(n, generator=gen))
    seconds = time.perf_counter() - t0
    print(json.dumps(common.unlearn_line("torch", name, seconds, steps, epochs,
                                         threads=torch.get_num_threads(),
                                         peak_rss_mib=common.peak_rss_mib())), flush=True)


def gemm_peak(size, gen):
    a = torch.randn(size, size, generator=gen)
    b = torch.randn(size, size, generator=gen)
    flops = 2.0 * size**3
    reps = max(3, min(50, int(1e11 / flops)))
    best = float("inf")
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9


def main():
    args = common.parse_args(__doc__)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0x67726164)
    args.peak = None
    for size in [int(s) for s in args.peak_sizes.split(",") if s]:
        g = gemm_peak(size, gen)
        args.peak = max(g, args.peak or 0.0)
        print(json.dumps({"kind": "gemm_peak", "impl": "torch", "size": size,
                          "threads": torch.get_num_threads(), "gflops": g}), flush=True)
    builders = {"mlp": mlp, "cnn": cnn, "text": text}
    for name in args.models:
        if args.iters > 0 and name not in common.RUN_ONLY:
            bench_model(name, builders[name], args, gen)
    for name in args.models:
        for _ in range(args.unlearn_runs):
            bench_unlearn(name, builders[name], gen)


if __name__ == "__main__":
    main()
