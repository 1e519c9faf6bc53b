#!/usr/bin/env python3
"""Writes the ONNX fixtures of tests/fixtures/onnx/ (see the README there).

Small PyTorch models with fixed seeds, each exported with both of PyTorch's exporters (the
TorchScript-based `torch.onnx.export(..., dynamo=False)` and the `torch.export`-based
`dynamo=True`), plus for each model a batch of inputs and ONNX Runtime's outputs on every
exported file, as .npy. Needs torch, onnx, onnxscript, onnxruntime and numpy:

    python3 -m venv .venv-onnx && .venv-onnx/bin/pip install torch onnx onnxscript onnxruntime numpy
    .venv-onnx/bin/python scripts/make_onnx_fixtures.py [MODEL...]

With model names (mlp, cnn, residual, text, dense), only those are written and the manifest
keeps the other entries.
"""

import json
import os
import sys
import warnings

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "onnx")
OPSET = 17


class Residual(nn.Module):
    """conv-bn-relu-conv-bn plus the input, then relu, pooled and classified."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        x = torch.relu(x + y)
        return self.fc(torch.flatten(self.pool(x), 1))


class Text(nn.Module):
    """Token ids → embedding → mean over tokens → MLP with GELU."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 8)
        self.fc1 = nn.Linear(8, 16)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(16, 2)

    def forward(self, ids):
        return self.fc2(self.act(self.fc1(self.emb(ids).mean(dim=1))))


class Dense(nn.Module):
    """Dense layers as most non-PyTorch frameworks store them, weight [in, out]: `x @ W + b`
    (MatMul + Add), GELU's tanh form, and a bias-free `x @ W` (MatMul alone)."""

    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(20, 16) * 0.3)
        self.b1 = nn.Parameter(torch.randn(16) * 0.1)
        self.act = nn.GELU(approximate="tanh")
        self.w2 = nn.Parameter(torch.randn(16, 5) * 0.3)

    def forward(self, x):
        return self.act(x @ self.w1 + self.b1) @ self.w2


def models():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(8 * 7 * 7, 10))
    res = Residual()
    # Non-trivial statistics and affine parameters, as a trained model has (identical
    # tensors would also be merged into one initializer by the exporter).
    with torch.no_grad():
        for bn in (res.bn1, res.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    text = Text()
    dense = Dense()
    g = torch.Generator().manual_seed(1)
    return {
        "mlp": (mlp, torch.rand(6, 1, 28, 28, generator=g), "cross_entropy"),
        "cnn": (cnn, torch.rand(6, 1, 28, 28, generator=g), "cross_entropy"),
        "residual": (res, torch.rand(6, 1, 12, 12, generator=g), "cross_entropy"),
        "text": (text, torch.randint(0, 100, (6, 12), generator=g), "cross_entropy"),
        "dense": (dense, torch.randn(6, 20, generator=g), "cross_entropy"),
    }


def export(model, x, path, dynamo, fold=True, opset=OPSET):
    model.eval()
    kwargs = dict(input_names=["input"], output_names=["output"], opset_version=opset,
                  dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                  do_constant_folding=fold)
    if dynamo:
        kwargs = dict(input_names=["input"], output_names=["output"], opset_version=opset,
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                      external_data=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, dynamo=dynamo, **kwargs)


def main():
    os.makedirs(OUT, exist_ok=True)
    only = set(sys.argv[1:])
    manifest_path = os.path.join(OUT, "manifest.json")
    manifest = {}
    if only and os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    for name, (model, x, loss) in models().items():
        if only and name not in only:
            continue
        np.save(os.path.join(OUT, f"{name}.input.npy"), x.numpy().astype(np.float32))
        feed = x.numpy()
        with torch.no_grad():
            torch_out = model.eval()(x).numpy()
        exporters = [("torchscript", False, True, OPSET), ("dynamo", True, True, OPSET)]
        if name == "residual":
            # Both exporters fold batch norm into the convolutions; without constant folding
            # the TorchScript exporter keeps BatchNormalization nodes.
            exporters.append(("torchscript_bn", False, False, OPSET))
        if name == "dense":
            # From opset 20 on, the tanh GELU is one Gelu node with approximate = "tanh".
            exporters.append(("dynamo_opset20", True, True, 20))
        for exporter, dynamo, fold, opset in exporters:
            path = os.path.join(OUT, f"{name}.{exporter}.onnx")
            export(model, x, path, dynamo, fold, opset)
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            got = sess.run(None, {sess.get_inputs()[0].name: feed})[0]
            np.save(os.path.join(OUT, f"{name}.{exporter}.ort.npy"), got.astype(np.float32))
            err = float(np.max(np.abs(got - torch_out)))
            manifest[f"{name}.{exporter}"] = {"loss": loss, "bytes": os.path.getsize(path),
                                              "ort_vs_torch_max_abs": err}
            print(f"{name}.{exporter}: {os.path.getsize(path)} bytes, ORT vs torch {err:.2e}")
    manifest["versions"] = {"torch": torch.__version__, "onnxruntime": ort.__version__,
                            "opset": OPSET}
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
