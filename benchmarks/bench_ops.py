"""Forward+backward time of the layer ops on ResNet-20's layer shapes, against PyTorch.

    python benchmarks/bench_ops.py [--batch 128] [--repeats 5]

Times are medians over ``--repeats`` runs after two warm-up runs, float32, on the CPU,
with inputs as a model hands them on: channel-major memory for minires (what its
convolutions produce, minires/ops/layout.py), NCHW for PyTorch, and no input gradient
for the first convolution (its input is the images). Where PyTorch is installed
(``pip install torch==2.13.0``, CPU build) the same ops run in PyTorch in the same
process, alternating with ours run by run, and the table shows
ratio = minires time / PyTorch time (lower is better; target for conv2d: <= 1.5).
The "ResNet-20 total" row weights each conv shape by how often ResNet-20 uses it.

``--gemm-floor`` adds, per conv shape, the time of its matrix products alone: the same
GEMMs minires's convolution runs (forward, input gradient, weight gradient, slab by slab,
the cores sharing the slabs) on matrices already in place, with no im2col, copies or
Python around them, and of the forward's GEMMs alone (inference). No im2col + BLAS
convolution can beat those rows on this machine.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout works uninstalled

import minires
import minires.functional as F
from minires.backends.cpu_threads import run_on_every_core, single_threaded_blas
from minires.ops.conv import slab_ranges
from minires.ops.im2col import conv_output_size
from minires.ops.layout import as_channel_major
from minires.ops.long_rows import LongRowGrid

try:
    import torch
except ImportError:
    torch = None

# (in channels, out channels, image size, stride, how many convs of ResNet-20 have this shape)
CONV_SHAPES = [(3, 16, 32, 1, 1), (16, 16, 32, 1, 6), (16, 32, 32, 2, 1), (32, 32, 16, 1, 5), (32, 64, 16, 2, 1), (64, 64, 8, 1, 5)]
FEATURE_SHAPES = [(16, 32), (32, 16), (64, 8)]  # (channels, image size) of the three stages


def median_times(ours, theirs, repeats):
    """Median seconds of ours() and theirs() (None without PyTorch), timed alternately after
    two warm-up calls each, so that both see the same moments of a noisy machine."""
    steps = [step for step in (ours, theirs) if step is not None]
    for _ in range(2):
        for step in steps:
            step()
    times = [[] for _ in steps]
    for _ in range(repeats):
        for step, spent in zip(steps, times):
            start = time.perf_counter()
            step()
            spent.append(time.perf_counter() - start)
    medians = [statistics.median(spent) for spent in times]
    return medians[0], (medians[1] if theirs is not None else None)


def make_case(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def ours_and_torch(forward, arrays, grad_shape, rng, input_grad=True):
    """Two step functions (ours, PyTorch's) running forward then backward with a random upstream
    gradient. Our activations and gradient are channel-major, as inside a model; ``input_grad``
    False: the first input needs no gradient (a network's first layer)."""
    grad = make_case(rng, grad_shape)
    needs = [input_grad] + [True] * (len(arrays) - 1)
    ours_inputs = [minires.tensor(as_channel_major(a), requires_grad=r) for a, r in zip(arrays, needs)]
    ours_grad = as_channel_major(grad)  # as minires's convolutions hand activations on

    def ours():
        forward("minires", *ours_inputs).backward(ours_grad)

    if torch is None:
        return ours, None
    torch_inputs = [torch.tensor(a, requires_grad=r) for a, r in zip(arrays, needs)]
    torch_grad = torch.tensor(grad)

    def theirs():
        forward("torch", *torch_inputs).backward(torch_grad)

    return ours, theirs


def conv(lib, x, w, stride):
    return F.conv2d(x, w, stride=stride, padding=1) if lib == "minires" else torch.nn.functional.conv2d(x, w, stride=stride, padding=1)


def batch_norm(lib, x, gamma, beta):
    if lib == "minires":
        return F.batch_norm(x, None, None, gamma, beta, training=True)
    return torch.nn.functional.batch_norm(x, None, None, gamma, beta, training=True)


def relu(lib, x):
    return F.relu(x) if lib == "minires" else torch.relu(x)


def max_pool(lib, x, kernel, stride, padding):
    if lib == "minires":
        return F.max_pool2d(x, kernel, stride, padding)
    return torch.nn.functional.max_pool2d(x, kernel, stride, padding)


def gemm_floor(rng, batch, cin, cout, size, stride, input_grad, backward=True):
    """A step of just the GEMMs of one convolution's forward and backward (see the docstring):
    per slab, W_mat @ col, and with ``backward`` the input gradient's product and the weight
    gradient's."""
    kernel_rows = 3 * 3
    if stride == 1:  # long rows: every product spans the slab's grid positions, border included
        positions_per_image = LongRowGrid((size, size), (3, 3), (1, 1)).positions(1)
        dx = (cin, cout * kernel_rows)  # W_flipped @ col_G
    else:  # windows: the output positions; dcol = W_mat^T @ G
        positions_per_image = conv_output_size(size, 3, stride, 1) ** 2
        dx = (cin * kernel_rows, cout)
    col_rows = (cout if input_grad and stride == 1 else cin) * kernel_rows
    slabs = slab_ranges(batch, col_rows * positions_per_image * 4)
    Q = (slabs[0][1] - slabs[0][0]) * positions_per_image

    def matrices():  # one set per thread, made once
        return {"w": make_case(rng, (cout, cin * kernel_rows)), "col": make_case(rng, (cin * kernel_rows, Q)),
                "y": np.empty((cout, Q), np.float32), "dx_w": make_case(rng, dx),
                "dx_in": make_case(rng, (dx[1], Q)), "dx": np.empty((dx[0], Q), np.float32),
                "dw_col": make_case(rng, (col_rows, Q)), "dw_by": make_case(rng, (Q, cin if col_rows != cin * kernel_rows else cout))}

    threads = {}

    def products(share):
        if share[0] not in threads:
            threads[share[0]] = matrices()
        m = threads[share[0]]
        for _ in share:
            np.matmul(m["w"], m["col"], out=m["y"])
            if backward and input_grad:
                np.matmul(m["dx_w"], m["dx_in"], out=m["dx"])
            if backward:
                m["dw_col"] @ m["dw_by"]

    def step():
        with single_threaded_blas():
            run_on_every_core(products, slabs)

    return step


def cases(batch):
    for cin, cout, size, stride, count in CONV_SHAPES:
        out = (size + 2 - 3) // stride + 1
        yield ("conv2d 3x3", f"{cin}->{cout} {size}x{size} s{stride}", count,
               lambda lib, x, w, s=stride: conv(lib, x, w, s), [(batch, cin, size, size), (cout, cin, 3, 3)], (batch, cout, out, out),
               cin != 3)  # the first conv's input (the images) needs no gradient
    for channels, size in FEATURE_SHAPES:
        shape = (batch, channels, size, size)
        yield "batch_norm train", f"{channels}x{size}x{size}", 0, batch_norm, [shape, (channels,), (channels,)], shape, True
    for channels, size in FEATURE_SHAPES:
        shape = (batch, channels, size, size)
        yield "relu", f"{channels}x{size}x{size}", 0, relu, [shape], shape, True
    for channels, size in FEATURE_SHAPES:
        shape = (batch, channels, size, size)
        yield ("max_pool2d 3x3 s2 p1", f"{channels}x{size}x{size}", 0,
               lambda lib, x: max_pool(lib, x, 3, 2, 1), [shape], (batch, channels, (size - 1) // 2 + 1, (size - 1) // 2 + 1),
               True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gemm-floor", action="store_true", help="add each conv shape's GEMMs alone (see above)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    threads = torch.get_num_threads() if torch is not None else "-"
    print(f"batch {args.batch}, float32, CPU; PyTorch {torch.__version__ if torch else 'not installed'} ({threads} threads)")
    header = f"{'op':<22} {'shape':<22} {'minires ms':>10} {'torch ms':>9} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    total_ours = total_theirs = total_floor = total_forward_floor = 0.0
    if args.gemm_floor:
        for cin, cout, size, stride, count in CONV_SHAPES:
            t_floor, t_forward = median_times(gemm_floor(rng, args.batch, cin, cout, size, stride, cin != 3),
                                              gemm_floor(rng, args.batch, cin, cout, size, stride, cin != 3, False),
                                              args.repeats)
            print(f"{'conv2d GEMMs only':<22} {f'{cin}->{cout} {size}x{size} s{stride}':<22} {t_floor * 1e3:10.2f}"
                  f"   (forward's: {t_forward * 1e3:.2f})")
            total_floor += count * t_floor
            total_forward_floor += count * t_forward
    for name, shape, count, forward, input_shapes, grad_shape, input_grad in cases(args.batch):
        ours, theirs = ours_and_torch(forward, [make_case(rng, s) for s in input_shapes], grad_shape, rng, input_grad)
        t_ours, t_theirs = median_times(ours, theirs, args.repeats)
        ratio = f"{t_ours / t_theirs:6.2f}" if t_theirs else "     -"
        theirs_ms = f"{t_theirs * 1e3:9.2f}" if t_theirs else "        -"
        print(f"{name:<22} {shape:<22} {t_ours * 1e3:10.2f} {theirs_ms} {ratio}")
        if count:
            total_ours += count * t_ours
            total_theirs += count * (t_theirs or 0.0)
    if total_theirs:
        print(f"{'conv2d':<22} {'ResNet-20 total':<22} {total_ours * 1e3:10.2f} {total_theirs * 1e3:9.2f} {total_ours / total_theirs:6.2f}")
    if total_floor:
        ratio = f"{total_floor / total_theirs:6.2f}" if total_theirs else "     -"
        theirs_ms = f"{total_theirs * 1e3:9.2f}" if total_theirs else "        -"
        print(f"{'conv2d GEMMs only':<22} {'ResNet-20 total':<22} {total_floor * 1e3:10.2f} {theirs_ms} {ratio}"
              f"   (forward's: {total_forward_floor * 1e3:.2f})")


if __name__ == "__main__":
    main()
