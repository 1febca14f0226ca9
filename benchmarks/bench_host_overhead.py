"""Host overhead of the kernel path: launches and host microseconds per ResNet-20 training step.

    python benchmarks/bench_host_overhead.py [--steps 40] [--batch 2] [--image-size 8] [--depth 20]

On a GPU the host (Python) only *queues* work; if queueing one step takes longer
than the GPU needs to run it, the GPU waits for Python. This measures the queueing
cost without a GPU: every kernel is replaced by a no-op that only counts its
launch, so what is left is our Python (the ops, the wrappers, the launch calls)
plus NumPy's small array operations, which stand in for CuPy's. The batch and the
images are tiny (2 images of 8x8: the network runs on any size) so that the arrays'
own work, the matrix products above all (NumPy's here, cuBLAS's on a GPU), costs
next to nothing; the launches and the Python per launch do not depend on the size.

Reported: kernel launches per step, and the median, lower and upper quartile of
host time per step (one step = the training loop's forward, cross-entropy,
backward and SGD update, exactly as ``minires.training.train_steps`` runs it).
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout works uninstalled


class NoOpModule:
    """A ``cupy.RawModule`` stand-in whose kernels do nothing but count their launches."""

    launches = 0

    def __init__(self, code, options=(), name_expressions=()):
        self.names = set(name_expressions)

    def get_function(self, name):
        if name not in self.names:
            raise KeyError(name)
        return self._launch

    @staticmethod
    def _launch(grid, block, args, shared_mem=0):
        NoOpModule.launches += 1


def measure(depth, batch, image_size, steps):
    import minires
    from minires import optim
    from minires.backends.cuda import loader
    from minires.models import cifar_resnet
    from minires.training import train_steps

    minires.manual_seed(0)
    model = cifar_resnet(depth)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, 3, image_size, image_size)).astype(np.float32)
    labels = rng.integers(0, 10, size=batch)

    def batches():
        while True:
            yield images, labels

    times, counts = [], []
    last = {"time": 0.0, "launches": 0}

    def on_step(step, metrics):
        now = time.perf_counter()
        if step > 1:  # the first step compiles nothing here, but fills caches
            times.append(now - last["time"])
            counts.append(NoOpModule.launches - last["launches"])
        last["time"], last["launches"] = now, NoOpModule.launches

    with loader._kernel_provider(NoOpModule), np.errstate(all="ignore"):  # no-op outputs hold garbage
        last["time"] = time.perf_counter()
        train_steps(model, batches(), optimizer, steps + 1, on_step=on_step)
    return counts, times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=8)
    parser.add_argument("--depth", type=int, default=20)
    args = parser.parse_args()
    counts, times = measure(args.depth, args.batch, args.image_size, args.steps)
    q1, median, q3 = statistics.quantiles([t * 1e3 for t in times], n=4)
    print(f"ResNet-{args.depth}, batch {args.batch} of {args.image_size}x{args.image_size}, {args.steps} steps, no-op kernels (host work only)")
    print("| launches/step | host ms/step (median) | quartiles |")
    print("|---|---|---|")
    print(f"| {statistics.median(counts):.0f} | {median:.2f} | {q1:.2f}-{q3:.2f} |")


if __name__ == "__main__":
    main()
