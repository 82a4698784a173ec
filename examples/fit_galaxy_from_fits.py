"""Fit one galaxy from a FITS file with the 'VAE' profile (Levenberg–Marquardt, a second or so).

With no arguments it first writes a simulated HST/ACS-like galaxy (GalSim, COSMOS morphology,
0.03″/px) with a WCS header, its PSF and its noise level to ``galaxy_fit/``, then fits it:

    python examples/fit_galaxy_from_fits.py
    python examples/fit_galaxy_from_fits.py IMAGE.fits --psf PSF.fits --noise SIGMA [--pixel-scale ARCSEC]
        [--restarts N]

The image must be sky-subtracted; σ is the per-pixel noise standard deviation in the image's
units. Prints the fitted total flux, centre, reduced χ², whether 'LM' converged, and the fit's
warnings and notes; writes a figure (data, model, residuals, and the fitted galaxy before the PSF).
"""

import argparse
import pathlib

import numpy as np
from astropy.io import fits

from lenstronomy_vae import VAEProfile, fit_galaxy
from lenstronomy_vae.evaluation.figures import plot_fit_panels
from lenstronomy_vae.sims import SURVEYS, GalaxySimConfig, simulate_galaxies
from lenstronomy_vae.utils import read_image


def write_simulated_galaxy(out_dir, seed=0, source="auto"):
    """A simulated HST-like galaxy (image with WCS, PSF) as FITS; returns (image path, PSF path, σ, truth row).

    ``source``: "cosmos" morphologies (needs fpfs), "parametric", or "auto" (cosmos when available).
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    survey = SURVEYS["hst_acs_f814w"]
    galaxies = simulate_galaxies(1, GalaxySimConfig(source=source), seed=seed)
    scale_deg = survey.pixel_scale / 3600
    header = fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CDELT1": -scale_deg, "CDELT2": scale_deg,
                          "CRPIX1": 32.5, "CRPIX2": 32.5, "CRVAL1": 150.1, "CRVAL2": 2.2, "BUNIT": "electron/s"})
    image_path, psf_path = out_dir / "galaxy.fits", out_dir / "psf.fits"
    fits.PrimaryHDU(galaxies.observed[0, ..., 0], header=header).writeto(image_path, overwrite=True)
    psf = survey.psf().drawImage(nx=25, ny=25, scale=survey.pixel_scale).array
    fits.PrimaryHDU(psf).writeto(psf_path, overwrite=True)
    return image_path, psf_path, float(galaxies.noise_sigma[0, 0]), galaxies.truth[0]


def fit_file(image_path, psf_path, noise, out_dir, pixel_scale=None, model=None, restarts=0):
    """Fit a FITS galaxy; write ``out_dir/galaxy_fit.png``; return the fit_galaxy result and pixel scale.

    ``noise``: per-pixel σ in the image's units; ``pixel_scale``: arcsec per pixel (default: the WCS's).
    """
    image, header_scale = read_image(image_path)
    psf, _ = read_image(psf_path)
    pixel_scale = header_scale if pixel_scale is None else pixel_scale
    result = fit_galaxy(image, noise, psf, pixel_scale, model=model, restarts=restarts)
    rows, columns = image.shape
    x, y = np.meshgrid((np.arange(columns) - (columns - 1) / 2) * pixel_scale,
                       (np.arange(rows) - (rows - 1) / 2) * pixel_scale)
    intrinsic = VAEProfile(model).function(x, y, **result["kwargs"])
    extent = [-columns * pixel_scale / 2, columns * pixel_scale / 2, -rows * pixel_scale / 2, rows * pixel_scale / 2]
    plot_fit_panels(image, result["model_image"], result["residuals"], pathlib.Path(out_dir) / "galaxy_fit.png",
                    sources=[("VAE galaxy before the PSF", intrinsic, extent)])
    return result, pixel_scale


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", nargs="?", help="FITS image (default: write and fit a simulated galaxy)")
    parser.add_argument("--psf", help="FITS PSF at the image's pixel scale")
    parser.add_argument("--noise", type=float, help="per-pixel noise σ, image units")
    parser.add_argument("--pixel-scale", type=float, help="arcsec per pixel (default: from the WCS)")
    parser.add_argument("--restarts", type=int, default=0, help="extra LM starts; the lowest χ² wins")
    parser.add_argument("--out", default="galaxy_fit")
    args = parser.parse_args()
    truth = None
    if args.image is None:
        args.image, args.psf, args.noise, truth = write_simulated_galaxy(args.out)
        print(f"wrote a simulated galaxy to {args.image} (PSF {args.psf}, σ = {args.noise:.4g} e⁻/s per pixel)")
    elif args.psf is None or args.noise is None:
        parser.error("with an image, give --psf and --noise")
    result, pixel_scale = fit_file(args.image, args.psf, args.noise, args.out, args.pixel_scale,
                                   restarts=args.restarts)
    kwargs = result["kwargs"]
    print(f"total flux {kwargs['amp']:.4g}" + (f" (truth {truth['flux']:.4g})" if truth is not None else ""))
    print(f"centre ({kwargs['center_x']:+.4f}, {kwargs['center_y']:+.4f}) arcsec from the stamp centre; "
          f"scale {kwargs['scale']:.4f} arcsec per decoder pixel (image: {pixel_scale:.4f})")
    print(f"reduced χ² {result['reduced_chi2']:.3f} after {result['iterations']} LM iterations "
          f"({'converged' if result['converged'] else 'not converged'}), {result['seconds']:.2f} s; "
          f"figure {pathlib.Path(args.out) / 'galaxy_fit.png'}")
    for line in result["notes"] + result["warnings"]:  # the warnings were also emitted as GalaxyFitWarning
        print(f"  {line}")


if __name__ == "__main__":
    main()
