"""Learning-rate schedules: call ``scheduler.step()`` once per epoch (or per
iteration, if the schedule is counted in iterations), after ``optimizer.step()``.

Every schedule here is written in closed form: ``_lr_at(epoch)`` gives the
learning rate of each parameter group at that epoch, from the group's base
(initial) learning rate. As in PyTorch, creating a scheduler already sets the
epoch-0 learning rate (``last_epoch == 0``).
"""
import bisect
import math

from minires.optim.optimizer import Optimizer


class LRScheduler:
    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            # The first scheduler records the starting lr; later ones (see LinearWarmup) reuse it.
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self.step()

    def _lr_at(self, epoch):
        raise NotImplementedError(f"{type(self).__name__} must define _lr_at()")

    def step(self):
        self.last_epoch += 1
        self._last_lr = [float(lr) for lr in self._lr_at(self.last_epoch)]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def get_last_lr(self):
        """The learning rate of each parameter group set by the last ``step()``."""
        return list(self._last_lr)

    # ---- saving and loading: plain numbers and lists only; the optimizer's own
    # state_dict holds the current lr of each group. ---------------------------------
    _saved = ("last_epoch", "base_lrs", "_last_lr")

    def state_dict(self):
        state = {name: getattr(self, name) for name in self._saved}
        return {name: list(v) if isinstance(v, list) else v for name, v in state.items()}

    def load_state_dict(self, state_dict):
        missing = [name for name in self._saved if name not in state_dict]
        unexpected = [name for name in state_dict if name not in self._saved]
        if missing or unexpected:
            raise KeyError(f"{type(self).__name__}.load_state_dict: missing {missing}, unexpected {unexpected}")
        for name in self._saved:
            value = state_dict[name]
            if hasattr(value, "tolist"):  # a NumPy array or number read back from a file
                value = value.tolist()
            setattr(self, name, list(value) if isinstance(value, (list, tuple)) else value)


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size): decay by gamma every step_size epochs."""

    _saved = LRScheduler._saved + ("step_size", "gamma")

    def __init__(self, optimizer, step_size, gamma=0.1):
        if int(step_size) != step_size or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a whole number of epochs >= 1, got {step_size}")
        self.step_size, self.gamma = int(step_size), gamma
        super().__init__(optimizer)

    def _lr_at(self, epoch):
        return [base * self.gamma ** (epoch // self.step_size) for base in self.base_lrs]


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin 2017), stepped once per *batch*, as PyTorch's OneCycleLR.

    Over the first pct_start of total_steps the lr rises from max_lr / div_factor to max_lr,
    then falls to max_lr / (div_factor * final_div_factor), each along half a cosine:
        lr = end + (start - end) * (1 + cos(pi * t)) / 2,   t going from 0 to 1 in the phase.
    With cycle_momentum (SGD with momentum), the momentum moves the opposite way, from
    max_momentum down to base_momentum and back.
    """

    _saved = LRScheduler._saved + ("max_lrs", "total_steps", "pct_start", "div_factor", "final_div_factor",
                                   "cycle_momentum", "base_momentum", "max_momentum")

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
                 cycle_momentum=True, base_momentum=0.85, max_momentum=0.95, div_factor=25.0,
                 final_div_factor=1e4):
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("OneCycleLR: give total_steps, or both epochs and steps_per_epoch")
            total_steps = epochs * steps_per_epoch
        if int(total_steps) != total_steps or total_steps < 2:
            raise ValueError(f"OneCycleLR: total_steps must be a whole number >= 2, got {total_steps}")
        if not 0 < pct_start < 1:
            raise ValueError(f"OneCycleLR: pct_start must lie in (0, 1), got {pct_start}")
        groups = optimizer.param_groups
        self.max_lrs = list(max_lr) if isinstance(max_lr, (list, tuple)) else [max_lr] * len(groups)
        if len(self.max_lrs) != len(groups):
            raise ValueError(f"OneCycleLR: {len(self.max_lrs)} max_lr values for {len(groups)} parameter groups")
        if cycle_momentum and any("momentum" not in group for group in groups):
            raise ValueError("OneCycleLR: cycle_momentum needs an optimizer with momentum (SGD); "
                             "pass cycle_momentum=False")
        self.total_steps, self.pct_start = int(total_steps), pct_start
        self.div_factor, self.final_div_factor = div_factor, final_div_factor
        self.cycle_momentum, self.base_momentum, self.max_momentum = cycle_momentum, base_momentum, max_momentum
        for group, peak in zip(groups, self.max_lrs):
            group["initial_lr"] = peak / div_factor  # the lr at step 0
        super().__init__(optimizer)

    def _phase(self, step):
        """(t in [0, 1], rising?) for this step: the first phase ends at pct_start * total_steps - 1."""
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR: stepped {step} times, past total_steps = {self.total_steps}")
        turn = self.pct_start * self.total_steps - 1
        if step <= turn:
            return step / turn, True
        return (step - turn) / (self.total_steps - 1 - turn), False

    @staticmethod
    def _anneal(start, end, t):
        return end + (start - end) * (1 + math.cos(math.pi * t)) / 2

    def _lr_at(self, epoch):
        t, rising = self._phase(epoch)
        lrs = []
        for base, peak in zip(self.base_lrs, self.max_lrs):
            low = base / self.final_div_factor
            lrs.append(self._anneal(base, peak, t) if rising else self._anneal(peak, low, t))
        return lrs

    def step(self):
        super().step()
        if self.cycle_momentum:
            t, rising = self._phase(self.last_epoch)
            high, low = self.max_momentum, self.base_momentum
            momentum = self._anneal(high, low, t) if rising else self._anneal(low, high, t)
            for group in self.optimizer.param_groups:
                group["momentum"] = momentum


class MultiStepLR(LRScheduler):
    """lr = base_lr * gamma ** (number of milestones <= epoch)."""

    _saved = LRScheduler._saved + ("milestones", "gamma")

    def __init__(self, optimizer, milestones, gamma=0.1):
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = gamma
        super().__init__(optimizer)

    def _lr_at(self, epoch):
        return [base * self.gamma ** bisect.bisect_right(self.milestones, epoch) for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2."""

    _saved = LRScheduler._saved + ("T_max", "eta_min")

    def __init__(self, optimizer, T_max, eta_min=0):
        if T_max <= 0:
            raise ValueError(f"T_max must be positive, got {T_max}")
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer)

    def _lr_at(self, epoch):
        cos = (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * cos for base in self.base_lrs]


class LinearWarmup(LRScheduler):
    """Ramp the lr linearly, then hand over to the scheduler ``after`` (or keep base_lr):

        lr = base_lr * (epoch + 1) / warmup_steps     for epoch < warmup_steps
        lr = after's lr at (epoch - warmup_steps)     afterwards

    so the ramp is base_lr/W, 2*base_lr/W, ..., base_lr, and ``after`` starts from its own
    epoch 0 when the warm-up ends (as PyTorch's SequentialLR hands over). Create ``after``
    on the same optimizer and step only this scheduler.
    """

    _saved = LRScheduler._saved + ("warmup_steps",)

    def __init__(self, optimizer, warmup_steps, after=None):
        if int(warmup_steps) != warmup_steps or warmup_steps < 1:
            raise ValueError(f"warmup_steps must be a positive integer, got {warmup_steps}")
        if after is not None and after.optimizer is not optimizer:
            raise ValueError("the scheduler `after` must belong to the same optimizer")
        self.warmup_steps = int(warmup_steps)
        self.after = after
        super().__init__(optimizer)

    def _lr_at(self, epoch):
        if epoch < self.warmup_steps:
            return [base * ((epoch + 1) / self.warmup_steps) for base in self.base_lrs]
        if self.after is None:
            return list(self.base_lrs)
        self.after.last_epoch = epoch - self.warmup_steps  # keep `after` in step with us
        self.after._last_lr = [float(lr) for lr in self.after._lr_at(self.after.last_epoch)]
        return self.after._last_lr

    def state_dict(self):
        state = super().state_dict()
        if self.after is not None:
            state["after"] = self.after.state_dict()
        return state

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        after = state_dict.pop("after", None)
        if (after is None) != (self.after is None):
            raise KeyError("LinearWarmup.load_state_dict: the saved and this scheduler differ in having `after`")
        super().load_state_dict(state_dict)
        if after is not None:
            self.after.load_state_dict(after)
