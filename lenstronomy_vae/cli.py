"""Command line: ``lenstronomy-vae demo`` (the main job) and ``lenstronomy-vae models``."""

import argparse
import json
import sys


def _demo(args):
    from lenstronomy_vae.demo import FitSettings, run_demo

    settings = FitSettings(progress=not args.quiet)
    if args.quick:
        settings = FitSettings(pso_iterations=20, lm_iterations=10, mcmc_burn=20, mcmc_run=20,
                               progress=not args.quiet)
    run_demo(out_dir=args.out, seed=args.seed, model=args.model, fit_settings=settings)
    return 0


def _models(args):
    from lenstronomy_vae.models import read_manifest

    manifest = read_manifest()
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    for name, entry in manifest["models"].items():
        default = " (default)" if name == manifest.get("default") else ""
        metrics = entry.get("metrics", {})
        print(f"{name}{default}: {entry['image_size']}×{entry['image_size']} px at {entry['pixel_scale']}″/px, "
              f"bands {entry['bands']}, latent dim {entry['latent_dim']}, "
              f"median SSIM {metrics.get('median_ssim', float('nan')):.3f}, file {entry['file']}")
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
