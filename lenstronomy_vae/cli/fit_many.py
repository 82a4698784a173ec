"""``lenstronomy-vae fit-many``: fit a table of lens cut-outs with a 'VAE' source, resumably, on the engine.

Each lens is fitted as the demo's lens (:func:`lenstronomy_vae.lensing.lens_fit.fit_lens`: PSO, 'LM',
emcee) with the seed ``seed + its row index``, so its result does not depend on where or in which
order it runs. A finished lens writes ``OUT/lenses/<name>.json`` and ``<name>.png`` atomically; the
results table ``OUT/results.ecsv`` is rewritten (atomically) from the JSON files after each lens.
A run that is killed keeps every finished lens; run the same command again and it fits only the
others: nothing is fitted twice and nothing is lost.
"""

import dataclasses
import json
import pathlib
import time

import numpy as np
from astropy.table import Table
from tqdm import tqdm

from lenstronomy_vae.evaluation.figures import plot_fit_panels
from lenstronomy_vae.lensing.cutouts import read_lens_table
from lenstronomy_vae.lensing.lens_fit import FitSettings, fit_lens, fitted_images
from lenstronomy_vae.lensing.lens_simulation import LENS_PARAMS
from lenstronomy_vae.networks.galaxy_model import load_galaxy_model
from lenstronomy_vae.utils.files import atomic_path, write_json

_SUFFIX = {"theta_E": "lens0", "e1": "lens0", "e2": "lens0", "center_x": "lens0", "center_y": "lens0",
           "gamma1": "lens1", "gamma2": "lens1"}


def lens_summary(cutout, fit, images, seed, model_name):
    """The JSON-ready result of one lens: posterior medians and 16–84 % half-widths, χ²_ν, times, its row."""
    names = fit["param_names"]
    summary = {"name": cutout.name, "seed": seed, "model": model_name, "reduced_chi2": images["reduced_chi2"],
               "fit_seconds": fit["seconds"], "stages": fit["stages"], "row": cutout.row, "start": cutout.start}
    for param in LENS_PARAMS:
        low, median, high = np.percentile(fit["samples"][:, names.index(f"{param}_{_SUFFIX[param]}")], [16, 50, 84])
        summary[param] = float(median)
        summary[f"{param}_sigma"] = float(0.5 * (high - low))
    return summary


def fit_one(cutout, seed, out_dir, model, settings):
    """Fit one lens and write its JSON and figure; return its summary."""
    fit = fit_lens(cutout, model=model, settings=settings, seed=seed, start=cutout.start)
    images = fitted_images(cutout, fit["kwargs_result"], model=model)
    lenses = pathlib.Path(out_dir) / "lenses"
    plot_fit_panels(images["data"], images["model"], images["residuals"], lenses / f"{cutout.name}.png",
                    sources=[("VAE source (fit)", images["source_fit"], images["source_fit_extent"])])
    summary = lens_summary(cutout, fit, images, seed, model or load_galaxy_model(model).name)
    write_json(lenses / f"{cutout.name}.json", summary)  # last: its presence says the lens is done
    return summary


def results_table(summaries):
    """One row per lens: name, the lens parameters and their σ, χ²_ν, seconds, and the table's other columns."""
    rows = []
    for summary in summaries:
        row = {"name": summary["name"]}
        for param in LENS_PARAMS:
            row[param], row[f"{param}_sigma"] = summary[param], summary[f"{param}_sigma"]
        row.update(reduced_chi2=summary["reduced_chi2"], fit_seconds=summary["fit_seconds"], seed=summary["seed"])
        row.update({key: value for key, value in summary["row"].items() if key not in row})
        rows.append(row)
    table = Table(rows=rows) if rows else Table(names=["name"], dtype=[str])
    for param in ("theta_E", "center_x", "center_y"):
        if param in table.colnames:
            table[param].unit = table[f"{param}_sigma"].unit = "arcsec"
    return table


def fit_many(table_path, out_dir, model=None, settings=None, seed=0, map_function=map, progress=False):
    """Fit every lens of a lens table not fitted yet in ``out_dir``; write and return the results table.

    Args:
        table_path: lens table (:mod:`lenstronomy_vae.lensing.cutouts`).
        out_dir: output directory (``results.ecsv``, ``lenses/<name>.json`` and ``.png``).
        model: the source model's name or path; None: the default.
        settings: :class:`~lenstronomy_vae.lensing.lens_fit.FitSettings`.
        seed: lens k is fitted with seed ``seed + k``.
        map_function: where the fits run (:func:`lenstronomy_vae.utils.engine.engine`).
        progress: a progress bar over the lenses still to fit.

    Returns:
        (results table of every finished lens, in the table's order; number fitted by this call).
    """
    settings = settings or FitSettings(progress=False)
    load_galaxy_model(model)  # fail here, before any job, if the model is unusable
    cutouts = read_lens_table(table_path)
    out_dir = pathlib.Path(out_dir)
    done = {path.stem for path in (out_dir / "lenses").glob("*.json")}
    todo = [(k, cutout) for k, cutout in enumerate(cutouts) if cutout.name not in done]

    def job(k, cutout):
        return fit_one(cutout, seed + k, out_dir, model, settings)

    summaries = {cutout.name: json.loads((out_dir / "lenses" / f"{cutout.name}.json").read_text())
                 for cutout in cutouts if cutout.name in done}
    start, fitted = time.perf_counter(), 0
    with tqdm(total=len(todo), disable=not progress, unit="lens", desc="fitting") as bar:
        for summary in map_function(job, [k for k, _ in todo], [cutout for _, cutout in todo]):
            summaries[summary["name"]] = summary
            write_results(cutouts, summaries, out_dir)
            fitted += 1
            bar.update()
    table = write_results(cutouts, summaries, out_dir)
    table.meta["seconds_this_run"] = time.perf_counter() - start
    return table, fitted


def write_results(cutouts, summaries, out_dir):
    """Rewrite ``out_dir/results.ecsv`` from the finished lenses' summaries, in the lens table's order."""
    table = results_table([summaries[cutout.name] for cutout in cutouts if cutout.name in summaries])
    write_table(table, out_dir / "results.ecsv")
    return table


def write_table(table, path):
    """Write an astropy table as ECSV atomically."""
    with atomic_path(path) as temporary:
        table.write(temporary, format="ascii.ecsv", overwrite=True)


def fit_settings(args):
    """The :class:`FitSettings` of the command's budget options."""
    return dataclasses.replace(FitSettings(progress=False), pso_particles=args.pso_particles,
                               pso_iterations=args.pso_iterations, lm_iterations=args.lm_iterations,
                               mcmc_burn=args.mcmc_burn, mcmc_run=args.mcmc_run)
