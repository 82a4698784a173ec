"""Where jobs run: this process, an embedded Dask cluster, or a scheduler."""

import os
import pathlib
import signal

import pytest

from lenstronomy_vae.utils.engine import cached_in_worker, engine


def _environment_and_square(value):
    return os.getpid(), (os.environ.get("OMP_NUM_THREADS"), os.environ.get("MALLOC_TRIM_THRESHOLD_")), value * value


def _dies_once(value, marker_directory):
    """value², but the worker process that first gets value 2 dies in the middle of the job."""
    marker = pathlib.Path(marker_directory) / f"died_{value}"
    if value == 2 and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return value * value


def _fails(value):
    raise ValueError(f"bad value {value}")


def test_one_worker_runs_here_with_map():
    with engine() as map_function:
        assert map_function is map
        assert list(map_function(_environment_and_square, [1, 2]))[1][2] == 4
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        with engine(workers=0):
            pass


def test_cached_in_worker_calls_the_loader_once_per_arguments():
    calls = []

    def loader(name):
        calls.append(name)
        return object()

    assert cached_in_worker(loader, "a") is cached_in_worker(loader, "a")
    cached_in_worker(loader, "b")
    assert calls == ["a", "b"]


@pytest.mark.slow
def test_a_local_cluster_runs_jobs_in_other_single_threaded_processes_in_order():
    with engine(workers=2) as map_function:
        results = list(map_function(_environment_and_square, range(6)))
        assert [square for _, _, square in results] == [0, 1, 4, 9, 16, 25]
        # one thread, and glibc's malloc left to adapt (Dask's MALLOC_TRIM_THRESHOLD_ made numpy's arrays cost a
        # system call each: fits 3× slower on 2 workers than on 1)
        assert {environment for _, environment, _ in results} == {("1", None)}
        assert os.getpid() not in {pid for pid, _, _ in results}
        with pytest.raises(ValueError, match="bad value 3"):
            list(map_function(_fails, [3]))


@pytest.mark.slow
def test_a_job_whose_worker_is_killed_runs_again_on_a_restarted_worker(tmp_path):
    with engine(workers=2) as map_function:
        assert list(map_function(_dies_once, range(5), [str(tmp_path)] * 5)) == [0, 1, 4, 9, 16]
    assert (tmp_path / "died_2").exists()  # a worker was killed, and the job still ran to its end
