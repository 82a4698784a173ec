"""Where many independent jobs run: here, on an embedded Dask cluster of local processes, or on a real one.

:func:`engine` gives a ``map``-like function for the duration of a ``with`` block:

- one worker and no scheduler: Python's own ``map``, in this process (no Dask at all);
- ``workers`` > 1: a ``distributed.LocalCluster`` of that many single-threaded worker processes,
  started for the block and closed after it (nothing to set up);
- ``scheduler="tcp://host:8786"``: the Dask cluster behind that scheduler, e.g. one started by
  ``dask-jobqueue`` on SLURM (see the README, "Running at scale").

The map yields results in the order of its inputs, as they finish in that order; a job's
exception is raised in this process. Jobs must be picklable functions (closures are shipped with
cloudpickle); give them names or paths of models, not models, and load them with
:func:`cached_in_worker`, so that each worker process loads a model once.
"""

import contextlib
import functools
import os

import dask
from distributed import Client, LocalCluster

from lenstronomy_vae.utils import tensorflow_logs
from lenstronomy_vae.utils.checks import check_count

WORKER_ENVIRONMENT = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextlib.contextmanager
def engine(workers=1, scheduler=None):
    """A ``map(function, *iterables)`` running the jobs here, on a local Dask cluster or on ``scheduler``.

    Args:
        workers: worker processes of the embedded local cluster (1: no cluster, this process).
        scheduler: address of a running Dask scheduler (``tcp://…``); ``workers`` is then ignored.

    Yields:
        the map function.
    """
    check_count("workers", workers)
    if scheduler is None and workers == 1:
        yield map
        return
    with contextlib.ExitStack() as stack:
        if scheduler is None:
            # The workers start with WORKER_ENVIRONMENT in place of Dask's pre-spawn environment: one BLAS/OpenMP
            # thread each, set before they import anything, and no MALLOC_TRIM_THRESHOLD_, whose mere presence stops
            # glibc from raising its mmap threshold, so every numpy array above 128 kB is a fresh mmap (system time):
            # on 2 workers fit-many took 96 s for 4 lenses with it (127 s of system time), 18 s without, 33 s on 1
            # process. TensorFlow's log level set by the package's own import is not passed on (workers quieten
            # their own).
            with _unset("TF_CPP_MIN_LOG_LEVEL" if tensorflow_logs.SET_HERE else None), \
                    dask.config.set({"distributed.nanny.pre-spawn-environ": WORKER_ENVIRONMENT}):
                cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                           dashboard_address=None))
            client = stack.enter_context(Client(cluster))
        else:
            client = stack.enter_context(Client(scheduler))
        yield functools.partial(_ordered_results, client)


@contextlib.contextmanager
def _unset(name):
    """Remove environment variable ``name`` (None: none) for the block, then restore it."""
    saved = os.environ.pop(name, None) if name else None
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved


def _ordered_results(client, function, *iterables):
    """Submit every job at once; yield the results in input order."""
    futures = client.map(function, *iterables, pure=False)
    try:
        for future in futures:
            yield future.result()
    finally:
        client.cancel(futures)


@functools.lru_cache(maxsize=8)
def cached_in_worker(loader, *arguments):
    """``loader(*arguments)``, computed once per process (per worker): e.g. a network loaded by name."""
    return loader(*arguments)
