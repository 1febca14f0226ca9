"""``python -m minires transfer``: does pretraining help when the new task has little data?

    1. pretrain    the model on the source classes (MNIST digits 0-4, or CIFAR-10 classes 0-4),
                   with all their training images
    2. fine-tune   from those weights, with a new classifier (``--reset-head``), on the target
                   classes (5-9) with only ``target_fraction`` of their training images
    3. scratch     the same model, the same target images, the same number of steps, from a
                   random initialisation

Every step is an ordinary ``minires train`` run (``train_command.train``) in its own folder, so
each has its metrics, checkpoint and learning curves, and any of them can be resumed. Steps 2
and 3 run once per seed (each seed draws another ``target_fraction`` subset; fine-tuning and
scratch of one seed see the same images), and the claim "fine-tuning reaches a lower test error
than training from scratch" is judged over the seeds (``claims.lower``). The test sets are the
target classes' full test sets.

Presets:
    tiny    seconds, for the tests: a tenth of the MNIST sample's source images, one epoch each
    laptop  the bundled MNIST sample: mnist_resnet, 3 epochs on digits 0-4 (about 4,000 images),
            then 10 epochs on 10% of digits 5-9 (about 390 images), 3 seeds: about 3 minutes on 2 cores.
            Fine-tuning uses the scratch lr, 0.1: with 0.01 the new classifier learns too slowly in
            130 steps (87% against 94% on seed 0)
    cifar   CIFAR-10 (data in --data-root): ResNet-20, 5 epochs on classes 0-4 (25,000 images),
            then 10 epochs on 10% of classes 5-9 (2,500 images), 2 seeds: about 40 minutes on 2 cores
"""
import argparse
import os
import sys

from minires.experiments import claims
from minires.experiments.common import choose_settings, describe_presets, fresh_output_folder, write_json

PRESETS = {
    "tiny": dict(dataset="mnist_sample", model="mnist_resnet", source="0-4", target="5-9", source_fraction=0.1,
                 target_fraction=0.1, pretrain_epochs=1, epochs=1, batch_size=32, lr=0.1, finetune_lr=0.01,
                 augment=False, seeds=1),
    "laptop": dict(dataset="mnist_sample", model="mnist_resnet", source="0-4", target="5-9", source_fraction=1.0,
                   target_fraction=0.1, pretrain_epochs=3, epochs=10, batch_size=32, lr=0.1, finetune_lr=0.1,
                   augment=False, seeds=3),
    "cifar": dict(dataset="cifar10", model="resnet20", source="0-4", target="5-9", source_fraction=1.0,
                  target_fraction=0.1, pretrain_epochs=5, epochs=10, batch_size=128, lr=0.1, finetune_lr=0.01,
                  augment=True, seeds=2),
}


def run_config(settings, **changes):
    """A ``minires train`` config for one step of the experiment."""
    from minires.training.train_command import DEFAULTS

    return {**DEFAULTS, "model": settings["model"], "dataset": settings["dataset"], "batch_size": settings["batch_size"],
            "augment": settings["augment"], "data_root": settings["data_root"], "device": settings["device"],
            "weight_decay": 1e-4, **changes}


def one_run(config, progress, log):
    """Train ``config``; returns its last epoch's test accuracy and the seconds its epochs took."""
    from minires.training.train_command import train

    history, _ = train(config, progress=progress, log=log)
    return {"test_accuracy": history[-1]["test_acc"], "seconds": round(sum(row["seconds"] for row in history), 2),
            "folder": config["out"]}


def transfer(preset="laptop", out=None, seeds=None, device="cpu", data_root=None, progress=False, log=None,
             **overrides):
    """Run the experiment; returns (and writes to ``out/transfer.json``) every run's accuracy and time, and the
    claim. ``overrides`` change the preset's settings (``target_fraction=0.01``, ``epochs=30``, ...)."""
    from minires import data

    settings = {**choose_settings(PRESETS, preset, overrides), "data_root": data_root, "device": device}
    seeds = claims.seeds_from(0, seeds or settings["seeds"])
    out = fresh_output_folder(out, f"transfer-{preset}")
    log = log or (lambda line: None)
    source, target = data.parse_classes(settings["source"]), data.parse_classes(settings["target"])
    pretrain = one_run(run_config(settings, classes=source, train_fraction=settings["source_fraction"],
                                  epochs=settings["pretrain_epochs"], lr=settings["lr"],
                                  out=os.path.join(out, "pretrain")), progress, log)
    weights = os.path.join(out, "pretrain", "checkpoint.npz")
    finetuned, scratch = [], []
    for seed in seeds:
        common = dict(classes=target, train_fraction=settings["target_fraction"], epochs=settings["epochs"], seed=seed)
        finetuned.append(one_run(run_config(settings, **common, lr=settings["finetune_lr"], init_from=weights,
                                            reset_head=True, out=os.path.join(out, f"finetune-seed{seed}")),
                                 progress, log))
        scratch.append(one_run(run_config(settings, **common, lr=settings["lr"],
                                          out=os.path.join(out, f"scratch-seed{seed}")), progress, log))

    def error(runs):
        return [1 - run["test_accuracy"] for run in runs]

    claim = claims.lower("fine-tuning the pretrained model reaches a lower test error than training from scratch",
                         "fine-tuned", error(finetuned), "from scratch", error(scratch))
    result = {"preset": preset, "settings": settings, "seeds": seeds, "pretrain": pretrain,
              "finetuned": finetuned, "scratch": scratch, "claim": claim}
    write_json(out, "transfer.json", result)
    return result, out


def table(result):
    lines = ["| run | seed | test accuracy | seconds |", "| --- | --- | --- | --- |",
             f"| pretrain (classes {result['settings']['source']}) | 0 | {result['pretrain']['test_accuracy']:.2%} | "
             f"{result['pretrain']['seconds']:.0f} |"]
    for kind in ("finetuned", "scratch"):
        for seed, run in zip(result["seeds"], result[kind]):
            lines.append(f"| {kind} (classes {result['settings']['target']}, "
                         f"{result['settings']['target_fraction']:.0%} of the images) | {seed} | "
                         f"{run['test_accuracy']:.2%} | {run['seconds']:.0f} |")
    return "\n".join(lines)


def add_transfer_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__.split("\n\n")[0] + "\n\npresets:\n" + describe_presets(PRESETS)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="laptop", help="default laptop")
    parser.add_argument("--seeds", type=int, help="seeds of the fine-tuning and scratch runs (default: the preset's)")
    parser.add_argument("--target-fraction", type=float, help="fraction of the target classes' training images, "
                        "in (0, 1] (default: the preset's, 0.1)")
    parser.add_argument("--epochs", type=int, help="epochs of the fine-tuning and scratch runs (default: the preset's)")
    parser.add_argument("--finetune-lr", type=float, help="learning rate of fine-tuning (default: the preset's)")
    parser.add_argument("--out", help="output folder (default runs/transfer-PRESET, or -2, -3, ...); a folder "
                        "holding a run is refused")
    parser.add_argument("--data-root", help="data folder (for cifar: where cifar-10-batches-bin is)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def run(args):
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds {args.seeds}: must be at least 1")
    if args.target_fraction is not None and not 0 < args.target_fraction <= 1:
        raise ValueError(f"--target-fraction {args.target_fraction}: must be in (0, 1]")
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs {args.epochs}: must be at least 1")
    if args.finetune_lr is not None and not args.finetune_lr >= 0:
        raise ValueError(f"--finetune-lr {args.finetune_lr}: must be >= 0")
    overrides = {key: value for key, value in (("target_fraction", args.target_fraction), ("epochs", args.epochs),
                                               ("finetune_lr", args.finetune_lr)) if value is not None}
    from minires.training.device import check_device

    log = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    result, out = transfer(args.preset, args.out, args.seeds, check_device(args.device), args.data_root,
                           progress=not args.quiet and sys.stderr.isatty(), log=log, **overrides)
    print(table(result))
    print(claims.describe(result["claim"]))
    print(f"outputs in {out}", file=sys.stderr)
    return 0
