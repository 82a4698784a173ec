"""A lensed-source fit with a 'VAE' source: warm starts (PSO → LM) → emcee, a resumable chain, a corner plot.

Simulates the demo's SIE + shear lens (a GalSim COSMOS-like source), fits it with lenstronomy's
FittingSequence (the package's two warm starts, ``run_warm_starts``, on this script's own FittingSequence
arguments, then emcee from the better), keeps the emcee chain in an HDF5 file (run the script again to
continue the chain from where it stopped) and draws a corner plot of the lens parameters with the truth.

    python examples/lensed_source_fit.py [--out lensed_fit] [--steps 300] [--burn 100]

A few minutes on 2 CPU cores.
"""

import argparse
import pathlib

import corner
import emcee
import matplotlib
import numpy as np
from lenstronomy.Workflow.fitting_sequence import FittingSequence

from lenstronomy_vae import latent_prior, load_galaxy_model, vae_source_params  # registers 'VAE' and 'LM'
from lenstronomy_vae.lensing import FitSettings, lens_params_start, run_warm_starts, simulate_lens
from lenstronomy_vae.lensing.lens_simulation import LENS_PARAMS
from lenstronomy_vae.utils import atomic_path

matplotlib.use("Agg")

BACKEND_GROUP = "lenstronomy_mcmc_emcee"  # the HDF5 group lenstronomy's emcee backend writes
LENS_COLUMNS = {name: f"{name}_lens0" for name in LENS_PARAMS[:5]}
LENS_COLUMNS.update({name: f"{name}_lens1" for name in LENS_PARAMS[5:]})


def read_backend(path):
    """The emcee chain lenstronomy wrote to ``path`` (read only)."""
    return emcee.backends.HDFBackend(str(path), name=BACKEND_GROUP, read_only=True)


def fitting_arguments(simulation, model=None):
    """FittingSequence arguments (data, model, likelihood, parameters; no constraints) of SIE + SHEAR with a VAE
    source (latent prior N(0, 1), rotation fixed)."""
    scale = load_galaxy_model(model).pixel_scale
    source = vae_source_params(model=model, scale=scale, fix_phi_G=True)
    kwargs_params = {"lens_model": lens_params_start(), "source_model": [[part] for part in source]}
    kwargs_model = {"lens_model_list": ["SIE", "SHEAR"], "source_light_model_list": ["VAE"],
                    "source_light_profile_kwargs_list": [{"model": model}]}
    data = {"multi_band_list": [[simulation.kwargs_data, simulation.kwargs_psf, simulation.kwargs_numerics]],
            "multi_band_type": "single-band"}
    return data, kwargs_model, {"prior_source": latent_prior(0, model=model)}, kwargs_params


def fit(out_dir, model=None, seed=0, pso_iterations=60, steps=300, burn=100, walker_ratio=2, progress=True):
    """Fit the simulated lens; the emcee chain goes to ``out_dir/chain.h5`` and resumes from there.

    Returns:
        (simulation, samples (n, p) after burn-in, parameter names, fitting sequence).
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    backend_file = out_dir / "chain.h5"
    simulation = simulate_lens(seed=seed)
    data, kwargs_model, kwargs_likelihood, kwargs_params = fitting_arguments(simulation, model)
    resume = backend_file.is_file()
    if resume:  # a resumed chain continues from its walkers; no need to optimise again
        fitting = FittingSequence(data, kwargs_model, {}, kwargs_likelihood, kwargs_params)
    else:
        budget = FitSettings(pso_particles=60, pso_iterations=pso_iterations, lm_iterations=50)
        fittings, _, _ = run_warm_starts(data, kwargs_model, kwargs_likelihood, kwargs_params, budget, seed=seed)
        fitting = max(fittings, key=lambda start: start.best_fit_likelihood())
    done = read_backend(backend_file).iteration if resume else 0
    np.random.seed(seed)  # emcee draws from numpy's global generator
    if steps > done:
        fitting.fit_sequence([["MCMC", {
            "n_burn": 0, "n_run": steps - done, "walkerRatio": walker_ratio, "sigma_scale": 0.05,
            "backend_filename": str(backend_file), "start_from_backend": resume, "progress": progress}]])
    names = fitting.param_class.num_param()[1]
    samples = read_backend(backend_file).get_chain(discard=burn, flat=True)
    return simulation, samples, names, fitting


def corner_plot(simulation, samples, names, path):
    """Corner plot of the SIE + shear parameters (arcsec, dimensionless) with the truth marked."""
    columns = [names.index(LENS_COLUMNS[name]) for name in LENS_PARAMS]
    truths = [simulation.settings.lens[name] for name in LENS_PARAMS]
    figure = corner.corner(samples[:, columns], labels=LENS_PARAMS, truths=truths, show_titles=True,
                           title_fmt=".4f", quantiles=[0.16, 0.5, 0.84])
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=90, format="png")
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="lensed_fit", help="output directory (chain.h5, corner.png)")
    parser.add_argument("--steps", type=int, default=300, help="total emcee steps kept in chain.h5")
    parser.add_argument("--burn", type=int, default=100, help="steps discarded as burn-in")
    parser.add_argument("--model", default=None, help="shipped model name or .keras path")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    simulation, samples, names, _ = fit(args.out, model=args.model, seed=args.seed, steps=args.steps,
                                        burn=args.burn)
    path = corner_plot(simulation, samples, names, pathlib.Path(args.out) / "corner.png")
    for name in LENS_PARAMS:
        low, median, high = np.percentile(samples[:, names.index(LENS_COLUMNS[name])], [16, 50, 84])
        print(f"{name:>9} = {median:.4f} +{high - median:.4f} -{median - low:.4f}   (truth "
              f"{simulation.settings.lens[name]:.4f})")
    print(f"{len(samples)} samples after burn-in; chain in {pathlib.Path(args.out) / 'chain.h5'}, corner plot {path}")


if __name__ == "__main__":
    main()
