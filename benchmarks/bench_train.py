"""CIFAR ResNet training and inference throughput on the CPU, against PyTorch in the same run.

    python benchmarks/bench_train.py [--models resnet20,resnet56] [--batch 128] [--steps 7]
                                     [--inference] [--profile] [--baseline CHECKOUT]
                                     [--return-freed-memory]

Each framework runs in its own worker process (so that neither one's thread pool spins
while the other works), in lockstep: the steps alternate, minires then PyTorch, then
PyTorch then minires, so both see the same moments of a noisy machine. Training is
SGD (momentum 0.9, weight decay 1e-4): forward + cross-entropy + backward + update on
random 3x32x32 images; ``--inference`` times eval-mode forward passes without a graph
(batch 256 unless --batch is given). One warm-up step each, then ``--steps`` pairs.

Reported per model: median step time and images/second of each framework, the median and
the range of the per-pair ratio minires/PyTorch in images/second (higher is better; target
>= 0.8), and the peak memory the steps add to what the process held before them (Linux
VmHWM over the timed steps minus VmRSS before the warm-up step). The load average before
and after says how quiet the machine was. ``--profile`` then runs minires alone for
``--steps`` more steps with a timer around every Function's forward and backward and prints
where a step's time goes. ``--baseline`` adds a third worker running another checkout's
minires (the "before" of a before/after table) in the same lockstep. Every worker keeps
freed memory for its next step, as ``python -m minires train`` does (see
minires/backends/cpu_memory.py; PyTorch gains from it too), unless --return-freed-memory.
"""
import argparse
import collections
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # a checkout works uninstalled

DEPTHS = {"resnet20": 20, "resnet32": 32, "resnet44": 44, "resnet56": 56, "resnet110": 110}


def this_checkouts_cpu_memory():
    """This checkout's minires/backends/cpu_memory.py (keeping freed memory, measuring the peak), loaded by
    its path: a --baseline worker imports another checkout's minires, which may not have it."""
    spec = importlib.util.spec_from_file_location("cpu_memory", os.path.join(ROOT, "minires", "backends", "cpu_memory.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- one step of each framework ---------------------------------------------------------------
def minires_step(model_name, batch, inference):
    import minires
    import minires.functional as F
    from minires import models, optim

    minires.manual_seed(0)
    model = getattr(models, model_name)()
    rng = np.random.default_rng(0)
    images = minires.tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))
    if inference:
        model.eval()

        def step():
            with minires.no_grad():
                model(images)

        return step, None
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    labels = rng.integers(0, 10, size=batch)

    def step():
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step, optimizer


def torch_step(model_name, batch, inference):
    import torch
    import torch.nn.functional as TF
    from torch_reference import TorchCifarResNet

    torch.manual_seed(0)
    model = TorchCifarResNet(DEPTHS[model_name])
    images = torch.randn(batch, 3, 32, 32)
    if inference:
        model.eval()

        def step():
            with torch.no_grad():
                model(images)

        return step, None
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    labels = torch.randint(0, 10, (batch,))

    def step():
        loss = TF.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step, optimizer


# ---- the per-Function breakdown (--profile) -------------------------------------------------
def profiled(step, optimizer, steps):
    """Run ``steps`` steps with a timer around every Function's forward and backward (and the
    optimizer); return {part: milliseconds per step}, the rest being autograd and Python."""
    from minires.engine.function import Function

    spent = collections.defaultdict(float)

    def timed(name_of, method):
        def wrapper(self, *args):
            start = time.perf_counter()
            try:
                return method(self, *args)
            finally:
                spent[name_of(self)] += time.perf_counter() - start
        return wrapper

    # Forward: Function.__call__ (the op's forward and wrapping its output). Backward: every
    # class that defines its own backward (or backward_numpy / backward_kernels, behind Function's).
    patched = [(Function, "__call__", Function.__call__)]
    Function.__call__ = timed(lambda fn: f"{type(fn).__name__} forward", Function.__call__)
    for cls in [Function] + all_subclasses(Function):
        if "backward" in cls.__dict__:
            patched.append((cls, "backward", cls.__dict__["backward"]))
            cls.backward = timed(lambda fn: f"{type(fn).__name__} backward", cls.__dict__["backward"])
    if optimizer is not None:
        patched.append((type(optimizer), "step", type(optimizer).step))
        type(optimizer).step = timed(lambda opt: "optimizer step", type(optimizer).step)
    try:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        total = time.perf_counter() - start
    finally:
        for cls, name, original in patched:
            setattr(cls, name, original)
    parts = {name: 1e3 * seconds / steps for name, seconds in spent.items()}
    parts["autograd, Python, the rest"] = 1e3 * total / steps - sum(parts.values())
    return parts


def all_subclasses(cls):
    return [sub for direct in cls.__subclasses__() for sub in [direct] + all_subclasses(direct)]


def worker(framework, model_name, batch, inference, keep_memory):
    """Answer the parent's commands on stdin, one JSON line each: step, memory, profile N."""
    make = minires_step if framework == "minires" else torch_step
    memory = this_checkouts_cpu_memory()
    if keep_memory:  # for both frameworks alike, as `python -m minires train` does for itself
        memory.keep_freed_memory()
    step, optimizer = make(model_name, batch, inference)
    before = memory.resident_bytes()  # the framework, the model and the batch
    step()  # warm-up: first-touch allocations, PyTorch's kernel selection
    memory.reset_resident_peak()
    source = sys.modules["minires"].__file__ if framework == "minires" else sys.modules["torch"].__file__
    print(json.dumps({"ready": os.path.dirname(source)}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "step":
            start = time.perf_counter()
            step()
            answer = {"seconds": time.perf_counter() - start}
        elif command[0] == "memory":
            answer = {"peak_extra_bytes": max(memory.resident_bytes("VmHWM") - before, 0)}
        else:
            answer = {"parts": profiled(step, optimizer, int(command[1]))}
        print(json.dumps(answer), flush=True)


# ---- the parent: lockstep steps, the table ----------------------------------------------------
class Worker:
    def __init__(self, framework, model_name, batch, inference, keep_memory, checkout=None):
        args = [sys.executable, __file__, "--worker", framework, "--models", model_name, "--batch", str(batch)]
        args += (["--inference"] if inference else []) + (["--baseline", checkout] if checkout else [])
        args += ["--return-freed-memory"] if not keep_memory else []
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        self.source = self.answer()["ready"]  # where its framework was imported from

    def ask(self, command):
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.answer()

    def answer(self):
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"a benchmark worker died (exit {self.process.wait()}); see its error above")
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def measure(model_name, batch, steps, inference, profile, baseline, keep_memory):
    have_torch = True
    try:
        import torch  # noqa: F401
    except ImportError:
        have_torch = False
    workers = {"minires": Worker("minires", model_name, batch, inference, keep_memory)}
    if baseline:
        workers["baseline"] = Worker("minires", model_name, batch, inference, keep_memory, checkout=baseline)
    if have_torch:
        workers["torch"] = Worker("torch", model_name, batch, inference, keep_memory)
    times = {name: [] for name in workers}
    for pair in range(steps):
        order = list(workers) if pair % 2 == 0 else list(workers)[::-1]  # each one first half the time
        for name in order:
            times[name].append(workers[name].ask("step")["seconds"])
    memory = {name: w.ask("memory")["peak_extra_bytes"] for name, w in workers.items()}
    parts = workers["minires"].ask(f"profile {steps}")["parts"] if profile else None
    for name, w in workers.items():
        if name == "baseline":
            print(f"baseline: the minires in {w.source}")
        w.close()
    return times, memory, parts


def report(model_name, batch, steps, inference, times, memory, parts):
    what = "inference (eval, no graph)" if inference else "training step"
    print(f"\n{model_name} {what}, batch {batch}, float32, CPU ({os.cpu_count()} cores), {steps} interleaved pairs")
    header = f"{'framework':<10} {'step s':>7} {'images/s':>9} {'vs torch (median, range)':>26} {'peak extra MB':>14}"
    print(header)
    print("-" * len(header))
    for name, seconds in times.items():
        ratio = ""
        if name != "torch" and "torch" in times:
            ratios = sorted(t / m for m, t in zip(times[name], times["torch"]))
            ratio = f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"
        median = statistics.median(seconds)
        print(f"{name:<10} {median:7.3f} {batch / median:9.1f} {ratio:>26} {memory[name] / 2**20:14.1f}")
    if parts:
        total = sum(parts.values())
        print(f"\nwhere a minires step's {total:.0f} ms go (mean of {steps} steps, timers on)")
        for name, ms in sorted(parts.items(), key=lambda item: -item[1]):
            print(f"  {name:<36} {ms:8.1f} ms {100 * ms / total:5.1f}%")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20,resnet56", help="comma-separated, of " + ", ".join(DEPTHS))
    parser.add_argument("--batch", type=int, help="images per step (default 128; 256 with --inference)")
    parser.add_argument("--steps", type=int, default=7, help="interleaved pairs of timed steps (default 7)")
    parser.add_argument("--inference", action="store_true", help="time eval-mode forward passes instead")
    parser.add_argument("--profile", action="store_true", help="add minires's per-Function breakdown")
    parser.add_argument("--baseline", metavar="CHECKOUT",
                        help="also time the minires of another checkout in the same lockstep (before/after tables), "
                             "e.g. a `git worktree add /tmp/before HEAD~1`")
    parser.add_argument("--return-freed-memory", action="store_true",
                        help="leave glibc's malloc as it is (by default every worker keeps freed memory for "
                             "the next step, as the train command does: minires/backends/cpu_memory.py)")
    parser.add_argument("--worker", choices=["minires", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    batch = args.batch or (256 if args.inference else 128)
    if args.worker:
        if args.baseline:
            sys.path.insert(0, os.path.abspath(args.baseline))  # its minires, not this checkout's
        return worker(args.worker, args.models, batch, args.inference, not args.return_freed_memory)
    names = args.models.split(",")
    unknown = [name for name in names if name not in DEPTHS]
    if unknown or args.steps < 1 or batch < 1:
        parser.error(f"unknown model {unknown[0]!r}" if unknown else "--steps and --batch must be at least 1")
    print("load average before: " + " ".join(f"{load:.1f}" for load in os.getloadavg()))
    for name in names:
        results = measure(name, batch, args.steps, args.inference, args.profile, args.baseline,
                          not args.return_freed_memory)
        report(name, batch, args.steps, args.inference, *results)
    print("\nload average after: " + " ".join(f"{load:.1f}" for load in os.getloadavg()))


if __name__ == "__main__":
    main()
