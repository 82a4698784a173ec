"""Parallel fits with a 'VAE' source: PSO under MPI and emcee with threadCount=2 reproduce serial runs.

lenstronomy parallelises only the log-likelihood evaluations: under MPI the master rank draws
every random number (PSO particles and velocities from numpy's global generator, seeded by the
script) and the worker ranks evaluate the likelihood; emcee with ``threadCount`` maps its
walkers over a process pool but keeps its own generator in the master. The same seed therefore
gives the same swarm and the same chain as a serial run, as long as every process computes the
same log-likelihood for the same parameters. The tests assert that, to 1e-9 relative: room for a
last-bit difference in a worker's arithmetic, nothing more (see the MPI test's docstring).
(The PSO with threadCount=2 is in tests/test_registration.py.)
"""

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import emcee
import numpy as np
import pytest

HERE = pathlib.Path(__file__).resolve().parents[1] / "scripts"  # fit_script.py, train_script.py
REPO = pathlib.Path(__file__).resolve().parents[2]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import fit_script  # noqa: E402  (tests/scripts/fit_script.py)

pytestmark = pytest.mark.slow  # subprocesses, shipped weights or real fits

SCRIPT = HERE / "fit_script.py"
RTOL = 1e-9


def script_env():
    """Environment of a child process: this checkout importable, TF quiet, Open MPI allowed as root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def mpiexec_command(n):
    """``mpiexec -n n`` with the options Open MPI needs here (root, 2 cores), or a skip."""
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("mpiexec not found (apt-get install openmpi-bin libopenmpi-dev)")
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py not installed (pip install mpi4py)")
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30)
    command = [mpiexec]
    if "Open MPI" in version.stdout + version.stderr or "OpenRTE" in version.stdout + version.stderr:
        # Root in a container; 2 ranks may exceed the cores; no core binding, so the worker runs
        # its linear algebra with the same threads as a serial process.
        command += ["--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
    return command + ["-n", str(n)]


def test_pso_under_mpi_gives_the_serial_result(galaxy_model_path, tmp_path):
    """``mpiexec -n 2`` (1 master + 1 likelihood worker) against the same PSO in one process.

    Tolerance: the master rank makes every random draw, so with the same seed the swarm can
    differ from the serial one only if the worker's log-likelihood differs from the master's
    for the same parameters. Both run the same numpy/TensorFlow code on the same machine, which
    gives identical numbers (observed here: bit-identical histories); 1e-9 relative allows a
    last-bit change in a reduction and nothing else. A weaker tolerance (e.g. θ_E within 1e-2)
    would hide a broken pool behind the PSO's convergence: a swarm evaluated with wrong
    likelihoods can still end near the truth.
    """
    out = tmp_path / "mpi.json"
    command = mpiexec_command(2) + [sys.executable, str(SCRIPT), galaxy_model_path, str(out), "pso", "--mpi"]
    run = subprocess.run(command, env=script_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"mpiexec failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "MPI option chosen for PSO" in run.stdout
    parallel = json.loads(out.read_text())
    assert parallel["mpi_size"] == 2 and parallel["mpi_rank"] == 0

    serial = fit_script.run_pso(galaxy_model_path, mpi=False)

    assert parallel["param_names"] == serial["param_names"]
    np.testing.assert_allclose(parallel["log_likelihood_history"], serial["log_likelihood_history"], rtol=RTOL)
    np.testing.assert_allclose(parallel["best_position_history"], serial["best_position_history"], rtol=RTOL,
                               atol=1e-12)
    assert parallel["theta_E"] == pytest.approx(serial["theta_E"], rel=RTOL)
    for fitted, expected in zip(parallel["kwargs_source"] + parallel["kwargs_lens"],
                                serial["kwargs_source"] + serial["kwargs_lens"]):
        assert fitted.keys() == expected.keys()
        for key in expected:
            assert fitted[key] == pytest.approx(expected[key], rel=RTOL, abs=1e-12), key
    # ...and the fit is a fit: 8 iterations of 12 particles bring θ_E near the truth (0.85″).
    assert abs(serial["theta_E"] - fit_script.LENS.lens["theta_E"]) < 0.1
    assert serial["log_likelihood_history"][-1] > serial["log_likelihood_history"][0]


def test_emcee_with_two_processes_gives_a_valid_chain_identical_to_the_serial_one(galaxy_model_path, tmp_path):
    n_run = 5
    threaded = fit_script.run_mcmc(galaxy_model_path, tmp_path / "threads.h5", n_run=n_run, thread_count=2)
    serial = fit_script.run_mcmc(galaxy_model_path, tmp_path / "serial.h5", n_run=n_run, thread_count=1)

    samples = np.asarray(threaded["samples"])
    num_param = len(threaded["param_names"])
    n_walkers = 2 * num_param
    assert num_param == 3 + 2 + 4  # θ_E, e1, e2; source centre; 4 latents
    assert samples.shape == (n_run * n_walkers, num_param)
    assert np.all(np.isfinite(samples)) and np.all(np.isfinite(threaded["log_likelihood"]))
    backend = emcee.backends.HDFBackend(tmp_path / "threads.h5", name="lenstronomy_mcmc_emcee", read_only=True)
    assert backend.iteration == n_run
    assert 0 < backend.accepted.sum() <= n_run * n_walkers  # walkers moved
    assert len(np.unique(samples[:, 0])) > n_walkers  # not a frozen chain
    theta_e = samples[:, threaded["param_names"].index("theta_E_lens0")]
    assert np.all((theta_e >= 0.3) & (theta_e <= 2.0))  # inside the bounds
    # The pool only evaluates likelihoods: emcee's generator lives in the parent, so the chain is
    # the serial chain.
    np.testing.assert_allclose(samples, serial["samples"], rtol=RTOL)
    np.testing.assert_allclose(threaded["log_likelihood"], serial["log_likelihood"], rtol=RTOL)
