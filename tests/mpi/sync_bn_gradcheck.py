"""Run with mpiexec -n 2: SyncBatchNorm against batch norm of the ranks' batches put together,
and its backward against central differences of S = sum over ranks of <R_r, y_r>, in float64.

Each rank has its own x (ranks of *different* batch sizes) and its own random upstream R.
Perturbing one entry of one rank's x changes every rank's y (through the shared mean and
variance), so every rank evaluates S for every perturbation. Prints one JSON line (rank 0).
Argument: "numpy" or "emulated" (the kernel path through the kernel emulator, where only four
entries of each rank's x are differentiated numerically, to keep it short).
"""
import json
import sys

import numpy

import minires
import minires.functional as F
from minires import distributed
from minires.backends.emulator import emulate_kernels
from minires.ops.sync_batch_norm import sync_batch_norm


def main(path, entries_per_rank=None):
    rank, ranks = distributed.init()
    C = 3
    shape = (3 + rank, C, 4, 2)  # rank 0: 3 images, rank 1: 4
    rng = numpy.random.default_rng([7, rank])
    x = rng.standard_normal(shape) * 2 + 1
    upstream = rng.standard_normal(shape)
    shared = numpy.random.default_rng(8)
    gamma, beta = shared.standard_normal(C), shared.standard_normal(C)
    running_mean, running_var = numpy.zeros(C), numpy.ones(C)

    def forward(x_array, stats=(None, None)):
        xt = minires.tensor(x_array, requires_grad=True)
        g, b = minires.tensor(gamma, requires_grad=True), minires.tensor(beta, requires_grad=True)
        return xt, g, b, sync_batch_norm(xt, stats[0], stats[1], g, b, momentum=0.1)

    def S(x_array):
        _, _, _, y = forward(x_array)
        return distributed.all_reduce_([numpy.array([float((upstream * y.data).sum())])])[0][0]

    xt, g, b, y = forward(x, (running_mean, running_var))
    y.backward(minires.tensor(upstream))
    grad_x = xt.grad.data
    grad_gamma, grad_beta = distributed.all_reduce_([g.grad.data.copy(), b.grad.data.copy()])

    # Forward and running statistics against plain batch norm of all images together.
    everyone = distributed.all_gather(numpy.concatenate([x.ravel(), numpy.zeros(4 * C * 8 - x.size)]))
    together = numpy.concatenate([everyone[r][:(3 + r) * C * 8].reshape(3 + r, C, 4, 2) for r in range(ranks)])
    mean_ref, var_ref = numpy.zeros(C), numpy.ones(C)
    y_ref = F.batch_norm(minires.tensor(together), mean_ref, var_ref, minires.tensor(gamma), minires.tensor(beta),
                         training=True).data
    start = sum(3 + r for r in range(rank))
    forward_error = float(numpy.abs(y.data - y_ref[start:start + shape[0]]).max())
    stats_error = float(max(numpy.abs(running_mean - mean_ref).max(), numpy.abs(running_var - var_ref).max()))

    # Central differences, one entry of one rank at a time; every rank takes part in each.
    h, worst_x = 1e-6, 0.0
    for owner in range(ranks):
        size = distributed.broadcast_object(x.size, root=owner)
        # every entry on the NumPy path; a spread of them through the (slow) emulator
        entries = range(size) if entries_per_rank is None else numpy.linspace(0, size - 1, entries_per_rank).astype(int)
        for j in entries:
            plus, minus = x.copy(), x.copy()
            if rank == owner:
                plus.flat[j] += h
                minus.flat[j] -= h
            numeric = (S(plus) - S(minus)) / (2 * h)
            if rank == owner:
                worst_x = max(worst_x, abs(numeric - grad_x.flat[j]) / max(1.0, abs(numeric)))
    worst_x = float(distributed.all_gather(numpy.array([worst_x])).max())
    worst_params = 0.0
    for which, analytic in ((0, grad_gamma), (1, grad_beta)):
        for c in range(C):
            base = (gamma, beta)[which]
            saved = base[c]
            base[c] = saved + h
            up = S(x)
            base[c] = saved - h
            down = S(x)
            base[c] = saved
            worst_params = max(worst_params, abs((up - down) / (2 * h) - analytic[c]))
    if distributed.is_main():
        print(json.dumps({"path": path, "ranks": ranks, "forward_error": forward_error, "stats_error": stats_error,
                          "grad_x_error": worst_x, "grad_param_error": worst_params,
                          "grad_x_scale": float(numpy.abs(grad_x).max())}))


if __name__ == "__main__":
    if sys.argv[1] == "emulated":
        with emulate_kernels():
            main("emulated", entries_per_rank=4)
    else:
        main("numpy")
