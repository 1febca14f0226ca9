"""minires.optim: SGD/Adam/AdamW against hand-computed steps (and torch.optim when it is
installed), SGD step by step on every backend (the kernel path's one fused kernel, kernels/sgd.cu),
state_dict round trips, learning-rate schedules, clip_grad_norm_ and errors."""
import io
import math

import numpy as np
import pytest

from minires.backends import to_device
from minires import Tensor
from minires.nn import Parameter
from minires.optim import (
    SGD, Adam, AdamW, CosineAnnealingLR, LinearWarmup, MultiStepLR, OneCycleLR, StepLR, clip_grad_norm_,
)

from backend_tools import assert_close, float32_exact
import reference as ref


def _param(*values):
    return Parameter(np.array(values, dtype=np.float64))


def _run(optimizer, param, grads):
    """Take one step per gradient in ``grads``; return p after each step."""
    history = []
    for g in grads:
        param.grad = Tensor(np.array(g, dtype=np.float64))
        optimizer.step()
        history.append(param.data.copy())
    return history


# ---- SGD by hand -------------------------------------------------------------------
def test_sgd_plain_step():
    p = _param(1.0, 2.0)
    p.grad = Tensor(np.array([0.5, -1.0]))
    SGD([p], lr=0.1).step()
    # p = p - lr * g = [1 - 0.05, 2 + 0.1]
    np.testing.assert_allclose(p.data, [0.95, 2.1], rtol=0, atol=1e-15)


def test_sgd_momentum_with_dampening_by_hand():
    p = _param(0.0)
    opt = SGD([p], lr=0.1, momentum=0.9, dampening=0.5)
    history = _run(opt, p, [[1.0], [1.0], [1.0]])
    # step 1: buf = g = 1                        p = 0    - 0.1 * 1    = -0.1
    # step 2: buf = 0.9 * 1    + 0.5 * 1 = 1.4   p = -0.1 - 0.1 * 1.4  = -0.24
    # step 3: buf = 0.9 * 1.4  + 0.5 * 1 = 1.76  p = -0.24 - 0.1 * 1.76 = -0.416
    np.testing.assert_allclose(np.concatenate(history), [-0.1, -0.24, -0.416], rtol=0, atol=1e-14)
    np.testing.assert_allclose(opt.state[p]["momentum_buffer"], [1.76], rtol=0, atol=1e-14)


def test_sgd_nesterov_with_weight_decay_by_hand():
    p = _param(1.0)
    opt = SGD([p], lr=0.1, momentum=0.5, weight_decay=0.1, nesterov=True)
    history = _run(opt, p, [[2.0], [2.0], [2.0]])
    # step 1: g = 2 + 0.1 * 1 = 2.1;  buf = 2.1
    #         g = 2.1 + 0.5 * 2.1 = 3.15;                       p = 1 - 0.315 = 0.685
    # step 2: g = 2 + 0.0685 = 2.0685;  buf = 0.5 * 2.1 + 2.0685 = 3.1185
    #         g = 2.0685 + 0.5 * 3.1185 = 3.62775;              p = 0.685 - 0.362775 = 0.322225
    # step 3: g = 2 + 0.0322225 = 2.0322225;  buf = 0.5 * 3.1185 + 2.0322225 = 3.5914725
    #         g = 2.0322225 + 0.5 * 3.5914725 = 3.82795875;     p = 0.322225 - 0.382795875
    expected = [0.685, 0.322225, -0.060570875]
    np.testing.assert_allclose(np.concatenate(history), expected, rtol=0, atol=1e-14)


def test_sgd_momentum_buffer_does_not_alias_the_gradient():
    p = _param(0.0)
    grad = np.array([1.0])
    p.grad = Tensor(grad)  # wraps the array without copying it
    opt = SGD([p], lr=0.1, momentum=0.9)
    opt.step()
    opt.step()  # buf *= 0.9; buf += g  must not change the user's gradient array
    assert grad[0] == 1.0
    assert opt.state[p]["momentum_buffer"][0] == pytest.approx(1.9)


# ---- Adam / AdamW by hand ---------------------------------------------------------------
def test_adam_by_hand():
    p = _param(1.0)
    opt = Adam([p], lr=0.1, betas=(0.5, 0.75), eps=0.0)
    history = _run(opt, p, [[2.0], [1.0], [-1.0]])
    # step 1: m = 0.5 * 2 = 1;  v = 0.25 * 4 = 1
    #         p = 1 - (0.1 / (1 - 0.5)) * 1 / (sqrt(1) / sqrt(1 - 0.75))            = 0.9
    p1 = 1 - (0.1 / 0.5) * 1 / (1 / math.sqrt(0.25))
    # step 2: m = 0.5 * 1 + 0.5 * 1 = 1;  v = 0.75 * 1 + 0.25 * 1 = 1
    #         p = 0.9 - (0.1 / (1 - 0.5**2)) * 1 / (sqrt(1) / sqrt(1 - 0.75**2))
    p2 = p1 - (0.1 / 0.75) * 1 / (1 / math.sqrt(0.4375))
    # step 3: m = 0.5 * 1 - 0.5 = 0  ->  no move at all
    p3 = p2
    assert p1 == pytest.approx(0.9, abs=1e-15)
    np.testing.assert_allclose(np.concatenate(history), [p1, p2, p3], rtol=0, atol=1e-14)
    assert opt.state[p]["step"] == 3
    np.testing.assert_allclose(opt.state[p]["exp_avg_sq"], [0.75 * 1 + 0.25 * 1], atol=1e-15)


def test_adam_l2_weight_decay_goes_through_the_gradient():
    p = _param(1.0)
    opt = Adam([p], lr=0.1, betas=(0.5, 0.75), eps=0.0, weight_decay=0.5)
    history = _run(opt, p, [[1.0], [1.0]])
    # step 1: g = 1 + 0.5 * 1 = 1.5;  m = 0.75;  v = 0.5625;  m_hat = 1.5, v_hat = 2.25 -> p = 0.9
    # step 2: g = 1 + 0.5 * 0.9 = 1.45;  m = 0.375 + 0.725 = 1.1;  v = 0.421875 + 0.525625 = 0.9475
    p2 = 0.9 - (0.1 / 0.75) * 1.1 / (math.sqrt(0.9475) / math.sqrt(0.4375))
    np.testing.assert_allclose(np.concatenate(history), [0.9, p2], rtol=0, atol=1e-14)


def test_adamw_decoupled_weight_decay_by_hand():
    p = _param(1.0)
    opt = AdamW([p], lr=0.1, betas=(0.5, 0.75), eps=0.0, weight_decay=0.5)
    history = _run(opt, p, [[1.0], [1.0], [1.0]])
    # With a constant gradient m_hat = g and v_hat = g**2, so the Adam part moves exactly lr.
    # step 1: p = 1      * (1 - 0.1 * 0.5) - 0.1 = 0.85
    # step 2: p = 0.85   * 0.95 - 0.1 = 0.7075
    # step 3: p = 0.7075 * 0.95 - 0.1 = 0.572125
    np.testing.assert_allclose(np.concatenate(history), [0.85, 0.7075, 0.572125], rtol=0, atol=1e-14)
    assert AdamW([p]).param_groups[0]["weight_decay"] == 1e-2


# ---- common behaviour ---------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9),
    lambda ps: Adam(ps),
    lambda ps: AdamW(ps),
], ids=["SGD", "Adam", "AdamW"])
def test_skips_params_without_grad_updates_in_place_and_keeps_dtype(make):
    a = Parameter(np.ones((2, 3), dtype=np.float32))
    b = Parameter(np.ones(4, dtype=np.float32))
    a_array = a.data
    a.grad = Tensor(np.full((2, 3), 0.5, dtype=np.float32))
    opt = make([a, b])
    opt.step()
    assert a.data is a_array  # updated in place
    assert a.data.dtype == np.float32
    assert np.all(a.data < 1)
    np.testing.assert_array_equal(b.data, np.ones(4, dtype=np.float32))
    assert b not in opt.state


def test_zero_grad_sets_grads_to_none():
    a, b = _param(1.0), _param(2.0)
    a.grad, b.grad = Tensor(np.array([1.0])), Tensor(np.array([2.0]))
    opt = SGD([a, b], lr=0.1)
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_param_groups_get_their_own_hyperparameters():
    a, b = _param(1.0), _param(1.0)
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    a.grad, b.grad = Tensor(np.array([1.0])), Tensor(np.array([1.0]))
    opt.step()
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    np.testing.assert_allclose([a.data[0], b.data[0]], [0.9, 0.5])


def test_step_calls_the_closure_and_returns_its_loss():
    p = _param(1.0)
    opt = SGD([p], lr=0.1)

    def closure():
        p.grad = Tensor(np.array([1.0]))
        return 42.0

    assert opt.step(closure) == 42.0
    assert p.data[0] == pytest.approx(0.9)


# ---- SGD on every backend: each step against the update rule (reference.sgd_step) ------------
SGD_OPTIONS = [
    dict(momentum=0.0, weight_decay=0.0),
    dict(momentum=0.0, weight_decay=0.01),
    dict(momentum=0.9, dampening=0.0, weight_decay=0.0),
    dict(momentum=0.9, dampening=0.1, weight_decay=0.0),
    dict(momentum=0.9, dampening=0.1, weight_decay=0.01),
    dict(momentum=0.9, dampening=0.0, weight_decay=0.01),
    dict(momentum=0.9, nesterov=True, weight_decay=0.0),
    dict(momentum=0.9, nesterov=True, weight_decay=0.01),
]
SGD_SHAPES = [(3,), (20, 15)]  # 300 elements: more than one block of the kernel


def sgd_start_and_gradients(steps, seed=5):
    """Initial parameters and ``steps`` lists of gradients (one per parameter), exact in float32."""
    rng = np.random.default_rng(seed)
    start = [float32_exact(rng.standard_normal(shape)) for shape in SGD_SHAPES]
    return start, [[float32_exact(rng.standard_normal(shape)) for shape in SGD_SHAPES] for _ in range(steps)]


def assert_sgd_state(optimizer, params, expected_params, expected_buffers, dtype):
    for p, expected, buffer in zip(params, expected_params, expected_buffers):
        assert_close(p, expected, dtype)
        state = optimizer.state.get(p, {})
        assert ("momentum_buffer" in state) == (buffer is not None)
        if buffer is not None:
            assert_close(state["momentum_buffer"], buffer, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", SGD_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_sgd_follows_the_update_rule_step_by_step(backend, options, dtype):
    start, gradients = sgd_start_and_gradients(steps=2)  # the first step (it fills the buffer) and a later one
    params = [Parameter(backend.array(p.astype(dtype))) for p in start]
    optimizer = SGD(params, lr=0.1, **options)
    expected, buffers = list(start), [None] * len(start)
    for grads in gradients:
        for p, g in zip(params, grads):
            p.grad = Tensor(backend.array(g.astype(dtype)))
        optimizer.step()
        for k, g in enumerate(grads):
            expected[k], buffers[k] = ref.sgd_step(expected[k], g, buffers[k], lr=0.1, **options)
        assert_sgd_state(optimizer, params, expected, buffers, dtype)


def test_sgd_continues_from_a_loaded_momentum_buffer(backend):
    """A first step by another optimizer, its state loaded on the backend: the next step there is not a
    first step (the kernel must read the loaded buffer, not fill it)."""
    options = dict(lr=0.1, momentum=0.9, dampening=0.1)
    start, gradients = sgd_start_and_gradients(steps=3)
    first = [Parameter(p.copy()) for p in start]
    first_optimizer = SGD(first, **options)
    for p, g in zip(first, gradients[0]):
        p.grad = Tensor(g)
    first_optimizer.step()
    params = [Parameter(backend.array(p.data)) for p in first]
    optimizer = SGD(params, **options)
    optimizer.load_state_dict(first_optimizer.state_dict())
    expected, buffers = list(start), [None] * len(start)
    for step, grads in enumerate(gradients):
        if step > 0:
            for p, g in zip(params, grads):
                p.grad = Tensor(backend.array(g))
            optimizer.step()
        for k, g in enumerate(grads):
            expected[k], buffers[k] = ref.sgd_step(expected[k], g, buffers[k], **options)
    assert_sgd_state(optimizer, params, expected, buffers, np.float64)


# ---- state_dict ---------------------------------------------------------------------------
def _params(seed=0):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(shape)) for shape in [(3, 2), (2,), (4, 1, 2)]]


def _grads(step):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(shape) for shape in [(3, 2), (2,), (4, 1, 2)]]


def _train(opt, params, steps, start=0):
    for t in range(start, start + steps):
        for p, g in zip(params, _grads(t)):
            p.grad = Tensor(g)
        params[2].grad = None if t % 3 == 0 else params[2].grad  # sometimes no grad
        opt.step()


def _leaves(obj):
    if isinstance(obj, dict):
        assert all(isinstance(k, (int, str)) for k in obj)
        for v in obj.values():
            yield from _leaves(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _leaves(v)
    else:
        yield obj


OPTIMIZERS = {
    "SGD": lambda ps: SGD([{"params": ps[:2]}, {"params": ps[2:], "weight_decay": 0.0}], lr=0.1,
                          momentum=0.9, nesterov=True, weight_decay=1e-2),
    "Adam": lambda ps: Adam(ps, lr=1e-2, weight_decay=1e-3),
    "AdamW": lambda ps: AdamW([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.05}], lr=1e-2),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_dict_holds_only_plain_values_and_arrays(name):
    params = _params()
    opt = OPTIMIZERS[name](params)
    _train(opt, params, 2)
    sd = opt.state_dict()
    assert set(sd) == {"param_groups", "state"}
    # parameters are numbered across the groups, in order
    assert [i for g in sd["param_groups"] for i in g["params"]] == [0, 1, 2]
    assert [len(g["params"]) for g in sd["param_groups"]] == [len(g["params"]) for g in opt.param_groups]
    for leaf in _leaves(sd):
        assert type(leaf) in (int, float, bool, str, np.ndarray), type(leaf)
    # the saved arrays are copies: further training does not change them
    before = {i: {k: np.copy(v) for k, v in s.items()} for i, s in sd["state"].items()}
    _train(opt, params, 1, start=2)
    for i, s in sd["state"].items():
        for k, v in s.items():
            np.testing.assert_array_equal(v, before[i][k])


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_restored_optimizer_continues_bit_identically(name):
    params = _params()
    opt = OPTIMIZERS[name](params)
    _train(opt, params, 4)
    clones = [Parameter(p.data.copy()) for p in params]
    restored = OPTIMIZERS[name](clones)
    restored.param_groups[0]["lr"] = 123.0  # must be overwritten by load_state_dict
    restored.load_state_dict(opt.state_dict())
    assert restored.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    _train(opt, params, 3, start=4)
    _train(restored, clones, 3, start=4)
    for p, c in zip(params, clones):
        np.testing.assert_array_equal(p.data, c.data)


def test_state_dict_survives_an_npz_file_without_pickle():
    params = _params()
    opt = Adam(params, lr=1e-2, betas=(0.8, 0.99))
    _train(opt, params, 3)
    sd = opt.state_dict()
    flat = {}
    for i, group in enumerate(sd["param_groups"]):
        for k, v in group.items():
            flat[f"param_groups/{i}/{k}"] = np.asarray(v)
    for i, s in sd["state"].items():
        for k, v in s.items():
            flat[f"state/{i}/{k}"] = np.asarray(v)
    buffer = io.BytesIO()
    np.savez(buffer, **flat)
    buffer.seek(0)
    loaded = np.load(buffer, allow_pickle=False)
    rebuilt = {"param_groups": [{} for _ in sd["param_groups"]], "state": {}}
    for key in loaded.files:
        kind, i, k = key.split("/")
        if kind == "param_groups":
            rebuilt["param_groups"][int(i)][k] = loaded[key]
        else:  # keys come back as strings and numbers as 0-d arrays
            rebuilt["state"].setdefault(i, {})[k] = loaded[key]
    clones = [Parameter(p.data.copy()) for p in params]
    restored = Adam(clones)
    restored.load_state_dict(rebuilt)
    assert restored.param_groups[0]["betas"] == (0.8, 0.99)
    assert type(restored.state[clones[0]]["step"]) is int
    _train(opt, params, 2, start=3)
    _train(restored, clones, 2, start=3)
    for p, c in zip(params, clones):
        np.testing.assert_array_equal(p.data, c.data)


def test_load_state_dict_rejects_mismatches():
    params = _params()
    opt = SGD(params, lr=0.1, momentum=0.9)
    _train(opt, params, 1)
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="3 parameter"):
        SGD(params[:2], lr=0.1, momentum=0.9).load_state_dict(sd)
    with pytest.raises(ValueError, match="parameter group"):
        SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.1, momentum=0.9).load_state_dict(sd)
    other = [Parameter(np.zeros((2, 3))), Parameter(np.zeros(2)), Parameter(np.zeros((4, 1, 2)))]
    with pytest.raises(ValueError, match=r"shape \(3, 2\).*\(2, 3\)"):
        SGD(other, lr=0.1, momentum=0.9).load_state_dict(sd)


# ---- learning-rate schedules --------------------------------------------------------------
def _opt(lr=1.0, **kwargs):
    return SGD([_param(0.0)], lr=lr, **kwargs)


def _lrs(scheduler, epochs):
    """The lr of the first group at epochs 0 .. epochs-1 (read from the optimizer)."""
    out = []
    for _ in range(epochs):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        assert scheduler.get_last_lr() == [g["lr"] for g in scheduler.optimizer.param_groups]
        scheduler.step()
    return out


def test_multistep_lr_drops_at_milestones():
    sched = MultiStepLR(_opt(1.0), milestones=[4, 2], gamma=0.1)
    assert sched.last_epoch == 0
    assert _lrs(sched, 7) == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01, 0.01], rel=1e-12)
    assert sched.last_epoch == 7


def test_step_lr_decays_every_step_size_epochs_in_every_group_and_matches_torch():
    a, b = _param(0.0), _param(0.0)
    sched = StepLR(SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=2.0), step_size=3, gamma=0.5)
    lrs = []
    for _ in range(7):
        lrs.append(sched.get_last_lr())
        sched.step()
    expected = [[2, 0.5]] * 3 + [[1, 0.25]] * 3 + [[0.5, 0.125]]
    assert np.allclose(lrs, expected, rtol=1e-12, atol=0)
    restored = StepLR(_opt(2.0), step_size=1)
    restored.load_state_dict(sched.state_dict())
    assert (restored.step_size, restored.gamma, restored.last_epoch) == (3, 0.5, 7)
    with pytest.raises(ValueError, match="step_size must be a whole number of epochs >= 1, got 0"):
        StepLR(_opt(), step_size=0)
    torch = pytest.importorskip("torch")
    t_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2.0)
    t_sched = torch.optim.lr_scheduler.StepLR(t_opt, step_size=3, gamma=0.5)
    theirs = []
    for _ in range(7):
        theirs.append(t_sched.get_last_lr()[0])
        t_opt.step()
        t_sched.step()
    assert [lr[0] for lr in lrs] == pytest.approx(theirs, rel=1e-12)


@pytest.mark.parametrize("total_steps, pct_start", [(10, 0.3), (17, 0.25), (5, 0.5)])
def test_one_cycle_lr_and_momentum_match_torch_step_by_step(total_steps, pct_start):
    torch = pytest.importorskip("torch")
    a, b = _param(0.0), _param(0.0)
    ours_opt = SGD([{"params": [a]}, {"params": [b]}], lr=1.0, momentum=0.9)
    ours = OneCycleLR(ours_opt, max_lr=[0.4, 0.1], total_steps=total_steps, pct_start=pct_start)
    ta, tb = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    t_opt = torch.optim.SGD([{"params": [ta]}, {"params": [tb]}], lr=1.0, momentum=0.9)
    theirs = torch.optim.lr_scheduler.OneCycleLR(t_opt, max_lr=[0.4, 0.1], total_steps=total_steps,
                                                 pct_start=pct_start)
    for step in range(total_steps):
        for ours_group, their_group in zip(ours_opt.param_groups, t_opt.param_groups):
            assert ours_group["lr"] == pytest.approx(their_group["lr"], rel=1e-12, abs=1e-15), step
            assert ours_group["momentum"] == pytest.approx(their_group["momentum"], rel=1e-12), step
        t_opt.step()
        if step < total_steps - 1:
            ours.step()
            theirs.step()
    with pytest.raises(ValueError, match="past total_steps"):
        ours.step()
        ours.step()


def test_one_cycle_lr_refuses_bad_settings():
    with pytest.raises(ValueError, match="total_steps, or both epochs and steps_per_epoch"):
        OneCycleLR(_opt(momentum=0.9), max_lr=0.1)
    with pytest.raises(ValueError, match="needs an optimizer with momentum"):
        OneCycleLR(Adam([_param(0.0)], lr=0.1), max_lr=0.1, total_steps=10)
    with pytest.raises(ValueError, match="pct_start"):
        OneCycleLR(_opt(momentum=0.9), max_lr=0.1, total_steps=10, pct_start=1.0)
    sched = OneCycleLR(_opt(momentum=0.9), max_lr=0.1, epochs=2, steps_per_epoch=5)
    assert sched.total_steps == 10 and sched.get_last_lr() == pytest.approx([0.004])


def test_cosine_annealing_closed_form():
    sched = CosineAnnealingLR(_opt(1.1), T_max=4, eta_min=0.1)
    lrs = _lrs(sched, 5)
    # eta_min + (base - eta_min) * (1 + cos(pi * t / T_max)) / 2
    expected = [1.1, 0.1 + (1 + math.sqrt(0.5)) / 2, 0.6, 0.1 + (1 - math.sqrt(0.5)) / 2, 0.1]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_schedulers_scale_every_group_from_its_own_base_lr():
    a, b = _param(0.0), _param(0.0)
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=2.0)
    sched = MultiStepLR(opt, milestones=[1], gamma=0.5)
    sched.step()
    assert sched.get_last_lr() == pytest.approx([1.0, 0.25])


def test_linear_warmup_ramps_then_hands_over():
    opt = _opt(0.8)
    sched = LinearWarmup(opt, warmup_steps=4, after=MultiStepLR(opt, milestones=[2], gamma=0.5))
    # ramp: 0.8 * (t + 1) / 4, then MultiStepLR from its own epoch 0
    assert _lrs(sched, 8) == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8, 0.8, 0.4, 0.4], rel=1e-12)
    assert sched.after.last_epoch == 4  # the wrapped scheduler was kept in step (epoch 8 - 4)
    assert sched.last_epoch == 8


def test_linear_warmup_into_cosine_and_alone():
    opt = _opt(1.0)
    sched = LinearWarmup(opt, 2, after=CosineAnnealingLR(opt, T_max=2))
    assert _lrs(sched, 5) == pytest.approx([0.5, 1.0, 1.0, 0.5, 0.0], abs=1e-15)
    alone = LinearWarmup(_opt(0.3), 3)
    assert _lrs(alone, 5) == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3], rel=1e-12)


def _warmup_cosine(opt):
    return LinearWarmup(opt, 3, after=CosineAnnealingLR(opt, T_max=5, eta_min=0.01))


@pytest.mark.parametrize("make", [
    lambda opt: MultiStepLR(opt, [2, 5], gamma=0.3),
    lambda opt: CosineAnnealingLR(opt, T_max=6, eta_min=0.05),
    _warmup_cosine,
], ids=["MultiStepLR", "CosineAnnealingLR", "LinearWarmup"])
def test_scheduler_state_dict_round_trip(make):
    opt = _opt(0.5, momentum=0.9)
    sched = make(opt)
    for _ in range(4):
        sched.step()
    sd = sched.state_dict()
    for leaf in _leaves(sd):
        assert type(leaf) in (int, float, bool, str), type(leaf)
    opt2 = _opt(0.5, momentum=0.9)
    sched2 = make(opt2)
    opt2.load_state_dict(opt.state_dict())  # the optimizer carries the current lr
    sched2.load_state_dict(sd)
    assert sched2.last_epoch == sched.last_epoch == 4
    assert sched2.get_last_lr() == sched.get_last_lr()
    assert _lrs(sched2, 5) == _lrs(sched, 5)


def test_scheduler_load_state_dict_rejects_foreign_keys():
    sched = CosineAnnealingLR(_opt(), T_max=3)
    with pytest.raises(KeyError, match="milestones"):
        sched.load_state_dict(MultiStepLR(_opt(), [1]).state_dict())


# ---- clip_grad_norm_ -------------------------------------------------------------------------
def test_clip_grad_norm_scales_in_place_to_max_norm():
    a, b, c = _param(0.0, 0.0), _param(0.0), _param(0.0)
    a.grad, b.grad = Tensor(np.array([3.0, 4.0])), Tensor(np.array([12.0]))  # total norm sqrt(9 + 16 + 144) = 13
    a_grad = a.grad.data
    total = clip_grad_norm_([a, b, c], max_norm=1.0)
    assert total == pytest.approx(13.0, rel=1e-15)
    assert a.grad.data is a_grad  # in place
    assert c.grad is None
    coef = 1.0 / (13.0 + 1e-6)
    np.testing.assert_allclose(a.grad, [3 * coef, 4 * coef], rtol=1e-15)
    new_norm = math.sqrt(np.sum(a.grad.data**2) + np.sum(b.grad.data**2))
    assert new_norm == pytest.approx(1.0, abs=1e-6)
    assert clip_grad_norm_([a, b], max_norm=1.0) == pytest.approx(new_norm, rel=1e-14)


def test_clip_grad_norm_leaves_small_gradients_alone():
    p = _param(0.0, 0.0)
    p.grad = Tensor(np.array([0.3, 0.4]))
    assert clip_grad_norm_(p, max_norm=1.0) == pytest.approx(0.5)  # a single Tensor works too
    np.testing.assert_array_equal(p.grad, [0.3, 0.4])
    assert clip_grad_norm_([_param(1.0)], max_norm=1.0) == 0.0  # no gradients at all


def test_clip_grad_norm_inf_norm():
    a, b = _param(0.0, 0.0), _param(0.0)
    a.grad, b.grad = Tensor(np.array([-6.0, 1.0])), Tensor(np.array([2.0]))
    assert clip_grad_norm_([a, b], max_norm=3.0, norm_type=math.inf) == 6.0
    assert np.max(np.abs(np.concatenate([a.grad, b.grad]))) == pytest.approx(3.0, abs=1e-6)


# ---- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=-0.1),
    lambda ps: SGD(ps, lr=0.1, momentum=-0.5),
    lambda ps: SGD(ps, lr=0.1, weight_decay=-1e-4),
    lambda ps: Adam(ps, lr=-1e-3),
    lambda ps: AdamW(ps, lr=-1e-3),
    lambda ps: Adam(ps, betas=(0.9, 1.0)),
    lambda ps: Adam(ps, eps=-1.0),
    lambda ps: SGD([{"params": ps, "lr": -1.0}], lr=0.1),
], ids=["sgd-lr", "sgd-momentum", "sgd-wd", "adam-lr", "adamw-lr", "adam-betas", "adam-eps", "group-lr"])
def test_invalid_hyperparameters_raise(make):
    with pytest.raises(ValueError, match="Invalid"):
        make([_param(1.0)])


def test_nesterov_needs_momentum_and_no_dampening():
    with pytest.raises(ValueError, match="Nesterov"):
        SGD([_param(1.0)], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Nesterov"):
        SGD([_param(1.0)], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)


def test_bad_parameter_lists_raise():
    p = _param(1.0)
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        SGD([p, p], lr=0.1)
    with pytest.raises(TypeError, match="Tensors"):
        SGD([np.zeros(2)], lr=0.1)


# ---- against torch.optim (skipped where torch is not installed) ---------------------------------
def _compare_with_torch(make_ours, make_torch, steps=5):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    shapes = [(4, 3), (3,), (2, 2, 2)]
    init = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]
    ours = [Parameter(x.copy()) for x in init]
    theirs = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in init]
    opt, topt = make_ours(ours), make_torch(torch, theirs)
    for step_grads in grads:
        for p, t, g in zip(ours, theirs, step_grads):
            p.grad, t.grad = Tensor(g.copy()), torch.tensor(g)
        opt.step()
        topt.step()
    for p, t, x0 in zip(ours, theirs, init):
        assert np.all(p.data != x0)  # every entry moved
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs", [
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=5e-2),
], ids=["momentum", "dampening-wd", "nesterov-wd"])
def test_sgd_matches_torch(kwargs):
    _compare_with_torch(lambda ps: SGD(ps, **kwargs), lambda torch, ps: torch.optim.SGD(ps, **kwargs))


@pytest.mark.parametrize("kwargs", [
    dict(lr=1e-2),
    dict(lr=3e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1),
], ids=["defaults", "wd"])
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_and_adamw_match_torch(name, kwargs):
    ours = {"Adam": Adam, "AdamW": AdamW}[name]
    _compare_with_torch(lambda ps: ours(ps, **kwargs), lambda torch, ps: getattr(torch.optim, name)(ps, **kwargs))


@pytest.mark.parametrize("name", ["MultiStepLR", "CosineAnnealingLR"])
def test_schedulers_match_torch(name):
    torch = pytest.importorskip("torch")
    kwargs = {
        "MultiStepLR": dict(milestones=[3, 5, 5], gamma=0.5),  # a repeated milestone drops twice
        "CosineAnnealingLR": dict(T_max=7, eta_min=0.01),      # 12 epochs: past T_max and back up
    }[name]
    sched = globals()[name](_opt(0.3), **kwargs)
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    for _ in range(12):
        assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-12, abs=1e-15)
        topt.step()
        sched.step()
        tsched.step()


# ---- GPU (CuPy) -------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    lambda ps: AdamW(ps, lr=1e-2),
], ids=["SGD", "AdamW"])
def test_gpu_matches_cpu(make):
    params = _params()
    gpu = [Parameter(to_device(p.data, "cuda")) for p in params]
    opt, gopt = make(params), make(gpu)
    for t in range(3):
        for p, g, grad in zip(params, gpu, _grads(t)):
            p.grad, g.grad = Tensor(grad), Tensor(to_device(grad, "cuda"))
        opt.step()
        gopt.step()
    assert gpu[0].device.startswith("cuda")
    for p, g in zip(params, gpu):
        np.testing.assert_allclose(to_device(g.data, "cpu"), p.data, rtol=1e-12, atol=1e-12)
    clones = [Parameter(to_device(p.data, "cuda")) for p in gpu]
    restored = make(clones)
    restored.load_state_dict(gopt.state_dict())
    assert all(v.device.id == 0 for s in restored.state.values() for v in s.values() if hasattr(v, "device"))


def test_a_frozen_layer_stays_frozen_through_training_steps_and_train_mode():
    import minires
    import minires.functional as F
    from minires.models import cifar_resnet

    minires.manual_seed(0)
    model = cifar_resnet(8, width=4)
    for p in model.stem.parameters():
        p.requires_grad_(False)
    frozen = [p.data.copy() for p in model.stem.parameters()]
    others = [p.data.copy() for p in model.head.parameters()]
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = minires.tensor(np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32))
    for _ in range(2):
        model.train()
        loss = F.cross_entropy(model(x), np.array([0, 1, 2, 3]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(not p.requires_grad and p.grad is None for p in model.stem.parameters())
    assert all(np.array_equal(p.data, before) for p, before in zip(model.stem.parameters(), frozen))
    assert not any(np.array_equal(p.data, before) for p, before in zip(model.head.parameters(), others))
