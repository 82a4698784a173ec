"""The handlers of the lensing commands (``demo``, ``fit``, ``simulate-lenses``, ``fit-many``).

They need lenstronomy's 'VAE' profile.

Each takes the parsed arguments and returns the exit code (0). Bad input raises ValueError or
FileNotFoundError, which :func:`lenstronomy_vae.cli.main` turns into exit code 2.
"""

import math
import pathlib
import sys
import warnings

import numpy as np

from lenstronomy_vae.cli.demo import run_demo
from lenstronomy_vae.cli.fit_many import fit_many, fit_settings
from lenstronomy_vae.evaluation.figures import plot_fit_panels
from lenstronomy_vae.lensing import FitSettings, fit_galaxy
from lenstronomy_vae.lensing.cutouts import write_simulated_lenses
from lenstronomy_vae.lensing.galaxy_fit import GalaxyFitWarning
from lenstronomy_vae.lensing.lens_fit import particles_per_start
from lenstronomy_vae.networks.galaxy_model import load_galaxy_model
from lenstronomy_vae.utils.checks import check_count
from lenstronomy_vae.utils.engine import engine
from lenstronomy_vae.utils.files import write_json
from lenstronomy_vae.utils.fits_io import read_image


def demo_command(args):
    settings = FitSettings(progress=not args.quiet)
    if args.quick:
        settings = FitSettings(pso_iterations=20, lm_iterations=10, mcmc_burn=20, mcmc_run=20,
                               progress=not args.quiet)
    run_demo(out_dir=args.out, seed=args.seed, model=args.model, fit_settings=settings,
             verbose=getattr(args, "verbose", False))
    return 0


def simulate_lenses_command(args):
    """``lenstronomy-vae simulate-lenses``: simulated lens cut-outs and their table, for fit-many."""
    path = write_simulated_lenses(args.n, args.out, seed=args.seed)
    print(f"{args.n} simulated lenses; wrote {path} and the cut-outs beside it")
    return 0


def fit_many_command(args):
    """``lenstronomy-vae fit-many``: fit a lens table (resumable), write OUT/results.ecsv and per-lens files."""
    for option in ("workers", "pso_particles", "pso_iterations", "lm_iterations", "mcmc_burn", "mcmc_run"):
        check_count(f"--{option.replace('_', '-')}", getattr(args, option))
    particles_per_start(args.pso_particles, name="--pso-particles")
    with engine(args.workers, args.scheduler) as map_function:
        table, fitted = fit_many(args.table, args.out, model=args.model, settings=fit_settings(args), seed=args.seed,
                                 map_function=map_function, progress=not args.quiet)
    out = pathlib.Path(args.out)
    print(f"fitted {fitted} lens(es) in {table.meta['seconds_this_run']:.0f} s ({len(table) - fitted} done before); "
          f"wrote {out / 'results.ecsv'} and {out / 'lenses'}/<name>.json, .png")
    return 0


def fit_command(args):
    """``lenstronomy-vae fit``: fit a FITS galaxy stamp, write OUT/fit.json and OUT/fit.png, print the warnings."""
    if args.pixel_scale is not None and not (math.isfinite(args.pixel_scale) and args.pixel_scale > 0):
        raise ValueError(f"--pixel-scale must be a positive number of arcsec per pixel; got {args.pixel_scale}")
    if (args.noise is None) == (args.noise_map is None):
        raise ValueError("give the noise either as --noise SIGMA or as --noise-map FILE (one of them)")
    if args.noise_hdu is not None and args.noise_map is None:
        raise ValueError("--noise-hdu selects an HDU of --noise-map FILE, which is not given")
    bands = load_galaxy_model(args.model).bands
    if args.band is None and len(bands) > 1:
        raise ValueError(f"model {args.model or 'default'} has {len(bands)} bands {tuple(bands)}: pass --band NAME")
    image, header_scale = read_image(args.image, hdu=args.hdu)
    pixel_scale = header_scale if args.pixel_scale is None else args.pixel_scale
    if pixel_scale is None:
        raise ValueError(f"{args.image} has no celestial WCS to read the pixel scale from: pass --pixel-scale ARCSEC")
    psf, _ = read_image(args.psf, hdu=args.psf_hdu)
    noise = args.noise if args.noise is not None else read_image(args.noise_map, hdu=args.noise_hdu)[0]
    mask = None if args.mask is None else read_image(args.mask)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GalaxyFitWarning)  # printed below, one line each
        result = fit_galaxy(image, noise, psf, pixel_scale, model=args.model, band=args.band,
                            max_iterations=args.max_iterations, seed=args.seed, mask=mask, restarts=args.restarts)
    out = pathlib.Path(args.out)
    plot_fit_panels(np.where(np.isfinite(image), image, 0.0), result["model_image"], result["residuals"],
                    out / "fit.png")
    summary = {
        "image": str(args.image), "psf": str(args.psf), "mask": None if args.mask is None else str(args.mask),
        "pixel_scale_arcsec": pixel_scale, "model": args.model or "default", "band": args.band,
        "parameters": {key: float(value) for key, value in result["kwargs"].items()},
        "units": {"amp": "total flux, image units", "center_x": "arcsec from the stamp centre, along columns",
                  "center_y": "arcsec from the stamp centre, along rows", "scale": "arcsec per decoder pixel",
                  "phi_G": "radians, counter-clockwise", "stamp_flux": "image units"},
        **{key: result[key] for key in ("converged", "at_bounds", "warnings", "notes", "chi2", "pixels",
                                        "reduced_chi2", "iterations", "evaluations", "restarts", "stamp_flux",
                                        "latent_norm_squared", "latent_norm_limit", "seconds")},
    }
    write_json(out / "fit.json", summary)
    restarts = result["restarts"]
    best = f"; best of {restarts['ran'] + 1} starts: start {restarts['winner']}" if restarts["ran"] else ""
    print(f"reduced χ² {result['reduced_chi2']:.3f} after {result['iterations']} LM iterations "
          f"({'converged' if result['converged'] else 'not converged'}{best}, {result['seconds']:.2f} s); total flux "
          f"{result['kwargs']['amp']:.4g} (stamp sum {result['stamp_flux']:.4g}); wrote {out / 'fit.json'} and "
          f"{out / 'fit.png'}")
    for note in result["notes"]:
        print(f"note: {note}")
    for warning in result["warnings"]:
        print(f"lenstronomy-vae fit: warning: {warning}", file=sys.stderr)
    return 0
