"""`python tests/hang_in_python.py PROCESS CALL LAUNCHER_ARGS...`: the gin launcher, except that
process PROCESS blocks forever when it assembles its CALL-th batch: alive (its heartbeats and
threads go on), never stepping again; its peers then wait inside the step's collectives.
For the step watchdog's test (test_multihost.py)."""

import sys
import threading

import jax

from cpt_jax import partitioning, train


def main():
    process, call = int(sys.argv[1]), int(sys.argv[2])
    assemble = partitioning.host_local_batch_to_global
    calls = [0]

    def hanging(*args, **kwargs):
        calls[0] += 1
        if jax.process_index() == process and calls[0] == call:
            print(f"process {process} hangs at its batch {call}", file=sys.stderr, flush=True)
            threading.Event().wait()
        return assemble(*args, **kwargs)

    partitioning.host_local_batch_to_global = hanging
    train.main(sys.argv[3:])


if __name__ == "__main__":
    main()
