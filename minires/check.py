"""``python -m minires check``: gradient-check every op on small random inputs.

Each case builds float64 inputs away from the kinks (ReLU at 0, ties in
max-pool) and runs :func:`minires.gradcheck`. The table shows the worst
relative error per case; any failure makes the command exit non-zero.
"""
import numpy

import minires
import minires.functional as F
from minires.gradcheck import gradcheck


def _cases(rng):
    def t(*shape, low=None):
        """A random float64 leaf; with ``low``, magnitudes in [low, 1] (away from 0)."""
        if low is None:
            data = rng.standard_normal(shape)
        else:
            data = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, 1.0, size=shape)
        return minires.tensor(data, requires_grad=True)

    def distinct(*shape):
        """Well-separated distinct values: no ties inside a max-pool window."""
        return minires.tensor(rng.permutation(numpy.prod(shape)).reshape(shape) * 0.1, requires_grad=True)

    def positive(*shape):
        return minires.tensor(rng.uniform(0.5, 2.0, size=shape), requires_grad=True)

    labels = numpy.array([0, 3, 1])
    condition = minires.tensor(rng.random((2, 3, 4)) < 0.5)
    run_mean, run_var = minires.tensor(numpy.zeros(3)), minires.tensor(numpy.ones(3))

    def residual_block(x, w1, g1, b1, w2, g2, b2):
        branch = F.batch_norm(F.conv2d(x, w1, padding=1), None, None, g1, b1, training=True)
        branch = F.batch_norm(F.conv2d(F.relu(branch), w2, padding=1), None, None, g2, b2, training=True)
        return F.relu(branch + x)

    def projection_block(x, w1, g1, b1, w2, g2, b2, ws):
        branch = F.batch_norm(F.conv2d(x, w1, stride=2, padding=1), None, None, g1, b1, training=True)
        branch = F.batch_norm(F.conv2d(F.relu(branch), w2, padding=1), None, None, g2, b2, training=True)
        return branch + F.conv2d(x, ws, stride=2)

    yield "add (broadcast)", lambda a, b: a + b, [t(2, 3, 4), t(3, 1)]
    yield "sub (broadcast)", lambda a, b: a - b, [t(3, 1), t(2, 3, 4)]
    yield "mul (broadcast)", lambda a, b: a * b, [t(2, 3, 4), t(4)]
    yield "div (broadcast)", lambda a, b: a / b, [t(2, 3), positive(3)]
    yield "neg", lambda a: -a, [t(3, 4)]
    yield "pow (scalar)", lambda a: a ** 3, [t(3, 4)]
    yield "pow (tensor)", lambda a, b: a ** b, [positive(3, 4), t(3, 4)]
    yield "matmul (batched)", lambda a, b: a @ b, [t(2, 3, 4), t(4, 5)]
    yield "exp", lambda a: a.exp(), [t(3, 4)]
    yield "log", lambda a: a.log(), [positive(3, 4)]
    yield "sum (axis 1)", lambda a: a.sum(axis=1), [t(2, 3, 4)]
    yield "mean (axes 0,2)", lambda a: a.mean(axis=(0, 2), keepdims=True), [t(2, 3, 4)]
    yield "max (dim -1, values)", lambda a: a.max(-1).values, [distinct(2, 3, 4)]
    yield "min (dim 1, keepdim, values)", lambda a: a.min(1, keepdim=True).values, [distinct(2, 3, 4)]
    yield "amax (dims 0,2)", lambda a: a.amax(dim=(0, 2)), [distinct(2, 3, 4)]
    yield "amin (all)", lambda a: a.amin(), [distinct(2, 3, 4)]
    yield "var (dim 1)", lambda a: a.var(1), [t(2, 3, 4)]
    yield "var (all, correction 0)", lambda a: a.var(correction=0), [t(2, 3, 4)]
    yield "std (dims 0,2, keepdim)", lambda a: a.std(dim=(0, 2), keepdim=True), [t(2, 3, 4)]
    yield "abs", lambda a: a.abs(), [t(3, 4, low=0.1)]
    yield "sqrt", lambda a: a.sqrt(), [positive(3, 4)]
    yield "clamp (0.25, 0.85)", lambda a: a.clamp(0.25, 0.85), [distinct(3, 4)]  # no value near a bound
    yield "where (broadcast)", lambda a, b: minires.ops.where(condition, a, b), [t(2, 3, 4), t(3, 1)]
    yield "reshape", lambda a: a.reshape(4, 6), [t(2, 3, 4)]
    yield "permute", lambda a: a.permute(2, 0, 1), [t(2, 3, 4)]
    yield "transpose", lambda a: a.transpose(0, 2), [t(2, 3, 4)]
    yield "flatten", lambda a: a.flatten(1), [t(2, 3, 4)]
    yield "getitem (repeated index)", lambda a: a[numpy.array([0, 2, 0]), 1:], [t(3, 4)]
    yield "concatenate", lambda a, b: minires.concatenate([a, b], axis=1), [t(2, 3), t(2, 2)]
    yield "cat (4-D, dim 1: channel concat)", lambda a, b, c: minires.cat([a, b, c], dim=1), [t(2, 3, 4, 5), t(2, 1, 4, 5), t(2, 2, 4, 5)]
    yield "pad", lambda a: F.pad(a, (2, 1, 1, 0)), [t(2, 3)]
    for stride in (1, 2):
        for padding in (0, 1):
            yield (f"conv2d 3x3 stride {stride} pad {padding}",
                   lambda x, w, b, s=stride, p=padding: F.conv2d(x, w, b, stride=s, padding=p),
                   [t(2, 3, 7, 5), t(4, 3, 3, 3), t(4)])
    yield "conv2d 1x1 stride 2 (projection)", lambda x, w: F.conv2d(x, w, stride=2), [t(2, 3, 5, 5), t(4, 3, 1, 1)]
    yield "batch_norm 4-D train", lambda x, g, b: F.batch_norm(x, run_mean, run_var, g, b, training=True), [t(2, 3, 4, 5), t(3), t(3)]
    yield "batch_norm 4-D eval", lambda x, g, b: F.batch_norm(x, run_mean, run_var, g, b, training=False), [t(2, 3, 4, 5), t(3), t(3)]
    yield "batch_norm 2-D train", lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True), [t(5, 3), t(3), t(3)]
    yield "relu", F.relu, [t(3, 4, 5, low=0.1)]
    yield "sigmoid", F.sigmoid, [t(3, 4, 5)]
    yield "tanh", F.tanh, [t(3, 4, 5)]
    yield "channel_scale (SE scale)", F.channel_scale, [t(2, 3, 4, 5), t(2, 3)]
    for dim in (0, 1, -1):
        yield f"softmax (dim {dim})", lambda x, d=dim: F.softmax(x, d), [t(2, 3, 4)]
        yield f"log_softmax (dim {dim})", lambda x, d=dim: F.log_softmax(x, d), [t(2, 3, 4)]
    yield "max_pool2d 2x2", lambda x: F.max_pool2d(x, 2), [distinct(2, 3, 6, 6)]
    yield "max_pool2d 3x3 stride 2 pad 1", lambda x: F.max_pool2d(x, 3, 2, 1), [distinct(2, 3, 7, 5)]
    yield "avg_pool2d 3x3 stride 2 pad 1", lambda x: F.avg_pool2d(x, 3, 2, 1), [t(2, 3, 7, 5)]
    yield "global_avg_pool2d", F.global_avg_pool2d, [t(2, 3, 4, 5)]
    yield "adaptive_avg_pool2d 7x5 -> 3x2", lambda x: F.adaptive_avg_pool2d(x, (3, 2)), [t(2, 3, 7, 5)]
    yield "adaptive_max_pool2d 7x5 -> 3x2", lambda x: F.adaptive_max_pool2d(x, (3, 2)), [distinct(2, 3, 7, 5)]
    yield "adaptive_avg_pool2d 3x4 -> 5x6", lambda x: F.adaptive_avg_pool2d(x, (5, 6)), [t(2, 3, 3, 4)]
    yield "adaptive_max_pool2d 3x4 -> 5x6", lambda x: F.adaptive_max_pool2d(x, (5, 6)), [distinct(2, 3, 3, 4)]
    yield "linear", F.linear, [t(4, 5), t(3, 5), t(3)]
    yield "cross_entropy", lambda z: F.cross_entropy(z, labels), [t(3, 5)]
    yield "cross_entropy (smoothing 0.1)", lambda z: F.cross_entropy(z, labels, label_smoothing=0.1), [t(3, 5)]
    yield "cross_entropy (reduction none)", lambda z: F.cross_entropy(z, labels, reduction="none"), [t(3, 5)]
    yield "dropout (fixed mask)", _seeded_dropout, [t(4, 6)]
    yield "zero_pad_shortcut (option A)", lambda x: F.zero_pad_shortcut(x, 5, 2), [t(2, 3, 5, 5)]
    yield "residual block F(x) + x", residual_block, [t(2, 3, 5, 5), t(3, 3, 3, 3), t(3), t(3), t(3, 3, 3, 3), t(3), t(3)]
    yield "projection block F(x) + W_s x", projection_block, [t(2, 3, 5, 5), t(4, 3, 3, 3), t(4), t(4), t(4, 4, 3, 3), t(4), t(4), t(4, 3, 1, 1)]


def _seeded_dropout(x):
    minires.manual_seed(0)  # the same mask in every evaluation of the function
    return F.dropout(x, p=0.3, training=True)


def run_checks(seed=0, out=print):
    """Gradient-check every case; print a table; return True when all pass."""
    rng = numpy.random.default_rng(seed)
    rows, all_passed = [], True
    for name, fn, inputs in _cases(rng):
        try:
            result = gradcheck(fn, inputs, raise_exception=False)
            error, status = f"{result.max_error:.2e}", "pass" if result.passed else "FAIL"
            all_passed &= result.passed
        except Exception as err:  # an op that crashes is a failure too, reported in the table
            error, status = "-", f"ERROR: {type(err).__name__}: {err}"
            all_passed = False
        rows.append((name, error, status))
    width = max(len(r[0]) for r in rows)
    out(f"{'op':<{width}}  {'worst rel. error':>16}  result")
    out(f"{'-' * width}  {'-' * 16}  ------")
    for name, error, status in rows:
        out(f"{name:<{width}}  {error:>16}  {status}")
    failures = sum(r[2] != "pass" for r in rows)
    out(f"\n{len(rows) - failures} passed, {failures} failed (float64, central differences, random upstream gradient)")
    return all_passed
