"""Training: the one training loop, evaluation, the data pipeline, checkpoints, learning-curve
plots, and the train / evaluate commands.

One idea per file:
    loop.py              train_steps (N steps on any batches, with a callback), train_epoch, evaluate
    metrics.py           RunningMetrics: loss and accuracy summed on the device
    progress.py          the progress bar
    augmentation.py      make_transforms: normalisation, and pad-crop + flip for training
    dataset_registry.py  the data sets known by name (mnist_sample, mnist, fashion_mnist, cifar10)
    device.py            check_device: a clear error where a GPU is not usable
    plots.py             learning curves as a PNG
    training_run.py      the steps of ``python -m minires train``: build, restore, epochs, save
    train_command.py     ``python -m minires train``: its flags, and train() as a sequence of those steps
    evaluate_command.py  ``python -m minires evaluate``
"""
from minires.training.augmentation import make_transforms
from minires.serialization import load_checkpoint, save_checkpoint
from minires.training.loop import evaluate, train_epoch, train_steps
from minires.training.metrics import RunningMetrics
from minires.training.progress import progress_bar

__all__ = ["train_steps", "train_epoch", "evaluate", "RunningMetrics", "progress_bar", "make_transforms",
           "save_checkpoint", "load_checkpoint"]
