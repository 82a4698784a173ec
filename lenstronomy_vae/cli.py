"""Command line ``lenstronomy-vae``: ``demo`` (the main job), ``fit``, ``simulate``, ``train``, ``models``.

Exit codes: 0 success, 2 bad input (the message says what and how to fix it), 1 anything else.
"""

import argparse
import json
import pathlib
import sys


def _demo(args):
    from lenstronomy_vae.demo import FitSettings, run_demo

    settings = FitSettings(progress=not args.quiet)
    if args.quick:
        settings = FitSettings(pso_iterations=20, lm_iterations=10, mcmc_burn=20, mcmc_run=20,
                               progress=not args.quiet)
    run_demo(out_dir=args.out, seed=args.seed, model=args.model, fit_settings=settings)
    return 0


def _fit(args):
    import numpy as np

    from lenstronomy_vae.fits_io import read_image
    from lenstronomy_vae.galaxy_fit import fit_galaxy
    from lenstronomy_vae.io import write_json
    from lenstronomy_vae.plots import plot_fit_panels

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


def _simulate_and_save(simulate, out, processes, what):
    """Run ``simulate()``, save its set to ``out`` (HDF5) and print time per item and file size."""
    import os
    import time

    start = time.perf_counter()
    stamps = simulate()
    elapsed = time.perf_counter() - start
    stamps.save_hdf5(out)
    print(f"{len(stamps)} {what(stamps)} in {elapsed:.1f} s ({1e3 * elapsed / len(stamps):.1f} ms each, "
          f"{processes} process(es)); wrote {out} ({os.path.getsize(out) / 1e6:.1f} MB)")
    return 0


def _simulate(args):
    from lenstronomy_vae.simulate import GalaxySimConfig, simulate_galaxies

    config = GalaxySimConfig(survey=args.survey, source=args.source)
    return _simulate_and_save(
        lambda: simulate_galaxies(args.n, config, seed=args.seed, progress=not args.quiet, processes=args.processes),
        args.out, args.processes, lambda galaxies: f"galaxies from source '{galaxies.config.source}'")


def _simulate_blends(args):
    from lenstronomy_vae.blends import BlendSimConfig, simulate_blends

    config = BlendSimConfig(survey=args.survey, n_objects_range=tuple(args.objects), shear=tuple(args.shear),
                            quarter_turn=args.quarter_turn, round_galaxies=args.round)
    return _simulate_and_save(
        lambda: simulate_blends(args.n, config, seed=args.seed, progress=not args.quiet, processes=args.processes),
        args.out, args.processes, lambda scenes: f"scenes ({int(scenes.n_objects.sum())} galaxies)")


def _train(args):
    from lenstronomy_vae.models import weights_dir
    from lenstronomy_vae.training import train_and_ship

    options = {"latent_dim": args.latent_dim, "encoder_filters": args.encoder_filters,
               "decoder_filters": args.decoder_filters, "dense_units": args.dense_units}
    summary = train_and_ship(
        args.data, args.name, args.weights_dir or weights_dir(), args.checkpoint_dir or f"runs/{args.name}",
        args.epochs, config_options=options, held_out=args.held_out, validation=args.validation,
        batch_size=args.batch_size, learning_rate=args.learning_rate, kl_warmup_epochs=args.kl_warmup_epochs,
        seed=args.seed, default=args.default)
    print(json.dumps(summary, indent=2))
    return 0


def _train_deblender(args):
    from lenstronomy_vae.deblender import train_and_ship_deblender
    from lenstronomy_vae.models import weights_dir

    summary = train_and_ship_deblender(
        args.data, args.vae, args.name, args.weights_dir or weights_dir(), args.checkpoint_dir or f"runs/{args.name}",
        args.epochs, latent_weight=args.latent_weight, held_out=args.held_out, validation=args.validation,
        batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed)
    print(json.dumps(summary, indent=2))
    return 0


def _train_regressor(args):
    from lenstronomy_vae.models import weights_dir
    from lenstronomy_vae.regressor import ALL_OUTPUTS, SHAPE_OUTPUTS, train_and_ship_regressor

    summary = train_and_ship_regressor(
        args.data, args.encoder, args.name, args.weights_dir or weights_dir(),
        args.checkpoint_dir or f"runs/{args.name}", args.epochs,
        outputs=SHAPE_OUTPUTS if args.no_redshift else ALL_OUTPUTS, held_out=args.held_out,
        validation=args.validation, batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed)
    print(json.dumps(summary, indent=2))
    return 0


def _calibrate_regressor(args):
    from lenstronomy_vae.blends import BlendSet
    from lenstronomy_vae.models import load_network, read_manifest, weights_dir
    from lenstronomy_vae.regressor import LatentRegressor, calibrate_shear_response
    from lenstronomy_vae.training import ship

    directory = args.weights_dir or weights_dir()
    regressor = load_network(args.regressor, LatentRegressor)
    sets = [BlendSet.load_hdf5(path) for path in args.sets]
    calibrated, bias = calibrate_shear_response(regressor, *sets)
    name = args.name or pathlib.Path(args.regressor).stem
    entry = read_manifest(directory)["models"].get(name, {})
    calibration = {"sets": [pathlib.Path(path).name for path in args.sets], "shear": list(sets[0].config.shear),
                   "uncalibrated_m": bias["m"], "uncalibrated_m_err": bias["m_err"], "uncalibrated_c": bias["c"],
                   "uncalibrated_c_err": bias["c_err"], "galaxies": bias["n"]}
    metrics = {**entry.get("metrics", {}), "shear_response": list(calibrated.shear_response)}
    summary = ship(calibrated, name, directory, {**entry.get("training_data", {}), "calibration": calibration},
                   metrics, kind="regressor", parent=entry.get("parent"))
    print(f"shear response R = ({calibrated.shear_response[0]:.4f}, {calibrated.shear_response[1]:.4f}) from "
          f"m = ({bias['m'][0]:+.4f} ± {bias['m_err'][0]:.4f}, {bias['m'][1]:+.4f} ± {bias['m_err'][1]:.4f}) "
          f"on {bias['n']} galaxies; wrote {summary['model_file']}")
    return 0


def _report(args):
    from lenstronomy_vae.blends import BlendSet
    from lenstronomy_vae.io import write_json
    from lenstronomy_vae.models import load_network, load_vae
    from lenstronomy_vae.plots import plot_deblending_report
    from lenstronomy_vae.regressor import LatentRegressor
    from lenstronomy_vae.report import compare

    blends = BlendSet.load_hdf5(args.data)
    regressor = load_network(args.regressor, LatentRegressor) if args.regressor else None
    shear_sets = [BlendSet.load_hdf5(path) for path in args.shear_sets] if args.shear_sets else None
    report, per_scene = compare(blends, load_vae(args.deblender), regressor, shear_sets, map_scenes=args.map_scenes,
                                map_steps=args.map_steps, progress=not args.quiet)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report)
    plot_deblending_report(report, per_scene, out / "report.png")
    print(f"{'method':<18} {'n':>5} {'σ(Δe1)':>8} {'σ(Δe2)':>8} {'mean|Δf/f|':>11} {'SSIM':>6} {'cos':>6}")
    for method, row in report["table"].items():
        flux = f"{row['mean_abs_flux_error']:>11.4f} {row['median_ssim']:>6.3f} {row['median_cosine']:>6.3f}" \
            if "mean_abs_flux_error" in row else ""
        print(f"{method:<18} {row['n']:>5} {row['sigma_de1']:>8.4f} {row['sigma_de2']:>8.4f} {flux}")
    if "shear_bias" in report:
        bias = report["shear_bias"]
        print("regressor shear bias: m = " + ", ".join(f"{m:+.4f} ± {e:.4f}" for m, e in zip(bias["m"], bias["m_err"]))
              + "; c = " + ", ".join(f"{c:+.5f} ± {e:.5f}" for c, e in zip(bias["c"], bias["c_err"])))
    print(f"wrote {out / 'report.json'} and {out / 'report.png'}")
    return 0


def _deblend(args):
    from lenstronomy_vae.deblend_io import deblend_fits

    table = deblend_fits(args.image, args.out, deblender=args.deblender, regressor=args.regressor,
                         survey=args.survey, hdu=args.hdu, refine=args.refine, map_steps=args.map_steps,
                         threshold=args.threshold)
    print(f"{len(table)} galaxies deblended; wrote {pathlib.Path(args.out) / 'deblended.fits'} and "
          f"{pathlib.Path(args.out) / 'galaxies.ecsv'}")
    return 0


def _models(args):
    from lenstronomy_vae.models import read_manifest

    manifest = read_manifest()
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    for name, entry in manifest["models"].items():
        default = " (default)" if name == manifest.get("default") else ""
        kind = entry.get("kind", "vae")
        parent = f" of {entry['parent']}" if entry.get("parent") else ""
        metrics = entry.get("metrics", {})
        quality = (f"median SSIM {metrics['median_ssim']:.3f}" if "median_ssim" in metrics
                   else f"σ(Δg1) {metrics.get('sigma_de1', float('nan')):.3f}")
        print(f"{name}{default}: {kind}{parent}, {entry['image_size']}×{entry['image_size']} px at "
              f"{entry['pixel_scale']}″/px, bands {entry['bands']}, latent dim {entry['latent_dim']}, {quality}, "
              f"file {entry['file']}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="lenstronomy-vae", description="VAE galaxy model for lenstronomy")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
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
    demo.set_defaults(run=_demo)
    fit = commands.add_parser(
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
    fit.set_defaults(run=_fit)
    simulate = commands.add_parser(
        "simulate", help="simulate isolated galaxy stamps with GalSim and write them to HDF5",
        description="Simulate galaxy stamps (intrinsic, PSF-convolved and noisy; flux in the survey's image "
                    "units, truth table with flux, magnitude, half-light radius in arcsec, reduced-shear g1/g2, "
                    "redshift, SNR) and write HDF5 with the generating configuration.",
    )
    simulate.add_argument("--n", type=int, required=True, help="number of galaxies")
    simulate.add_argument("--out", required=True, help="HDF5 file to write")
    simulate.add_argument("--survey", default="hst_acs_f814w", help="survey (default hst_acs_f814w)")
    simulate.add_argument("--source", default="auto", choices=("auto", "cosmos", "parametric"),
                          help="morphologies: COSMOS fits (needs fpfs), parametric, or auto")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--processes", type=int, default=1, help="worker processes")
    simulate.add_argument("--quiet", action="store_true", help="no progress bar")
    simulate.set_defaults(run=_simulate)
    blends = commands.add_parser(
        "simulate-blends", help="simulate multi-band blended scenes (LSST-like) with their truth, to HDF5",
        description="Simulate scenes of 1-4 galaxies with colours (u g r i z y, 45×45 px at 0.2 arcsec/px for "
                    "'lsst'), the target centred, with Poisson noise; also each galaxy alone without noise, and a "
                    "truth table (flux per band in electrons, reduced-shear g1/g2, adaptive-moment shapes, "
                    "redshift, SNR, blendedness). Write HDF5 with the generating configuration.",
    )
    blends.add_argument("--n", type=int, required=True, help="number of scenes")
    blends.add_argument("--out", required=True, help="HDF5 file to write")
    blends.add_argument("--survey", default="lsst", help="survey (default lsst)")
    blends.add_argument("--objects", type=int, nargs=2, default=[1, 4], metavar=("MIN", "MAX"),
                        help="galaxies per scene, target included (default 1 4; 1 1 for isolated galaxies)")
    blends.add_argument("--shear", type=float, nargs=2, default=[0.0, 0.0], metavar=("G1", "G2"),
                        help="reduced shear applied to every galaxy (default 0 0)")
    blends.add_argument("--quarter-turn", action="store_true",
                        help="turn every galaxy by 90 degrees (same seed: opposite intrinsic shapes)")
    blends.add_argument("--round", action="store_true", help="round galaxies (axis ratio 1)")
    blends.add_argument("--seed", type=int, default=0)
    blends.add_argument("--processes", type=int, default=1, help="worker processes")
    blends.add_argument("--quiet", action="store_true", help="no progress bar")
    blends.set_defaults(run=_simulate_blends)
    train = commands.add_parser(
        "train", help="train a VAE on a simulated HDF5 set and ship it in the weights directory",
        description="Train (or resume) a VAE with a checkpoint every epoch, measure median SSIM and relative flux "
                    "error on held-out galaxies, and write the model and its manifest entry.",
    )
    train.add_argument("--data", required=True, help="HDF5 file written by 'simulate'")
    train.add_argument("--name", default="hst64", help="model name in the manifest")
    train.add_argument("--weights-dir", default=None, help="default: the package's weights directory")
    train.add_argument("--checkpoint-dir", default=None, help="default: runs/<name>")
    train.add_argument("--held-out", type=int, default=1000, help="galaxies kept for the final metrics")
    train.add_argument("--validation", type=int, default=1000, help="galaxies for the validation loss")
    train.add_argument("--epochs", type=int, default=40)
    train.add_argument("--batch-size", type=int, default=64, help="global batch size (split across GPUs)")
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--kl-warmup-epochs", type=int, default=5)
    train.add_argument("--latent-dim", type=int, default=32)
    train.add_argument("--encoder-filters", type=int, nargs="+", default=[16, 32, 64, 128])
    train.add_argument("--decoder-filters", type=int, nargs="+", default=[64, 32, 16, 8])
    train.add_argument("--dense-units", type=int, default=256)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--default", action="store_true", help="make this the default shipped model")
    train.set_defaults(run=_train)
    deblend = commands.add_parser(
        "deblend", help="detect and deblend the galaxies of a multi-band image (FITS); write stamps (FITS) + table",
        description="Detect sources (sep) on a sky-subtracted multi-band image in the survey's units (LSST: electrons "
                    "of the 10-year coadd), deblend each on a stamp centred on it with the VAE deblender, subtract "
                    "it, repeat; optionally refine all galaxies jointly (MAP). Writes OUT/deblended.fits (model, "
                    "residual, one PSF-convolved and one intrinsic stamp cube per galaxy) and OUT/galaxies.ecsv "
                    "(positions in pixels, flux per band in image units, adaptive-moment e1/e2 as reduced shear, and "
                    "the regressor's g1/g2/redshift when given).",
    )
    deblend.add_argument("image", help="FITS cube (bands, H, W), bands in the deblender's order (e.g. u g r i z y)")
    deblend.add_argument("--out", default="deblend_output", help="output directory (default: deblend_output)")
    deblend.add_argument("--deblender", default="lsst45_deblender", help="shipped deblender name or .keras path")
    deblend.add_argument("--regressor", default=None, help="shipped regressor name or .keras path (optional)")
    deblend.add_argument("--survey", default="lsst", help="survey of the PSF and sky noise (default lsst)")
    deblend.add_argument("--hdu", type=int, default=None, help="HDU of the cube (default: the first 3-D one)")
    deblend.add_argument("--refine", action="store_true", help="MAP refinement of all galaxies jointly")
    deblend.add_argument("--map-steps", type=int, default=100, help="most L-BFGS iterations of the MAP refinement")
    deblend.add_argument("--threshold", type=float, default=1.5,
                         help="detection threshold in units of the detection image's pixel noise (sep; default 1.5)")
    deblend.set_defaults(run=_deblend)
    train_deblender = commands.add_parser(
        "train-deblender", help="train a deblender encoder on simulated blends for a VAE's frozen decoder",
        description="Train (or resume) an encoder that maps blended scenes to the latent vector of the central galaxy "
                    "in a shipped VAE's latent space; measure σ(Δe) (reduced shear), |Δf/f|, SSIM on held-out scenes; "
                    "ship it with its manifest entry.",
    )
    train_deblender.add_argument("--data", required=True, help="HDF5 file written by 'simulate-blends'")
    train_deblender.add_argument("--vae", default="lsst45", help="shipped VAE name or .keras path (default lsst45)")
    train_deblender.add_argument("--name", default="lsst45_deblender", help="model name in the manifest")
    train_deblender.add_argument("--latent-weight", type=float, default=0.0,
                                 help="weight of the latent-space loss against the VAE's latents (0: off)")
    train_regressor = commands.add_parser(
        "train-regressor", help="train a regressor from a deblender's latent space to g1, g2 and redshift",
        description="Train (or resume) a dense network from the latent means of a frozen encoder to the central "
                    "galaxy's intrinsic shape (g1, g2 as reduced shear) and redshift, with quarter-turn and mirror "
                    "augmentation; ship it with its manifest entry.",
    )
    train_regressor.add_argument("--data", required=True, help="HDF5 file written by 'simulate-blends'")
    train_regressor.add_argument("--encoder", default="lsst45_deblender",
                                 help="deblender (or VAE) whose latents it reads")
    train_regressor.add_argument("--name", default="lsst45_regressor", help="model name in the manifest")
    train_regressor.add_argument("--no-redshift", action="store_true", help="predict g1 and g2 only")
    for command in (train_deblender, train_regressor):
        command.add_argument("--weights-dir", default=None, help="default: the package's weights directory")
        command.add_argument("--checkpoint-dir", default=None, help="default: runs/<name>")
        command.add_argument("--held-out", type=int, default=500, help="scenes kept for the final metrics")
        command.add_argument("--validation", type=int, default=500, help="scenes for the validation loss")
        command.add_argument("--epochs", type=int, default=20)
        command.add_argument("--batch-size", type=int, default=64, help="global batch size (split across GPUs)")
        command.add_argument("--learning-rate", type=float, default=1e-3)
        command.add_argument("--seed", type=int, default=0)
    train_deblender.set_defaults(run=_train_deblender)
    train_regressor.set_defaults(run=_train_regressor)
    calibrate = commands.add_parser(
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
    calibrate.set_defaults(run=_calibrate_regressor)
    report = commands.add_parser(
        "report", help="compare no deblending, sep, the VAE deblender, MAP and the regressor on the same blends",
        description="Measure, for the target of each scene, Δe (adaptive moments, reduced shear) against the true "
                    "isolated noiseless image, |Δf/f| per band, SSIM and cosine similarity, binned by SNR and "
                    "blendedness, and the regressor's shear bias m, c on sheared sets. Writes OUT/report.json and "
                    "OUT/report.png.",
    )
    report.add_argument("--data", required=True, help="HDF5 blend set not used in training")
    report.add_argument("--deblender", default="lsst45_deblender", help="shipped deblender name or .keras path")
    report.add_argument("--regressor", default=None, help="shipped regressor name or .keras path (optional)")
    report.add_argument("--shear-sets", nargs=4, default=None, metavar=("PLUS", "MINUS", "PLUS_TURNED", "MINUS_TURNED"),
                        help="blend sets with shear +g, -g, and the same turned by 90 degrees (same seed)")
    report.add_argument("--map-scenes", type=int, default=None, help="scenes that also get MAP (default all; slow)")
    report.add_argument("--map-steps", type=int, default=100, help="most L-BFGS iterations of the MAP refinement")
    report.add_argument("--out", default="report_output", help="output directory (default: report_output)")
    report.add_argument("--quiet", action="store_true", help="no progress bar")
    report.set_defaults(run=_report)
    models = commands.add_parser("models", help="list the shipped models and their manifests")
    models.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    models.set_defaults(run=_models)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"lenstronomy-vae {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
