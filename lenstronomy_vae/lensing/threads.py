"""Threads of a 'VAE' fit: one BLAS/OpenMP thread per process by default, set here rather than by the user's shell.

A likelihood evaluation of a 'VAE' source is a few small matrix products (the numpy decoder) and
lenstronomy's own array work. Extra BLAS or OpenMP threads buy nothing there, and on a machine whose
other cores are busy (another fit, the other workers of a parallel fit) they spin and wait: on 2 cores
shared with one busy process, 30 emcee steps took 99.8 s with the default threading and 5.0 s with
one thread. So fits with a 'VAE' component run with the thread pools limited (threadpoolctl):
``FittingSequence.fit_sequence`` in the process that calls it, and for good in the worker processes of
``threadCount`` > 1, which unpickle the profile.

Set the environment variable ``LENSTRONOMY_VAE_THREADS`` to another number of threads per process,
or to ``all`` to leave the thread pools as they are.
"""

import contextlib
import multiprocessing
import os

import multiprocess
from threadpoolctl import threadpool_limits

THREADS_VARIABLE = "LENSTRONOMY_VAE_THREADS"


def fit_threads():
    """BLAS/OpenMP threads per process in a 'VAE' fit: ``LENSTRONOMY_VAE_THREADS``, default 1; None for "all".

    Raises:
        ValueError: the variable is neither a positive integer nor ``all``.
    """
    value = os.environ.get(THREADS_VARIABLE, "1").strip().lower()
    if value == "all":
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{THREADS_VARIABLE} must be a positive number of threads or 'all'; got {value!r}")
    return int(value)


def limited_threads():
    """A context in which the BLAS and OpenMP thread pools have :func:`fit_threads` threads each."""
    threads = fit_threads()
    return contextlib.nullcontext() if threads is None else threadpool_limits(limits=threads)


def limit_threads_of_a_worker():
    """In a worker process (a parallel fit), limit its thread pools to :func:`fit_threads`.

    lenstronomy's ``threadCount`` workers are ``multiprocess`` (its dill-based fork of
    ``multiprocessing``) processes started by spawning; either library's workers count.
    The limit holds for the rest of the worker's life; in a main process (a script, an MPI rank,
    a notebook that copies a fit) nothing changes here: its fits are limited while they run.
    """
    threads = fit_threads()
    is_worker = multiprocess.parent_process() is not None or multiprocessing.parent_process() is not None
    if threads is not None and is_worker:
        threadpool_limits(limits=threads)
