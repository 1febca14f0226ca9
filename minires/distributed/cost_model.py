"""What an all-reduce costs: the ring algorithm's time, a model for planning (and teaching).

In a ring of p workers each cuts its S bytes into p chunks. In p - 1 steps of *reduce-scatter*
each passes one chunk to its neighbour and adds the one it receives, until every worker holds one
chunk summed over all; in p - 1 steps of *all-gather* the summed chunks go round. Each worker sends
2 (p - 1) messages of S / p bytes, so on links of B bytes/s with a latency alpha per message

    T(p) = 2 (p - 1) / p * S / B + 2 (p - 1) * alpha,

which is almost independent of p for large S: why the ring (NCCL's, MPI's for large messages) scales.
"""


def ring_all_reduce_s(parameters, workers, gbit_per_s, latency_s, bytes_per_value=4):
    """T(p) in seconds for ``parameters`` values (float32: 4 bytes each) on links of ``gbit_per_s``."""
    size = parameters * bytes_per_value
    return 2 * (workers - 1) / workers * size / (gbit_per_s * 1e9 / 8) + 2 * (workers - 1) * latency_s
