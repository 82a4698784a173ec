"""The ``lenstronomy-vae`` argument parser: one sub-command per job, shared options in parent parsers."""

import argparse

from lenstronomy_vae.cli import commands as handlers
from lenstronomy_vae.deblending.scene import MAX_NEW_SOURCES
from lenstronomy_vae.deblending.tiling import TILE_SIZE
from lenstronomy_vae.sims.blends import BlendSimConfig

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


class _HelpFormatter(argparse.HelpFormatter):
    """Help that ends each option with "(default: …)", unless it has none (None, off) or its text gives it."""

    def _get_help_string(self, action):
        default = action.default
        if (not action.option_strings or default is None or default is False or default is argparse.SUPPRESS
                or "default" in action.help):
            return action.help
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{action.help} (default: {shown.replace('%', '%%')})"


VERBOSE_HELP = ("also print TensorFlow's own log lines (the command then runs in a new process with "
                "TF_CPP_MIN_LOG_LEVEL=0, unless that variable is set already)")


def _simulation_options(items):
    """--n, --out, --seed, --processes and --quiet of the simulation commands."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--n", type=int, required=True, help=f"number of {items}")
    parent.add_argument("--out", required=True, help="HDF5 file to write")
    parent.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    parent.add_argument("--processes", type=int, default=1, help="worker processes")
    parent.add_argument("--quiet", action="store_true", help="no progress bar")
    return parent


def _engine_options(parser, jobs):
    """--workers and --scheduler: where the jobs run (lenstronomy_vae.utils.engine)."""
    parser.add_argument("--workers", type=int, default=1,
                        help=f"worker processes of an embedded local Dask cluster that runs the {jobs} (1: this "
                             "process, no cluster)")
    parser.add_argument("--scheduler", default=None,
                        help="address of a running Dask scheduler (tcp://host:8786), e.g. of a dask-jobqueue SLURM "
                             "cluster; --workers is then ignored")


def _output_options():
    """--weights-dir and --overwrite of the commands that write a model."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--weights-dir", default=None,
                        help="directory for the model file and its manifest.json (default: your model directory, "
                             "$LENSTRONOMY_VAE_HOME/models, else ~/.lenstronomy_vae/models, whose models load by "
                             "name)")
    parent.add_argument("--overwrite", action="store_true",
                        help="allow a --name that is shipped or already in the directory: the new model gets a new "
                             "file and the manifest names it; no file is written over")
    return parent


def _training_options(items, held_out, epochs):
    """The options every training command shares: directories, split sizes, optimiser and seed."""
    parent = argparse.ArgumentParser(add_help=False, parents=[_output_options()])
    parent.add_argument("--name", required=True,
                        help="name of the new model (not a shipped one unless --overwrite); `lenstronomy-vae models` "
                             "lists the names taken")
    parent.add_argument("--checkpoint-dir", default=None,
                        help="checkpoints, from which an interrupted run resumes (default: runs/NAME)")
    parent.add_argument("--held-out", type=int, default=held_out, help=f"{items} kept for the final metrics")
    parent.add_argument("--validation", type=int, default=held_out, help=f"{items} for the validation loss")
    parent.add_argument("--epochs", type=int, default=epochs, help="epochs in all (a resumed run does the rest)")
    parent.add_argument("--batch-size", type=int, default=64, help="global batch size (split across GPUs)")
    parent.add_argument("--learning-rate", type=float, default=1e-3,
                        help="Adam's initial learning rate, decayed by cosine to 1 %% of it")
    parent.add_argument("--seed", type=int, default=0, help="seed of the weights and the shuffling")
    return parent


def _deblending_options():
    """--deblender, --regressor and --map-steps of the commands that deblend."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--deblender", default="lsst45_deblender", help="deblender name or .keras path")
    parent.add_argument("--regressor", default=None, help="regressor name or .keras path (optional)")
    parent.add_argument("--map-steps", type=int, default=100, help="most L-BFGS iterations of the MAP refinement")
    return parent


def build_parser():
    parser = argparse.ArgumentParser(prog="lenstronomy-vae", description="VAE galaxy model for lenstronomy",
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    subcommands = parser.add_subparsers(dest="command", required=True)
    demo = subcommands.add_parser(
        "demo", help="simulate an SIE + shear lens with a realistic source and fit it with a 'VAE' source",
        description="Simulate a 64×64 lens (0.05 arcsec/px), fit it with PSO, LM and emcee, print the lens "
                    "parameters (arcsec for theta_E and centres) against the truth, and write "
                    "OUT/fit.png and OUT/results.json.",
    )
    demo.add_argument("--out", default="demo_output", help="output directory")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulation and the fit")
    demo.add_argument("--model", default=None, help="model name or .keras path (default model if unset)")
    demo.add_argument("--quick", action="store_true", help="a short fit (smoke test, less accurate)")
    demo.add_argument("--quiet", action="store_true", help="no emcee progress bar")
    demo.set_defaults(run=_lensing_handler("demo_command"))
    fit = subcommands.add_parser(
        "fit", help="fit one galaxy image (FITS) with the VAE profile; write parameters (JSON) and a figure",
        description="Fit a sky-subtracted galaxy stamp with the 'VAE' profile by Levenberg–Marquardt, from the mean "
                    "galaxy and from --restarts more starts (the lowest χ² wins). Writes OUT/fit.json (amp = total "
                    "flux in image units, centres in arcsec from the stamp centre, scale in arcsec per decoder pixel, "
                    "phi_G in radians, the latents, χ², converged, at_bounds, restarts, warnings, notes) and "
                    "OUT/fit.png, and prints the warnings: fitted flux far from the stamp's sum, a sky pedestal, an "
                    "off-centre PSF, parameters at their bounds, LM not converged.",
    )
    fit.add_argument("image", help="FITS file with the galaxy stamp: sky-subtracted, flux per pixel in any units, "
                                   "2-D of any size (rectangular too) or a (1, H, W) cube")
    fit.add_argument("--hdu", type=int, default=None, help="HDU of the image (default: the first 2-D one)")
    fit.add_argument("--psf", required=True,
                     help="FITS file with the PSF kernel at the image's pixel scale; a kernel that is not a square of "
                          "odd size (GalSim's RealGalaxyCatalog PSFs are 65 × 51) is zero-padded to one centred on its "
                          "brightest pixel")
    fit.add_argument("--psf-hdu", type=int, default=None, help="HDU of the PSF (default: the first 2-D one)")
    fit.add_argument("--noise", type=float, default=None,
                     help="per-pixel noise standard deviation (1σ, not the variance), in the image's units")
    fit.add_argument("--noise-map", default=None,
                     help="FITS file of per-pixel noise standard deviations (1σ), in the image's units, like the "
                          "image; infinite leaves a pixel out")
    fit.add_argument("--noise-hdu", type=int, default=None, help="HDU of --noise-map (default: the first 2-D one)")
    fit.add_argument("--mask", default=None,
                     help="FITS file like the image: nonzero = fit the pixel, 0 = leave it out (invert a bad-pixel "
                          "mask); NaN pixels of the image are allowed where it is 0")
    fit.add_argument("--pixel-scale", type=float, default=None,
                     help="arcsec per pixel, positive (default: from the image's WCS)")
    fit.add_argument("--model", default=None, help="model name or .keras path (default model if unset)")
    fit.add_argument("--band", default=None, help="band name of a multi-band model (e.g. i)")
    fit.add_argument("--max-iterations", type=int, default=50, help="LM iteration budget of each start")
    fit.add_argument("--restarts", type=int, default=0,
                     help="extra LM starts: latents drawn from the N(0, 1) prior, centre and scale jittered")
    fit.add_argument("--seed", type=int, default=0, help="seed of the restarts' draws")
    fit.add_argument("--out", default="fit_output", help="output directory")
    fit.set_defaults(run=_lensing_handler("fit_command"))
    lenses = subcommands.add_parser(
        "simulate-lenses", help="simulate lens cut-outs (FITS) and their table, the input of fit-many",
        description="Simulate lenses like the demo's (SIE + shear, theta_E 0.7-1.2 arcsec, 64 x 64 pixels at 0.05 "
                    "arcsec, Gaussian PSF, counts/s) with a galaxy source; write OUT/lens_<k>.fits and OUT/lenses.ecsv "
                    "(name, image, pixel_scale, background_rms, exposure_time, psf_fwhm, true_<parameter>).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    lenses.add_argument("--n", type=int, required=True, help="number of lenses")
    lenses.add_argument("--out", required=True, help="output directory")
    lenses.add_argument("--seed", type=int, default=0, help="lens k is drawn from seed + k")
    lenses.set_defaults(run=_lensing_handler("simulate_lenses_command"))
    many = subcommands.add_parser(
        "fit-many", help="fit a table of lens cut-outs with a 'VAE' source; resumable; one results table",
        description="Fit every lens of a table (ECSV or CSV: name, image, pixel_scale, background_rms, exposure_time, "
                    "psf or psf_fwhm, optional theta_E/center_x/center_y starts; paths relative to the table) with SIE "
                    "+ shear + a 'VAE' source (as the demo: two warm starts, the mean galaxy's PSO and a SHAPELETS "
                    "lens search, each then LM; emcee from the better). Writes OUT/lenses/<name>.json and .png "
                    "per lens and OUT/results.ecsv (posterior medians and 16-84 %% half-widths, arcsec, reduced chi2, "
                    "seconds, the table's other columns). Run it again after an interruption: finished lenses are "
                    "kept and not fitted again.",
    )
    many.add_argument("table", help="lens table (ECSV or CSV)")
    many.add_argument("--out", default="fit_many_output", help="output directory")
    many.add_argument("--model", default=None, help="source model name or .keras path (default: the default model)")
    many.add_argument("--seed", type=int, default=0, help="lens k is fitted with seed + k")
    many.add_argument("--pso-particles", type=int, default=60, help="PSO particles, shared by the 2 warm starts")
    many.add_argument("--pso-iterations", type=int, default=60, help="PSO iterations")
    many.add_argument("--lm-iterations", type=int, default=50, help="LM iteration budget")
    many.add_argument("--mcmc-burn", type=int, default=100, help="emcee burn-in steps")
    many.add_argument("--mcmc-run", type=int, default=100, help="emcee steps kept")
    _engine_options(many, "fits")
    many.add_argument("--quiet", action="store_true", help="no progress bar")
    many.set_defaults(run=_lensing_handler("fit_many_command"))
    simulate = subcommands.add_parser(
        "simulate", parents=[_simulation_options("galaxies")],
        help="simulate isolated galaxy stamps with GalSim and write them to HDF5",
        description="Simulate galaxy stamps (intrinsic, PSF-convolved and noisy; flux in the survey's image "
                    "units, truth table with flux, magnitude, half-light radius in arcsec, reduced-shear g1/g2, "
                    "redshift, SNR) and write HDF5 with the generating configuration.",
    )
    simulate.add_argument("--survey", default="hst_acs_f814w", help="survey, a single-band one")
    simulate.add_argument("--source", default="auto", choices=("auto", "cosmos", "parametric"),
                          help="morphologies: COSMOS fits (needs fpfs), parametric, or auto")
    simulate.add_argument("--spiral-probability", type=float, default=0.0,
                          help="probability that a knotted galaxy has 2-4 logarithmic spiral arms of 60-150 knots "
                               "instead of knots scattered like its disk")
    simulate.add_argument("--irregular-probability", type=float, default=0.0,
                          help="probability that a knotted galaxy without arms is irregular: knots carrying 30-60 %% "
                               "of the flux, shifted together 0.3-1 half-light radius off the disk centre")
    simulate.set_defaults(run=handlers.simulate_command)
    blends = subcommands.add_parser(
        "simulate-blends", parents=[_simulation_options("scenes")],
        help="simulate multi-band blended scenes (LSST-like) with their truth, to HDF5",
        description="Simulate scenes of 1-4 galaxies with colours (u g r i z y, 45×45 px at 0.2 arcsec/px for "
                    "'lsst'), the target centred, with Poisson noise; also each galaxy alone without noise, and a "
                    "truth table (flux per band in electrons, reduced-shear g1/g2, adaptive-moment shapes, "
                    "redshift, SNR, blendedness). Write HDF5 with the generating configuration.",
    )
    blends.add_argument("--survey", default="lsst", help="survey, a ground-based one with sky noise")
    blends.add_argument("--objects", type=int, nargs=2, default=[1, 4], metavar=("MIN", "MAX"),
                        help="galaxies per scene, target included (1 1 for isolated galaxies)")
    blends.add_argument("--shear", type=float, nargs=2, default=[0.0, 0.0], metavar=("G1", "G2"),
                        help="reduced shear applied to every galaxy")
    blends.add_argument("--quarter-turn", action="store_true",
                        help="turn every galaxy by 90 degrees (same seed: opposite intrinsic shapes)")
    blends.add_argument("--round", action="store_true", help="round galaxies (axis ratio 1)")
    blends.add_argument("--mag-range", type=float, nargs=2, default=list(BlendSimConfig.mag_range),
                        metavar=("MIN", "MAX"), help="i-band AB magnitudes of the galaxies")
    blends.add_argument("--counts-slope", type=float, default=BlendSimConfig.counts_slope,
                        help="magnitudes drawn from dN/dm ∝ 10^(slope·m); the COSMOS counts by default, flatter "
                             "(e.g. 0.15) for training sets with more bright galaxies")
    blends.add_argument("--hlr-range", type=float, nargs=2, default=list(BlendSimConfig.hlr_range),
                        metavar=("MIN", "MAX"), help="disk half-light radii [arcsec]")
    blends.add_argument("--close-fraction", type=float, default=BlendSimConfig.close_fraction,
                        help="probability that a neighbour lies within ±0.9 arcsec of the centre (compact groups, "
                             "pairs inside a PSF FWHM) instead of anywhere within ±3 arcsec")
    blends.set_defaults(run=handlers.simulate_blends_command)
    field = subcommands.add_parser(
        "simulate-field", help="simulate a large LSST-like field with its truth, as a FITS cube that 'deblend' reads",
        description="Simulate an LSST-like field (u g r i z y, 0.2 arcsec/px, 10-year depth, Poisson noise, "
                    "sky-subtracted, electrons) of the given size, galaxies at uniform random positions with the "
                    "given mean density; write a FITS cube (bands, H, W) and its truth (TRUTH table: x, y in "
                    "pixels, flux per band, redshift, g1/g2 as reduced shear).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    field.add_argument("--size", type=int, nargs=2, required=True, metavar=("H", "W"), help="field size [pixels]")
    field.add_argument("--density", type=float, default=50.0, help="mean galaxies per square arcminute")
    field.add_argument("--mag-range", type=float, nargs=2, default=list(BlendSimConfig.mag_range),
                       metavar=("MIN", "MAX"), help="i-band AB magnitudes of the galaxies")
    field.add_argument("--out", required=True, help="FITS file to write")
    field.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    field.add_argument("--processes", type=int, default=1, help="worker processes")
    field.add_argument("--quiet", action="store_true", help="no progress bar")
    field.set_defaults(run=handlers.simulate_field_command)
    train = subcommands.add_parser(
        "train", parents=[_training_options("galaxies", held_out=1000, epochs=40)],
        help="train a VAE on a simulated HDF5 set and write it as a new model in your model directory",
        description="Train (or resume) a VAE with a checkpoint every epoch, measure median SSIM and relative flux "
                    "error on held-out galaxies, and write the model and its manifest entry, by default to your "
                    "model directory; shipped models are never written over.",
    )
    train.add_argument("--data", required=True, help="HDF5 file written by 'simulate' or 'simulate-blends'")
    train.add_argument("--kl-warmup-epochs", type=int, default=5, help="epochs over which the KL weight rises to 1")
    train.add_argument("--latent-dim", type=int, default=32, help="dimension of the latent space")
    train.add_argument("--encoder-filters", type=int, nargs="+", default=[16, 32, 64, 128],
                       help="filters of the encoder's stride-2 convolutions")
    train.add_argument("--decoder-filters", type=int, nargs="+", default=[64, 32, 16, 8],
                       help="filters of the decoder's stride-2 transposed convolutions")
    train.add_argument("--dense-units", type=int, default=256, help="width of the encoder's dense layer")
    train.add_argument("--augment", action="store_true",
                       help="train every stamp in a random one of its eight orientations (quarter turns, mirror)")
    train.add_argument("--default", action="store_true",
                       help="make it the model used when none is named (in place of the shipped default)")
    train.set_defaults(run=handlers.train_command)
    deblend = subcommands.add_parser(
        "deblend", parents=[_deblending_options()],
        help="detect and deblend the galaxies of a multi-band image (FITS); write stamps (FITS), table and figure",
        description="Detect sources (sep) on a sky-subtracted multi-band image in the survey's units (LSST: electrons "
                    "of the 10-year coadd), deblend each on a stamp centred on it with the VAE deblender, subtract "
                    "it, repeat; optionally refine all galaxies jointly (MAP). Writes OUT/deblended.fits (model, "
                    "residual, one PSF-convolved and one intrinsic stamp cube per galaxy), OUT/galaxies.ecsv "
                    "(positions in pixels, flux per band in image units, adaptive-moment e1/e2 as reduced shear, "
                    "latents z_0…, and the regressor's g1/g2/redshift when given) and OUT/deblended.png (scene, "
                    "model, residual, detections); with nothing detected, the table and stamp cubes are empty. Warns "
                    "when the image's background is not consistent with a sky-subtracted one.",
    )
    deblend.add_argument("image", nargs="+",
                         help="FITS cube (bands, H, W), bands in the deblender's order (e.g. u g r i z y); with "
                              "several, each gets its own directory OUT/<file name without .fits>")
    deblend.add_argument("--out", default="deblend_output", help="output directory")
    deblend.add_argument("--survey", default="lsst", help="survey of the PSF and sky noise")
    deblend.add_argument("--hdu", type=int, default=None, help="HDU of the cube (default: the first 3-D one)")
    deblend.add_argument("--refine", action="store_true", help="MAP refinement of all galaxies jointly")
    deblend.add_argument("--threshold", type=float, default=1.5,
                         help="detection threshold in units of the detection image's pixel noise (sep)")
    deblend.add_argument("--max-new-sources", type=int, default=None,
                         help="most galaxies added per tile where the residual shows light the detections missed "
                              f"(galaxies merged into one detection); 0: detections only (default: {MAX_NEW_SOURCES} "
                              "per 45 x 45-pixel stamp area of a tile)")
    deblend.add_argument("--tile-size", type=int, default=TILE_SIZE,
                         help="side of the tiles the image is deblended in [pixels]; memory grows with it, not with "
                              "the image")
    _engine_options(deblend, "tiles")
    deblend.add_argument("--quiet", action="store_true", help="no progress bar")
    deblend.set_defaults(run=handlers.deblend_command)
    train_deblender = subcommands.add_parser(
        "train-deblender", parents=[_training_options("scenes", held_out=500, epochs=20)],
        help="train a deblender encoder on simulated blends for a VAE's frozen decoder",
        description="Train (or resume) an encoder that maps blended scenes to the latent vector of the central galaxy "
                    "in a VAE's latent space; measure σ(Δe) (reduced shear), |Δf/f|, SSIM on held-out scenes; "
                    "write it with its manifest entry, by default to your model directory.",
    )
    train_deblender.add_argument("--data", required=True, help="HDF5 file written by 'simulate-blends'")
    train_deblender.add_argument("--vae", default="lsst45", help="VAE name or .keras path")
    train_deblender.add_argument("--latent-weight", type=float, default=0.0,
                                 help="weight of the latent-space loss against the VAE's latents (0: off)")
    train_regressor = subcommands.add_parser(
        "train-regressor", parents=[_training_options("scenes", held_out=500, epochs=20)],
        help="train a regressor from a deblender's latent space to g1, g2 and redshift",
        description="Train (or resume) a dense network from the latent means of a frozen encoder to the central "
                    "galaxy's intrinsic shape (g1, g2 as reduced shear) and redshift, with quarter-turn and mirror "
                    "augmentation; write it with its manifest entry, by default to your model directory.",
    )
    train_regressor.add_argument("--data", required=True, help="HDF5 file written by 'simulate-blends'")
    train_regressor.add_argument("--encoder", default="lsst45_deblender",
                                 help="deblender (or VAE) whose latents it reads: name or .keras path")
    train_regressor.add_argument("--no-redshift", action="store_true", help="predict g1 and g2 only")
    train_deblender.set_defaults(run=handlers.train_deblender_command)
    train_regressor.set_defaults(run=handlers.train_regressor_command)
    calibrate = subcommands.add_parser(
        "calibrate-regressor", parents=[_output_options()],
        help="measure a regressor's shear response on sheared sets and write it calibrated, as a new model",
        description="Measure the response R = 1 + m of a regressor's g1, g2 to an applied shear on four blend sets of "
                    "the same galaxies (shear +g, -g, and both turned by 90 degrees), and write the regressor with "
                    "its predictions divided by R as a new model, by default to your model directory. Use other "
                    "sets than those of the report.",
    )
    calibrate.add_argument("--regressor", default="lsst45_regressor", help="regressor name or .keras path")
    calibrate.add_argument("--sets", nargs=4, required=True, metavar=("PLUS", "MINUS", "PLUS_TURNED", "MINUS_TURNED"),
                           help="blend sets with shear +g, -g, and the same turned by 90 degrees (same seed)")
    calibrate.add_argument("--name", default=None,
                           help="name of the new model (default: the regressor's name followed by _calibrated)")
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
    report.add_argument("--out", default="report_output", help="output directory")
    report.add_argument("--quiet", action="store_true", help="no progress bar")
    report.set_defaults(run=handlers.report_command)
    models = subcommands.add_parser(
        "models", help="list the shipped models and yours, with their manifests",
        description="List every model that loads by name: the shipped ones, then yours (the user model directory, "
                    "$LENSTRONOMY_VAE_HOME/models, else ~/.lenstronomy_vae/models), with kind, parent, stamp size in "
                    "pixels, pixel scale in arcsec, bands, latent dimension, held-out quality and calibration.",
    )
    models.add_argument("--json", action="store_true",
                        help="print both manifests as JSON (shipped under 'models', yours under 'user_models')")
    models.set_defaults(run=handlers.models_command)
    for subparser in subcommands.choices.values():
        subparser.formatter_class = _HelpFormatter
        subparser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser
