#!/usr/bin/env python3
"""PyTorch side of the ∇τ step benchmark on CUDA (the peer gradtau's CUDA backend is timed
against). One step, as the reference ∇τ loop runs it:

    L = α · ReLU(τ − mean ℓ(B_f))²  +  (1 − α) · mean ℓ(B_r)

forward on a forget batch and a retain batch (256 each, 3x32x32, 10 classes), backward,
AdamW (lr 1e-3, wd 0.01). Batch norm in evaluation mode (the ∇τ default). Strict float32
(TF32 off) unless --tf32, so the numbers compare with gradtau's fp32 cuBLAS path.
Models: the small CNN and a CIFAR ResNet-18 (3x3 stem, no max-pool; torchvision's layer
names). Prints one line per model and writes JSON (--json) with median ms per step.
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class SmallCNN(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 8 * 8, 128)
        self.fc2 = nn.Linear(128, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for i, cout in enumerate([64, 128, 256, 512]):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def nabla_tau_step(model, opt, xf, yf, xr, yr, tau, alpha):
    opt.zero_grad(set_to_none=True)
    lf = F.cross_entropy(model(xf), yf, reduction="none").mean()
    lr = F.cross_entropy(model(xr), yr, reduction="none").mean()
    loss = alpha * F.relu(tau - lf) ** 2 + (1.0 - alpha) * lr
    loss.backward()
    opt.step()
    return loss


def bench(name, model, dev, batch, warmup, steps):
    torch.manual_seed(0)
    model = model.to(dev).eval()  # BN frozen (the ∇τ default); gradients still flow
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    xf = torch.randn(batch, 3, 32, 32, device=dev)
    xr = torch.randn(batch, 3, 32, 32, device=dev)
    yf = torch.randint(0, 10, (batch,), device=dev)
    yr = torch.randint(0, 10, (batch,), device=dev)
    # τ well above the forget loss so the ascent term is active, as early in an unlearning run.
    tau, alpha = 5.0, 0.5
    for _ in range(warmup):
        nabla_tau_step(model, opt, xf, yf, xr, yr, tau, alpha)
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        nabla_tau_step(model, opt, xf, yf, xr, yr, tau, alpha)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    params = sum(p.numel() for p in model.parameters())
    res = {
        "model": name,
        "batch": batch,
        "params": params,
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "steps": steps,
    }
    print(f"torch {name:9s} batch {batch}: median {res['median_ms']:.2f} ms/step "
          f"(min {res['min_ms']:.2f}, {params / 1e6:.2f} M params)", flush=True)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--tf32", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("SKIPPED: torch sees no CUDA device", file=sys.stderr)
        return 0
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}, tf32={a.tf32}")
    results = [
        bench("small_cnn", SmallCNN(), dev, a.batch, a.warmup, a.steps),
        bench("resnet18", ResNet18(), dev, a.batch, a.warmup, a.steps),
    ]
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"torch": torch.__version__, "tf32": a.tf32, "results": results}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
