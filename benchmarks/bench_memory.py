"""Peak memory of one training step: ResNet-56 against DenseNets, plain and memory-efficient.

    python benchmarks/bench_memory.py [--batch 64] [--models resnet56,densenet40_k12,...] [--tiny]

Each model runs in a fresh process of its own (``--worker``), so that no model reuses memory
another one freed. There it builds the model, an SGD optimizer (momentum 0.9, weight decay 1e-4)
and one batch of random 3x32x32 images with random labels, runs one training step (forward,
cross-entropy, backward, SGD step) to warm up, hands the memory that step freed back to the
system (glibc's ``malloc_trim``), and then measures a second step with
``minires.backends.cpu_memory.peak_extra_bytes``: how far the process's resident memory rose
above what it held before the step (the parameters, their gradients, the momentum and the batch).

How to read the table:

    peak MB     the extra resident memory at the step's peak: mostly what the graph keeps from
                forward until backward reaches it, plus the gradients being computed
    x resnet56  that peak divided by ResNet-56's, measured in the same run (the issue's bar: a
                DenseNet above 2 calls for the memory-efficient variant)
    graph MB    what the graph held right after forward: the arrays its Functions saved and the
                intermediate activations they hold (minires.engine.checkpoint.graph_bytes, counted
                from the arrays, so it is the same on every machine)
    step s      the measured step's time (one step, on a busy machine only a rough guide); the
                memory-efficient DenseNets recompute BN-ReLU-conv in backward, so they are slower

``--tiny`` (batch 2) only checks that everything runs.
"""
import argparse
import ctypes
import ctypes.util
import gc
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # a checkout works uninstalled

MODELS = ("resnet56", "densenet40_k12", "densenet_bc100_k12", "densenet40_k12_efficient",
          "densenet_bc100_k12_efficient")
BASELINE = "resnet56"


def build(name):
    from minires import models
    from minires.models import densenet

    if name == "resnet56":
        return models.resnet56()
    builder = getattr(densenet, name.removesuffix("_efficient"))
    return builder(memory_efficient=name.endswith("_efficient"))


def return_freed_memory():
    """Give the memory malloc keeps after frees back to the system (glibc), so that the next step's
    peak counts every page it needs; nothing where there is no glibc."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure(name, batch):
    """One model's warm-up step, then the measured one: a dict of the numbers the table shows."""
    import minires
    import minires.functional as F
    from minires import optim
    from minires.backends.cpu_memory import peak_extra_bytes
    from minires.engine.checkpoint import graph_bytes

    minires.manual_seed(0)
    model = build(name)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    images = minires.tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))
    labels = rng.integers(0, 10, size=batch)
    held = {}

    def step():
        loss = F.cross_entropy(model(images), labels)
        held["graph"] = graph_bytes(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up: the gradients and the momentum buffers now exist, as in every later step
    gc.collect()
    return_freed_memory()
    start = time.perf_counter()
    peak = peak_extra_bytes(step)
    seconds = time.perf_counter() - start
    return {"parameters": model.num_parameters(), "peak_bytes": peak, "graph_bytes": held["graph"],
            "seconds": seconds}


def run_worker(name, batch):
    """``measure`` in a fresh process; its one line of JSON."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", name, "--batch", str(batch)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the {name} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results, batch):
    base = results.get(BASELINE)

    def ratio(r, key):
        return f"{r[key] / base[key]:11.2f}" if base and base[key] else f"{'-':>11s}"

    against = f"x {BASELINE}"
    lines = [f"one training step (forward, cross-entropy, backward, SGD), batch {batch}, 3x32x32, float32",
             (f"{'model':30s} {'params':>10s} {'peak MB':>9s} {against:>11s} {'graph MB':>9s} {against:>11s} "
              f"{'step s':>7s} {against:>11s}")]
    for name, r in results.items():
        lines.append(f"{name:30s} {r['parameters']:10,d} {r['peak_bytes'] / 2**20:9.1f} {ratio(r, 'peak_bytes')} "
                     f"{r['graph_bytes'] / 2**20:9.1f} {ratio(r, 'graph_bytes')} {r['seconds']:7.2f} "
                     f"{ratio(r, 'seconds')}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None, help="images per step (default 64; 2 with --tiny)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from: {', '.join(MODELS)}")
    parser.add_argument("--tiny", action="store_true", help="batch 2: a quick check that everything runs")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # run one model here and print its JSON
    args = parser.parse_args(argv)
    batch = args.batch or (2 if args.tiny else 64)
    if batch < 1:
        parser.error(f"--batch must be at least 1, got {batch}")
    if args.worker:
        print(json.dumps(measure(args.worker, batch)))
        return
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; choose from: {', '.join(MODELS)}")
    results = {name: run_worker(name, batch) for name in names}
    print(table(results, batch))


if __name__ == "__main__":
    main()
