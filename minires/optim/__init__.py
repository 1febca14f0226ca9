"""Optimizers, learning-rate schedules and gradient clipping, spelled as in ``torch.optim``.

    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    scheduler = LinearWarmup(optimizer, 5, after=CosineAnnealingLR(optimizer, T_max=95))
    for epoch in range(100):
        for x, y in batches:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            clip_grad_norm_(model.parameters(), max_norm=5.0)
            optimizer.step()
        scheduler.step()
"""
from minires.optim.optimizer import Optimizer
from minires.optim.sgd import SGD
from minires.optim.adam import Adam, AdamW
from minires.optim.lr_scheduler import LRScheduler, StepLR, OneCycleLR, MultiStepLR, CosineAnnealingLR, LinearWarmup
from minires.optim.clip import clip_grad_norm_
from minires.optim import lr_scheduler

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler",
    "LRScheduler", "StepLR", "OneCycleLR", "MultiStepLR", "CosineAnnealingLR", "LinearWarmup", "clip_grad_norm_",
]
