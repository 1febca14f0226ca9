"""Training: the epoch loop, checkpoints, learning-curve plots, and the train/evaluate commands."""
from minires.training.checkpoint import load_checkpoint, save_checkpoint
from minires.training.loop import evaluate, train_epoch

__all__ = ["train_epoch", "evaluate", "save_checkpoint", "load_checkpoint"]
