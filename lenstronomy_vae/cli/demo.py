"""The main job, ``lenstronomy-vae demo``: simulate a lens, fit it with a 'VAE' source, print and draw the result."""

import dataclasses
import pathlib
import time

import numpy as np

from lenstronomy_vae.evaluation.figures import plot_fit_panels
from lenstronomy_vae.lensing.lens_fit import FitSettings, fit_lens, lens_parameter_table, model_images
from lenstronomy_vae.lensing.lens_simulation import simulate_lens
from lenstronomy_vae.networks.galaxy_model import load_galaxy_model
from lenstronomy_vae.utils.files import write_json


def plot_fit(images, path):
    """Five panels: data, model, normalised residuals, true source, reconstructed source (PNG)."""
    sources = [("true source", images["source_true"], images["source_true_extent"]),
               ("VAE source (fit)", images["source_fit"], images["source_fit_extent"])]
    plot_fit_panels(images["data"], images["model"], images["residuals"], path, sources=sources)


def _stage_story(stage, pixels):
    """One line of the demo's story: what a fitting stage did, its χ² and its time."""
    chi2 = f"χ² {stage['chi2']:,.0f} ({stage['chi2'] / pixels:.3f} per pixel)"
    if stage["name"] == "PSO":
        did = f"PSO, {stage['particles']} particles × {stage['iterations']} iterations, latents at the mean galaxy"
    elif stage["name"] == "lens search":
        did = (f"lens search, PSO, {stage['particles']} particles × {stage['iterations']} iterations, a "
               f"{stage['source']} source solved linearly at every particle")
    elif stage["name"] == "placement":
        did = (f"the VAE placed on that lens, PSO of its centre and scale, {stage['particles']} particles × "
               f"{stage['iterations']} iterations, lens and latents held")
    elif stage["name"] == "LM":
        state = "converged" if stage["converged"] else "stopped at its iteration limit"
        did = f"Levenberg–Marquardt ('LM') on every parameter, {stage['iterations']} iterations, {state}"
    else:
        did = (f"emcee from start {stage['start']}, {stage['walkers']} walkers × {stage['steps']} steps after "
               f"{stage['burn']} burn-in")
    if stage.get("starts", 1) > 1:  # a stage of one of several warm starts
        did = f"start {stage['start']} of {stage['starts']}: {did}"
    return f"  {did}: {chi2}, {stage['seconds']:.0f} s"


def run_demo(out_dir="demo_output", seed=0, model=None, fit_settings=None, lens_settings=None, verbose=False):
    """Simulate, fit, print the story of the fit and the lens parameters, write ``fit.png`` and ``results.json``.

    Args:
        out_dir: directory of the outputs.
        seed: seed of the simulation and of the fit.
        model: shipped model name or ``.keras`` path; None for the default model.
        fit_settings: :class:`~lenstronomy_vae.lensing.lens_fit.FitSettings`.
        lens_settings: :class:`~lenstronomy_vae.lensing.lens_simulation.LensSettings`.
        verbose: also print what lenstronomy's optimisers print.

    Returns:
        the results dict written to ``results.json``.
    """
    out_dir = pathlib.Path(out_dir)
    start = time.perf_counter()
    galaxy_model = load_galaxy_model(model)  # fail before the simulation if the model is unusable
    simulation = simulate_lens(seed=seed, settings=lens_settings)
    settings = simulation.settings
    pixels = settings.num_pix**2
    print(f"Simulated a {settings.num_pix}×{settings.num_pix} lens at {settings.pixel_scale}″/px: SIE + external "
          f"shear (θ_E = {settings.lens['theta_E']}″) lensing {simulation.source}.")
    print(f"Fitting it with a 'VAE' source ({galaxy_model.name}, {galaxy_model.latent_dim} latents) in lenstronomy's "
          "FittingSequence:", flush=True)
    fit = fit_lens(simulation, model=model, settings=fit_settings, seed=seed, verbose=verbose,
                   on_stage=lambda stage: print(_stage_story(stage, pixels), flush=True))
    table = lens_parameter_table(simulation, fit)
    images = model_images(simulation, fit["kwargs_result"], model=model)
    print(f"\n{'parameter':>10} {'truth':>8} {'fit':>8} {'-1σ':>7} {'+1σ':>7} {'pull':>6}")
    for name, row in table.items():
        print(f"{name:>10} {row['truth']:8.4f} {row['median']:8.4f} {row['minus']:7.4f} {row['plus']:7.4f} "
              f"{row['pull']:6.2f}")
    theta = table["theta_E"]
    print(f"\nθ_E = {theta['median']:.4f} ± {theta['sigma']:.4f}″ against the true {theta['truth']}″; "
          f"reduced χ² of the best fit {images['reduced_chi2']:.3f}; fit time {fit['seconds']:.0f} s")
    plot_fit(images, out_dir / "fit.png")
    results = {
        "seed": seed,
        "model": model or galaxy_model.name,
        "source": simulation.source,
        "lens_parameters": table,
        "reduced_chi2": images["reduced_chi2"],
        "stages": fit["stages"],
        "fit_seconds": fit["seconds"],
        "total_seconds": time.perf_counter() - start,
        "kwargs_result": _jsonable(fit["kwargs_result"]),
        "settings": {"lens": dataclasses.asdict(simulation.settings),
                     "fit": dataclasses.asdict(fit_settings or FitSettings())},
    }
    write_json(out_dir / "results.json", _jsonable(results))
    print(f"wrote {out_dir / 'fit.png'} and {out_dir / 'results.json'}")
    return results


def _jsonable(value):
    """Nested kwargs with numpy scalars and arrays turned into JSON types."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
