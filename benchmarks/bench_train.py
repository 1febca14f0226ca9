"""ResNet-20 training throughput on the CPU (CIFAR shapes), against PyTorch in the same run.

    python benchmarks/bench_train.py [--batch 128] [--steps 5]

Each framework runs in its own subprocess: SGD (momentum 0.9, weight decay 1e-4),
one warm-up step, then ``--steps`` timed steps of forward + cross-entropy +
backward + update on random 3x32x32 images. Reported: images/second (median
step), the ratio to PyTorch (higher is better; target >= 0.8), and the peak
memory the training steps add on top of what the process held before them
(Linux VmHWM after resetting it, minus VmRSS before the first step).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def read_status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak_memory():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (peak resident memory) to the current size
    except OSError:
        pass


def minires_step_function(batch):
    import minires
    import minires.functional as F
    from minires import optim
    from minires.models import resnet20

    minires.manual_seed(0)
    model = resnet20()
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    images = minires.tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))
    labels = rng.integers(0, 10, size=batch)

    def step():
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def torch_step_function(batch):
    import torch
    import torch.nn as nn
    import torch.nn.functional as TF

    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.stride, self.extra = stride, cout - cin

        def forward(self, x):
            out = self.bn2(self.conv2(TF.relu(self.bn1(self.conv1(x)))))
            shortcut = x[:, :, ::self.stride, ::self.stride]
            if self.extra:  # option A: zero channels appended
                shortcut = TF.pad(shortcut, (0, 0, 0, 0, 0, self.extra))
            return TF.relu(out + shortcut)

    class ResNet20(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn = nn.BatchNorm2d(16)
            blocks, cin = [], 16
            for stage, cout in enumerate((16, 32, 64)):
                for i in range(3):
                    blocks.append(Block(cin, cout, 2 if stage and i == 0 else 1))
                    cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            out = self.blocks(TF.relu(self.bn(self.conv(x))))
            return self.fc(out.mean(dim=(2, 3)))

    model = ResNet20()
    assert sum(p.numel() for p in model.parameters()) == 269_722
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    images = torch.randn(batch, 3, 32, 32)
    labels = torch.randint(0, 10, (batch,))

    def step():
        loss = TF.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def worker(framework, batch, steps):
    step = (minires_step_function if framework == "minires" else torch_step_function)(batch)
    step()  # warm-up: first-touch allocations, PyTorch's kernel selection
    before = read_status("VmRSS")
    reset_peak_memory()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = read_status("VmHWM")
    print(json.dumps({"step_seconds": statistics.median(times), "peak_extra_bytes": max(peak - before, 0)}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--worker", choices=["minires", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.batch, args.steps)

    results = {}
    for framework in ("minires", "torch"):
        if framework == "torch":
            try:
                import torch  # noqa: F401
            except ImportError:
                continue
        out = subprocess.run([sys.executable, __file__, "--worker", framework, "--batch", str(args.batch),
                              "--steps", str(args.steps)], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        results[framework] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"ResNet-20 training step, batch {args.batch}, float32, CPU ({os.cpu_count()} cores), median of {args.steps} steps")
    header = f"{'framework':<10} {'step s':>7} {'images/s':>9} {'vs torch':>9} {'peak extra MB':>14}"
    print(header)
    print("-" * len(header))
    for framework, r in results.items():
        rate = args.batch / r["step_seconds"]
        ratio = ""
        if "torch" in results:
            ratio = f"{rate / (args.batch / results['torch']['step_seconds']):9.2f}"
        print(f"{framework:<10} {r['step_seconds']:7.3f} {rate:9.1f} {ratio:>9} {r['peak_extra_bytes'] / 2**20:14.1f}")


if __name__ == "__main__":
    main()
