"""The world of a distributed run: how many processes there are, and which one this is.

An MPI launcher starts the processes (``mpiexec -n 4 python -m minires train --distributed``,
or ``srun`` on a cluster); each finds its *rank* (0, 1, ...) among the *world size* processes
in MPI's COMM_WORLD, through mpi4py. Rank 0 is the "main" process: the only one that prints
and writes files. Without ``init()``, or outside a launcher, the world is one process, rank 0
of 1, and every collective (``collectives.py``) returns its input.

    distributed.init()                 # once, before the model is built
    distributed.rank(), distributed.world_size(), distributed.is_main()
    with distributed.fail_together():  # an exception on any rank ends every rank, naming it
        ...

The *local* rank counts the processes on this machine only; it chooses a GPU
(``cuda:local_rank``) and, with ``share_cores``, each process's share of the CPU cores.
"""
import contextlib
import os
import sys
import time
import traceback

# What the launchers tell each process: MPICH's Hydra (and srun --mpi=pmi2) set PMI_SIZE,
# Open MPI sets OMPI_COMM_WORLD_SIZE. Read before mpi4py is imported, to spot a launch
# as several processes of a command that was not asked to be distributed.
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
LAUNCHER_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK")
# The variables that set the BLAS thread count: when one is set, the user chose, and we keep it.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")

_world = {"comm": None, "rank": 0, "size": 1, "local_rank": 0, "local_size": 1}


def launcher_world_size():
    """How many processes the MPI launcher started (1 when none did), from its environment."""
    return launcher_number(LAUNCHER_SIZE_VARIABLES, 1)


def launcher_rank():
    """This process's rank as the MPI launcher numbered it (0 when none did), from its environment."""
    return launcher_number(LAUNCHER_RANK_VARIABLES, 0)


def launcher_number(names, default):
    """The first of the environment variables ``names`` that holds a whole number, else ``default``."""
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return default


def init():
    """Join the MPI world (idempotent); returns (rank, world size).

    Without mpi4py a single process runs on its own; several processes started by a launcher
    without mpi4py are refused, since each would otherwise train alone.
    """
    if _world["comm"] is not None:
        return rank(), world_size()
    try:
        from mpi4py import MPI  # importing it initialises MPI
    except ImportError:
        if launcher_world_size() > 1:
            raise RuntimeError(f"this is one of {launcher_world_size()} processes started by an MPI launcher, "
                               "but mpi4py is not installed: pip install \"minires[mpi]\"") from None
        return 0, 1
    comm = MPI.COMM_WORLD
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)  # the processes sharing this machine's memory
    _world.update(comm=comm, rank=comm.Get_rank(), size=comm.Get_size(),
                  local_rank=local.Get_rank(), local_size=local.Get_size())
    local.Free()
    return rank(), world_size()


def communicator():
    """mpi4py's COMM_WORLD once ``init()`` joined it, else None (a world of one)."""
    return _world["comm"]


def rank():
    return _world["rank"]


def world_size():
    return _world["size"]


def local_rank():
    return _world["local_rank"]


def local_size():
    """How many processes of the world run on this machine."""
    return _world["local_size"]


def is_main():
    """True on rank 0, the process that prints, writes metrics and checkpoints."""
    return _world["rank"] == 0


def barrier():
    """Wait until every rank has arrived here."""
    if _world["comm"] is not None:
        _world["comm"].Barrier()


def broadcast_object(value, root=0):
    """``value`` as rank ``root`` has it, on every rank (a small Python object: a folder name, a flag)."""
    if _world["comm"] is None:
        return value
    return _world["comm"].bcast(value, root=root)


def share_cores():
    """Give each process of this machine its share of the cores for BLAS and our slab threads
    (minires/backends/cpu_threads.py reads the BLAS thread count), unless OMP_NUM_THREADS or
    a similar variable already says how many. Two processes on two cores: one thread each,
    instead of four threads fighting over two cores. Call before the first op runs."""
    if any(name in os.environ for name in THREAD_VARIABLES) or _world["local_size"] == 1:
        return
    from threadpoolctl import threadpool_limits

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threadpool_limits(max(1, cores // _world["local_size"]), user_api="blas")  # for the process's life


# ---- failing together ------------------------------------------------------------------------

# How long a rank other than 0 waits before it reports its error: when every rank fails the same
# way (a bad setting), rank 0 reports first and its abort ends the others before they repeat it.
QUIET_WAIT_S = 0.5


@contextlib.contextmanager
def fail_together(exit_code=lambda err: 2):
    """Run the block; if it raises on any rank of a world of several, print one line naming the
    rank and end *every* rank (MPI_Abort with ``exit_code(err)``), instead of leaving the others
    waiting in a collective for a process that is gone. In a world of one, the exception
    propagates as usual.

    ``MINIRES_DEBUG=1`` prints the traceback too."""
    try:
        yield
    except BaseException as err:  # KeyboardInterrupt too: every rank must stop
        if _world["size"] == 1:
            raise
        if _world["rank"] != 0:
            time.sleep(QUIET_WAIT_S)
        if os.environ.get("MINIRES_DEBUG"):
            traceback.print_exc()
        what = "interrupted" if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"
        print(f"error: rank {_world['rank']} of {_world['size']} failed, so every rank stops: {what}",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        _world["comm"].Abort(exit_code(err))
