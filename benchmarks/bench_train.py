"""ResNet-20 training throughput on the CPU (CIFAR shapes), against PyTorch in the same run.

    python benchmarks/bench_train.py [--batch 128] [--steps 5]

Each framework runs in its own subprocess: SGD (momentum 0.9, weight decay 1e-4),
one warm-up step, then ``--steps`` timed steps of forward + cross-entropy +
backward + update on random 3x32x32 images. Reported: images/second (median
step), the ratio to PyTorch (higher is better; target >= 0.8), and the peak
memory the training steps add on top of what the process held before them
(Linux VmHWM over the timed steps, minus VmRSS before the warm-up step).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout works uninstalled


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
    import torch.nn.functional as TF
    from torch_reference import TorchCifarResNet

    torch.manual_seed(0)
    model = TorchCifarResNet(20)
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
    # Memory: the peak resident size during the timed steps, less the size before the warm-up
    # step (the model and the batch). Taking the baseline after the warm-up instead would count
    # only what the allocator happens to hand back to the system between steps.
    before = read_status("VmRSS")
    step()  # warm-up: first-touch allocations, PyTorch's kernel selection
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
