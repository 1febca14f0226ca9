"""``python -m minires gradflow EXPERIMENT``: run one gradient-flow experiment from the shell
and print a short summary of its numbers (all of them are in the output folder)."""
import argparse
import os

from minires.experiments import EXPERIMENTS
from minires.experiments.common import describe_presets
from minires.experiments.degradation import PRESETS as DEGRADATION_PRESETS
from minires.experiments.gradient_norms import PRESETS as NORMS_PRESETS
from minires.experiments.identity_mapping import PRESETS as IDENTITY_PRESETS
from minires.experiments.lesion import PRESETS as LESION_PRESETS
from minires.training.dataset_registry import DATASETS

PRESETS = {"norms": NORMS_PRESETS, "degradation": DEGRADATION_PRESETS,
           "identity": IDENTITY_PRESETS, "lesion": LESION_PRESETS}

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

Each writes CSV/JSON numbers and PNG figures to --out. Presets: tiny (seconds, for tests),
laptop (minutes on a 2-core CPU, the bundled MNIST sample), gpu (the papers' CIFAR-10 sizes)."""


def add_gradflow_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = DESCRIPTION
    parser.epilog = "settings of each preset:\n" + "\n".join(
        f"{name}\n{describe_presets(presets)}" for name, presets in PRESETS.items())
    parser.add_argument("experiment", choices=list(EXPERIMENTS), help="which experiment to run")
    parser.add_argument("--preset", default="laptop", choices=["tiny", "laptop", "gpu"], help="default %(default)s")
    parser.add_argument("--out", default=None, help="output folder (default runs/gradflow-EXPERIMENT-PRESET)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and batch order (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dataset", default=None, choices=sorted(DATASETS), help="replace the preset's data set")
    parser.add_argument("--data-root", default=None, help="data folder (default $MINIRES_DATA or ~/.cache/minires)")
    parser.add_argument("--download", action="store_true", help="fetch the data set if it is missing")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def summarize_norms(result):
    for name, summary in result["summary"].items():
        yield (f"{name:>10}: ||dL/dx_0|| / ||dL/dx_L|| = {summary['block_input_first_to_last_at_init']:.3g} "
               f"at initialisation, {summary['block_input_first_to_last_at_end']:.3g} after "
               f"{result['settings']['iterations']} iterations")


def summarize_degradation(result):
    for name, final in result["final"].items():
        yield (f"{name:>10}: final training error {final['train_error']:.4f}, test error {final['test_error']:.4f} "
               f"({final['seconds']:.0f} s)")
    for claim, holds in result["claims"].items():
        yield f"{claim}: {holds}"


def summarize_identity(result):
    yield (f"eq. 5 checked at {len(result['rows'])} blocks of a pre-activation ResNet-{result['settings']['depth']}: "
           f"max relative difference {result['max_relative_difference']:.2e}")


def summarize_lesion(result):
    for name, accuracy in result["intact"].items():
        deleted = result["one_block_deleted"][name]
        yield (f"{name:>10}: test accuracy {accuracy:.4f} intact; with one same-shape block deleted "
               f"{deleted['mean_accuracy']:.4f} on average, median {deleted['median_accuracy']:.4f}")


SUMMARIES = {"norms": summarize_norms, "degradation": summarize_degradation,
             "identity": summarize_identity, "lesion": summarize_lesion}


def run(args, out=print):
    folder = args.out or os.path.join("runs", f"gradflow-{args.experiment}-{args.preset}")
    overrides = {} if args.dataset is None else {"dataset": args.dataset}
    result = EXPERIMENTS[args.experiment](
        args.preset, out=folder, seed=args.seed, device=args.device, data_root=args.data_root,
        download=args.download, progress=False if args.quiet else None, **overrides)
    for line in SUMMARIES[args.experiment](result):
        out(line)
    out(f"outputs in {folder}")
    return 0
