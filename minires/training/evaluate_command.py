"""``python -m minires evaluate CHECKPOINT``: accuracy and a per-class table."""
import json

from minires import data, prune
from minires.models import build_model
from minires.training.augmentation import make_transforms
from minires.serialization import load_checkpoint
from minires.training.dataset_registry import load_datasets, prepare_datasets
from minires.training.device import check_device
from minires.training.loop import evaluate


def add_evaluate_arguments(parser):
    parser.add_argument("checkpoint", help="a checkpoint.npz or best.npz written by 'minires train'")
    parser.add_argument("--dataset", default=None, help="data set to evaluate on (default: the one it was trained on)")
    parser.add_argument("--model", default=None, help="the architecture you expect; refused if the checkpoint "
                        "holds another")
    parser.add_argument("--data-root", default=None, help="data folder (default: the one the run was trained "
                        "with, else $MINIRES_DATA or ~/.cache/minires)")
    parser.add_argument("--download", action="store_true", help="fetch the data set if it is missing")
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch (default %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")


def run(args, out=print):
    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size}: must be at least 1")
    device = check_device(args.device)
    state = load_checkpoint(args.checkpoint)
    if "config" not in state or "model" not in state:
        raise ValueError(f"{args.checkpoint} is not a checkpoint written by 'minires train'")
    config = json.loads(state["config"])
    if args.model is not None and args.model != config["model"]:
        raise ValueError(f"checkpoint {args.checkpoint} holds a {config['model']}, not a {args.model} "
                         "(leave out --model to evaluate what it holds)")
    model_name = config["model"]
    dataset = args.dataset or config["dataset"]
    data_root = args.data_root if args.data_root is not None else config.get("data_root")
    loaded = load_datasets(dataset, data_root, args.download)
    # The same classes and training images as in training, so normalisation uses the same statistics.
    same_data = {**config, "val_fraction": config.get("val_fraction", 0) if dataset == config["dataset"] else 0}
    train_set, _, test_set = prepare_datasets(same_data, loaded)
    _, normalize = make_transforms(train_set, augment=False)
    model = build_model(model_name, test_set.images.shape[1], len(test_set.classes))
    try:
        prune.prepare_to_load(model, state["model"])  # a pruned model: masks, narrower layers
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise ValueError(
            f"checkpoint {args.checkpoint} holds a {config['model']} trained on {config['dataset']}, "
            f"which does not fit {model_name} on {dataset}: {err.args[0]}"
        ) from None
    model.to(device)
    loader = data.DataLoader(test_set, batch_size=args.batch_size, transform=normalize)
    loss, accuracy, confusion = evaluate(model, loader, len(test_set.classes), device)
    out(f"{model_name} ({args.checkpoint}, epoch {state.get('epoch', '?')}) on {dataset} test set: "
        f"accuracy {accuracy:.4f}, loss {loss:.4f}, {int(confusion.sum())} images")
    width = max(len("class"), *(len(str(c)) for c in test_set.classes))
    out(f"{'class':<{width}}  {'images':>6}  {'correct':>7}  {'accuracy':>8}")
    for index, name in enumerate(test_set.classes):
        total, correct = int(confusion[index].sum()), int(confusion[index, index])
        out(f"{str(name):<{width}}  {total:>6}  {correct:>7}  {correct / max(total, 1):>8.4f}")
    return 0
