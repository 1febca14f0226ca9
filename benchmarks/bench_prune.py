"""What pruning does to the time of a step: magnitude masks against network slimming.

    python benchmarks/bench_prune.py [--model resnet56] [--batch 64] [--amounts 0.3,0.5,0.7] [--repeats 7] [--tiny]

For each amount the unpruned model (the reference, measured in the same run) and two pruned
copies are timed:

    masks      ``prune.magnitude_prune(model, amount)``: that fraction of every conv and linear
               weight set to zero (kept there by a mask)
    slimmed    ``prune.slim(model, amount)``: that fraction of the channels inside the residual
               branches removed (the batch-norm scales are random, so which channels go is random)

Each is timed for a training step (forward, cross-entropy, backward, SGD update) and an inference
step (eval mode, no graph) on one batch of random 3x32x32 images. The rounds are interleaved
(reference, masks, slimmed, reference, ...) so that a machine that gets busier slows all three
alike, and each time is the median over ``--repeats`` rounds after one warm-up. The table gives
the medians and the speed-up over the reference (reference time / pruned time).

Expect no speed-up from masks: dense NumPy (and cuBLAS) multiply zeros as fast as other numbers,
and the mask adds a multiplication per weight. Slimming shrinks the arrays, so its times fall, by
less than its share of multiply-adds: the stem, the shortcuts, every branch's second convolution's
*output* and batch norm, ReLU and the additions keep their full width.

``--tiny`` (resnet20, batch 2, one repeat) only checks that everything runs.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # a checkout works uninstalled


def build(name, seed=0):
    import minires
    from minires import models

    minires.manual_seed(seed)
    model = models.build_model(name, 3, 10)
    rng = np.random.default_rng(seed)
    for module in model.modules():  # random scales, so that slimming removes random channels
        if type(module).__name__ == "BatchNorm2d":
            module.weight.data[:] = rng.uniform(0.1, 1.0, module.weight.shape).astype(np.float32)
    return model


def one_step(model, optimizer, x, labels, train):
    import minires
    import minires.functional as F

    start = time.perf_counter()
    if train:
        model.train()
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    else:
        model.eval()
        with minires.no_grad():
            model(x)
    return time.perf_counter() - start


def measure(models, batch, repeats):
    """{name: (train s, inference s)}: medians over interleaved rounds, after one warm-up round."""
    import minires
    from minires import optim

    rng = np.random.default_rng(0)
    x = minires.tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))
    labels = rng.integers(0, 10, batch)
    optimizers = {name: optim.SGD(model.parameters(), lr=0.0, momentum=0.9) for name, model in models.items()}
    times = {name: ([], []) for name in models}
    for round_number in range(repeats + 1):
        for name, model in models.items():
            train = one_step(model, optimizers[name], x, labels, True)
            infer = one_step(model, optimizers[name], x, labels, False)
            if round_number:
                times[name][0].append(train)
                times[name][1].append(infer)
    return {name: (statistics.median(t), statistics.median(i)) for name, (t, i) in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--amounts", default="0.3,0.5,0.7")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    if args.tiny:
        args.model, args.batch, args.repeats, args.amounts = "resnet20", 2, 1, "0.5"
    from minires import prune, summary
    from minires.models import REGISTRY
    from minires.prune.measure import nonzero_macs

    if args.model not in REGISTRY:
        parser.error(f"unknown model {args.model!r}")
    amounts = [float(a) for a in args.amounts.split(",")]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.model}, batch {args.batch}, 3x32x32, median of {args.repeats} interleaved rounds "
          f"(load average {load:.1f} at the start)")
    print(f"{'amount':>6}  {'model':<9} {'params':>9} {'MACs':>8}  {'train ms':>9} {'x ref':>6}  "
          f"{'infer ms':>9} {'x ref':>6}")
    for amount in amounts:
        models = {"reference": build(args.model), "masks": build(args.model), "slimmed": build(args.model)}
        prune.magnitude_prune(models["masks"], amount)
        prune.slim(models["slimmed"], amount)
        times = measure(models, args.batch, args.repeats)
        ref_train, ref_infer = times["reference"]
        for name, model in models.items():
            table = summary(model, (1, 3, 32, 32))
            train, infer = times[name]
            print(f"{amount:>6.2f}  {name:<9} {table.total_params:>9,} {nonzero_macs(model, table) / 1e6:>7.1f}M  "
                  f"{1000 * train:>9.1f} {ref_train / train:>6.2f}  {1000 * infer:>9.1f} {ref_infer / infer:>6.2f}")
    print("MACs of 'masks': the multiply-adds of its non-zero weights (what a sparse kernel would do); "
          "dense NumPy computes all of the reference's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
