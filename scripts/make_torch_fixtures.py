#!/usr/bin/env python3
"""Writes the PyTorch-made checkpoints under tests/fixtures/torch/ (see the README there).

Two small `nn.Sequential` models with fixed seeds: an MLP, and a CNN with BatchNorm2d and
BatchNorm1d trained for a few steps in train mode, so its running statistics and its
`num_batches_tracked` counters (int64, shape []) hold real values. Each model's `state_dict`
is saved with `safetensors.torch.save_file`, next to its gradtau spec, a batch of inputs and
labels, and the logits PyTorch computes for them in eval mode (the value the Rust test
compares `predict` against).

Usage: python3 scripts/make_torch_fixtures.py [OUT_DIR]   (default tests/fixtures/torch)
"""

import json
import pathlib
import sys

import numpy as np
import safetensors
import torch
from safetensors.torch import save_file
from torch import nn

SAMPLES = 8
TRAIN_STEPS = 5


def mlp():
    model = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4))
    spec_nodes = [
        {"name": "0", "op": "linear", "in_features": 16, "out_features": 12},
        {"name": "1", "op": "relu"},
        {"name": "2", "op": "linear", "in_features": 12, "out_features": 4},
    ]
    return model, [16], spec_nodes, 4


def cnn():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 12),
        nn.BatchNorm1d(12),
        nn.ReLU(),
        nn.Linear(12, 3),
    )
    spec_nodes = [
        {"name": "0", "op": "conv2d", "in_channels": 1, "out_channels": 4,
         "kernel_size": 3, "padding": 1},
        {"name": "1", "op": "batchnorm2d", "num_features": 4},
        {"name": "2", "op": "relu"},
        {"name": "3", "op": "maxpool2d", "kernel_size": 2},
        {"name": "4", "op": "flatten"},
        {"name": "5", "op": "linear", "in_features": 64, "out_features": 12},
        {"name": "6", "op": "batchnorm1d", "num_features": 12},
        {"name": "7", "op": "relu"},
        {"name": "8", "op": "linear", "in_features": 12, "out_features": 3},
    ]
    return model, [1, 8, 8], spec_nodes, 3


def make(name, build, out, seed):
    torch.manual_seed(seed)
    model, input_shape, nodes, classes = build()
    x = torch.randn(SAMPLES, *input_shape)
    y = torch.randint(0, classes, (SAMPLES,))
    # A few SGD steps in train mode: batch norm's running stats and counters move.
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    for _ in range(TRAIN_STEPS):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(x)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / f"{name}.safetensors"))
    spec = {"format": "gradtau.model/1", "input": {"shape": input_shape},
            "nodes": nodes, "loss": "cross_entropy"}
    (out / f"{name}.json").write_text(json.dumps(spec, indent=1) + "\n")
    np.save(out / f"{name}_x.npy", x.numpy().astype(np.float32))
    np.save(out / f"{name}_y.npy", y.numpy().astype(np.int64))
    np.save(out / f"{name}_logits.npy", logits.numpy().astype(np.float32))
    return {k: (str(v.dtype), list(v.shape)) for k, v in state.items()}


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/torch")
    out.mkdir(parents=True, exist_ok=True)
    for name, build, seed in [("mlp", mlp, 0), ("cnn", cnn, 1)]:
        layout = make(name, build, out, seed)
        print(name, json.dumps(layout))
    print(f"torch {torch.__version__}, safetensors {safetensors.__version__}, "
          f"numpy {np.__version__}")


if __name__ == "__main__":
    main()
