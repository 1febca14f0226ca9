"""The steps of ``python -m minires train``, each a function of its own:

    config, state = config_to_resume(config, path, expect)   # with --resume: the saved run's config
    run = build_run(config)                                  # data loaders, model, optimizer, schedule
    restore_run(run, state, path)                            # with --resume: continue exactly there
    for epoch in remaining_epochs(run, stop_after, log):     # --epochs, --stop-after, --patience
        row = train_and_evaluate(run, epoch, progress)       # one epoch, then validation and test
        save_epoch(run, row)                                 # checkpoint.npz, best.npz, metrics, curves

A ``TrainingRun`` holds everything that changes from epoch to epoch; ``run_state``
is what a checkpoint keeps of it, so a resumed run gives, bit for bit, the model
an uninterrupted one would have.
"""
import json
import os
import time
from dataclasses import dataclass, field

import minires
from minires import data, optim
from minires.models import build_model
from minires.nn import Module
from minires.random import get_rng_state, set_rng_state
from minires.training.augmentation import make_transforms
from minires.serialization import load_checkpoint, save_checkpoint
from minires.training.dataset_registry import load_datasets, split_off_validation
from minires.training.loop import evaluate, train_epoch
from minires.training.plots import plot_learning_curves


@dataclass
class TrainingRun:
    config: dict  # the settings (the keys of train_command.DEFAULTS)
    model: Module
    optimizer: optim.Optimizer
    scheduler: optim.LRScheduler  # stepped once per epoch
    train_loader: data.DataLoader
    val_loader: data.DataLoader  # None without a validation split
    test_loader: data.DataLoader
    num_classes: int
    history: list = field(default_factory=list)  # one row of metrics per finished epoch
    start_epoch: int = 0  # epochs finished before this invocation
    best_val: float = -1.0  # the best validation accuracy so far, and its epoch
    best_epoch: int = 0


# ---- parse: which run, with which settings -------------------------------------------------

def config_to_resume(config, path, expect=None):
    """(the saved run's config, the checkpoint) for ``--resume path``; the device and the output
    folder stay those of ``config``. ``expect`` ({"model": ..., "dataset": ...}, from the command
    line) must match the checkpoint's, else ValueError."""
    state = load_checkpoint(path)
    if "config" not in state:
        raise ValueError(f"{path} is not a checkpoint written by 'minires train'")
    saved = json.loads(state["config"])
    for key, value in (expect or {}).items():
        if value != saved[key]:
            raise ValueError(f"checkpoint {path} is from a {saved['model']} run on {saved['dataset']}, "
                             f"so it cannot continue with --{key} {value}")
    return {**saved, "device": config["device"], "out": config["out"]}, state


# ---- build ---------------------------------------------------------------------------------------

def make_loaders(config, datasets=None):
    """Train, validation (or None) and test loaders for ``config``, and the training set.

    ``datasets`` is an already loaded ``(train, test)`` pair; by default the config's data set is loaded.
    """
    train_set, test_set = datasets or load_datasets(config["dataset"], config["data_root"], config["download"])
    val_set = None
    if config["val_fraction"] > 0:
        train_set, val_set = split_off_validation(train_set, config["val_fraction"], config["seed"])
    train_transform, eval_transform = make_transforms(train_set, config["augment"])
    loader = lambda ds, **kw: data.DataLoader(ds, batch_size=config["batch_size"], seed=config["seed"], **kw)  # noqa: E731
    train_loader = loader(train_set, shuffle=True, transform=train_transform)
    val_loader = loader(val_set, transform=eval_transform) if val_set is not None else None
    test_loader = loader(test_set, transform=eval_transform)
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


def build_run(config):
    """A fresh run: seeded, with its loaders, the model on ``config["device"]``, SGD and the schedule."""
    minires.manual_seed(config["seed"])
    train_loader, val_loader, test_loader, train_set = make_loaders(config)
    num_classes = len(train_set.classes)
    model = build_model(config["model"], train_set.images.shape[1], num_classes).to(config["device"])
    optimizer = optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"],
                          weight_decay=config["weight_decay"], nesterov=config["nesterov"])
    return TrainingRun(config, model, optimizer, make_scheduler(optimizer, config),
                       train_loader, val_loader, test_loader, num_classes)


# ---- restore --------------------------------------------------------------------------------------

def run_state(run):
    """What a checkpoint keeps of a run (``checkpoint.npz``)."""
    return {
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "epoch": len(run.history), "rng": get_rng_state(),
        "history": run.history, "best_val": run.best_val, "best_epoch": run.best_epoch,
        "config": json.dumps(run.config), "model_name": run.config["model"],
    }


def restore_run(run, state, path="the checkpoint"):
    """Put a checkpoint's model, optimizer, schedule, random state and history into ``run``."""
    try:
        run.model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path} does not fit model {run.config['model']}: {err.args[0]}") from None
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    run.history, run.start_epoch = list(state["history"]), int(state["epoch"])
    run.best_val, run.best_epoch = float(state["best_val"]), int(state["best_epoch"])


# ---- the epochs -------------------------------------------------------------------------------------

def remaining_epochs(run, stop_after=None, log=print):
    """The epochs (0-based) this invocation trains: from where the run stands up to
    ``config["epochs"]``, at most ``stop_after`` of them, and none once validation accuracy
    has not improved for ``config["patience"]`` epochs (which is logged as a JSON line).
    Checked lazily, so the caller updates ``run`` between epochs."""
    patience = run.config["patience"]
    for count, epoch in enumerate(range(run.start_epoch, run.config["epochs"])):
        if stop_after is not None and count >= stop_after:
            return
        if patience is not None and epoch - run.best_epoch >= patience:
            # ``epoch`` epochs are done; the last (epoch - best_epoch) of them did not improve.
            log(json.dumps({"early_stop": True, "after_epoch": epoch, "best_epoch": run.best_epoch,
                            "best_val_acc": run.best_val}))
            return
        yield epoch


def train_and_evaluate(run, epoch, progress=False):
    """Train epoch ``epoch``, step the schedule, then measure; returns the epoch's row of metrics
    (also appended to ``run.history``) and updates the best validation accuracy."""
    start = time.perf_counter()
    run.train_loader.set_epoch(epoch)
    lr = run.optimizer.param_groups[0]["lr"]
    device = run.config["device"]
    train_loss, train_acc = train_epoch(run.model, run.train_loader, run.optimizer, device,
                                        run.config["label_smoothing"], progress,
                                        f"epoch {epoch + 1}/{run.config['epochs']}")
    run.scheduler.step()
    row = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc}
    if run.val_loader is not None:
        row["val_loss"], row["val_acc"], _ = evaluate(run.model, run.val_loader, run.num_classes, device)
        if row["val_acc"] > run.best_val:
            run.best_val, run.best_epoch = row["val_acc"], epoch + 1
    row["test_loss"], row["test_acc"], _ = evaluate(run.model, run.test_loader, run.num_classes, device)
    row.update(lr=lr, seconds=round(time.perf_counter() - start, 3))
    run.history.append(row)
    return row


# ---- save -------------------------------------------------------------------------------------------

def save_epoch(run, row):
    """Write ``OUT/checkpoint.npz`` (and ``OUT/best.npz`` when validation accuracy is the best so
    far), append ``row`` to ``OUT/metrics.jsonl`` and redraw ``OUT/curves.png``."""
    out, config = run.config["out"], run.config
    os.makedirs(out, exist_ok=True)
    save_checkpoint(os.path.join(out, "checkpoint.npz"), run_state(run))
    if row.get("val_acc") == run.best_val:
        save_checkpoint(os.path.join(out, "best.npz"), {
            "model": run.model.state_dict(), "epoch": row["epoch"], "config": json.dumps(config),
            "model_name": config["model"]})
    with open(os.path.join(out, "metrics.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    plot_learning_curves(run.history, os.path.join(out, "curves.png"), f"{config['model']} on {config['dataset']}")
