"""The handlers of the simulation, training and deblending commands: read the arguments, call one function, print.

Each takes the parsed arguments and returns the exit code (0). Bad input raises ValueError or
FileNotFoundError, which :func:`lenstronomy_vae.cli.main` turns into exit code 2. The training
commands write new models to ``--weights-dir``, by default the user's model directory.
"""

import json
import os
import pathlib
import sys
import time
import warnings

from lenstronomy_vae.deblending.fits_pipeline import deblend_fits
from lenstronomy_vae.deblending.scene import SkyBackgroundWarning
from lenstronomy_vae.evaluation.figures import plot_deblend_outputs, plot_deblending_report
from lenstronomy_vae.evaluation.report import compare
from lenstronomy_vae.networks.deblender import Deblender
from lenstronomy_vae.networks.model_files import load_network, read_manifest, user_models_dir, weights_dir
from lenstronomy_vae.networks.regressor import ALL_OUTPUTS, SHAPE_OUTPUTS, LatentRegressor
from lenstronomy_vae.sims.blends import BlendSet, BlendSimConfig, simulate_blends
from lenstronomy_vae.sims.field import simulate_field
from lenstronomy_vae.sims.galaxies import GalaxySimConfig, simulate_galaxies
from lenstronomy_vae.training.deblender import train_and_ship_deblender
from lenstronomy_vae.training.regressor import calibrate_and_ship, train_and_ship_regressor
from lenstronomy_vae.training.vae import train_and_ship
from lenstronomy_vae.utils.checks import check_count
from lenstronomy_vae.utils.engine import engine
from lenstronomy_vae.utils.files import write_json


def _simulate_and_save(simulate, out, processes, what):
    """Run ``simulate()``, save its set to ``out`` (HDF5) and print time per item and file size."""
    if pathlib.Path(out).is_dir():
        raise ValueError(f"--out {out} is a directory; give the HDF5 file to write")
    start = time.perf_counter()
    stamps = simulate()
    elapsed = time.perf_counter() - start
    stamps.save_hdf5(out)
    print(f"{len(stamps)} {what(stamps)} in {elapsed:.1f} s ({1e3 * elapsed / len(stamps):.1f} ms each, "
          f"{processes} process(es)); wrote {out} ({os.path.getsize(out) / 1e6:.1f} MB)")
    return 0


def simulate_command(args):
    config = GalaxySimConfig(survey=args.survey, source=args.source, spiral_probability=args.spiral_probability,
                             irregular_probability=args.irregular_probability)
    return _simulate_and_save(
        lambda: simulate_galaxies(args.n, config, seed=args.seed, progress=not args.quiet, processes=args.processes),
        args.out, args.processes, lambda galaxies: f"galaxies from source '{galaxies.config.source}'")


def simulate_blends_command(args):
    config = BlendSimConfig(survey=args.survey, n_objects_range=tuple(args.objects), shear=tuple(args.shear),
                            quarter_turn=args.quarter_turn, round_galaxies=args.round,
                            mag_range=tuple(args.mag_range), counts_slope=args.counts_slope,
                            hlr_range=tuple(args.hlr_range),
                            close_fraction=args.close_fraction)
    return _simulate_and_save(
        lambda: simulate_blends(args.n, config, seed=args.seed, progress=not args.quiet, processes=args.processes),
        args.out, args.processes, lambda scenes: f"scenes ({int(scenes.n_objects.sum())} galaxies)")


def train_command(args):
    options = {"latent_dim": args.latent_dim, "encoder_filters": args.encoder_filters,
               "decoder_filters": args.decoder_filters, "dense_units": args.dense_units}
    summary = train_and_ship(
        args.data, args.name, args.weights_dir, args.checkpoint_dir or f"runs/{args.name}",
        args.epochs, config_options=options, held_out=args.held_out, validation=args.validation,
        batch_size=args.batch_size, learning_rate=args.learning_rate, kl_warmup_epochs=args.kl_warmup_epochs,
        seed=args.seed, augment=args.augment, default=args.default, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2))
    return 0


def train_deblender_command(args):
    summary = train_and_ship_deblender(
        args.data, args.vae, args.name, args.weights_dir, args.checkpoint_dir or f"runs/{args.name}",
        args.epochs, latent_weight=args.latent_weight, held_out=args.held_out, validation=args.validation,
        batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2))
    return 0


def train_regressor_command(args):
    summary = train_and_ship_regressor(
        args.data, args.encoder, args.name, args.weights_dir, args.checkpoint_dir or f"runs/{args.name}", args.epochs,
        outputs=SHAPE_OUTPUTS if args.no_redshift else ALL_OUTPUTS, held_out=args.held_out,
        validation=args.validation, batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
        overwrite=args.overwrite)
    print(json.dumps(summary, indent=2))
    return 0


def calibrate_regressor_command(args):
    calibrated, bias, summary = calibrate_and_ship(args.regressor, args.sets, args.weights_dir, name=args.name,
                                                   overwrite=args.overwrite)
    print(f"shear response R = ({calibrated.shear_response[0]:.4f}, {calibrated.shear_response[1]:.4f}) from "
          f"m = ({bias['m'][0]:+.4f} ± {bias['m_err'][0]:.4f}, {bias['m'][1]:+.4f} ± {bias['m_err'][1]:.4f}) "
          f"on {bias['n']} galaxies; wrote {summary['model_file']}")
    return 0


def report_command(args):
    check_count("--map-steps", args.map_steps)
    if args.map_scenes is not None:
        check_count("--map-scenes", args.map_scenes)
    blends = BlendSet.load_hdf5(args.data)
    regressor = load_network(args.regressor, LatentRegressor) if args.regressor else None
    shear_sets = [BlendSet.load_hdf5(path) for path in args.shear_sets] if args.shear_sets else None
    deblender = load_network(args.deblender, Deblender)
    report, per_scene = compare(blends, deblender, regressor, shear_sets, map_scenes=args.map_scenes,
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


def simulate_field_command(args):
    tic = time.perf_counter()
    field = simulate_field(tuple(args.size), args.density, BlendSimConfig(mag_range=tuple(args.mag_range)),
                           seed=args.seed, progress=not args.quiet, processes=args.processes)
    field.save_fits(args.out)
    seconds = time.perf_counter() - tic
    print(f"{len(field.truth)} galaxies on {args.size[0]} x {args.size[1]} pixels in {seconds:.1f} s; wrote {args.out}")
    return 0


def deblend_command(args):
    check_count("--tile-size", args.tile_size)
    check_count("--workers", args.workers)
    # A cube's name is only read as a directory name when there are several.
    outs = ([pathlib.Path(args.out)] if len(args.image) == 1
            else [pathlib.Path(args.out) / pathlib.Path(image).name.removesuffix(".gz").removesuffix(".fits")
                  for image in args.image])
    if len(set(outs)) < len(outs):
        raise ValueError("two of the images have the same file name; their outputs would go to the same directory")
    with engine(args.workers, args.scheduler) as map_function:
        for image, out in zip(args.image, outs):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", SkyBackgroundWarning)
                table = deblend_fits(image, out, deblender=args.deblender, regressor=args.regressor, survey=args.survey,
                                     hdu=args.hdu, refine=args.refine, map_steps=args.map_steps,
                                     threshold=args.threshold, max_new_sources=args.max_new_sources,
                                     tile_size=args.tile_size, map_function=map_function, progress=not args.quiet)
            for warning in caught:
                print(f"lenstronomy-vae deblend: warning: {warning.message}", file=sys.stderr)
            plot_deblend_outputs(out / "deblended.fits", out / "deblended.png")
            n = len(table)
            print(f"{image}: {n} {'galaxy' if n == 1 else 'galaxies'} deblended; wrote {out / 'deblended.fits'}, "
                  f"{out / 'galaxies.ecsv'} and {out / 'deblended.png'}")
    return 0


def _calibration(entry):
    """What a regressor's manifest entry says about its shear calibration, or "" for a network without one."""
    response = entry.get("metrics", {}).get("shear_response")
    if not response or all(r == 1 for r in response):
        return ""
    text = f"; calibrated: g1, g2 divided by R = ({response[0]:.3f}, {response[1]:.3f})"
    calibration = entry.get("training_data", {}).get("calibration")
    if calibration:
        m, m_err = calibration["uncalibrated_m"], calibration["uncalibrated_m_err"]
        text += (f", measured on {calibration['galaxies']} galaxies at shear {tuple(calibration['shear'])} "
                 f"(uncalibrated m = {m[0]:+.3f} ± {m_err[0]:.3f}, {m[1]:+.3f} ± {m_err[1]:.3f})")
    return text


def _describe(name, entry, marks):
    """One line of ``lenstronomy-vae models``: name, marks, kind, stamp, bands, latents, quality, file."""
    kind = entry.get("kind", "vae")
    parent = f" of {entry['parent']}" if entry.get("parent") else ""
    metrics = entry.get("metrics", {})
    if "median_ssim" in metrics:
        quality = f"median SSIM {metrics['median_ssim']:.3f}"
    else:
        calibration = _calibration(entry)
        quality = (f"σ(Δg1) {metrics.get('sigma_de1', float('nan')):.3f}"
                   + (" measured before calibration (not since)" + calibration if calibration else ""))
    marks = f" ({', '.join(marks)})" if marks else ""
    return (f"{name}{marks}: {kind}{parent}, {entry['image_size']}×{entry['image_size']} px at "
            f"{entry['pixel_scale']}″/px, bands {entry['bands']}, latent dim {entry['latent_dim']}, {quality}, "
            f"file {entry['file']}")


def models_command(args):
    shipped = read_manifest()
    user_directory = user_models_dir()
    user = read_manifest(user_directory)
    default = user.get("default") or shipped.get("default")
    if args.json:
        print(json.dumps({"default": default, "models": shipped["models"], "user_models_dir": str(user_directory),
                          "user_models": user["models"]}, indent=2))
        return 0
    print(f"shipped, in {weights_dir()}:")
    for name, entry in shipped["models"].items():
        marks = ["default"] if name == default and name not in user["models"] else []
        marks += [f"replaced by yours, {name!r} below"] if name in user["models"] else []
        print(_describe(name, entry, marks))
    print(f"yours, in {user_directory}:" + ("" if user["models"] else " none (training writes here)"))
    for name, entry in user["models"].items():
        marks = ["yours"] + (["default"] if name == default else [])
        marks += ["replaces the shipped one"] if name in shipped["models"] else []
        print(_describe(name, entry, marks))
    return 0
