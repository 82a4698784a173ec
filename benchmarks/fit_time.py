"""Fit times, side by side in one run: LM against PSO and SIMPLEX and SERSIC_ELLIPSE, and two LM cores.

(b) Galaxies: simulated HST-like 64×64 stamps (GalSim COSMOS morphologies with knots, ACS-like
    PSF, noise) fitted with the 'VAE' profile by LM, PSO and SIMPLEX, and with SERSIC_ELLIPSE by
    PSO then SIMPLEX. The χ² floor of a stamp is the lowest VAE χ² any method reached; a method
    "reaches" it when its χ² ≤ 1.05 × floor. LM and PSO record χ² per iteration, so their time to
    reach the floor is interpolated from their per-iteration history; SIMPLEX only reports its end.
(c) A lensed source: the demo's SIE + shear lens, PSO with the latents at the mean galaxy, then
    LM or SIMPLEX from the same PSO state; wall time and final χ².
(d) Two LM cores on the problems of (b) and (c), the same 'LM' step with the same residuals and
    Jacobian: the package's (lm.levenberg_marquardt: scipy.optimize.least_squares, method 'trf')
    and the hand-written Levenberg–Marquardt loop it replaced (:func:`hand_written_lm`, kept here);
    seconds, final χ², accepted steps, residual evaluations and convergence of each. In (b) and
    (c), "LM least_squares" is the package's 'LM' step.

Prints tables and writes JSON. lenstronomy's optimisers draw from numpy's global generator,
seeded here. ``--quick``: only the fits of (d) (the lens fit still starts from its shared PSO),
on 3 galaxies unless ``--galaxies`` says otherwise.

    python benchmarks/fit_time.py [--galaxies 10] [--quick] [--seed 0] [--out benchmarks/fit_time.json]
"""

import argparse
import contextlib
import copy
import os
import time

import numpy as np
from lenstronomy.Workflow.fitting_sequence import FittingSequence

import lenstronomy_vae  # noqa: F401  (registers 'VAE' and 'LM')
from lenstronomy_vae.lensing import lm
from lenstronomy_vae.lensing.lens_fit import lens_params_start
from lenstronomy_vae.lensing.lens_simulation import LensSettings, simulate_lens
from lenstronomy_vae.lensing.parameters import latent_prior, vae_source_params
from lenstronomy_vae.networks.galaxy_model import load_galaxy_model
from lenstronomy_vae.sims.galaxies import GalaxySimConfig, simulate_galaxies
from lenstronomy_vae.sims.surveys import SURVEYS
from lenstronomy_vae.utils.files import write_json

FLOOR_TOLERANCE = 1.05
# A stricter target than 5 % of χ² ≈ 4096: within Δχ² = 10 of the floor.
FLOOR_DELTA_CHI2 = 10.0
SERSIC_INIT = {"R_sersic": 0.2, "n_sersic": 1.5, "e1": 0.0, "e2": 0.0, "center_x": 0.0, "center_y": 0.0}
SERSIC_SIGMA = {"R_sersic": 0.1, "n_sersic": 0.5, "e1": 0.1, "e2": 0.1, "center_x": 0.03, "center_y": 0.03}
SERSIC_LOWER = {"R_sersic": 0.01, "n_sersic": 0.3, "e1": -0.6, "e2": -0.6, "center_x": -0.5, "center_y": -0.5}
SERSIC_UPPER = {"R_sersic": 2.0, "n_sersic": 8.0, "e1": 0.6, "e2": 0.6, "center_x": 0.5, "center_y": 0.5}
QUICK_GALAXIES = 3
# Marquardt parameter beyond which the hand-written loop tries no further step: its stall.
MAX_DAMPING = 1e10


def hand_written_lm(residuals, jacobian, x0, lower, upper, max_iterations=50, tolerance=1e-6, damping=1e-3):
    """The hand-written Levenberg–Marquardt loop that 'LM' ran before scipy's least_squares (the
    interface and result of lm.levenberg_marquardt), kept here for the comparison (d).

    Marquardt's diagonal scaling; steps that leave the box are clipped onto it, and a parameter on
    a bound pushed outwards by the gradient is frozen for the step. A trial is accepted when it
    lowers |r|² (λ /= 3), else λ *= 4 and the step is retried. Converged: an accepted step lowered
    |r|² by less than ``tolerance`` (relative), or a stall (λ > MAX_DAMPING) where the
    Gauss–Newton model predicts less than that too; not after ``max_iterations`` accepted steps.
    ``damping``: initial λ.
    """
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    x = np.clip(np.asarray(x0, float), lower, upper)
    r = residuals(x)
    chi2 = float(r @ r)
    history, evaluations, converged = [chi2], 1, False
    for _ in range(max_iterations):
        J = jacobian(x)
        gradient = J.T @ r
        hessian = J.T @ J
        free = ~(((x <= lower) & (gradient > 0)) | ((x >= upper) & (gradient < 0)))
        scaling = np.maximum(np.diag(hessian), 1e-12 * max(np.diag(hessian).max(), 1e-300))
        while True:
            step = np.zeros_like(x)
            h = hessian[np.ix_(free, free)] + damping * np.diag(scaling[free])
            step[free] = np.linalg.solve(h, -gradient[free])
            trial = np.clip(x + step, lower, upper)
            r_trial = residuals(trial)
            evaluations += 1
            chi2_trial = float(r_trial @ r_trial)
            if np.isfinite(chi2_trial) and chi2_trial < chi2:
                damping = max(damping / 3.0, 1e-9)
                break
            damping *= 4.0
            if damping > MAX_DAMPING:
                converged = bool(lm.gauss_newton_gain(J[:, free], r) < tolerance)
                return _core_result(x, chi2, history, evaluations, converged)
        improvement = (chi2 - chi2_trial) / chi2
        x, r, chi2 = trial, r_trial, chi2_trial
        history.append(chi2)
        if improvement < tolerance:
            converged = True
            break
    return _core_result(x, chi2, history, evaluations, converged)


def _core_result(x, chi2, history, evaluations, converged):
    return {"x": x, "chi2": chi2, "chi2_history": history, "iterations": len(history) - 1,
            "evaluations": evaluations, "converged": converged}


# The cores of (d): the package's (least_squares) and the loop it replaced.
LM_CORES = {"hand-written": hand_written_lm, "least_squares": lm.levenberg_marquardt}


@contextlib.contextmanager
def lm_core(core):
    """Make the 'LM' step run on ``core`` (None: leave the package's) for the duration of the block."""
    if core is None:
        yield
        return
    original = lm.levenberg_marquardt
    lm.levenberg_marquardt = core
    try:
        yield
    finally:
        lm.levenberg_marquardt = original


def galaxy_fitting_sequence(image, sigma, psf, pixel_scale, profile):
    """FittingSequence of one stamp with one lens-light ('unlensed') component."""
    num_pix = image.shape[0]
    origin = -(num_pix - 1) / 2 * pixel_scale
    kwargs_data = {"image_data": image, "noise_map": np.full(image.shape, sigma), "ra_at_xy_0": origin,
                   "dec_at_xy_0": origin, "transform_pix2angle": np.diag([pixel_scale, pixel_scale])}
    data = {"multi_band_list": [[kwargs_data, {"psf_type": "PIXEL", "kernel_point_source": psf},
                                 {"supersampling_factor": 1}]], "multi_band_type": "single-band"}
    if profile == "VAE":
        params = [[part] for part in vae_source_params(scale=load_galaxy_model().pixel_scale, fix_phi_G=True)]
        likelihood = {"prior_lens_light": latent_prior(0)}
    else:
        params = [[SERSIC_INIT], [SERSIC_SIGMA], [{}], [SERSIC_LOWER], [SERSIC_UPPER]]
        likelihood = {}
    return FittingSequence(data, {"lens_light_model_list": [profile]}, {}, likelihood,
                           {"lens_light_model": params})


def run(fitting, steps):
    """(seconds, chain list, final χ² = −2 logL) of a fit_sequence call."""
    start = time.perf_counter()
    chain = fitting.fit_sequence(steps)
    return time.perf_counter() - start, chain, -2 * fitting.best_fit_likelihood()


def time_to_reach(seconds, chi2_per_iteration, threshold):
    """Seconds until the per-iteration χ² history first reaches threshold (None if never)."""
    chi2 = np.minimum.accumulate(np.asarray(chi2_per_iteration, float))
    hits = np.nonzero(chi2 <= threshold)[0]
    return None if not len(hits) else seconds * (hits[0] + 1) / len(chi2)


def lm_entry(seconds, chi2, info):
    """Result row of an 'LM' fit: seconds, final χ² and the step's info."""
    return {"seconds": seconds, "chi2": chi2,
            **{key: info[key] for key in ("iterations", "evaluations", "converged")}}


def galaxy_benchmark(n_galaxies, seed, quick=False):
    """(b) and the galaxy fits of (d); ``quick``: the 'LM' fits only."""
    survey = SURVEYS["hst_acs_f814w"]
    psf = survey.psf().drawImage(nx=21, ny=21, scale=survey.pixel_scale).array
    psf /= psf.sum()
    galaxies = simulate_galaxies(n_galaxies, GalaxySimConfig(), seed=seed)
    # The first fit pays for TensorFlow's tracing of the decoder and its derivatives: one untimed fit.
    galaxy_fitting_sequence(galaxies.observed[0, ..., 0].astype(float), float(galaxies.noise_sigma[0, 0]), psf,
                            survey.pixel_scale, "VAE").fit_sequence([["LM", {"max_iterations": 5}]])
    rows = []
    for i in range(n_galaxies):
        image, sigma = galaxies.observed[i, ..., 0].astype(float), float(galaxies.noise_sigma[i, 0])
        methods = {f"VAE LM {name}": ("VAE", [["LM", {"max_iterations": 50}]], core) for name, core in LM_CORES.items()}
        if not quick:
            methods.update({
                "VAE PSO": ("VAE", [["PSO", {"n_particles": 60, "n_iterations": 200}]], None),
                "VAE SIMPLEX": ("VAE", [["SIMPLEX", {"n_iterations": 3000}]], None),
                "SERSIC PSO+SIMPLEX": ("SERSIC_ELLIPSE", [["PSO", {"n_particles": 30, "n_iterations": 50}],
                                                          ["SIMPLEX", {"n_iterations": 500}]], None),
            })
        row = {"snr": float(galaxies.truth["snr"][i])}
        histories = {}
        for name, (profile, steps, core) in methods.items():
            np.random.seed(seed + i)
            fitting = galaxy_fitting_sequence(image, sigma, psf, survey.pixel_scale, profile)
            with lm_core(core):
                seconds, chain, chi2 = run(fitting, steps)
            row[name] = {"seconds": seconds, "chi2": chi2}
            if chain and chain[0][0] == "LM":
                row[name] = lm_entry(seconds, chi2, chain[0][2])
                histories[name] = chain[0][2]["chi2_history"][1:] or [chi2]
            elif chain and chain[0][0] == "PSO" and profile == "VAE":
                histories[name] = [-2 * logl for logl in chain[0][1][0]]
        floor = min(row[name]["chi2"] for name in methods if name.startswith("VAE"))
        row["floor"] = floor
        for name in methods:
            entry = row[name]
            entry["chi2_over_floor"] = entry["chi2"] / floor
            entry["reached"] = bool(entry["chi2"] <= FLOOR_TOLERANCE * floor)
            for key, threshold in (("seconds_to_floor", FLOOR_TOLERANCE * floor),
                                   ("seconds_to_floor_strict", floor + FLOOR_DELTA_CHI2)):
                entry[key] = (time_to_reach(entry["seconds"], histories[name], threshold) if name in histories
                              else (entry["seconds"] if entry["chi2"] <= threshold else None))
        rows.append(row)
        print(f"galaxy {i}: SNR {row['snr']:.0f}, " + ", ".join(
            f"{name} {row[name]['seconds']:.2f} s χ²/floor {row[name]['chi2_over_floor']:.3f}" for name in methods),
            flush=True)
    summary = {}
    for name in methods:
        times = [row[name]["seconds_to_floor"] for row in rows if row[name]["seconds_to_floor"] is not None]
        strict = [row[name]["seconds_to_floor_strict"] for row in rows
                  if row[name]["seconds_to_floor_strict"] is not None]
        summary[name] = {
            "reached_fraction": len(times) / len(rows),
            "median_seconds_to_floor": float(np.median(times)) if times else None,
            "reached_fraction_strict": len(strict) / len(rows),
            "median_seconds_to_floor_strict": float(np.median(strict)) if strict else None,
            "median_seconds_total": float(np.median([row[name]["seconds"] for row in rows])),
            "median_chi2_over_floor": float(np.median([row[name]["chi2_over_floor"] for row in rows])),
            "median_reduced_chi2": float(np.median([row[name]["chi2"] / 64**2 for row in rows])),
        }
    return rows, summary


def lens_benchmark(seed, quick=False):
    """(c) and the lens fits of (d); ``quick``: the 'LM' branches only."""
    simulation = simulate_lens(seed=seed, settings=LensSettings())
    model = load_galaxy_model()
    latent_names = [f"z_{i}" for i in range(model.latent_dim)]
    kwargs_params = {"lens_model": lens_params_start(),
                     "source_model": [[part] for part in vae_source_params(scale=model.pixel_scale, fix_phi_G=True)]}
    data = {"multi_band_list": [[simulation.kwargs_data, simulation.kwargs_psf, simulation.kwargs_numerics]],
            "multi_band_type": "single-band"}
    fitting = FittingSequence(data, {"lens_model_list": ["SIE", "SHEAR"], "source_light_model_list": ["VAE"]},
                              {}, {"prior_source": latent_prior(0)}, kwargs_params)
    np.random.seed(seed)
    pso_seconds, _, pso_chi2 = run(fitting, [
        ["update_settings", {"source_add_fixed": [[0, latent_names, [0.0] * len(latent_names)]]}],
        ["PSO", {"n_particles": 60, "n_iterations": 60}],
        ["update_settings", {"source_remove_fixed": [[0, latent_names]]}]])
    results = {"PSO (shared start)": {"seconds": pso_seconds, "chi2": pso_chi2}}
    truth = simulation.settings.lens["theta_E"]
    branches = [(f"LM {name}", ["LM", {"max_iterations": 50}], core) for name, core in LM_CORES.items()]
    if not quick:
        branches.append(("SIMPLEX", ["SIMPLEX", {"n_iterations": 5000}], None))
    for name, step, core in branches:
        branch = copy.deepcopy(fitting)
        np.random.seed(seed)
        with lm_core(core):
            seconds, chain, chi2 = run(branch, [step])
        theta_e = branch.best_fit()["kwargs_lens"][0]["theta_E"]
        entry = lm_entry(seconds, chi2, chain[0][2]) if chain[0][0] == "LM" else {"seconds": seconds, "chi2": chi2}
        results[f"PSO → {name}"] = {**entry, "seconds": pso_seconds + seconds, "step_seconds": seconds,
                                    "reduced_chi2": chi2 / simulation.settings.num_pix**2,
                                    "theta_E_error": theta_e - truth}
    return results


def core_comparison(galaxy_rows, lens):
    """(d): per problem, each LM core's seconds, χ², accepted steps, evaluations and convergence."""
    problems = {f"galaxy {i}": {name: row[f"VAE LM {name}"] for name in LM_CORES}
                for i, row in enumerate(galaxy_rows)}
    problems["lens (after PSO)"] = {name: {**lens[f"PSO → LM {name}"], "seconds": lens[f"PSO → LM {name}"]
                                           ["step_seconds"]} for name in LM_CORES}
    reference, other = LM_CORES
    for entries in problems.values():
        entries["chi2_ratio"] = entries[other]["chi2"] / entries[reference]["chi2"]
        entries["seconds_ratio"] = entries[other]["seconds"] / entries[reference]["seconds"]
    summary = {name: {"median_seconds": float(np.median([entries[name]["seconds"] for entries in problems.values()])),
                      "total_seconds": float(sum(entries[name]["seconds"] for entries in problems.values())),
                      "converged": sum(bool(entries[name]["converged"]) for entries in problems.values())}
               for name in LM_CORES}
    summary["max_chi2_ratio"] = max(entries["chi2_ratio"] for entries in problems.values())
    summary["min_chi2_ratio"] = min(entries["chi2_ratio"] for entries in problems.values())
    return problems, summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--galaxies", type=int, help=f"default 10, or {QUICK_GALAXIES} with --quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="only the LM fits of (b) and (c) (the lens fit still runs its shared PSO)")
    parser.add_argument("--out", default="benchmarks/fit_time.json")
    args = parser.parse_args()
    if args.galaxies is None:
        args.galaxies = QUICK_GALAXIES if args.quick else 10
    rows, summary = galaxy_benchmark(args.galaxies, args.seed, quick=args.quick)
    print(f"\n(b) {args.galaxies} galaxies, 64×64, {os.cpu_count()} CPU cores; floor = best VAE χ², "
          f"reached = χ² ≤ {FLOOR_TOLERANCE} × floor")
    print(f"{'method':>24} {'reached':>8} {'median s to floor':>18} {'reached Δχ²≤10':>15} {'median s':>9} "
          f"{'median s total':>15} {'χ²/floor':>9} {'χ²/pixel':>9}")
    for name, row in summary.items():
        to_floor, strict = ("—" if value is None else f"{value:.2f}"
                            for value in (row["median_seconds_to_floor"], row["median_seconds_to_floor_strict"]))
        print(f"{name:>24} {row['reached_fraction']:8.0%} {to_floor:>18} {row['reached_fraction_strict']:15.0%} "
              f"{strict:>9} {row['median_seconds_total']:15.2f} {row['median_chi2_over_floor']:9.3f} "
              f"{row['median_reduced_chi2']:9.3f}")
    lens = lens_benchmark(args.seed, quick=args.quick)
    print(f"\n(c) lensed VAE source (SIE + shear), 64×64, {os.cpu_count()} CPU cores")
    print(f"{'fit':>24} {'wall s':>8} {'χ²':>10} {'θ_E − truth':>12}")
    for name, row in lens.items():
        error = f"{row['theta_E_error']:+.4f}" if "theta_E_error" in row else ""
        print(f"{name:>24} {row['seconds']:8.1f} {row['chi2']:10.1f} {error:>12}")
    problems, core_summary = core_comparison(rows, lens)
    reference, other = LM_CORES
    print("\n(d) LM cores on the same residuals and Jacobian (s: seconds of the LM step; it: accepted steps; "
          "ev: residual evaluations; c: converged)")
    print(f"{'problem':>18} " + " ".join(f"{name + ' s':>16} {'χ²':>10} {'it':>3} {'ev':>4} {'c':>1}"
                                         for name in LM_CORES) + f" {'χ² ratio':>9} {'s ratio':>8}")
    for problem, entries in problems.items():
        print(f"{problem:>18} " + " ".join(
            f"{entries[name]['seconds']:16.2f} {entries[name]['chi2']:10.1f} {entries[name]['iterations']:3d} "
            f"{entries[name]['evaluations']:4d} {'y' if entries[name]['converged'] else 'n':>1}" for name in LM_CORES)
            + f" {entries['chi2_ratio']:9.4f} {entries['seconds_ratio']:8.2f}")
    print(" ".join(f"{name}: median {core_summary[name]['median_seconds']:.2f} s, total "
                   f"{core_summary[name]['total_seconds']:.2f} s, converged {core_summary[name]['converged']}/"
                   f"{len(problems)};" for name in LM_CORES)
          + f" χ² {other}/{reference} in [{core_summary['min_chi2_ratio']:.4f}, {core_summary['max_chi2_ratio']:.4f}]")
    write_json(args.out, {"cpu_count": os.cpu_count(), "quick": args.quick, "galaxies": rows,
                          "galaxy_summary": summary, "lens": lens, "lm_cores": problems,
                          "lm_core_summary": core_summary})


if __name__ == "__main__":
    main()
