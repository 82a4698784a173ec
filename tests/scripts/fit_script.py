"""A small lenstronomy fit with a 'VAE' source, run in its own process by the reliability tests.

Used by tests/test_parallel.py (PSO under ``mpiexec`` against the same PSO in one process) and
tests/test_interruption.py (an emcee chain in an HDF5 backend, killed mid-run and resumed). The
tests also import it to run the very same fit in their own process.

Usage::

    python tests/fit_script.py MODEL OUT_JSON pso [--mpi] [--seed S]
    python tests/fit_script.py MODEL OUT_JSON mcmc --backend FILE [--resume] [--n-run N]
        [--stall-after-calls K --marker FILE]

``--stall-after-calls K`` makes the K-th log-likelihood evaluation write ``--marker`` and then
sleep: a stand-in for a long evaluation, so that the caller can kill the process at a known
point of the chain (between two backend writes). It patches only this process's lenstronomy.
"""

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

from lenstronomy_vae.lensing.lens_simulation import LensSettings, simulate_lens
from lenstronomy_vae.lensing.parameters import latent_prior, vae_source_params
from lenstronomy_vae.networks.galaxy_model import load_galaxy_model

LENS = LensSettings(num_pix=24, pixel_scale=0.08, source_flux=60.0)
SOURCE_LATENTS = np.array([0.3, -0.5, 0.1, 0.8])
# Sampled: theta_E, e1, e2 of the SIE; centre and 4 latents of the VAE source (amp is linear).
FREE_LENS = ("theta_E", "e1", "e2")


def lens_simulation(model_path):
    """The tiny lens whose source is the model's own galaxy (deterministic: seed 3)."""
    model = load_galaxy_model(model_path)
    stamp = model.decode(SOURCE_LATENTS)[0, ..., 0]
    return simulate_lens(seed=3, settings=LENS, source_stamp=stamp, source_pixel_scale=model.pixel_scale)


def fitting_sequence(model_path, mpi=False):
    """A FittingSequence for the tiny lens: SIE (θ_E, e1, e2 free) + SHEAR (fixed) + 'VAE' source."""
    from lenstronomy.Workflow.fitting_sequence import FittingSequence

    simulation = lens_simulation(model_path)
    truth = LENS.lens
    sie_fixed = {key: truth[key] for key in ("center_x", "center_y")}
    shear = {"gamma1": truth["gamma1"], "gamma2": truth["gamma2"], "ra_0": 0.0, "dec_0": 0.0}
    lens_params = [
        [{"theta_E": 1.0, "e1": 0.0, "e2": 0.0, **sie_fixed}, dict(shear)],
        [{"theta_E": 0.2, "e1": 0.1, "e2": 0.1}, {}],
        [dict(sie_fixed), dict(shear)],
        [{"theta_E": 0.3, "e1": -0.5, "e2": -0.5, "center_x": -1.0, "center_y": -1.0},
         {"gamma1": -0.5, "gamma2": -0.5}],
        [{"theta_E": 2.0, "e1": 0.5, "e2": 0.5, "center_x": 1.0, "center_y": 1.0},
         {"gamma1": 0.5, "gamma2": 0.5}],
    ]
    source = vae_source_params(model_path, center_x=0.05, center_y=-0.05, fix_scale=True, fix_phi_G=True)
    kwargs_data_joint = {
        "multi_band_list": [[simulation.kwargs_data, simulation.kwargs_psf, simulation.kwargs_numerics]],
        "multi_band_type": "single-band",
    }
    kwargs_model = {"lens_model_list": ["SIE", "SHEAR"], "source_light_model_list": ["VAE"],
                    "source_light_profile_kwargs_list": [{"model": model_path}]}
    kwargs_likelihood = {"source_marg": False, "check_positive_flux": True,
                         "prior_source": latent_prior(0, model=model_path)}
    kwargs_params = {"lens_model": lens_params, "source_model": [[part] for part in source]}
    return FittingSequence(kwargs_data_joint, kwargs_model, {}, kwargs_likelihood, kwargs_params,
                           mpi=mpi, verbose=False)


def run_pso(model_path, mpi=False, seed=0, n_particles=12, n_iterations=8):
    """PSO from a fixed seed. Returns the JSON-ready result (on the MPI master only)."""
    np.random.seed(seed)  # lenstronomy's PSO draws from numpy's global generator (on the master)
    fitting = fitting_sequence(model_path, mpi=mpi)
    chain = fitting.fit_sequence(
        [["PSO", {"sigma_scale": 1.0, "n_particles": n_particles, "n_iterations": n_iterations}]]
    )
    log_likelihood, positions, _ = chain[0][1]
    best = fitting.best_fit()
    return {
        "theta_E": best["kwargs_lens"][0]["theta_E"],
        "kwargs_lens": best["kwargs_lens"],
        "kwargs_source": best["kwargs_source"],
        "log_likelihood": float(fitting.best_fit_likelihood()),
        "log_likelihood_history": [float(v) for v in log_likelihood],
        "best_position_history": np.asarray(positions, dtype=float).tolist(),
        "param_names": chain[0][2],
    }


def run_mcmc(model_path, backend, resume=False, n_burn=0, n_run=4, walker_ratio=2, seed=0, thread_count=1):
    """emcee from the initial parameters (or the backend's last state with ``resume``)."""
    np.random.seed(seed)
    fitting = fitting_sequence(model_path)
    chain = fitting.fit_sequence([["MCMC", {
        "n_burn": n_burn, "n_run": n_run, "walkerRatio": walker_ratio, "sigma_scale": 0.5,
        "threadCount": thread_count, "progress": False, "backend_filename": str(backend),
        "start_from_backend": resume,
    }]])
    _, samples, param_names, log_likelihood = chain[0]
    return {"samples": np.asarray(samples).tolist(), "log_likelihood": np.asarray(log_likelihood).tolist(),
            "param_names": param_names}


def stall_after(calls, marker):
    """Make the ``calls``-th log-likelihood evaluation of this process write ``marker`` and hang."""
    from lenstronomy.Sampling.likelihood import Likelihood

    original = Likelihood.logL
    count = [0]

    def logL(self, args, verbose=False):
        count[0] += 1
        if count[0] == calls:
            pathlib.Path(marker).write_text(str(os.getpid()))
            time.sleep(600)
        return original(self, args, verbose=verbose)

    Likelihood.logL = logL


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("mode", choices=("pso", "mcmc"))
    parser.add_argument("--mpi", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--n-run", type=int, default=4)
    parser.add_argument("--stall-after-calls", type=int)
    parser.add_argument("--marker")
    args = parser.parse_args(argv)
    if args.stall_after_calls:
        stall_after(args.stall_after_calls, args.marker)
    if args.mode == "pso":
        result = run_pso(args.model, mpi=args.mpi, seed=args.seed)
        if args.mpi:
            from mpi4py import MPI  # only the master reaches this line: workers exit in the pool

            result["mpi_size"] = MPI.COMM_WORLD.Get_size()
            result["mpi_rank"] = MPI.COMM_WORLD.Get_rank()
    else:
        result = run_mcmc(args.model, args.backend, resume=args.resume, n_run=args.n_run, seed=args.seed)
    result["pid"] = os.getpid()
    with open(args.out, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
