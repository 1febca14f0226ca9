"""``python -m minires prune CHECKPOINT --method magnitude|slimming --amount 0.5 [--finetune-epochs N] --out DIR``

For each amount: load the trained model, measure it ("before"), prune it, measure it ("after"),
save it (``pruned.npz``), fine-tune it with the checkpoint's own recipe (``train --init-from
pruned.npz``, so the fine-tuning run is an ordinary, resumable training run in ``finetune/``) and
measure it again ("finetuned"). The numbers go to ``prune.json``:

    {"method": ..., "amount": ..., "before": {"params": ..., "macs": ..., "accuracy": ...},
     "after": {...}, "finetuned": {...} or null, ...}

With several amounts, each gets its folder (``DIR/amount-0.5/``), and ``DIR/prune.json`` lists
them all next to ``DIR/accuracy_vs_amount.png``.

    magnitude  --amount is the fraction of all conv and linear weights set to zero (and kept
               there); --scope global (one threshold, the default) or layer; --rounds R prunes
               in R steps, each followed by --finetune-epochs of fine-tuning (Han et al.)
    slimming   --amount is the fraction of the channels inside residual branches removed,
               those of smallest batch-norm scale; best after training with ``train --bn-l1``
"""
import json
import os
import sys

from minires import data
from minires.models import build_model
from minires.prune.loading import prepare_to_load
from minires.prune.magnitude import iterative_sparsities, magnitude_prune, sparsity
from minires.prune.measure import measure
from minires.prune.slimming import slim
from minires.serialization import load_checkpoint, save_checkpoint
from minires.training.augmentation import make_transforms
from minires.training.dataset_registry import prepare_datasets
from minires.training.device import check_device


def add_prune_arguments(parser):
    parser.add_argument("checkpoint", help="a checkpoint.npz or best.npz written by 'minires train'")
    parser.add_argument("--method", choices=["magnitude", "slimming"], required=True,
                        help="magnitude: zero the smallest weights (masks); slimming: remove the channels of "
                        "smallest batch-norm scale inside residual branches (a smaller model)")
    parser.add_argument("--amount", type=float, nargs="+", required=True,
                        help="fraction of weights (magnitude) or branch channels (slimming) to prune, in [0, 1); "
                        "several values: one pruning each, and a plot")
    parser.add_argument("--scope", choices=["global", "layer"], default="global",
                        help="magnitude: one threshold for all layers (default) or the same sparsity in each")
    parser.add_argument("--rounds", type=int, default=1, help="magnitude: reach the amount in this many "
                        "prune + fine-tune rounds (default 1)")
    parser.add_argument("--finetune-epochs", type=int, default=0, help="epochs of fine-tuning after each "
                        "pruning (default 0: measure the pruned model as it is)")
    parser.add_argument("--lr", type=float, default=0.01, help="fine-tuning learning rate (default 0.01), with "
                        "the checkpoint's momentum, weight decay and milestones")
    parser.add_argument("--out", help="output folder (default runs/prune-MODEL-METHOD, or -2, -3, ... when that "
                        "holds a run); a folder holding a run is refused")
    parser.add_argument("--data-root", help="data folder (default: the one the run was trained with)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def check_arguments(args):
    for amount in args.amount:
        if not 0 <= amount < 1:
            raise ValueError(f"--amount {amount}: must be in [0, 1) (a fraction pruned)")
    if len(set(args.amount)) != len(args.amount):
        raise ValueError(f"--amount {' '.join(map(str, args.amount))}: each amount once")
    if args.rounds < 1:
        raise ValueError(f"--rounds {args.rounds}: must be at least 1")
    if args.rounds > 1 and args.method != "magnitude":
        raise ValueError("--rounds is for --method magnitude (iterative pruning); slim once, then fine-tune")
    if args.finetune_epochs < 0:
        raise ValueError(f"--finetune-epochs {args.finetune_epochs}: must be >= 0")
    if not args.lr >= 0:
        raise ValueError(f"--lr {args.lr}: must be >= 0")


def load_trained(path):
    """(the run's config, its model state) from a checkpoint of ``minires train``."""
    state = load_checkpoint(path)
    if "config" not in state or "model" not in state:
        raise ValueError(f"{path} is not a checkpoint written by 'minires train' (it needs its config and model)")
    return json.loads(state["config"]), state["model"]


class Pruning:
    """One checkpoint's model and data, ready to be pruned and measured again and again."""

    def __init__(self, config, model_state, device, data_root):
        # --data-root: where the data is now (the fine-tuning runs look there too)
        config = {**config, "data_root": data_root if data_root is not None else config.get("data_root")}
        self.config, self.model_state, self.device = config, model_state, device
        train_set, _, test_set = prepare_datasets(config)
        _, normalize = make_transforms(train_set, augment=False)
        self.num_classes = len(train_set.classes)
        self.channels = train_set.images.shape[1]
        self.test_loader = data.DataLoader(test_set, batch_size=256, transform=normalize)
        timing = data.DataLoader(test_set, batch_size=min(config["batch_size"], len(test_set)), transform=normalize)
        images, labels = next(iter(timing))
        self.timing_batch = (images, labels)

    def empty_model(self):
        return build_model(self.config["model"], self.channels, self.num_classes)

    def trained_model(self):
        model = self.empty_model()
        prepare_to_load(model, self.model_state)
        model.load_state_dict(self.model_state)
        return model.to(self.device)

    def measure(self, model):
        return measure(model, self.test_loader, self.num_classes, self.device, self.timing_batch, self.empty_model)


def finetune(pruning, model, folder, args, log):
    """Fine-tune ``model`` as ``train --init-from folder/pruned.npz`` would; returns the tuned model."""
    from minires.training.train_command import train

    weights = os.path.join(folder, "pruned.npz")
    save_checkpoint(weights, {"model": model.state_dict(), "config": json.dumps(pruning.config),
                              "model_name": pruning.config["model"]})
    config = {**pruning.config, "epochs": args.finetune_epochs, "lr": args.lr, "warmup_epochs": 0,
              "init_from": weights, "reset_head": False, "freeze": [], "lr_backbone": None, "bn_l1": 0.0,
              "patience": None, "device": pruning.device, "out": os.path.join(folder, "finetune")}
    config.pop("resumed", None)
    _, tuned = train(config, progress=not args.quiet and sys.stderr.isatty(), log=log)
    return tuned


def prune_once(pruning, amount, folder, args, log):
    """Prune a fresh copy of the trained model by ``amount``; returns this amount's prune.json."""
    model = pruning.trained_model()
    result = {"method": args.method, "amount": amount, "checkpoint": args.checkpoint, "model": pruning.config["model"],
              "dataset": pruning.config["dataset"], "before": pruning.measure(model)}
    log(f"before: {json.dumps(result['before'])}")
    tuned, result["finetuned"] = None, None
    if args.method == "slimming":
        result["slimming"] = slim(model, amount)
        result["after"] = pruning.measure(model)
        if args.finetune_epochs:
            tuned = finetune(pruning, model, folder, args, log)
            result["finetuned"] = pruning.measure(tuned)
    else:
        # Round r prunes to the r-th sparsity of the schedule, then fine-tunes; the next round
        # prunes the fine-tuned model further. "after" is the last pruning, before its fine-tuning.
        result["scope"], result["rounds"] = args.scope, []
        for round_number, target in enumerate(iterative_sparsities(amount, args.rounds), 1):
            model = tuned or model
            magnitude_prune(model, target, args.scope)
            row = {"sparsity": round(sparsity(model), 6), **pruning.measure(model)}
            result["after"] = dict(row)
            if args.finetune_epochs:
                where = os.path.join(folder, f"round-{round_number}") if args.rounds > 1 else folder
                tuned = finetune(pruning, model, where, args, log)
                result["finetuned"] = pruning.measure(tuned)
                row["finetuned_accuracy"] = result["finetuned"]["accuracy"]
            result["rounds"].append(row)
    log(f"after: {json.dumps(result['after'])}")
    if tuned is not None:
        log(f"finetuned: {json.dumps(result['finetuned'])}")
    with open(os.path.join(folder, "prune.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, allow_nan=False)
    if tuned is None:
        save_checkpoint(os.path.join(folder, "pruned.npz"), {
            "model": model.state_dict(), "config": json.dumps(pruning.config), "model_name": pruning.config["model"]})
    return result


def run(args, log=None):
    from minires.experiments.common import fresh_output_folder

    check_arguments(args)
    device = check_device(args.device)
    config, model_state = load_trained(args.checkpoint)
    out = fresh_output_folder(args.out, f"prune-{config['model']}-{args.method}")
    log = log or (lambda line: print(line, file=sys.stderr))
    pruning = Pruning(config, model_state, device, args.data_root)
    results = []
    for amount in args.amount:
        folder = out if len(args.amount) == 1 else os.path.join(out, f"amount-{amount:g}")
        os.makedirs(folder, exist_ok=True)
        log(f"{args.method} pruning, amount {amount:g}: {folder}")
        results.append(prune_once(pruning, amount, folder, args, log))
    if len(results) > 1:
        with open(os.path.join(out, "prune.json"), "w", encoding="utf-8") as f:
            json.dump({"method": args.method, "amounts": args.amount, "results": results}, f, indent=1,
                      allow_nan=False)
        plot_accuracy(results, os.path.join(out, "accuracy_vs_amount.png"))
    print(table(results))
    print(f"outputs in {out}", file=sys.stderr)
    return 0


def table(results):
    """A Markdown table: one row per amount and stage."""
    lines = ["| amount | stage | params | nonzero params | MACs | nonzero MACs | train step ms | "
             "inference ms | accuracy |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for result in results:
        for stage in ("before", "after", "finetuned"):
            row = result.get(stage)
            if row is None:
                continue
            lines.append(f"| {result['amount']:g} | {stage} | {row['params']:,} | {row['nonzero_params']:,} | "
                         f"{row['macs'] / 1e6:.2f}M | {row['nonzero_macs'] / 1e6:.2f}M | "
                         f"{row.get('train_step_ms', float('nan')):.1f} | {row.get('inference_step_ms', float('nan')):.1f} | "
                         f"{row['accuracy']:.2%} |")
    return "\n".join(lines)


def plot_accuracy(results, path):
    """Accuracy against the amount pruned: after pruning, and after fine-tuning."""
    from matplotlib.figure import Figure  # the object API: no window, the backend left alone

    amounts = [r["amount"] for r in results]
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    ax.axhline(results[0]["before"]["accuracy"], color="gray", linestyle=":", label="before pruning")
    ax.plot(amounts, [r["after"]["accuracy"] for r in results], "o-", label="pruned")
    if all(r["finetuned"] for r in results):
        ax.plot(amounts, [r["finetuned"]["accuracy"] for r in results], "s-", label="pruned + fine-tuned")
    what = "weights set to zero" if results[0]["method"] == "magnitude" else "branch channels removed"
    ax.set(xlabel=f"fraction of {what}", ylabel="test accuracy", title=f"{results[0]['model']}: {results[0]['method']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
