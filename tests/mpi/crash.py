"""Run with mpiexec -n 2: rank 1 fails while rank 0 waits for it in an all-reduce.

    crash.py raise    rank 1 raises an exception inside distributed.fail_together()
    crash.py kill     rank 1 is killed by SIGKILL (as the out-of-memory killer does)

Either way the job must end within seconds, not hang: fail_together names the rank and aborts
every rank; a killed process is noticed by the launcher, which ends the others.
"""
import os
import signal
import sys
import time

import numpy

from minires import distributed


def main(how):
    distributed.init()
    with distributed.fail_together():
        distributed.all_reduce_([numpy.ones(3)])  # both ranks are up and talking
        if distributed.rank() == 1:
            time.sleep(0.5)  # rank 0 is in the all-reduce below by now
            if how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("the data of rank 1 could not be read (a failure made on purpose)")
        distributed.all_reduce_([numpy.ones(3)])  # waits for rank 1, which never comes
        print("rank 0 was not stopped", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
