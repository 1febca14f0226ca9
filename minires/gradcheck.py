"""Numerical gradient checking: does every hand-written backward agree with calculus?

For f producing a tensor y, draw a **random** upstream gradient G and look at
the scalar L(x) = sum(G * f(x)). Backward gives dL/dx analytically; central
differences give it numerically:

    dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

Why random G? With G = 1 everywhere, L = sum(y). For batch norm sum(y) does
not depend on x at all (each channel of x_hat sums to zero), so the true
gradient is 0 and a backward returning zeros would pass. A random G gives every
output a different weight, and every wrong term shows.

Small tensors are checked element by element. For large ones we check a random
sample of elements plus random directions v: dL/dx . v against
(L(x + eps v) - L(x - eps v)) / (2 eps), which tests every element at once.
Everything runs in float64, where central differences are accurate to ~1e-8.
"""
import numpy

from minires.backends import get_array_module
from minires.engine.grad_mode import no_grad
from minires.engine.tensor import Tensor


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the numerical one."""


class GradcheckResult:
    """The outcome: ``passed``, the ``worst`` relative error and where it occurred."""

    def __init__(self, tolerance):
        self.tolerance = tolerance
        self.max_error = 0.0
        self.where = "nothing checked"
        self.comparisons = 0

    def record(self, analytic, numeric, floor, where):
        error = abs(analytic - numeric) / max(abs(analytic), abs(numeric), floor)
        self.comparisons += 1
        if error > self.max_error or self.comparisons == 1:
            self.max_error = error
            self.where = f"{where}: analytic {analytic:.10g}, numerical {numeric:.10g}"

    @property
    def passed(self):
        return self.max_error <= self.tolerance

    def __repr__(self):
        status = "passed" if self.passed else "FAILED"
        return f"<gradcheck {status}: worst relative error {self.max_error:.2e} at {self.where}>"


def gradcheck(fn, inputs, params=(), eps=1e-5, rtol=1e-3, atol=1e-5, max_elements=48, directions=8,
              seed=0, raise_exception=True):
    """Check ``fn``'s gradients with respect to every tensor that requires grad.

    fn            called as ``fn(*inputs)``; must return a Tensor and be deterministic
                  (seed any dropout inside it).
    inputs        the arguments; those that require grad are checked.
    params        further tensors fn uses (a layer's weights), also checked.
    rtol, atol    an element passes when |a - n| / max(|a|, |n|, atol) <= rtol,
                  so gradients smaller than atol are compared absolutely.
    max_elements  tensors with more elements get a random sample of this many
                  elements plus ``directions`` random directional checks.
    Returns a :class:`GradcheckResult`; raises :class:`GradcheckError` on failure
    unless ``raise_exception`` is False.
    """
    named = [(f"input {k}", t) for k, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    named += [(f"param {k}", t) for k, t in enumerate(params) if t.requires_grad]
    if not named:
        raise ValueError("gradcheck: no input or parameter requires grad, so there is nothing to check")
    for name, t in named:
        if t.dtype != numpy.float64:
            raise TypeError(f"gradcheck needs float64 tensors for accurate differences; {name} is {t.dtype}")
    rng = numpy.random.default_rng(seed)
    saved_grads = [t.grad for _, t in named]

    # Analytic gradients of L = sum(G * f(x)) by one backward pass with upstream gradient G.
    output = fn(*inputs)
    if not isinstance(output, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(output).__name__}")
    xp = get_array_module(output.data)
    upstream = xp.asarray(rng.standard_normal(output.shape))
    for _, t in named:
        t.grad = None
    output.backward(upstream)
    analytic = [t.grad.data if t.grad is not None else xp.zeros_like(t.data) for _, t in named]

    def objective():
        with no_grad():
            return float((upstream * fn(*inputs).data).sum())

    result = GradcheckResult(rtol)
    for (name, t), grad in zip(named, analytic):
        data = t.data
        if data.size <= max_elements:
            elements = range(data.size)
        else:
            elements = rng.choice(data.size, size=max_elements, replace=False)
        for flat in elements:
            index = numpy.unravel_index(int(flat), data.shape)
            original = data[index].copy()
            data[index] = original + eps
            plus = objective()
            data[index] = original - eps
            minus = objective()
            data[index] = original
            numeric = (plus - minus) / (2 * eps)
            result.record(float(grad[index]), numeric, atol, f"{name} element {tuple(int(i) for i in index)}")
        if data.size > max_elements:
            original = data.copy()
            for d in range(directions):
                v = xp.asarray(rng.standard_normal(data.shape))
                data[...] = original + eps * v
                plus = objective()
                data[...] = original - eps * v
                minus = objective()
                data[...] = original
                numeric = (plus - minus) / (2 * eps)
                result.record(float((grad * v).sum()), numeric, atol, f"{name} random direction {d}")

    for (_, t), g in zip(named, saved_grads):
        t.grad = g
    if raise_exception and not result.passed:
        raise GradcheckError(f"gradient check failed: worst relative error {result.max_error:.3e} "
                             f"(tolerance {rtol:.1e}) at {result.where}")
    return result
