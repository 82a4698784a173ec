"""Per-call log-likelihood time of a 64×64 lensed image: 'VAE' source against SERSIC_ELLIPSE.

Both run side by side in one process on the demo's simulated lens, through lenstronomy's own
likelihood (``FittingSequence.likelihood_class.logL``), with parameters that change at every
call as they do in PSO or MCMC (so the VAE decodes a new stamp each call). SHAPELETS n_max = 20
is added with ``--shapelets``. Prints a table and writes JSON.

    python benchmarks/likelihood_time.py [--calls 300] [--model hst64] [--shapelets] [--out FILE]
"""

import argparse
import os
import time

import numpy as np
from lenstronomy.Workflow.fitting_sequence import FittingSequence

import lenstronomy_vae  # noqa: F401  (registers 'VAE')
from lenstronomy_vae.lensing.lens_fit import lens_params_start
from lenstronomy_vae.lensing.lens_simulation import LensSettings, simulate_lens
from lenstronomy_vae.lensing.parameters import latent_prior, vae_source_params
from lenstronomy_vae.utils.files import write_json

SERSIC = {"R_sersic": 0.2, "n_sersic": 1.5, "e1": 0.05, "e2": 0.0, "center_x": 0.05, "center_y": -0.04}
SERSIC_LOWER = {"R_sersic": 0.01, "n_sersic": 0.5, "e1": -0.5, "e2": -0.5, "center_x": -1.0, "center_y": -1.0}
SERSIC_UPPER = {"R_sersic": 2.0, "n_sersic": 8.0, "e1": 0.5, "e2": 0.5, "center_x": 1.0, "center_y": 1.0}
SHAPELETS = {"beta": 0.1, "center_x": 0.05, "center_y": -0.04}
SHAPELETS_LOWER = {"beta": 0.01, "center_x": -1.0, "center_y": -1.0}
SHAPELETS_UPPER = {"beta": 1.0, "center_x": 1.0, "center_y": 1.0}


def source_setup(name, model):
    """kwargs_model entries, the five source kwargs lists and the likelihood prior of one source model."""
    if name == "VAE":
        params = [[part] for part in vae_source_params(model=model, center_x=0.05, center_y=-0.04)]
        return ({"source_light_model_list": ["VAE"], "source_light_profile_kwargs_list": [{"model": model}]},
                params, {"prior_source": latent_prior(0, model=model)})
    if name == "SERSIC_ELLIPSE":
        return ({"source_light_model_list": ["SERSIC_ELLIPSE"]},
                [[SERSIC], [SERSIC], [{}], [SERSIC_LOWER], [SERSIC_UPPER]], {})
    return ({"source_light_model_list": ["SHAPELETS"]},
            [[SHAPELETS], [SHAPELETS], [{"n_max": 20}], [SHAPELETS_LOWER], [SHAPELETS_UPPER]], {})


def time_likelihood(simulation, name, model, calls, seed):
    """Median and 16–84 % range of the seconds per logL call, and the parameter count."""
    model_kwargs, source_params, prior = source_setup(name, model)
    lens_params = lens_params_start()
    kwargs_params = {"lens_model": lens_params, "source_model": source_params}
    kwargs_model = {"lens_model_list": ["SIE", "SHEAR"], **model_kwargs}
    data = {"multi_band_list": [[simulation.kwargs_data, simulation.kwargs_psf, simulation.kwargs_numerics]],
            "multi_band_type": "single-band"}
    fitting = FittingSequence(data, kwargs_model, {}, {"source_marg": False, **prior}, kwargs_params)
    likelihood = fitting.likelihood_class
    start = np.array(fitting.param_class.kwargs2args(kwargs_lens=lens_params[0], kwargs_source=source_params[0]))
    rng = np.random.default_rng(seed)
    steps = start + 0.01 * rng.normal(size=(calls + 5, len(start)))
    for args in steps[:5]:  # warm-up: model loading, graph tracing
        if not -1e10 < likelihood.logL(args) < 0:
            raise RuntimeError(f"{name}: logL hit a bound or prior penalty; the timing would not be a real call")
    seconds = []
    for args in steps[5:]:
        begin = time.perf_counter()
        likelihood.logL(args)
        seconds.append(time.perf_counter() - begin)
    return {"median_ms": 1e3 * np.median(seconds), "p16_ms": 1e3 * np.percentile(seconds, 16),
            "p84_ms": 1e3 * np.percentile(seconds, 84), "calls": len(seconds), "free_parameters": len(start)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--model", default=None, help="VAE model name or .keras path (default model)")
    parser.add_argument("--shapelets", action="store_true", help="also time SHAPELETS n_max = 20 (slow)")
    parser.add_argument("--out", default="benchmarks/likelihood_time.json")
    args = parser.parse_args()
    simulation = simulate_lens(seed=0, settings=LensSettings())
    names = ["SERSIC_ELLIPSE", "VAE"] + (["SHAPELETS"] if args.shapelets else [])
    results = {}
    for name in names:
        calls = max(args.calls // 10, 10) if name == "SHAPELETS" else args.calls
        results[name] = time_likelihood(simulation, name, args.model, calls, seed=1)
    reference = results["SERSIC_ELLIPSE"]["median_ms"]
    print(f"64×64 lensed image (SIE + shear), supersampling 3, {os.cpu_count()} CPU cores")
    print(f"{'source':>15} {'median ms':>10} {'16–84 % ms':>14} {'× SERSIC':>9} {'free params':>12}")
    for name, row in results.items():
        row["ratio_to_sersic"] = row["median_ms"] / reference
        print(f"{name:>15} {row['median_ms']:10.3f} {row['p16_ms']:6.3f}–{row['p84_ms']:<7.3f} "
              f"{row['ratio_to_sersic']:9.2f} {row['free_parameters']:12d}")
    write_json(args.out, {"cpu_count": os.cpu_count(), "results": results})


if __name__ == "__main__":
    main()
