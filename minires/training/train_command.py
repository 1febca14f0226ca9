"""``python -m minires train``: train a model, log metrics, checkpoint every epoch.

The recipe defaults follow He et al. 2015 for CIFAR-10: SGD with learning rate
0.1, momentum 0.9, weight decay 1e-4, batch 128, the learning rate divided by 10
at 50% and 75% of training, 4-pixel pad-and-crop plus horizontal flips.
"""
import json
import os
import sys
import time

import minires
from minires import data, optim
from minires.backends import cuda_status
from minires.models import build_model
from minires.random import get_rng_state, set_rng_state
from minires.training.checkpoint import load_checkpoint, save_checkpoint
from minires.training.datasets import DATASETS, load_datasets, split_off_validation
from minires.training.loop import evaluate, train_epoch
from minires.training.plots import plot_learning_curves

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
    config = {key: getattr(args, key) for key in DEFAULTS}
    augment_default, epochs_default = DATASETS[config["dataset"]][1:]
    config["epochs"] = config["epochs"] if config["epochs"] is not None else epochs_default
    config["augment"] = augment_default if args.augment is None else args.augment == "on"
    if config["patience"] is not None and config["val_fraction"] == 0:
        config["val_fraction"] = 0.1
    config["out"] = config["out"] or os.path.join("runs", f"{config['model']}-{config['dataset']}")
    return config


def check_device(device):
    device = minires.backends.normalize_device(device)
    if device != "cpu":
        usable, reason = cuda_status()
        if not usable:
            raise RuntimeError(f"--device {device} is not usable: {reason}")
    return device


def make_loaders(config, datasets=None):
    """Train, validation (or None) and test loaders for ``config``, and the training set.

    ``datasets`` is an already loaded ``(train, test)`` pair; by default the config's data set is loaded.
    """
    train_set, test_set = datasets or load_datasets(config["dataset"], config["data_root"], config["download"])
    val_set = None
    if config["val_fraction"] > 0:
        train_set, val_set = split_off_validation(train_set, config["val_fraction"], config["seed"])
    mean, std = data.mean_std(train_set)
    normalize = data.Normalize(mean, std)
    train_transform = normalize
    if config["augment"]:
        size = train_set.images.shape[-1]
        train_transform = data.Compose([data.RandomCrop(size, padding=4), data.RandomHorizontalFlip(), normalize])
    loader = lambda ds, **kw: data.DataLoader(ds, batch_size=config["batch_size"], seed=config["seed"], **kw)  # noqa: E731
    train_loader = loader(train_set, shuffle=True, transform=train_transform)
    val_loader = loader(val_set, transform=normalize) if val_set is not None else None
    test_loader = loader(test_set, transform=normalize)
    return train_loader, val_loader, test_loader, train_set


def make_scheduler(optimizer, config):
    """Step decay at fractions of training, after an optional linear warm-up (stepped once per epoch)."""
    warmup = config["warmup_epochs"]
    # The decay schedule starts counting when the warm-up ends.
    milestones = sorted({max(1, int(round(f * config["epochs"])) - warmup) for f in config["milestones"]})
    scheduler = optim.MultiStepLR(optimizer, milestones=milestones, gamma=config["gamma"])
    if warmup > 0:
        scheduler = optim.LinearWarmup(optimizer, warmup_steps=warmup, after=scheduler)
    return scheduler


def train(config, resume=None, stop_after=None, progress=False, log=print, expect=None):
    """Run (or continue) a training run described by ``config``; returns the metric history."""
    device = check_device(config["device"])
    state = None
    if resume is not None:
        state = load_checkpoint(resume)
        saved = json.loads(state["config"])
        for key, value in (expect or {}).items():
            if value != saved[key]:
                raise ValueError(f"checkpoint {resume} is from a {saved['model']} run on {saved['dataset']}, "
                                 f"so it cannot continue with --{key} {value}")
        config = {**saved, "device": device, "out": config["out"]}
    minires.manual_seed(config["seed"])
    train_loader, val_loader, test_loader, train_set = make_loaders(config)
    in_channels, num_classes = train_set.images.shape[1], len(train_set.classes)
    model = build_model(config["model"], in_channels, num_classes).to(device)
    optimizer = optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"],
                          weight_decay=config["weight_decay"], nesterov=config["nesterov"])
    scheduler = make_scheduler(optimizer, config)
    history, start_epoch, best_val, best_epoch = [], 0, -1.0, 0
    if state is not None:
        try:
            model.load_state_dict(state["model"])
        except KeyError as err:
            raise ValueError(f"checkpoint {resume} does not fit model {config['model']}: {err.args[0]}") from None
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        history, start_epoch = state["history"], int(state["epoch"])
        best_val, best_epoch = float(state["best_val"]), int(state["best_epoch"])

    os.makedirs(config["out"], exist_ok=True)
    checkpoint_path = os.path.join(config["out"], "checkpoint.npz")
    epochs_run = 0
    for epoch in range(start_epoch, config["epochs"]):
        if stop_after is not None and epochs_run >= stop_after:
            break
        if config["patience"] is not None and epoch - best_epoch >= config["patience"]:
            # ``epoch`` epochs are done; the last (epoch - best_epoch) of them did not improve.
            log(json.dumps({"early_stop": True, "after_epoch": epoch, "best_epoch": best_epoch, "best_val_acc": best_val}))
            break
        start = time.perf_counter()
        train_loader.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_acc = train_epoch(model, train_loader, optimizer, device, config["label_smoothing"],
                                            progress, f"epoch {epoch + 1}/{config['epochs']}")
        scheduler.step()
        row = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc}
        if val_loader is not None:
            row["val_loss"], row["val_acc"], _ = evaluate(model, val_loader, num_classes, device)
            if row["val_acc"] > best_val:
                best_val, best_epoch = row["val_acc"], epoch + 1
        row["test_loss"], row["test_acc"], _ = evaluate(model, test_loader, num_classes, device)
        row.update(lr=lr, seconds=round(time.perf_counter() - start, 3))
        history.append(row)
        log(json.dumps(row))
        save_checkpoint(checkpoint_path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "epoch": epoch + 1, "rng": get_rng_state(), "history": history, "best_val": best_val,
            "best_epoch": best_epoch, "config": json.dumps(config), "model_name": config["model"],
        })
        if row.get("val_acc") == best_val:
            save_checkpoint(os.path.join(config["out"], "best.npz"), {
                "model": model.state_dict(), "epoch": epoch + 1, "config": json.dumps(config), "model_name": config["model"]})
        with open(os.path.join(config["out"], "metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        plot_learning_curves(history, os.path.join(config["out"], "curves.png"), f"{config['model']} on {config['dataset']}")
        epochs_run += 1
    return history, model


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
