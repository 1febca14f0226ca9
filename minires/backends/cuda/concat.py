"""Channel concatenation on the kernel path: ``kernels/concat.cu``.

Forward allocates y (N, C, H, W) and launches one copy per input into its channel range.

Backward (the split) hands each input its channel range of dL/dy. In C-ordered NCHW memory
that range is N separate runs, one per image, so it is not one dense block and our kernels
(which index dense memory) could not take a view of it: a copy kernel gathers the runs
into a dense dL/dx. Only with N = 1 is the range a single dense run, and then the input
gets a *view* of dL/dy (no copy, no launch).
"""
from minires.backends.cuda.loader import KernelFile, contiguous, empty, int32

CONCAT = KernelFile("concat.cu", ["concat_copy_in", "concat_copy_out"])


def _copy_arguments(x_shape, y_shape, c0):
    """(n_values, run, y_image, offset) as int32, after checking that int indexes y."""
    N, C_x, H, W = x_shape
    _, C, _, _ = y_shape
    int32(N * C * H * W)  # every index into y (and so into x) fits an int
    return tuple(int32(v) for v in (N * C_x * H * W, C_x * H * W, C * H * W, c0 * H * W))


def channel_concat_forward(xs, channels):
    """y (N, sum(channels), H, W) with xs[k] copied into channels offsets[k] ... offsets[k] + channels[k]."""
    N, _, H, W = xs[0].shape
    y = empty((N, sum(channels), H, W), xs[0].dtype, xs[0])
    c0 = 0
    for x, C_x in zip(xs, channels):
        x = contiguous(x)
        CONCAT.launch_over("concat_copy_in", x.dtype, x.size, (x, y) + _copy_arguments(x.shape, y.shape, c0))
        c0 += C_x
    return y


def channel_concat_backward(grad_y, channels, wanted):
    """dL/dx for each input: its channel range of dL/dy (None where ``wanted`` is False).
    A view when N = 1, else a dense copy (see the module docstring)."""
    grad_y = contiguous(grad_y)
    N, _, H, W = grad_y.shape
    grads, c0 = [], 0
    for C_x, want in zip(channels, wanted):
        if not want:
            grads.append(None)
        elif N == 1:
            grads.append(grad_y[:, c0:c0 + C_x])  # one dense run: a view
        else:
            grad_x = empty((N, C_x, H, W), grad_y.dtype, grad_y)
            CONCAT.launch_over("concat_copy_out", grad_y.dtype, grad_x.size,
                               (grad_y, grad_x) + _copy_arguments(grad_x.shape, grad_y.shape, c0))
            grads.append(grad_x)
        c0 += C_x
    return tuple(grads)
