"""The ``lenstronomy-vae`` argument parser: one sub-command per job, shared options in parent parsers."""

import argparse

from lenstronomy_vae.cli import commands as handlers

try:  # demo and fit need lenstronomy's 'VAE' profile; the other commands work with any lenstronomy
    from lenstronomy_vae.cli import lensing_commands
except ImportError as error:  # lenstronomy_vae.lensing.LenstronomyCompatibilityError is an ImportError
    lensing_commands = None
    _LENSING_ERROR = error


def _lensing_handler(name):
    """The handler of a lensing command, or, with an unsupported lenstronomy, one that raises its error."""
    if lensing_commands is not None:
        return getattr(lensing_commands, name)

    def unavailable(args):
        raise _LENSING_ERROR

    return unavailable


def _simulation_options(items):
    """--n, --out, --seed, --processes and --quiet of the simulation commands."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--n", type=int, required=True, help=f"number of {items}")
    parent.add_argument("--out", required=True, help="HDF5 file to write")
    parent.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    parent.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    parent.add_argument("--quiet", action="store_true", help="no progress bar")
    return parent


def _training_options(items, held_out, epochs):
    """The options every training command shares: directories, split sizes, optimiser and seed."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--weights-dir", default=None, help="default: the package's weights directory")
    parent.add_argument("--checkpoint-dir", default=None, help="default: runs/<name>")
    parent.add_argument("--held-out", type=int, default=held_out, help=f"{items} kept for the final metrics")
    parent.add_argument("--validation", type=int, default=held_out, help=f"{items} for the validation loss")
    parent.add_argument("--epochs", type=int, default=epochs)
    parent.add_argument("--batch-size", type=int, default=64, help="global batch size (split across GPUs)")
    parent.add_argument("--learning-rate", type=float, default=1e-3)
    parent.add_argument("--seed", type=int, default=0)
    return parent


def _deblending_options():
    """--deblender, --regressor and --map-steps of the commands that deblend."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--deblender", default="lsst45_deblender", help="shipped deblender name or .keras path")
    parent.add_argument("--regressor", default=None, help="shipped regressor name or .keras path (optional)")
    parent.add_argument("--map-steps", type=int, default=100, help="most L-BFGS iterations of the MAP refinement")
    return parent


def build_parser():
    parser = argparse.ArgumentParser(prog="lenstronomy-vae", description="VAE galaxy model for lenstronomy")
    subcommands = parser.add_subparsers(dest="command", required=True)
    demo = subcommands.add_parser(
        "demo", help="simulate an SIE + shear lens with a realistic source and fit it with a 'VAE' source",
        description="Simulate a 64×64 lens (0.05 arcsec/px), fit it with PSO, LM and emcee, print the lens "
                    "parameters (arcsec for theta_E and centres) against the truth, and write "
                    "OUT/fit.png and OUT/results.json.",
    )
    demo.add_argument("--out", default="demo_output", help="output directory (default: demo_output)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulation and the fit")
    demo.add_argument("--model", default=None, help="shipped model name or .keras path (default model if unset)")
    demo.add_argument("--quick", action="store_true", help="a short fit (smoke test, less accurate)")
    demo.add_argument("--quiet", action="store_true", help="no emcee progress bar")
    demo.set_defaults(run=_lensing_handler("demo_command"))
    fit = subcommands.add_parser(
        "fit", help="fit one galaxy image (FITS) with the VAE profile; write parameters (JSON) and a figure",
        description="Fit a galaxy stamp with the 'VAE' profile by Levenberg–Marquardt. Writes OUT/fit.json "
                    "(amp = total flux in image units, centres in arcsec from the stamp centre, scale in arcsec "
                    "per decoder pixel, phi_G in radians, the latents, χ²) and OUT/fit.png.",
    )
    fit.add_argument("image", help="FITS file with the galaxy stamp (square, odd or even size)")
    fit.add_argument("--psf", required=True, help="FITS file with the PSF kernel at the image's pixel scale (odd size)")
    fit.add_argument("--noise", type=float, default=None, help="per-pixel noise standard deviation, image units")
    fit.add_argument("--noise-map", default=None, help="FITS file of per-pixel noise standard deviations")
    fit.add_argument("--pixel-scale", type=float, default=None,
                     help="arcsec per pixel (default: from the image's WCS)")
    fit.add_argument("--hdu", type=int, default=None, help="HDU of the image (default: the first 2-D one)")
    fit.add_argument("--model", default=None, help="shipped model name or .keras path (default model if unset)")
    fit.add_argument("--max-iterations", type=int, default=50, help="LM iteration budget")
    fit.add_argument("--out", default="fit_output", help="output directory (default: fit_output)")
    fit.set_defaults(run=_lensing_handler("fit_command"))
    simulate = subcommands.add_parser(
        "simulate", parents=[_simulation_options("galaxies")],
        help="simulate isolated galaxy stamps with GalSim and write them to HDF5",
        description="Simulate galaxy stamps (intrinsic, PSF-convolved and noisy; flux in the survey's image "
                    "units, truth table with flux, magnitude, half-light radius in arcsec, reduced-shear g1/g2, "
                    "redshift, SNR) and write HDF5 with the generating configuration.",
    )
    simulate.add_argument("--survey", default="hst_acs_f814w", help="survey (default hst_acs_f814w)")
    simulate.add_argument("--source", default="auto", choices=("auto", "cosmos", "parametric"),
                          help="morphologies: COSMOS fits (needs fpfs), parametric, or auto")
    simulate.set_defaults(run=handlers.simulate_command)
    blends = subcommands.add_parser(
        "simulate-blends", parents=[_simulation_options("scenes")],
        help="simulate multi-band blended scenes (LSST-like) with their truth, to HDF5",
        description="Simulate scenes of 1-4 galaxies with colours (u g r i z y, 45×45 px at 0.2 arcsec/px for "
                    "'lsst'), the target centred, with Poisson noise; also each galaxy alone without noise, and a "
                    "truth table (flux per band in electrons, reduced-shear g1/g2, adaptive-moment shapes, "
                    "redshift, SNR, blendedness). Write HDF5 with the generating configuration.",
    )
    blends.add_argument("--survey", default="lsst", help="survey (default lsst)")
    blends.add_argument("--objects", type=int, nargs=2, default=[1, 4], metavar=("MIN", "MAX"),
                        help="galaxies per scene, target included (default 1 4; 1 1 for isolated galaxies)")
    blends.add_argument("--shear", type=float, nargs=2, default=[0.0, 0.0], metavar=("G1", "G2"),
                        help="reduced shear applied to every galaxy (default 0 0)")
    blends.add_argument("--quarter-turn", action="store_true",
                        help="turn every galaxy by 90 degrees (same seed: opposite intrinsic shapes)")
    blends.add_argument("--round", action="store_true", help="round galaxies (axis ratio 1)")
    blends.set_defaults(run=handlers.simulate_blends_command)
    train = subcommands.add_parser(
        "train", parents=[_training_options("galaxies", held_out=1000, epochs=40)],
        help="train a VAE on a simulated HDF5 set and ship it in the weights directory",
        description="Train (or resume) a VAE with a checkpoint every epoch, measure median SSIM and relative flux "
                    "error on held-out galaxies, and write the model and its manifest entry.",
    )
    train.add_argument("--data", required=True, help="HDF5 file written by 'simulate'")
    train.add_argument("--name", default="hst64", help="model name in the manifest")
    train.add_argument("--kl-warmup-epochs", type=int, default=5)
    train.add_argument("--latent-dim", type=int, default=32)
    train.add_argument("--encoder-filters", type=int, nargs="+", default=[16, 32, 64, 128])
    train.add_argument("--decoder-filters", type=int, nargs="+", default=[64, 32, 16, 8])
    train.add_argument("--dense-units", type=int, default=256)
    train.add_argument("--default", action="store_true", help="make this the default shipped model")
    train.set_defaults(run=handlers.train_command)
    deblend = subcommands.add_parser(
        "deblend", parents=[_deblending_options()],
        help="detect and deblend the galaxies of a multi-band image (FITS); write stamps (FITS) + table",
        description="Detect sources (sep) on a sky-subtracted multi-band image in the survey's units (LSST: electrons "
                    "of the 10-year coadd), deblend each on a stamp centred on it with the VAE deblender, subtract "
                    "it, repeat; optionally refine all galaxies jointly (MAP). Writes OUT/deblended.fits (model, "
                    "residual, one PSF-convolved and one intrinsic stamp cube per galaxy) and OUT/galaxies.ecsv "
                    "(positions in pixels, flux per band in image units, adaptive-moment e1/e2 as reduced shear, and "
                    "the regressor's g1/g2/redshift when given).",
    )
    deblend.add_argument("image", help="FITS cube (bands, H, W), bands in the deblender's order (e.g. u g r i z y)")
    deblend.add_argument("--out", default="deblend_output", help="output directory (default: deblend_output)")
    deblend.add_argument("--survey", default="lsst", help="survey of the PSF and sky noise (default lsst)")
    deblend.add_argument("--hdu", type=int, default=None, help="HDU of the cube (default: the first 3-D one)")
    deblend.add_argument("--refine", action="store_true", help="MAP refinement of all galaxies jointly")
    deblend.add_argument("--threshold", type=float, default=1.5,
                         help="detection threshold in units of the detection image's pixel noise (sep; default 1.5)")
    deblend.set_defaults(run=handlers.deblend_command)
    train_deblender = subcommands.add_parser(
        "train-deblender", parents=[_training_options("scenes", held_out=500, epochs=20)],
        help="train a deblender encoder on simulated blends for a VAE's frozen decoder",
        description="Train (or resume) an encoder that maps blended scenes to the latent vector of the central galaxy "
                    "in a shipped VAE's latent space; measure σ(Δe) (reduced shear), |Δf/f|, SSIM on held-out scenes; "
                    "ship it with its manifest entry.",
    )
    train_deblender.add_argument("--data", required=True, help="HDF5 file written by 'simulate-blends'")
    train_deblender.add_argument("--vae", default="lsst45", help="shipped VAE name or .keras path (default lsst45)")
    train_deblender.add_argument("--name", default="lsst45_deblender", help="model name in the manifest")
    train_deblender.add_argument("--latent-weight", type=float, default=0.0,
                                 help="weight of the latent-space loss against the VAE's latents (0: off)")
    train_regressor = subcommands.add_parser(
        "train-regressor", parents=[_training_options("scenes", held_out=500, epochs=20)],
        help="train a regressor from a deblender's latent space to g1, g2 and redshift",
        description="Train (or resume) a dense network from the latent means of a frozen encoder to the central "
                    "galaxy's intrinsic shape (g1, g2 as reduced shear) and redshift, with quarter-turn and mirror "
                    "augmentation; ship it with its manifest entry.",
    )
    train_regressor.add_argument("--data", required=True, help="HDF5 file written by 'simulate-blends'")
    train_regressor.add_argument("--encoder", default="lsst45_deblender",
                                 help="deblender (or VAE) whose latents it reads")
    train_regressor.add_argument("--name", default="lsst45_regressor", help="model name in the manifest")
    train_regressor.add_argument("--no-redshift", action="store_true", help="predict g1 and g2 only")
    train_deblender.set_defaults(run=handlers.train_deblender_command)
    train_regressor.set_defaults(run=handlers.train_regressor_command)
    calibrate = subcommands.add_parser(
        "calibrate-regressor", help="measure a regressor's shear response on sheared sets and ship it calibrated",
        description="Measure the response R = 1 + m of a regressor's g1, g2 to an applied shear on four blend sets of "
                    "the same galaxies (shear +g, -g, and both turned by 90 degrees), and ship the regressor with its "
                    "predictions divided by R. Use other sets than those of the report.",
    )
    calibrate.add_argument("--regressor", default="lsst45_regressor", help="shipped regressor name or .keras path")
    calibrate.add_argument("--sets", nargs=4, required=True, metavar=("PLUS", "MINUS", "PLUS_TURNED", "MINUS_TURNED"),
                           help="blend sets with shear +g, -g, and the same turned by 90 degrees (same seed)")
    calibrate.add_argument("--name", default=None, help="model name in the manifest (default: the regressor's)")
    calibrate.add_argument("--weights-dir", default=None, help="default: the package's weights directory")
    calibrate.set_defaults(run=handlers.calibrate_regressor_command)
    report = subcommands.add_parser(
        "report", parents=[_deblending_options()],
        help="compare no deblending, sep, the VAE deblender, MAP and the regressor on the same blends",
        description="Measure, for the target of each scene, Δe (adaptive moments, reduced shear) against the true "
                    "isolated noiseless image, |Δf/f| per band, SSIM and cosine similarity, binned by SNR and "
                    "blendedness, and the regressor's shear bias m, c on sheared sets. Writes OUT/report.json and "
                    "OUT/report.png.",
    )
    report.add_argument("--data", required=True, help="HDF5 blend set not used in training")
    report.add_argument("--shear-sets", nargs=4, default=None, metavar=("PLUS", "MINUS", "PLUS_TURNED", "MINUS_TURNED"),
                        help="blend sets with shear +g, -g, and the same turned by 90 degrees (same seed)")
    report.add_argument("--map-scenes", type=int, default=None, help="scenes that also get MAP (default all; slow)")
    report.add_argument("--out", default="report_output", help="output directory (default: report_output)")
    report.add_argument("--quiet", action="store_true", help="no progress bar")
    report.set_defaults(run=handlers.report_command)
    models = subcommands.add_parser("models", help="list the shipped models and their manifests")
    models.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    models.set_defaults(run=handlers.models_command)
    return parser
