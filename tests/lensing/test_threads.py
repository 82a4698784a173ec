"""One BLAS/OpenMP thread per process in 'VAE' fits by default; LENSTRONOMY_VAE_THREADS changes it."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_lm import galaxy_fitting_sequence
from threadpoolctl import threadpool_info, threadpool_limits

from lenstronomy_vae.lensing import registration
from lenstronomy_vae.lensing.threads import THREADS_VARIABLE, fit_threads

WORKER_SCRIPT = textwrap.dedent("""
    import pickle
    import multiprocess

    def blas_threads(payload):
        import pickle
        from threadpoolctl import threadpool_info
        pickle.loads(payload)
        return sorted({info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"})

    if __name__ == "__main__":
        from lenstronomy_vae import VAEProfile
        payload = pickle.dumps(VAEProfile(MODEL))
        with multiprocess.get_context("spawn").Pool(1) as pool:  # as lenstronomy's threadCount workers
            print(pool.map(blas_threads, [payload])[0])
""")


@pytest.mark.parametrize("value, threads", [(None, 1), ("3", 3), ("all", None), (" ALL ", None)])
def test_fit_threads_reads_the_environment(monkeypatch, value, threads):
    if value is None:
        monkeypatch.delenv(THREADS_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(THREADS_VARIABLE, value)
    assert fit_threads() == threads


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_fit_threads_names_a_bad_setting(monkeypatch, value):
    monkeypatch.setenv(THREADS_VARIABLE, value)
    with pytest.raises(ValueError, match=f"{THREADS_VARIABLE} must be a positive number of threads or 'all'"):
        fit_threads()


@pytest.mark.slow
@pytest.mark.parametrize("value, expected", [("1", "[1]"), ("all", None)])
def test_a_worker_of_a_parallel_fit_runs_one_blas_thread(galaxy_model_path, tmp_path, monkeypatch, value, expected):
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT.replace("MODEL", repr(galaxy_model_path)))
    environment = {**os.environ, THREADS_VARIABLE: value, "OPENBLAS_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         env=environment, check=True).stdout.strip().splitlines()[-1]
    assert out == (expected or "[2]")


def _blas_threads():
    return {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}


@pytest.mark.parametrize("value, limited", [("1", True), ("all", False)])
def test_a_vae_fit_sequence_runs_with_its_thread_pools_limited(galaxy_model_path, monkeypatch, value, limited):
    monkeypatch.setenv(THREADS_VARIABLE, value)
    seen = []

    def recording_lm(fitting_sequence, **kwargs):
        seen.append(_blas_threads())
        return fitting_sequence._updateManager.parameter_state, {}

    monkeypatch.setattr(registration, "run_lm", recording_lm)
    image = np.random.default_rng(0).normal(0.0, 0.01, (12, 12))
    fitting = galaxy_fitting_sequence(galaxy_model_path, image, noise=0.01)
    with threadpool_limits(limits=2):
        fitting.fit_sequence([["LM", {}]])
        assert _blas_threads() == {2}  # restored after the fit
    assert seen == [{1}] if limited else seen == [{2}]
