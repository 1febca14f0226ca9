"""Data-parallel training: measured images/second for 1 and 2 processes, and a model of scaling.

    python benchmarks/bench_distributed.py [--model resnet20] [--batch 32] [--steps 10] [--rounds 3]
                                           [--resnet50-batch 2] [--latency-us 5] [--assume resnet50=100] [--tiny]

Part 1, measured. ResNet-20 training steps (forward, backward, gradient all-reduce, SGD) on random
3x32x32 images, batch ``--batch`` per process: one process, then two started by ``mpiexec -n 2``,
each with one BLAS thread (OMP_NUM_THREADS=1), so that two processes use the two cores one
process with one thread leaves half idle. The runs are interleaved (1, 2, 1, 2, ...) for
``--rounds`` rounds; each figure is the median over the rounds of the median step. The table
gives images/second over all processes, the speed-up over one process (weak scaling: the global
batch grows with the processes), and, per step on rank 0, the milliseconds spent waiting for the
other rank to finish its backward (a barrier put in for the measurement) and then in the all-reduce
itself (``distributed.average_gradients``).

Part 2, modelled. A ring all-reduce of S bytes over p workers sends 2(p-1)/p * S bytes from each
worker in 2(p-1) messages, so on links of B bytes/s with a latency alpha per message it takes
    T(p) = 2 (p - 1) / p * S / B + 2 (p - 1) * alpha.
minires all-reduces after ``backward()`` (no overlap with it), so a step takes t + T(p), where t is
the one-process step measured here (one thread, batch ``--batch``), and the scaling efficiency is
t / (t + T(p)). Given for ResNet-20 (0.27M parameters) and ResNet-50 (25.6M, its t measured on
``--resnet50-batch`` 224x224 images and scaled linearly to ``--batch``), float32 gradients, at
10, 25 and 100 Gbit/s, for 2 to 64 workers. These CPU step times are long, which hides the
communication; a GPU's step of ~0.1 s would not: ``--assume resnet50=100`` models a t of 100 ms
instead of the measured one (and does not measure it).

``--tiny`` (batch 2, 2 steps, 1 round, ResNet-50 not measured: its step is taken as 60x ResNet-20's)
only checks that everything runs. It needs mpi4py and an mpiexec (``pip install ".[mpi]"``).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # a checkout works uninstalled

PARAMETERS = {"resnet20": 269_722, "resnet50": 25_557_032}  # minires's (option A) and torchvision's counts
BANDWIDTHS_GBIT = (10, 25, 100)
WORKERS = (2, 4, 8, 16, 32, 64)


# ---- one process's part: timed training steps ------------------------------------------------------

def worker(model_name, batch, steps, size):
    """Time ``steps`` data-parallel steps (after one warm-up); rank 0 prints one JSON line."""
    import minires
    import minires.functional as F
    from minires import distributed, models, optim

    distributed.init()
    minires.manual_seed(0)
    model = models.build_model(model_name, 3, 10)
    distributed.broadcast_parameters(model)
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(distributed.rank())
    images = minires.tensor(rng.standard_normal((batch, 3, size, size)).astype(np.float32))
    labels = rng.integers(0, 10, batch)
    step_ms, wait_ms, reduce_ms = [], [], []
    for step in range(steps + 1):
        start = time.perf_counter()
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        wait_start = time.perf_counter()
        distributed.barrier()  # apart from the all-reduce itself: the wait for the slower rank
        reduce_start = time.perf_counter()
        distributed.average_gradients(model)
        reduced = time.perf_counter()
        optimizer.step()
        if step > 0:  # the first step is a warm-up
            step_ms.append((time.perf_counter() - start) * 1e3)
            wait_ms.append((reduce_start - wait_start) * 1e3)
            reduce_ms.append((reduced - reduce_start) * 1e3)
    if distributed.is_main():
        print(json.dumps({"ranks": distributed.world_size(), "step_ms": statistics.median(step_ms),
                          "wait_ms": statistics.median(wait_ms), "all_reduce_ms": statistics.median(reduce_ms)}))


def launch(ranks, model_name, batch, steps, size=32):
    """Run ``worker`` in ``ranks`` fresh processes (mpiexec for 2); its JSON result."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--model", model_name, "--batch", str(batch),
               "--steps", str(steps), "--size", str(size)]
    if ranks > 1:
        beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        command = [beside if os.access(beside, os.X_OK) else "mpiexec", "-n", str(ranks)] + command
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(command[:4])} ... failed:\n{done.stderr[-2000:]}")
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


# ---- the model of scaling (the formula: minires/distributed/cost_model.py) ------------------------------

def scaling_table(name, step_s, latency_s):
    from minires.distributed import cost_model

    lines = [f"\n{name} ({PARAMETERS[name] / 1e6:.2f}M parameters, {PARAMETERS[name] * 4 / 2**20:.1f} MiB of "
             f"float32 gradients), one-process step t = {step_s * 1e3:.0f} ms; all-reduce ms (efficiency t/(t+T)):",
             "| workers | " + " | ".join(f"{b} Gbit/s" for b in BANDWIDTHS_GBIT) + " |",
             "| --- |" + " --- |" * len(BANDWIDTHS_GBIT)]
    for p in WORKERS:
        cells = []
        for bandwidth in BANDWIDTHS_GBIT:
            t = cost_model.ring_all_reduce_s(PARAMETERS[name], p, bandwidth, latency_s)
            cells.append(f"{t * 1e3:.1f} ({step_s / (step_s + t):.0%})")
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mistake(message):
    """A command-line mistake: one line, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet20", help="the model measured in part 1 (default resnet20)")
    parser.add_argument("--batch", type=int, default=32, help="images per process and step (default 32)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of 1 and 2 processes (default 3)")
    parser.add_argument("--resnet50-batch", type=int, default=2, help="224x224 images of the ResNet-50 step measured")
    parser.add_argument("--latency-us", type=float, default=5.0, help="alpha, per message (default 5 us)")
    parser.add_argument("--assume", action="append", default=[], metavar="MODEL=MS",
                        help="model part 2 with this one-process step of resnet20 or resnet50 (repeatable)")
    parser.add_argument("--tiny", action="store_true", help="check that it runs (batch 2, 2 steps, 1 round)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=32, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.model, args.batch, args.steps, args.size)
    for item in args.assume:
        name, _, ms = item.partition("=")
        if name not in PARAMETERS or not ms.replace(".", "", 1).isdigit():
            return mistake(f"--assume {item}: give resnet20=MS or resnet50=MS (a step in milliseconds)")
    if args.tiny:
        args.batch, args.steps, args.rounds = 2, 2, 1
    from minires.models import REGISTRY

    if args.model not in REGISTRY:
        return mistake(f"unknown model {args.model!r}; choose one of: {', '.join(sorted(REGISTRY))}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    results = {1: [], 2: []}
    for _ in range(args.rounds):  # interleaved: 1, 2, 1, 2, ...
        for ranks in (1, 2):
            results[ranks].append(launch(ranks, args.model, args.batch, args.steps))
    print(f"\n{args.model} training, batch {args.batch} per process, one BLAS thread each, median of "
          f"{args.rounds} interleaved rounds of {args.steps} steps")
    print("| processes | step ms | wait for the other rank, ms | all-reduce ms | images/s | x one process |")
    print("| --- | --- | --- | --- | --- | --- |")
    one_step = statistics.median(r["step_ms"] for r in results[1])
    for ranks in (1, 2):
        step = statistics.median(r["step_ms"] for r in results[ranks])
        wait = statistics.median(r["wait_ms"] for r in results[ranks])
        reduce = statistics.median(r["all_reduce_ms"] for r in results[ranks])
        images = ranks * args.batch / (step / 1e3)
        print(f"| {ranks} | {step:.1f} | {wait:.2f} | {reduce:.2f} | {images:.1f} | "
              f"{images / (args.batch / (one_step / 1e3)):.2f} |")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")

    steps = {name: float(ms) / 1e3 for name, ms in (item.split("=") for item in args.assume)}
    if "resnet20" not in steps:
        steps["resnet20"] = (one_step if args.model == "resnet20" else
                             launch(1, "resnet20", args.batch, args.steps)["step_ms"]) / 1e3
    if "resnet50" not in steps and args.tiny:
        steps["resnet50"] = 60 * steps["resnet20"]
    elif "resnet50" not in steps:
        measured = launch(1, "resnet50", args.resnet50_batch, 2, size=224)["step_ms"] / 1e3
        steps["resnet50"] = measured * args.batch / args.resnet50_batch
        print(f"resnet50: {measured * 1e3:.0f} ms per step of {args.resnet50_batch} 224x224 images, one thread")
    print(f"\nModelled ring all-reduce, latency {args.latency_us:g} us per message, no overlap with backward:")
    for name in ("resnet20", "resnet50"):
        print(scaling_table(name, steps[name], args.latency_us * 1e-6))


if __name__ == "__main__":
    sys.exit(main())
