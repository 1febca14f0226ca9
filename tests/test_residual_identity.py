"""The residual identity, checked step by step.

A residual block computes y = F(x) + S(x), where F is the "branch"
(conv -> BN -> ReLU -> conv -> BN) and S the shortcut. For any scalar loss L,
the chain rule splits the gradient that reaches x into two parts:

    dL/dx = dL/dy * dF/dx  +  dL/dy * dS/dx
            ---------------    -------------
            through F          through the shortcut

With the identity shortcut S(x) = x the second term is dL/dy itself: the
upstream gradient reaches x unchanged, however badly F's gradient behaves.
That is why very deep residual networks still train.

The tests below take a random upstream gradient G = dL/dy (equivalently the
loss L = sum(G * y)), and for three kinds of shortcut

    (a) compute the branch term by backpropagating G through F alone,
    (b) compute the shortcut term by hand with NumPy,
    (c) check that autograd's dL/dx for the whole block equals (a) + (b),
    (d) check (a) and the total against central finite differences, computed
        by a plain loop that perturbs one input element at a time.

Everything is float64 with batch norm in training mode (batch statistics, so
F mixes all pixels of the batch together, which makes the test stronger).

Every test runs on each backend (the ``backend`` fixture; the emulator, slow,
gets one gradcheck): autograd runs there, while the finite differences, a
property of the function and not of where it is computed, are always taken on
the NumPy path (on the emulator they would take minutes).
"""
import numpy as np
import pytest

import minires
from minires.backends.emulator import emulate_kernels
import minires.functional as F

from backend_tools import cases_on_backends, make_backend

N, C, H, W = 2, 2, 4, 4  # batch 2, 2 channels, 4x4 images (small: quick on the emulator)


# ---- building blocks ------------------------------------------------------------------

NUMPY = make_backend("numpy")


def make_branch_params(c_in, c_out, seed):
    """Weights for F as NumPy arrays: two 3x3 convs and two batch norms (fixed, no gradient needed)."""
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.standard_normal((c_out, c_in, 3, 3)) / np.sqrt(9 * c_in),
        "g1": rng.uniform(0.5, 1.5, c_out),
        "b1": rng.uniform(-0.5, 0.5, c_out),
        "w2": rng.standard_normal((c_out, c_out, 3, 3)) / np.sqrt(9 * c_out),
        "g2": rng.uniform(0.5, 1.5, c_out),
        "b2": rng.uniform(-0.5, 0.5, c_out),
    }


def on(backend, arrays):
    """The parameters as tensors on ``backend``."""
    return {name: backend.tensor(a) for name, a in arrays.items()}


def branch(x, p, stride=1, return_pre_activation=False):
    """F(x) = BN(conv(ReLU(BN(conv(x))))), 3x3 convs with padding 1; the first may stride."""
    h = F.conv2d(x, p["w1"], stride=stride, padding=1)
    pre = F.batch_norm(h, None, None, p["g1"], p["b1"], training=True)  # the ReLU's input
    h = F.relu(pre)
    h = F.conv2d(h, p["w2"], stride=1, padding=1)
    out = F.batch_norm(h, None, None, p["g2"], p["b2"], training=True)
    return (out, pre) if return_pre_activation else out


def autograd_grad(backend, fn, x, G):
    """dL/dx for L = sum(G * fn(x)), by one backward pass on ``backend`` with upstream gradient G.
    ``fn(x, backend)`` builds its tensors on the backend it is given."""
    tx = backend.tensor(x, requires_grad=True)
    out = fn(tx, backend)
    assert out.shape == G.shape
    out.backward(backend.array(G))
    return backend.numpy(tx.grad).copy()


_finite_differences = {}  # the same on every backend: computed once per test run


def finite_difference_grad(fn, x, G, eps=1e-6):
    """dL/dx for L = sum(G * fn(x)) by central differences on the NumPy path, one element of x
    at a time:  dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)."""
    key = (fn.__qualname__, x.tobytes(), G.tobytes())
    if key in _finite_differences:
        return _finite_differences[key]

    def L(x_value):
        with minires.no_grad():
            return float((G * fn(NUMPY.tensor(x_value), NUMPY).numpy()).sum())

    grad = np.zeros_like(x)
    with emulate_kernels(enabled=False):
        for i in np.ndindex(x.shape):
            plus, minus = x.copy(), x.copy()
            plus[i] += eps
            minus[i] -= eps
            grad[i] = (L(plus) - L(minus)) / (2 * eps)
    _finite_differences[key] = grad
    return grad


def assert_relu_inputs_away_from_kink(x, p, stride=1, margin=1e-3):
    """Finite differences are only valid if no ReLU input crosses 0 when x moves by eps.
    A perturbation of 1e-6 moves a pre-activation by far less than `margin`."""
    with minires.no_grad(), emulate_kernels(enabled=False):
        _, pre = branch(NUMPY.tensor(x), on(NUMPY, p), stride, return_pre_activation=True)
    smallest = np.abs(pre.numpy()).min()
    assert smallest > margin, f"a ReLU input is {smallest:.2e} from the kink; pick another seed"


def close(actual, expected):
    # Finite differences in float64 with eps = 1e-6 are good to ~1e-8 here.
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


# ---- 1. identity shortcut: y = F(x) + x --------------------------------------------------

def test_identity_shortcut_gradient_is_branch_plus_upstream(backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W))
    p = make_branch_params(C, C, seed=1)
    G = rng.standard_normal((N, C, H, W))  # dL/dy, same shape as y (and x)
    assert_relu_inputs_away_from_kink(x, p)

    def F_only(t, where):
        return branch(t, on(where, p))

    def block(t, where):
        return branch(t, on(where, p)) + t  # y = F(x) + x

    # (a) The branch term dL/dy * dF/dx: backpropagate G through F alone.
    branch_term = autograd_grad(backend, F_only, x, G)
    # (b) The shortcut term: d(x)/dx is the identity, so the term is G itself.
    shortcut_term = G
    # (c) Autograd through the whole block must add the two paths.
    total = autograd_grad(backend, block, x, G)
    np.testing.assert_allclose(total, branch_term + shortcut_term, rtol=1e-12, atol=1e-12)

    # (d) Both against finite differences: L(x) = sum(G * F(x)) and L(x) = sum(G * y).
    numeric_branch = finite_difference_grad(F_only, x, G)
    numeric_total = finite_difference_grad(block, x, G)
    close(branch_term, numeric_branch)
    close(total, numeric_total)
    # ... and so, numerically as well, the shortcut contributes exactly G.
    close(numeric_total - numeric_branch, G)

    # The identity term matters: without it, the gradient would be (a) alone, which differs.
    assert not np.allclose(total, branch_term, atol=1e-3)


def test_identity_shortcut_passes_gradient_even_when_branch_is_dead(backend):
    """If F's gradient vanishes (here: the last BN has gamma = 0, so F(x) = beta is
    constant), dL/dx is still exactly G: the shortcut is a gradient highway."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((N, C, H, W))
    p = make_branch_params(C, C, seed=3)
    p["g2"] = np.zeros(C)
    G = rng.standard_normal((N, C, H, W))
    branch_term = autograd_grad(backend, lambda t, where: branch(t, on(where, p)), x, G)
    total = autograd_grad(backend, lambda t, where: branch(t, on(where, p)) + t, x, G)
    np.testing.assert_allclose(branch_term, 0.0, atol=1e-12)
    np.testing.assert_allclose(total, G, rtol=1e-12, atol=1e-12)


# ---- 2. projection shortcut: y = F(x) + W_s * x (1x1 conv, stride 2, 2 -> 4 channels) -----

def test_projection_shortcut_gradient_is_branch_plus_transposed_1x1_conv(backend):
    C_in, C_out, stride = C, 2 * C, 2
    rng = np.random.default_rng(4)
    x = rng.standard_normal((N, C_in, H, W))
    p = make_branch_params(C_in, C_out, seed=5)  # F's first conv strides by 2: 6x6 -> 3x3
    W_s = rng.standard_normal((C_out, C_in, 1, 1)) / 2.0
    OH, OW = H // stride, W // stride
    G = rng.standard_normal((N, C_out, OH, OW))
    assert_relu_inputs_away_from_kink(x, p, stride)

    def F_only(t, where):
        return branch(t, on(where, p), stride)

    def shortcut(t, where):
        return F.conv2d(t, where.tensor(W_s), stride=stride)

    def block(t, where):
        return F_only(t, where) + shortcut(t, where)  # y = F(x) + W_s * x

    # (a) branch term, by backprop through F alone.
    branch_term = autograd_grad(backend, F_only, x, G)

    # (b) shortcut term dL/dy * d(W_s * x)/dx, written out: output pixel (h, w) of the
    # 1x1 stride-2 conv reads input pixel (2h, 2w), and y[n,o,h,w] = sum_c W_s[o,c] x[n,c,2h,2w].
    # So x[n,c,2h,2w] receives sum_o G[n,o,h,w] * W_s[o,c] (the transposed 1x1 conv);
    # pixels at odd rows or columns are never read and receive nothing.
    shortcut_term = np.zeros_like(x)
    for n in range(N):
        for c in range(C_in):
            for h in range(OH):
                for w in range(OW):
                    for o in range(C_out):
                        shortcut_term[n, c, stride * h, stride * w] += G[n, o, h, w] * W_s[o, c, 0, 0]
    assert (shortcut_term[:, :, 1::2, :] == 0).all() and (shortcut_term[:, :, :, 1::2] == 0).all()
    # The same thing by autograd through the shortcut alone.
    np.testing.assert_allclose(autograd_grad(backend, shortcut, x, G), shortcut_term, rtol=1e-12, atol=1e-12)

    # (c) the full block's gradient is the sum of the two terms.
    total = autograd_grad(backend, block, x, G)
    np.testing.assert_allclose(total, branch_term + shortcut_term, rtol=1e-12, atol=1e-12)

    # (d) finite differences.
    close(branch_term, finite_difference_grad(F_only, x, G))
    close(total, finite_difference_grad(block, x, G))


# ---- 3. option-A shortcut: y = F(x) + zero_pad_shortcut(x) --------------------------------

def test_option_a_shortcut_gradient_is_branch_plus_subsampled_upstream(backend):
    C_in, C_out, stride = C, 2 * C, 2
    rng = np.random.default_rng(6)
    x = rng.standard_normal((N, C_in, H, W))
    p = make_branch_params(C_in, C_out, seed=7)
    G = rng.standard_normal((N, C_out, H // stride, W // stride))
    assert_relu_inputs_away_from_kink(x, p, stride)

    def F_only(t, where):
        return branch(t, on(where, p), stride)

    def block(t, where):
        return F_only(t, where) + F.zero_pad_shortcut(t, C_out, stride=stride)

    # (a) branch term.
    branch_term = autograd_grad(backend, F_only, x, G)

    # (b) shortcut term: the shortcut copies x[n, c, 2h, 2w] to y[n, c, h, w] for the first
    # C_in channels and appends zeros. So x at every other pixel receives G[:, :C_in]; the
    # zero channels G[:, C_in:] and the skipped pixels contribute nothing.
    shortcut_term = np.zeros_like(x)
    shortcut_term[:, :, ::stride, ::stride] = G[:, :C_in]

    # (c) the full block.
    total = autograd_grad(backend, block, x, G)
    np.testing.assert_allclose(total, branch_term + shortcut_term, rtol=1e-12, atol=1e-12)

    # (d) finite differences.
    close(branch_term, finite_difference_grad(F_only, x, G))
    close(total, finite_difference_grad(block, x, G))


# ---- the same identities through minires.gradcheck (random upstream, sampled elements) ---

# On the emulator every sample runs the whole block again: one kind (and one element, one direction).
@cases_on_backends("kind", ["identity", "projection", "option-A"], emulated=["identity"], ids=str)
def test_residual_blocks_pass_gradcheck(backend, kind):
    rng = np.random.default_rng(8)
    if kind == "identity":
        p, stride, c_out = make_branch_params(C, C, seed=9), 1, C
    else:
        p, stride, c_out = make_branch_params(C, 2 * C, seed=9), 2, 2 * C
    W_s = backend.tensor(rng.standard_normal((2 * C, C, 1, 1)), requires_grad=True)
    x_data = rng.standard_normal((N, C, H, W))
    assert_relu_inputs_away_from_kink(x_data, p, stride)
    x, weights = backend.tensor(x_data, requires_grad=True), on(backend, p)

    def block(t):
        if kind == "identity":
            shortcut = t
        elif kind == "projection":
            shortcut = F.conv2d(t, W_s, stride=2)
        else:
            shortcut = F.zero_pad_shortcut(t, c_out, stride=2)
        return branch(t, weights, stride) + shortcut

    params = (W_s,) if kind == "projection" else ()
    backend.gradcheck(block, (x,), params=params, max_elements=64)
