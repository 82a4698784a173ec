"""The handlers of the lensing commands, ``demo`` and ``fit``: the ones that need lenstronomy's 'VAE' profile.

Each takes the parsed arguments and returns the exit code (0). Bad input raises ValueError or
FileNotFoundError, which :func:`lenstronomy_vae.cli.main` turns into exit code 2.
"""

import pathlib

import numpy as np

from lenstronomy_vae.cli.demo import run_demo
from lenstronomy_vae.evaluation.figures import plot_fit_panels
from lenstronomy_vae.lensing import FitSettings, fit_galaxy
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


def fit_command(args):
    image, header_scale = read_image(args.image, hdu=args.hdu)
    pixel_scale = args.pixel_scale or header_scale
    if pixel_scale is None:
        raise ValueError(f"{args.image} has no celestial WCS to read the pixel scale from: pass --pixel-scale ARCSEC")
    psf, _ = read_image(args.psf)
    if (args.noise is None) == (args.noise_map is None):
        raise ValueError("give the noise either as --noise SIGMA or as --noise-map FILE (one of them)")
    noise = args.noise if args.noise is not None else read_image(args.noise_map)[0]
    result = fit_galaxy(image, noise, psf, pixel_scale, model=args.model, max_iterations=args.max_iterations)
    out = pathlib.Path(args.out)
    residuals = (image - result["model_image"]) / np.broadcast_to(noise, image.shape)
    plot_fit_panels(image, result["model_image"], residuals, out / "fit.png")
    summary = {
        "image": str(args.image), "psf": str(args.psf), "pixel_scale_arcsec": pixel_scale,
        "model": args.model or "default",
        "parameters": {key: float(value) for key, value in result["kwargs"].items()},
        "units": {"amp": "total flux, image units", "center_x": "arcsec from the stamp centre, along columns",
                  "center_y": "arcsec from the stamp centre, along rows", "scale": "arcsec per decoder pixel",
                  "phi_G": "radians, counter-clockwise"},
        **{key: result[key] for key in ("chi2", "reduced_chi2", "iterations", "seconds")},
    }
    write_json(out / "fit.json", summary)
    print(f"reduced χ² {result['reduced_chi2']:.3f} after {result['iterations']} LM iterations "
          f"({result['seconds']:.2f} s); total flux {result['kwargs']['amp']:.4g}; wrote {out / 'fit.json'} and "
          f"{out / 'fit.png'}")
    return 0
