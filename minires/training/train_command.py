"""``python -m minires train``: train a model, log metrics, checkpoint every epoch.

The recipe defaults follow He et al. 2015 for CIFAR-10: SGD with learning rate
0.1, momentum 0.9, weight decay 1e-4, batch 128, the learning rate divided by 10
at 50% and 75% of training, 4-pixel pad-and-crop plus horizontal flips.

Before any data is read, every flag is checked (``check_flags``) and the output
folder is chosen and tested for writing (``choose_out``): a run never writes into
a folder that holds another run's files, unless asked to with ``--overwrite``.
"""
import json
import math
import os
import sys

import numpy

from minires import data, distributed
from minires.backends.cpu_memory import keep_freed_memory
from minires.models import REGISTRY
from minires.serialization import load_checkpoint
from minires.training import data_parallel
from minires.training.dataset_registry import DATASETS
from minires.training.device import check_device
from minires.training.training_run import (
    TrainingDiverged, build_run, config_to_resume, remaining_epochs, restore_run, save_epoch, train_and_evaluate,
)

DEFAULTS = {
    "model": "mnist_resnet", "dataset": "mnist_sample", "epochs": None, "batch_size": 128, "lr": 0.1,
    "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False, "milestones": [0.5, 0.75], "gamma": 0.1,
    "warmup_epochs": 0, "label_smoothing": 0.0, "augment": None, "val_fraction": 0.0, "patience": None,
    "seed": 0, "data_root": None, "download": False, "device": "cpu", "out": None,
    # data filters (minires/data/subsets.py), starting from pretrained weights (fine_tuning.py), slimming
    "classes": None, "train_fraction": 1.0, "init_from": None, "freeze": [], "reset_head": False,
    "lr_backbone": None, "bn_l1": 0.0, "sync_bn": False,
}
# What a run folder may hold (checkpoint.npz, ...): --overwrite empties only folders like that.
RUN_FILES = {"checkpoint.npz", "best.npz", "metrics.jsonl", "curves.png"}


def add_train_arguments(parser):
    """Every flag defaults to None, meaning "not given": ``config_from_args`` fills in DEFAULTS,
    and --resume applies only the flags that were given."""
    d = DEFAULTS
    parser.add_argument("--model", help=f"model name (default {d['model']}): {', '.join(sorted(REGISTRY))}")
    parser.add_argument("--dataset", choices=sorted(DATASETS), help=f"default {d['dataset']} (bundled, offline)")
    parser.add_argument("--epochs", type=int, help="epochs in all (default: 182 for cifar10, the paper's 64k "
                        "iterations; 6 to 20 for the MNISTs); with --resume, a larger number extends the run")
    parser.add_argument("--batch-size", type=int, help=f"images per SGD step (default {d['batch_size']})")
    parser.add_argument("--lr", type=float, help=f"initial learning rate (default {d['lr']})")
    parser.add_argument("--momentum", type=float, help=f"SGD momentum, in [0, 1) (default {d['momentum']})")
    parser.add_argument("--weight-decay", type=float, help=f"L2 weight decay (default {d['weight_decay']})")
    parser.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum")
    parser.add_argument("--milestones", type=float, nargs="*",
                        help="fractions of training at which the lr is multiplied by --gamma (default 0.5 0.75)")
    parser.add_argument("--gamma", type=float, help=f"lr factor at each milestone, in (0, 1] (default {d['gamma']})")
    parser.add_argument("--warmup-epochs", type=int, help="linear lr warm-up epochs (default 0; the paper uses it "
                        "for ResNet-110)")
    parser.add_argument("--label-smoothing", type=float, help="in [0, 1] (default 0)")
    parser.add_argument("--augment", choices=["on", "off"], help="pad-crop + flip (default: on for cifar10)")
    parser.add_argument("--val-fraction", type=float, help="hold out this fraction of the training set, in [0, 1) "
                        "(default 0, or 0.1 with --patience)")
    parser.add_argument("--patience", type=int, help="stop when validation accuracy has not improved for this "
                        "many epochs")
    parser.add_argument("--classes", help="train and test on these classes only, relabelled 0..k-1: "
                        "'5-9' or '0,2,4' (default: all)")
    parser.add_argument("--train-fraction", type=float, help="train on this fraction of the training images, "
                        "the same from every class, in (0, 1] (default 1)")
    parser.add_argument("--init-from", metavar="WEIGHTS", help="start from these weights: a checkpoint.npz or "
                        "best.npz, a minires.save(state_dict) file, or a .safetensors file")
    parser.add_argument("--reset-head", action="store_true", default=None, help="with --init-from: a new "
                        "classifier (the last Linear layer) for this data set's classes")
    parser.add_argument("--freeze", help="comma-separated parts whose parameters are not trained, e.g. "
                        "'stem,blocks.0' or 'conv1,layer1' (their batch norms still update their statistics)")
    parser.add_argument("--lr-backbone", type=float, help="learning rate of every parameter but the classifier's "
                        "(default: --lr)")
    parser.add_argument("--bn-l1", type=float, metavar="LAMBDA", help="L1 penalty on the batch-norm scales "
                        "inside residual branches, to prepare network slimming (minires prune --method "
                        "slimming; Liu et al. use 1e-4 to 1e-5; default 0)")
    parser.add_argument("--distributed", action="store_true", help="one of several processes started by mpiexec "
                        "or srun (pip install \"minires[mpi]\"): each trains on its shard of the data, --batch-size "
                        "is per process, and the lr is scaled by the number of processes unless --lr is given")
    parser.add_argument("--sync-bn", action="store_true", default=None, help="with --distributed: batch norm "
                        "statistics over the images of every process (nn.SyncBatchNorm)")
    parser.add_argument("--seed", type=int, help=f"seed for weights, data order and augmentation (default {d['seed']})")
    parser.add_argument("--data-root", help="data folder (default $MINIRES_DATA or ~/.cache/minires); with "
                        "--resume, where the data is now")
    parser.add_argument("--download", action="store_true", default=None, help="fetch the data set if it is missing")
    parser.add_argument("--device", help="cpu (default) or cuda / cuda:N")
    parser.add_argument("--out", help="output folder (default runs/MODEL-DATASET, or runs/MODEL-DATASET-2, ... "
                        "when that holds a run); a folder holding a run is refused")
    parser.add_argument("--overwrite", action="store_true", help="empty the --out folder (a run folder) first")
    parser.add_argument("--resume", metavar="CHECKPOINT",
                        help="continue the run of a checkpoint.npz; flags given now override its settings")
    parser.add_argument("--stop-after", type=int, metavar="N", help="train at most N epochs in this invocation "
                        "(resume later)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def given_flags(args):
    """The settings typed on the command line: {key: value} for every flag that is not None."""
    given = {key: getattr(args, key) for key in DEFAULTS if getattr(args, key) is not None}
    if "augment" in given:
        given["augment"] = given["augment"] == "on"
    if "classes" in given:
        given["classes"] = data.parse_classes(given["classes"])
    if "freeze" in given:
        given["freeze"] = [part.strip() for part in given["freeze"].split(",") if part.strip()]
    return given


def check_flags(args):
    """ValueError naming the flag for any setting out of its range (before anything is read)."""
    def need(ok, flag, value, what):
        if not ok:
            raise ValueError(f"--{flag} {value}: {what}")

    finite = lambda x: x is None or math.isfinite(x)  # noqa: E731
    if args.model is not None and args.model not in REGISTRY:
        raise ValueError(f"unknown model {args.model!r}; choose one of: {', '.join(sorted(REGISTRY))}")
    for flag in ("lr", "momentum", "weight_decay", "gamma", "label_smoothing", "val_fraction", "train_fraction",
                 "lr_backbone", "bn_l1"):
        value = getattr(args, flag)
        need(finite(value), flag.replace("_", "-"), value, "must be a finite number")
    checks = [
        ("epochs", args.epochs, lambda v: v >= 1, "must be at least 1"),
        ("batch-size", args.batch_size, lambda v: v >= 1, "must be at least 1"),
        ("lr", args.lr, lambda v: v >= 0, "must be >= 0"),
        ("momentum", args.momentum, lambda v: 0 <= v < 1, "must be in [0, 1)"),
        ("weight-decay", args.weight_decay, lambda v: v >= 0, "must be >= 0"),
        ("gamma", args.gamma, lambda v: 0 < v <= 1, "must be in (0, 1]: the lr is multiplied by it"),
        ("warmup-epochs", args.warmup_epochs, lambda v: v >= 0, "must be >= 0"),
        ("label-smoothing", args.label_smoothing, lambda v: 0 <= v <= 1, "must be in [0, 1]"),
        ("val-fraction", args.val_fraction, lambda v: 0 <= v < 1, "must be in [0, 1)"),
        ("patience", args.patience, lambda v: v >= 1, "must be at least 1 epoch"),
        ("seed", args.seed, lambda v: 0 <= v < 2**32, "must be in [0, 2**32)"),
        ("stop-after", args.stop_after, lambda v: v >= 1, "must be at least 1"),
        ("train-fraction", args.train_fraction, lambda v: 0 < v <= 1, "must be in (0, 1]"),
        ("lr-backbone", args.lr_backbone, lambda v: v >= 0, "must be >= 0"),
        ("bn-l1", args.bn_l1, lambda v: v >= 0, "must be >= 0"),
    ]
    for flag, value, ok, what in checks:
        if value is not None:
            need(ok(value), flag, value, what)
    for fraction in args.milestones or ():
        need(math.isfinite(fraction) and 0 < fraction <= 1, "milestones", fraction,
             "each milestone is a fraction of training, in (0, 1]")
    if args.epochs is not None and args.warmup_epochs is not None:
        need(args.warmup_epochs < args.epochs, "warmup-epochs", args.warmup_epochs,
             f"must be shorter than --epochs {args.epochs}")
    if args.classes is not None:
        try:
            data.parse_classes(args.classes)
        except ValueError as err:
            raise ValueError(f"--classes {args.classes}: {err}") from None
    if args.init_from is not None and args.resume:
        raise ValueError("--init-from and --resume contradict each other: a resumed run continues from its "
                         "own checkpoint; --init-from starts a new run from other weights")
    if args.init_from is not None and not os.path.isfile(args.init_from):
        raise ValueError(f"--init-from {args.init_from}: no such file")
    if args.reset_head and args.init_from is None and not args.resume:
        raise ValueError("--reset-head replaces the classifier of the --init-from weights; without --init-from "
                         "every layer starts new anyway")
    if args.sync_bn and not args.distributed:
        raise ValueError("--sync-bn shares batch-norm statistics between the processes of --distributed; "
                         "add --distributed (and start the processes with mpiexec)")
    started = distributed.launcher_world_size()
    if started > 1 and not args.distributed:
        raise ValueError(f"this is one of {started} processes started by an MPI launcher, without --distributed: "
                         "each would train alone, into the same folder. Add --distributed, or run one process")
    if args.overwrite and args.resume:
        raise ValueError("--overwrite and --resume contradict each other: --resume continues the run "
                         "that --overwrite would delete")


def config_from_args(args):
    """The run's settings (the keys of ``DEFAULTS``) from the parsed flags, with the data set's
    defaults for ``epochs`` and ``augment`` filled in."""
    config = {**DEFAULTS, **given_flags(args)}
    augment_default, epochs_default = DATASETS[config["dataset"]][1:]
    config["epochs"] = config["epochs"] if config["epochs"] is not None else epochs_default
    config["augment"] = augment_default if args.augment is None else args.augment == "on"
    if config["patience"] is not None and config["val_fraction"] == 0:
        config["val_fraction"] = 0.1
    return config


# ---- the output folder --------------------------------------------------------------------

def folder_problem(folder):
    """Why runs cannot be written into ``folder`` (a message), or None. Creates it if missing."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        return f"--out {folder} is a file, not a folder"
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, ".minires-write-test")
        with open(probe, "w", encoding="utf-8"):
            pass
        os.remove(probe)
    except OSError as err:
        return f"--out {folder} cannot be written: {err.strerror or err}"
    return None


def holds_a_run(folder):
    return os.path.isdir(folder) and any(not name.startswith(".") or name.endswith(".npz.tmp")
                                         for name in os.listdir(folder))


def empty_run_folder(folder):
    """--overwrite: delete a previous run's files, refusing a folder that holds anything else."""
    names = os.listdir(folder)
    foreign = sorted(n for n in names if n not in RUN_FILES and not n.startswith(".checkpoint-"))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ValueError(f"--overwrite only empties a run folder, and {folder} also holds {shown}; "
                         "choose another --out")
    for name in names:
        os.remove(os.path.join(folder, name))


def choose_out(config, args):
    """The folder this invocation writes into, checked: a new run never writes over another."""
    if args.resume:
        here = os.path.dirname(os.path.abspath(args.resume))
        folder = args.out or here
        if os.path.abspath(folder) != here and holds_a_run(folder):
            raise ValueError(f"--out {folder} already holds a run; resume into the checkpoint's own folder "
                             f"(leave out --out) or choose an empty --out")
    elif args.out:
        folder = args.out
        if holds_a_run(folder) and not args.overwrite:
            raise ValueError(f"--out {folder} already holds a run; continue it with --resume "
                             f"{os.path.join(folder, 'checkpoint.npz')}, replace it with --overwrite, "
                             "or choose another --out")
    else:  # the default folder, or the first free one after it: runs/NAME, runs/NAME-2, ...
        base = os.path.join("runs", f"{config['model']}-{config['dataset']}")
        folder, number = base, 1
        while holds_a_run(folder) and not args.overwrite:
            number += 1
            folder = f"{base}-{number}"
    problem = folder_problem(folder)
    if problem:
        raise ValueError(problem)
    if args.overwrite and not args.resume:
        empty_run_folder(folder)
    return folder


# ---- running ----------------------------------------------------------------------------------

def train(config, resume=None, stop_after=None, progress=False, log=print, given=None):
    """Run (or, from the checkpoint ``resume``, continue) the training run described by ``config``;
    returns (the metric history, the model). ``given``: with ``resume``, the settings that override
    the checkpoint's. The steps are in ``training_run.py``."""
    config = {**config, "device": check_device(config["device"])}
    state = None
    if resume is not None:
        config, state = config_to_resume(config, resume, given)
        done = int(state["epoch"])
        if done >= config["epochs"]:
            extend = "pass a larger --epochs to extend it" if "epochs" not in (given or {}) else \
                f"--epochs {config['epochs']} does not extend it; pass more than {done}"
            raise ValueError(f"the run of {resume} has already finished {done} epochs; {extend}")
    if config.get("world_size", 1) > 1:
        log(data_parallel.describe(config, distributed.backend_for(config["device"])))
    run = build_run(config, state["model"] if state is not None else None)
    data_parallel.seed_this_rank(config["seed"])  # ranks 1, 2, ...: dropout streams of their own
    if state is not None:
        restore_run(run, state, resume)
    distributed.broadcast_parameters(run.model)  # every rank from rank 0's weights (a no-op for one process)
    # NumPy's overflow warnings would only repeat what the divergence check reports in one line.
    with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for epoch in remaining_epochs(run, stop_after, log):
            row = train_and_evaluate(run, epoch, progress)
            log(json.dumps(row, allow_nan=False))
            save_epoch(run, row)
    return run.history, run.model


def run(args, argv=()):
    """The command: one process, or (--distributed) this process's part of a run on several."""
    check_flags(args)  # before joining: a bad flag is the same one-line error on every rank, rank 0 prints it
    if not args.distributed:
        return run_process(args)
    distributed.init()
    distributed.share_cores()
    if distributed.world_size() == 1:
        print("note: --distributed, but this is a world of one process; start several with "
              "mpiexec -n K python -m minires train --distributed ...", file=sys.stderr)
    # An error on one rank stops them all, naming it; exit status 1 for a diverged run, as with one process.
    with distributed.fail_together(lambda err: 1 if isinstance(err, TrainingDiverged) else 2):
        return run_process(args)


def run_process(args):
    """This process's part of the command, its flags checked."""
    config = config_from_args(args)
    ranks = config["world_size"] = distributed.world_size()
    config["device"] = data_parallel.device_of_rank(config["device"])
    check_device(config["device"])  # before the data is read
    given = given_flags(args)
    given.pop("out", None)
    if not args.resume:  # a resumed run keeps its lr (and how it was chosen)
        config = data_parallel.scaled_recipe(config, given, ranks)
    # Rank 0 chooses (and creates) the folder; the others learn its name. An error there stops every rank.
    config["out"] = distributed.broadcast_object(choose_out(config, args) if distributed.is_main() else None)
    main = distributed.is_main()
    log = print if main else (lambda line: None)
    progress = main and not args.quiet and sys.stderr.isatty()
    keep_freed_memory()  # this process is ours: reuse freed pages step after step (backends/cpu_memory.py)
    try:
        history, _ = train(config, resume=args.resume, stop_after=args.stop_after, progress=progress, log=log,
                           given=given)
    except KeyboardInterrupt:
        if ranks > 1:
            raise  # fail_together stops every rank
        print(f"interrupted; {what_is_saved(config['out'])}", file=sys.stderr)
        return 130
    if history and main:
        last = history[-1]
        print(f"done: epoch {last['epoch']}, test accuracy {last['test_acc']:.4f}; outputs in {config['out']}",
              file=sys.stderr)
    return 0


def what_is_saved(folder):
    """After an interrupt: which epoch the folder's checkpoint holds, if there is one."""
    path = os.path.join(folder, "checkpoint.npz")
    try:
        epoch = load_checkpoint(path)["epoch"]
    except (OSError, ValueError, KeyError):
        return "no checkpoint was saved (an epoch had not finished)"
    return f"{path} holds epoch {epoch} and is intact (continue with --resume {path})"
