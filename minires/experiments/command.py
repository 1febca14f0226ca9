"""``python -m minires gradflow EXPERIMENT``: run one gradient-flow experiment from the shell
and print a short summary of its numbers (all of them are in the output folder)."""
import argparse

from minires.experiments import EXPERIMENTS
from minires.experiments.claims import describe
from minires.experiments.common import default_jobs, describe_presets, fresh_output_folder
from minires.experiments.degradation import PRESETS as DEGRADATION_PRESETS
from minires.experiments.gradient_norms import PRESETS as NORMS_PRESETS
from minires.experiments.identity_mapping import PRESETS as IDENTITY_PRESETS
from minires.experiments.lesion import PRESETS as LESION_PRESETS
from minires.experiments.recipe import BUILDERS
from minires.experiments.shortcuts import PRESETS as SHORTCUTS_PRESETS
from minires.training.dataset_registry import DATASETS

PRESETS = {"norms": NORMS_PRESETS, "degradation": DEGRADATION_PRESETS,
           "identity": IDENTITY_PRESETS, "lesion": LESION_PRESETS, "shortcuts": SHORTCUTS_PRESETS}

DESCRIPTION = """\
Experiments on how gradients flow through plain and residual networks.

  norms        per-layer gradient norms ||dL/dx_l|| (block inputs) and ||dL/dW|| (convs) of plain and
               residual networks of several depths, at initialisation and over the first iterations
  degradation  He et al. 2015, Fig. 6: plain-20 vs plain-56 and ResNet-20 vs ResNet-56 trained with
               one recipe; the deeper plain net ends with the higher *training* error
  identity     He et al. 2016, eq. 5: in a pre-activation ResNet, dL/dx_l equals dL/dx_L plus the
               gradient through the branches, to rounding error (float64)
  lesion       Veit et al. 2016: delete one block of a trained ResNet / plain net at test time and
               measure the accuracy; the ResNet degrades gracefully, the plain net collapses
  shortcuts    He et al. 2016, Table 1 and Fig. 4: every shortcut variant (constant scaling, gating, 1x1 conv,
               dropout) and every BN/ReLU placement trained with one recipe; the identity and full
               pre-activation train best

Each writes CSV/JSON numbers and PNG figures to --out. Presets: tiny (seconds, for tests),
laptop (minutes on a 2-core CPU, the bundled MNIST sample), gpu (the papers' CIFAR-10 sizes).
norms, degradation, lesion and shortcuts train every network with several seeds (--seeds; the preset
says how many) and judge each claim on the seeds' ranges: "holds" (every seed of the one
network ends below every seed of the other), "within noise" (the ranges overlap: the seeds
cannot tell the networks apart) or "does not hold" (the other way round)."""


def add_gradflow_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = DESCRIPTION
    parser.epilog = "settings of each preset:\n" + "\n".join(
        f"{name}\n{describe_presets(presets)}" for name, presets in PRESETS.items())
    parser.add_argument("experiment", choices=list(EXPERIMENTS), help="which experiment to run")
    parser.add_argument("--preset", default="laptop", choices=["tiny", "laptop", "gpu"], help="default %(default)s")
    parser.add_argument("--out", default=None, help="output folder, one that holds no earlier run (default runs/gradflow-EXPERIMENT-PRESET, "
                             "then -2, -3, ...)")
    parser.add_argument("--seed", type=int, default=0, help="first seed for weights and batch order (default 0)")
    parser.add_argument("--seeds", type=positive_int, default=None,
                        help="how many seeds (--seed, --seed + 1, ...) to train each network with "
                             "(default: the preset's; not for identity, a float64 check)")
    parser.add_argument("--jobs", type=positive_int, default=None,
                        help="trainings run side by side, one process each (default: one per core on the CPU, "
                             "1 on a GPU)")
    parser.add_argument("--models", default=None, type=network_kinds,
                        help="norms only: the networks to sweep over the depths, comma-separated, from "
                             f"{','.join(BUILDERS)} (default plain,resnet)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dataset", default=None, choices=sorted(DATASETS), help="replace the preset's data set")
    parser.add_argument("--data-root", default=None, help="data folder (default $MINIRES_DATA or ~/.cache/minires)")
    parser.add_argument("--download", action="store_true", help="fetch the data set if it is missing")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def network_kinds(text):
    kinds = tuple(kind.strip() for kind in text.split(",") if kind.strip())
    unknown = [kind for kind in kinds if kind not in BUILDERS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"unknown network kind(s) {', '.join(unknown) or '(none)'}; "
                                         f"choose from {', '.join(BUILDERS)}")
    return kinds


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def over_seeds(s, digits=3):
    """'mean (min-max)' of a spread, or the one value of a single seed."""
    if len(s["values"]) == 1:
        return f"{s['mean']:.{digits}g}"
    return f"{s['mean']:.{digits}g} ({s['min']:.{digits}g}-{s['max']:.{digits}g})"


def seeds_line(result):
    seeds = result["seeds"]
    return f"seeds {', '.join(map(str, seeds))}: mean (lowest-highest) over {len(seeds)} seeds" if len(seeds) > 1 \
        else f"seed {seeds[0]}"


def summarize_claims(result):
    for claim in result["claims"].values():
        yield describe(claim)
        if "note" in claim:
            yield f"    ({claim['note']})"


def summarize_norms(result):
    yield seeds_line(result)
    for name, s in result["spread"].items():
        yield (f"{name:>10}: ||dL/dx_0|| / ||dL/dx_L|| = {over_seeds(s['block_input_first_to_last_at_init'])} "
               f"at initialisation, {over_seeds(s['block_input_first_to_last_at_end'])} after "
               f"{result['settings']['iterations']} iterations")
    yield from summarize_claims(result)


def summarize_degradation(result):
    yield seeds_line(result)
    for name, final in result["final"].items():
        yield (f"{name:>10}: final training error {over_seeds(final['train_error'])}, "
               f"test error {over_seeds(final['test_error'])} ({final['seconds']:.0f} s of training)")
    yield from summarize_claims(result)


def summarize_identity(result):
    yield (f"eq. 5 checked at {len(result['rows'])} blocks of a pre-activation ResNet-{result['settings']['depth']}: "
           f"max relative difference {result['max_relative_difference']:.2e}")


def summarize_lesion(result):
    yield seeds_line(result)
    for name, intact in result["intact"].items():
        yield (f"{name:>10}: test accuracy {over_seeds(intact)} intact; deleting one same-shape block costs "
               f"{over_seeds(result['accuracy_drop'][name])} of it on average")
    yield from summarize_claims(result)


def summarize_shortcuts(result):
    yield seeds_line(result)
    for name, final in result["final"].items():
        yield (f"{name:>21}: final training loss {over_seeds(final['train_loss'])}, training error "
               f"{over_seeds(final['train_error'])}, test error {over_seeds(final['test_error'])} "
               f"({final['seconds']:.0f} s of training)")
    yield from summarize_claims(result)


SUMMARIES = {"norms": summarize_norms, "degradation": summarize_degradation,
             "identity": summarize_identity, "lesion": summarize_lesion, "shortcuts": summarize_shortcuts}


def run(args, out=print):
    folder = fresh_output_folder(args.out, f"gradflow-{args.experiment}-{args.preset}")  # never an earlier run's
    overrides = {} if args.dataset is None else {"dataset": args.dataset}
    trains_over_seeds = "seeds" in PRESETS[args.experiment][args.preset]  # norms, degradation, lesion
    for flag, value in (("--seeds", args.seeds), ("--jobs", args.jobs)):
        if value is not None and not trains_over_seeds:
            raise ValueError(f"{args.experiment} takes no {flag}: it trains no networks over seeds")
    if args.models is not None:
        if "kinds" not in PRESETS[args.experiment][args.preset]:
            raise ValueError(f"{args.experiment} takes no --models: only norms sweeps a choice of networks")
        overrides["kinds"] = args.models
    if trains_over_seeds:
        overrides["jobs"] = default_jobs(args.device) if args.jobs is None else args.jobs
        if args.seeds is not None:
            overrides["seeds"] = args.seeds
    result = EXPERIMENTS[args.experiment](
        args.preset, out=folder, seed=args.seed, device=args.device, data_root=args.data_root,
        download=args.download, progress=False if args.quiet else None, **overrides)
    if "seconds" in result:
        at_a_time = f", {result['jobs']} trainings at a time" if result.get("jobs") else ""
        out(f"{result['seconds']:.0f} s in all{at_a_time}")
    for line in SUMMARIES[args.experiment](result):
        out(line)
    out(f"outputs in {folder}")
    return 0
