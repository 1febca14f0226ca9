"""``python -m minires train``: train a model, log metrics, checkpoint every epoch.

The recipe defaults follow He et al. 2015 for CIFAR-10: SGD with learning rate
0.1, momentum 0.9, weight decay 1e-4, batch 128, the learning rate divided by 10
at 50% and 75% of training, 4-pixel pad-and-crop plus horizontal flips.
"""
import json
import os
import sys

from minires.training.dataset_registry import DATASETS
from minires.training.device import check_device
from minires.training.training_run import (
    build_run, config_to_resume, remaining_epochs, restore_run, save_epoch, train_and_evaluate,
)

DEFAULTS = {
    "model": "mnist_resnet", "dataset": "mnist_sample", "epochs": None, "batch_size": 128, "lr": 0.1,
    "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False, "milestones": [0.5, 0.75], "gamma": 0.1,
    "warmup_epochs": 0, "label_smoothing": 0.0, "augment": None, "val_fraction": 0.0, "patience": None,
    "seed": 0, "data_root": None, "download": False, "device": "cpu", "out": None,
}


def add_train_arguments(parser):
    d = DEFAULTS
    parser.add_argument("--model", default=d["model"], help="model name (default %(default)s)")
    parser.add_argument("--dataset", default=d["dataset"], choices=sorted(DATASETS), help="default %(default)s (bundled, offline)")
    parser.add_argument("--epochs", type=int, default=None, help="default: 182 for cifar10 (the paper's 64k iterations), less for the MNISTs")
    parser.add_argument("--batch-size", type=int, default=d["batch_size"])
    parser.add_argument("--lr", type=float, default=d["lr"])
    parser.add_argument("--momentum", type=float, default=d["momentum"])
    parser.add_argument("--weight-decay", type=float, default=d["weight_decay"])
    parser.add_argument("--nesterov", action="store_true")
    parser.add_argument("--milestones", type=float, nargs="*", default=d["milestones"],
                        help="fractions of training at which the lr is multiplied by --gamma (default 0.5 0.75)")
    parser.add_argument("--gamma", type=float, default=d["gamma"])
    parser.add_argument("--warmup-epochs", type=int, default=d["warmup_epochs"], help="linear lr warm-up (the paper uses it for ResNet-110)")
    parser.add_argument("--label-smoothing", type=float, default=d["label_smoothing"])
    parser.add_argument("--augment", choices=["on", "off"], default=None, help="pad-crop + flip (default: on for cifar10)")
    parser.add_argument("--val-fraction", type=float, default=d["val_fraction"], help="hold out this fraction of the training set (default 0.1 with --patience)")
    parser.add_argument("--patience", type=int, default=None, help="stop when validation accuracy has not improved for this many epochs")
    parser.add_argument("--seed", type=int, default=d["seed"])
    parser.add_argument("--data-root", default=None, help="data folder (default $MINIRES_DATA or ~/.cache/minires)")
    parser.add_argument("--download", action="store_true", help="fetch the data set if it is missing")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", default=None, help="output folder (default runs/MODEL-DATASET)")
    parser.add_argument("--resume", default=None, metavar="CHECKPOINT", help="continue a run exactly where its checkpoint ended")
    parser.add_argument("--stop-after", type=int, default=None, metavar="N", help="train at most N epochs in this invocation (resume later)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def config_from_args(args):
    """The run's settings (the keys of ``DEFAULTS``) from the parsed flags, with the data set's
    defaults for ``epochs`` and ``augment`` filled in."""
    config = {key: getattr(args, key) for key in DEFAULTS}
    augment_default, epochs_default = DATASETS[config["dataset"]][1:]
    config["epochs"] = config["epochs"] if config["epochs"] is not None else epochs_default
    config["augment"] = augment_default if args.augment is None else args.augment == "on"
    if config["patience"] is not None and config["val_fraction"] == 0:
        config["val_fraction"] = 0.1
    config["out"] = config["out"] or os.path.join("runs", f"{config['model']}-{config['dataset']}")
    return config


def train(config, resume=None, stop_after=None, progress=False, log=print, expect=None):
    """Run (or, from the checkpoint ``resume``, continue) the training run described by ``config``;
    returns (the metric history, the model). The steps are in ``training_run.py``."""
    config = {**config, "device": check_device(config["device"])}
    state = None
    if resume is not None:
        config, state = config_to_resume(config, resume, expect)
    run = build_run(config)
    if state is not None:
        restore_run(run, state, resume)
    for epoch in remaining_epochs(run, stop_after, log):
        row = train_and_evaluate(run, epoch, progress)
        log(json.dumps(row))
        save_epoch(run, row)
    return run.history, run.model


def run(args, argv=()):
    config = config_from_args(args)
    # With --resume, a --model/--dataset given on the command line must match the checkpoint.
    expect = {key: config[key] for key in ("model", "dataset") if f"--{key}" in argv}
    if args.resume and args.out is None:  # keep writing next to the checkpoint
        config["out"] = os.path.dirname(os.path.abspath(args.resume))
    progress = not args.quiet and sys.stderr.isatty()
    history, _ = train(config, resume=args.resume, stop_after=args.stop_after, progress=progress, expect=expect)
    if history:
        last = history[-1]
        print(f"done: epoch {last['epoch']}, test accuracy {last['test_acc']:.4f}; outputs in {config['out']}", file=sys.stderr)
    return 0
