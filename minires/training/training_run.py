"""The steps of ``python -m minires train``, each a function of its own:

    config, state = config_to_resume(config, path, given)    # with --resume: the saved run's config
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
import math
import os
import time
from dataclasses import dataclass, field

import minires
from minires import data, distributed, nn, optim
from minires.backends import get_array_module
from minires import prune
from minires.models import build_model
from minires.nn import Module
from minires.random import get_rng_state, set_rng_state
from minires.training.augmentation import make_transforms
from minires.serialization import load_checkpoint, save_checkpoint
from minires.training import data_parallel
from minires.training.dataset_registry import prepare_datasets
from minires.training.fine_tuning import freeze, load_initial_weights, parameter_groups, read_weights
from minires.training.loop import NonFiniteLoss, evaluate, train_epoch
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


class TrainingDiverged(RuntimeError):
    """Training stopped because the loss became NaN or infinite."""


# ---- parse: which run, with which settings -------------------------------------------------

# What a resumed run may change. The rest (model, data set, seed, validation split) define the
# run: changing them would make a different run, so --resume refuses them.
FIXED_ON_RESUME = ("model", "dataset", "seed", "val_fraction", "classes", "train_fraction", "init_from", "freeze",
                   "reset_head", "lr_backbone", "sync_bn")
# Changing these rebuilds the optimizer's settings and the lr schedule (see restore_run).
SCHEDULE_KEYS = ("epochs", "lr", "momentum", "weight_decay", "nesterov", "milestones", "gamma", "warmup_epochs")
CHECKPOINT_KEYS = ("config", "model", "optimizer", "scheduler", "epoch", "rng", "history", "best_val", "best_epoch")


def config_to_resume(config, path, given=None):
    """(the run's config, the checkpoint) for ``--resume path``: the saved config, with the device
    and output folder of ``config`` and the settings in ``given`` (those typed on the command
    line) applied on top. Each change is recorded in the config's "resumed" list. A change of a
    setting in ``FIXED_ON_RESUME`` is refused with a ValueError."""
    state = load_checkpoint(path)
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if "config" in missing:
        raise ValueError(f"{path} is not a checkpoint written by 'minires train' (it has no config)")
    saved = json.loads(state["config"])
    changed = {key: [saved.get(key), value] for key, value in (given or {}).items() if value != saved.get(key)}
    for key in FIXED_ON_RESUME:
        if key in changed:
            raise ValueError(f"checkpoint {path} is from a {saved['model']} run on {saved['dataset']} "
                             f"(--{key.replace('_', '-')} {saved.get(key)}), so it cannot continue with "
                             f"--{key.replace('_', '-')} {changed[key][1]}; start a new run instead")
    data_parallel.check_world_size(saved, config, path)
    if missing:
        raise ValueError(f"checkpoint {path} cannot be resumed: it lacks {', '.join(missing)} "
                         "(best.npz keeps only the model; resume from checkpoint.npz)")
    if "patience" in changed and not saved.get("val_fraction"):
        raise ValueError(f"--patience needs a validation split, and the run of {path} has none "
                         "(--val-fraction is fixed when a run starts)")
    resumed = {**saved, **{key: new for key, (_, new) in changed.items()},
               "device": config["device"], "out": config["out"]}
    if changed:
        resumed["resumed"] = saved.get("resumed", []) + [{"at_epoch": int(state["epoch"]), "changed": changed}]
    return resumed, state


# ---- build ---------------------------------------------------------------------------------------

def make_loaders(config, datasets=None):
    """Train, validation (or None) and test loaders for ``config``, and the training set.

    ``datasets`` is an already loaded ``(train, test)`` pair; by default the config's data set is loaded.
    """
    train_set, val_set, test_set = prepare_datasets(config, datasets)
    train_transform, eval_transform = make_transforms(train_set, config["augment"])
    loader = lambda ds, **kw: data.DataLoader(ds, batch_size=config["batch_size"], seed=config["seed"], **kw)  # noqa: E731
    ranks = config.get("world_size", 1)

    def shard(ds, **kw):  # several ranks: each its shard. For training the same number of batches everywhere,
        # for evaluation each image once (data_parallel.evaluate_on_shards combines the ranks' numbers)
        return distributed.DistributedSampler(ds, ranks, distributed.rank(), seed=config["seed"], **kw) \
            if ranks > 1 else None

    train_loader = loader(train_set, shuffle=ranks == 1, sampler=shard(train_set), transform=train_transform)
    val_loader = loader(val_set, sampler=shard(val_set, shuffle=False, pad=False), transform=eval_transform) \
        if val_set is not None else None
    test_loader = loader(test_set, sampler=shard(test_set, shuffle=False, pad=False), transform=eval_transform)
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


def build_run(config, model_state=None):
    """A fresh run: seeded, with its loaders, the model on ``config["device"]``, SGD and the schedule.

    ``model_state``: the state dict a resumed run will load (``restore_run``); the model is given
    its structure first (a pruned model's masks and narrower layers). Otherwise, with
    ``config["init_from"]``, the model starts from those weights (``fine_tuning.py``).
    """
    minires.manual_seed(config["seed"])
    train_loader, val_loader, test_loader, train_set = make_loaders(config)
    num_classes = len(train_set.classes)
    model = build_model(config["model"], train_set.images.shape[1], num_classes)
    if model_state is not None:
        prune.prepare_to_load(model, model_state)
    elif config["init_from"]:
        load_initial_weights(model, read_weights(config["init_from"]), config["reset_head"],
                             source=f"the weights of --init-from {config['init_from']}")
    if config["bn_l1"] > 0 and not prune.internal_channel_groups(model):
        raise ValueError(f"--bn-l1 penalises the batch norms inside residual branches, and {config['model']} has "
                         "none that network slimming can prune (see minires/prune/slimming.py)")
    freeze(model, config["freeze"])
    if config.get("sync_bn"):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(config["device"])
    optimizer = optim.SGD(parameter_groups(model, config["lr"], config["lr_backbone"]), lr=config["lr"],
                          momentum=config["momentum"], weight_decay=config["weight_decay"], nesterov=config["nesterov"])
    return TrainingRun(config, model, optimizer, make_scheduler(optimizer, config),
                       train_loader, val_loader, test_loader, num_classes)


# ---- restore --------------------------------------------------------------------------------------

def run_state(run):
    """What a checkpoint keeps of a run (``checkpoint.npz``). Every rank calls it: in a run on several
    ranks it gathers each rank's random state."""
    return {
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "epoch": len(run.history), "rng": get_rng_state(),
        "history": run.history, "best_val": run.best_val, "best_epoch": run.best_epoch,
        "config": json.dumps(run.config), "model_name": run.config["model"],
        **({"rank_rngs": data_parallel.rank_rng_states()} if distributed.world_size() > 1 else {}),
    }


def restore_run(run, state, path="the checkpoint"):
    """Put a checkpoint's model, optimizer, schedule, random state and history into ``run``.

    When the last resume changed a setting of the optimizer or the schedule (``SCHEDULE_KEYS``,
    e.g. ``--epochs`` to extend a run), the momentum buffers are kept but the settings are the
    new ones, and the lr is where the new schedule puts it after the epochs already done.
    """
    try:
        run.model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path} does not fit model {run.config['model']}: {err.args[0]}") from None
    run.optimizer.load_state_dict(state["optimizer"])
    run.history, run.start_epoch = list(state["history"]), int(state["epoch"])
    run.best_val, run.best_epoch = float(state["best_val"]), int(state["best_epoch"])
    last_change = (run.config.get("resumed") or [{}])[-1]
    if last_change.get("at_epoch") == run.start_epoch and set(last_change["changed"]) & set(SCHEDULE_KEYS):
        config = run.config
        for group in run.optimizer.param_groups:
            lr = config["lr_backbone"] if group.get("name") == "backbone" else config["lr"]
            group.update(lr=lr, initial_lr=lr, momentum=config["momentum"],
                         weight_decay=config["weight_decay"], nesterov=config["nesterov"])
        run.scheduler = make_scheduler(run.optimizer, config)
        for _ in range(run.start_epoch):
            run.scheduler.step()
    else:
        run.scheduler.load_state_dict(state["scheduler"])
    if "rank_rngs" in state:
        data_parallel.restore_rank_rng(state)
    else:
        set_rng_state(state["rng"])


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
    several = distributed.world_size() > 1
    penalty, gammas = run.config["bn_l1"], None
    if penalty > 0:  # the gammas are found once per epoch, not on every step
        gammas = prune.slimmable_gammas(run.model)

    def before_step():  # after backward(), before the step: the gradients of all ranks, then the penalty
        if several:
            distributed.average_gradients(run.model)
        if gammas is not None:
            prune.add_l1_subgradient_(gammas, penalty)

    try:
        train_loss, train_acc = train_epoch(run.model, run.train_loader, run.optimizer, device,
                                            run.config["label_smoothing"], progress,
                                            f"epoch {epoch + 1}/{run.config['epochs']}", before_step=before_step)
    except NonFiniteLoss as err:
        raise diverged(run, epoch, lr, f"{err} of epoch {epoch + 1}") from None
    run.scheduler.step()
    measure = evaluate
    if several:  # the numbers of all ranks' images; the batch-norm statistics of rank 0 (as saved)
        seen = len(run.train_loader.sampler)
        train_loss, train_acc = data_parallel.combine_means([(train_loss, seen), (train_acc, seen)])
        distributed.broadcast_buffers(run.model)
        measure = data_parallel.evaluate_on_shards
    row = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc}
    if run.val_loader is not None:
        val_loss, val_acc, _ = measure(run.model, run.val_loader, run.num_classes, device)
        row["val_loss"], row["val_acc"] = rounded(val_loss), rounded(val_acc)
        if row["val_acc"] > run.best_val:
            run.best_val, run.best_epoch = row["val_acc"], epoch + 1
    row["test_loss"], row["test_acc"], _ = measure(run.model, run.test_loader, run.num_classes, device)
    row.update(lr=lr, seconds=time.perf_counter() - start)
    row = {key: rounded(value) for key, value in row.items()}
    bad = [key.replace("_", " ") for key in ("train_loss", "val_loss", "test_loss") if key in row and row[key] is None]
    bad += ["weights"] if not all(bool(get_array_module(p.data).isfinite(p.data).all()) for p in run.model.parameters()) else []
    if bad:
        raise diverged(run, epoch, lr, f"after epoch {epoch + 1} the {' and '.join(bad)} became NaN or infinite")
    run.history.append(row)
    return row


def diverged(run, epoch, lr, what):
    """The error that stops a diverging run, saying where, what was kept, and what to try."""
    kept = (f"the checkpoint of epoch {epoch} in {run.config['out']} is untouched" if epoch > 0
            else "no checkpoint was written")
    return TrainingDiverged(f"{what} (lr {lr:g}); training stopped and {kept}. Try a smaller --lr "
                            "(or --warmup-epochs)")


def rounded(value):
    """A metric as it is logged: 6 significant digits (lr 0.01, not 0.010000000000000002), and
    None where it is not finite, so that every line of metrics.jsonl is strict JSON."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    return value


# ---- save -------------------------------------------------------------------------------------------

def save_epoch(run, row):
    """Write ``OUT/checkpoint.npz`` (and ``OUT/best.npz`` when validation accuracy is the best so
    far), append ``row`` to ``OUT/metrics.jsonl`` and redraw ``OUT/curves.png``; on rank 0 only."""
    out, config = run.config["out"], run.config
    state = run_state(run)  # on every rank (it gathers their random states), written by rank 0 only
    if not distributed.is_main():
        return
    os.makedirs(out, exist_ok=True)
    save_checkpoint(os.path.join(out, "checkpoint.npz"), state)
    if row.get("val_acc") == run.best_val:
        save_checkpoint(os.path.join(out, "best.npz"), {
            "model": run.model.state_dict(), "epoch": row["epoch"], "config": json.dumps(config),
            "model_name": config["model"]})
    with open(os.path.join(out, "metrics.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(row, allow_nan=False) + "\n")
    plot_learning_curves(run.history, os.path.join(out, "curves.png"), f"{config['model']} on {config['dataset']}")
