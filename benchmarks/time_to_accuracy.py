"""Time to accuracy: train ResNet-20 on CIFAR-10 until a wall-clock budget runs out.

    python benchmarks/time_to_accuracy.py --data-root DIR [--budget-seconds 480] [--target 0.91]

Prints a line per epoch (learning rate, train loss and accuracy, test accuracy,
images/second, elapsed seconds) and, at the end, when the test accuracy first
reached ``--target`` (or the best accuracy, if it never did). With ``--out DIR``
the rows also go to ``DIR/time_to_accuracy.jsonl`` and the curves to
``DIR/time_to_accuracy.png``. ``--dry-run`` checks the settings and the data
folder and prints the plan, without training (no GPU needed).

The recipe, and why each part (defaults; every part is a flag):

* batch 512: a ResNet-20 step at batch 128 is too little work per kernel launch
  to keep a large GPU busy; 512 gives each launch 4x the work while keeping 98
  steps per epoch (1024 would halve the steps again at a fixed time budget);
* peak learning rate 0.4, i.e. the paper's 0.1 for batch 128 scaled linearly
  with the batch, reached by a linear warm-up over the first 2 epochs
  (Goyal et al. 2017, "Accurate, Large Minibatch SGD");
* then a linear decay towards zero that ends when the budget does: the number
  of epochs is planned from the measured time of the last warm-up epoch (with
  a 3% margin), since under a fixed budget a linear schedule ending at the
  budget beats step decay (Li, Yumer, Ramanan 2020, "Budgeted Training");
* SGD with Nesterov momentum 0.9, weight decay 5e-4 (short schedules want more
  regularisation than the paper's 1e-4) and label smoothing 0.1 (Szegedy et al.
  2016): cheap, commonly reported gains for short schedules;
* the paper's augmentation (4-pixel pad-and-crop, horizontal flip), through the
  training command's own data pipeline and ``minires.training``'s epoch loop.

The clock starts once the data is loaded and includes everything after it: kernel
compilation in the first epoch, training, and evaluating the test set after
every epoch.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout works uninstalled

import minires
from minires import data, optim
from minires.models import build_model
from minires.training.dataset_registry import DATASETS, load_datasets
from minires.training.device import check_device
from minires.training.loop import evaluate, train_epoch
from minires.training.train_command import DEFAULTS
from minires.training.training_run import make_loaders

MARGIN = 1.03  # plan epochs as if each took 3% longer than the last warm-up epoch did


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="folder holding cifar-10-batches-bin/")
    parser.add_argument("--dataset", default="cifar10", choices=sorted(DATASETS))
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget-seconds", type=float, default=480.0, help="wall-clock budget (default 8 minutes)")
    parser.add_argument("--target", type=float, default=0.91, help="test accuracy to reach (default 0.91)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=0.4, help="peak learning rate, after the warm-up")
    parser.add_argument("--warmup-epochs", type=int, default=2)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--max-epochs", type=int, default=200, help="never plan more epochs than this")
    parser.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--test-limit", type=int, default=None, help="use only the first N test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the rows and the curves into this folder")
    parser.add_argument("--dry-run", action="store_true", help="check settings and data, print the plan, train nothing")
    args = parser.parse_args(argv)
    positive = ["budget_seconds", "batch_size", "lr", "warmup_epochs", "max_epochs"]
    for name in positive + [n for n in ("train_limit", "test_limit") if getattr(args, n) is not None]:
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 < args.target <= 1:
        parser.error(f"--target is an accuracy between 0 and 1, got {args.target}")
    if not 0 <= args.label_smoothing < 1 or args.weight_decay < 0 or not 0 <= args.momentum < 1:
        parser.error("--label-smoothing and --momentum must lie in [0, 1), --weight-decay must be >= 0")
    if args.warmup_epochs >= args.max_epochs:
        parser.error(f"--warmup-epochs ({args.warmup_epochs}) must be fewer than --max-epochs ({args.max_epochs})")
    return args


def lr_at(epoch, args, planned_epochs):
    """Linear warm-up to the peak over ``warmup_epochs``, then linear decay ending after ``planned_epochs``.

    Warm-up epoch e (0-based) uses peak * (e + 1) / W; decay epoch e uses
    peak * (planned - e) / (planned - W), so the last planned epoch runs at
    peak / (planned - W) and the next one would run at zero.
    """
    warmup = args.warmup_epochs
    if epoch < warmup:
        return args.lr * (epoch + 1) / warmup
    return args.lr * max(planned_epochs - epoch, 0) / max(planned_epochs - warmup, 1)


def subset(dataset, limit):
    if limit is None or limit >= len(dataset):
        return dataset
    return data.ArrayDataset(dataset.images[:limit], dataset.labels[:limit], dataset.classes)


def print_row(row):
    print(f"{row['epoch']:5d} {row['lr']:7.4f} {row['train_loss']:10.4f} {row['train_acc']:9.4f} "
          f"{row['test_acc']:8.4f} {row['images_per_s']:9.0f} {row['elapsed']:9.1f}", flush=True)


def train_until_budget(args, train_loader, test_loader, num_classes, in_channels, device):
    """The timed run; returns the rows (one per epoch)."""
    start = time.perf_counter()
    minires.manual_seed(args.seed)
    model = build_model(args.model, in_channels, num_classes).to(device)
    optimizer = optim.SGD(model.parameters(), lr=lr_at(0, args, args.max_epochs), momentum=args.momentum,
                          weight_decay=args.weight_decay, nesterov=args.momentum > 0)
    planned, rows = args.max_epochs, []
    print(f"{'epoch':>5} {'lr':>7} {'train loss':>10} {'train acc':>9} {'test acc':>8} {'images/s':>9} {'elapsed s':>9}")
    for epoch in range(args.max_epochs):
        if epoch >= planned:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch, args, planned)
        epoch_start = time.perf_counter()
        train_loader.set_epoch(epoch)
        train_loss, train_acc = train_epoch(model, train_loader, optimizer, device, args.label_smoothing)
        train_seconds = time.perf_counter() - epoch_start
        test_loss, test_acc, _ = evaluate(model, test_loader, num_classes, device)
        now = time.perf_counter()
        rows.append({"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": train_loss,
                     "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc, "train_seconds": round(train_seconds, 3),
                     "images_per_s": len(train_loader.dataset) / train_seconds,
                     "epoch_seconds": round(now - epoch_start, 3), "elapsed": round(now - start, 3)})
        print_row(rows[-1])
        left, epoch_seconds = args.budget_seconds - (now - start), now - epoch_start
        if epoch + 1 == args.warmup_epochs:  # plan the rest of the run from the last warm-up epoch's time
            planned = min(args.max_epochs, epoch + 1 + max(0, int(left // (epoch_seconds * MARGIN))))
            print(f"plan: {planned} epochs in all ({planned - epoch - 1} more, lr decaying linearly to 0), "
                  f"{epoch_seconds:.1f} s per epoch, {left:.0f} s left", flush=True)
        elif left < epoch_seconds and epoch + 1 < planned:
            print(f"stopping: {left:.0f} s left, an epoch takes {epoch_seconds:.0f} s", flush=True)
            break
    return rows


def summarize(rows, target):
    best = max(rows, key=lambda row: row["test_acc"])
    reached = next((row for row in rows if row["test_acc"] >= target), None)
    steady = sorted(row["images_per_s"] for row in rows[1:]) or [rows[0]["images_per_s"]]
    median_rate = steady[len(steady) // 2]
    if reached:
        verdict = (f"reached {target:.2%} test accuracy at epoch {reached['epoch']}, "
                   f"{reached['elapsed']:.0f} s after the start")
    else:
        verdict = f"did not reach {target:.2%}: best {best['test_acc']:.2%} at epoch {best['epoch']}"
    return (f"{verdict}; final {rows[-1]['test_acc']:.2%} after {rows[-1]['epoch']} epochs and "
            f"{rows[-1]['elapsed']:.0f} s; training throughput {median_rate:.0f} images/s (median, after epoch 1)")


def main(argv=None):
    args = parse_args(argv)
    config = {**DEFAULTS, "dataset": args.dataset, "data_root": args.data_root, "batch_size": args.batch_size,
              "seed": args.seed, "augment": DATASETS[args.dataset][1], "device": args.device}
    if args.dry_run:
        print(f"dry run: {args.model} on {args.dataset} (data root {args.data_root}), device {args.device}, "
              f"batch {args.batch_size}, peak lr {args.lr} after {args.warmup_epochs} warm-up epochs, then linear "
              f"decay fitted to a {args.budget_seconds:.0f} s budget; target {args.target:.2%}")
        return 0
    try:
        device = check_device(args.device)
        loaded = time.perf_counter()
        train_set, test_set = load_datasets(args.dataset, args.data_root)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    datasets = subset(train_set, args.train_limit), subset(test_set, args.test_limit)
    train_loader, _, test_loader, train_set = make_loaders(config, datasets)
    print(f"{args.model} on {args.dataset}: {len(train_set)} training / {len(datasets[1])} test images, "
          f"device {device}, data loaded in {time.perf_counter() - loaded:.1f} s", flush=True)
    rows = train_until_budget(args, train_loader, test_loader, len(train_set.classes), train_set.images.shape[1],
                              device)
    print(summarize(rows, args.target))
    if args.out:
        from minires.training.plots import plot_learning_curves

        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "time_to_accuracy.jsonl"), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
        plot_learning_curves(rows, os.path.join(args.out, "time_to_accuracy.png"), f"{args.model} on {args.dataset}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
