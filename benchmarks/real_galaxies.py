"""Real galaxies: the 'VAE' profile against SERSIC_ELLIPSE and SHAPELETS on HST/COSMOS F814W stamps.

(a) Unlensed (default): every stamp of ``../shared/data/cosmos`` (or the first ``--n``) is fitted,
    side by side in one run, with
      - VAE: ``fit_galaxy`` (LM from the mean galaxy, and from ``--vae-restarts`` more starts drawn from the
        latent prior, the best kept), and LM after a short PSO on centre and scale with the latents at
        the mean galaxy; the better of the two is kept and the time of both is
        counted (measured: neither start wins everywhere; per galaxy ``starts``, in the summary
        ``start_wins``);
      - SERSIC_ELLIPSE: lenstronomy PSO then SIMPLEX;
      - SHAPELETS n_max = 7 (36 linear coefficients, about the VAE's 32 latents + centre + scale)
        and n_max = 20 (231): coefficients solved linearly by lenstronomy, beta and centre by PSO
        then SIMPLEX.
    Reported per model: median reduced χ² (χ² / number of pixels), median seconds per fit, and the
    median noise floor (below). Writes ``real_galaxies.json`` and ``real_galaxies.png`` (data,
    model and normalised residuals of a few galaxies) under ``--out``.
(b) ``--lensed`` (instead of (a)): each real galaxy (GalSim ``RealGalaxy``) is the source behind the demo's
    simulated SIE + shear lens, fitted with a VAE source (PSO with the latents at the mean galaxy,
    then LM) and with a SERSIC_ELLIPSE source (PSO then SIMPLEX); reports the bias of θ_E and the
    other lens parameters (median and scatter over galaxies). Writes ``lensed.json`` and
    ``lensed.png``.

Choices:
  - Stamp: stamps up to ``--max-size`` (96) pixels are fitted whole; larger ones (3 of the 50:
    106, 144 and 190 px) are cut to the centred 96 × 96 region, which holds the galaxy's bright
    part at ≤ 1/4 of the cost of the whole stamp; the VAE's ``scale`` grows to fit big galaxies.
  - Noise: σ² = NOISE_VARIANCE per pixel (over the 50 stamps, the variance of their 4-pixel
    borders is 0.95 × NOISE_VARIANCE at the median), NOISE_MEAN subtracted as the residual sky.
    lenstronomy's likelihood is diagonal, so the drizzle correlation of the noise (neighbour
    correlation 0.48, diagonal 0.24) is not in the weights. The expected χ² of a perfect model
    is still one per pixel, but every free parameter absorbs about 2.5–4 units of χ² instead of
    one: SHAPELETS n_max = 20 (231 coefficients) fits part of the noise. Hence the *noise
    floor*: the χ² per pixel the same model reaches when refitted, from its best fit, to its own
    best-fit image plus a fresh realisation of the COSMOS correlated noise (GalSim, the
    catalogue's correlation function, variance NOISE_VARIANCE), i.e. what a perfect model of
    that family would score; "excess" = reduced χ² − floor is the misfit that noise does not
    explain. Refits: VAE by LM, SERSIC by SIMPLEX, SHAPELETS by the linear solve at the best beta
    and centre. Photon noise of the galaxies themselves is not in the catalogue's noise model
    and is left out, for every model.
  - PSF: the catalogue's PSF of each stamp (65 × 51 px, sampled at the stamp's 0.03″ pixels,
    pixel response included) cropped to the centred 51 × 51 square around its peak, normalised.
  - Lensed sources: a deconvolved RealGalaxy drawn with no PSF at all is noise amplified beyond
    the HST band limit (tried: the stamps are stripes), so it is drawn reconvolved with a
    0.12″-FWHM Gaussian (wider than the F814W PSF), at 0.03″/px on a 96 × 96 grid, and only
    galaxies brighter than ``--lensed-max-mag`` (24.5) are used: fainter ones are mostly their
    own noise once deconvolved.

lenstronomy's optimisers draw from numpy's global generator, seeded per galaxy. BLAS runs on one
thread during the fits: shapelets' 231-coefficient solves were ~10× slower with two BLAS threads on
two busy cores. Exits 0 with a message when the data are absent.

    python benchmarks/real_galaxies.py [--n 50] [--out benchmarks/real_galaxies] [--shared ../shared]
    python benchmarks/real_galaxies.py --lensed [--n 50]
"""

import argparse
import contextlib
import dataclasses
import io
import os
import pathlib
import sys
import time
import warnings

import numpy as np
from lenstronomy.Workflow.fitting_sequence import FittingSequence
from threadpoolctl import threadpool_limits

from lenstronomy_vae import fit_galaxy, latent_prior, load_galaxy_model, vae_source_params  # registers 'VAE', 'LM'
from lenstronomy_vae.lensing import LensSettings, lens_params_start, simulate_lens, warm_start_steps
from lenstronomy_vae.lensing.lens_simulation import LENS_PARAMS
from lenstronomy_vae.utils import atomic_path, write_json

CATALOG = "cosmos_f814w_validation_catalog.fits"
IMAGES = "cosmos_f814w_validation_images.fits"
PSFS = "cosmos_f814w_validation_psf.fits"
NOISE_CORRELATION = "acs_I_unrot_sci_20_cf.fits"
MODELS = ("VAE", "SERSIC_ELLIPSE", "SHAPELETS n_max=7", "SHAPELETS n_max=20")
LENSED_MODELS = ("VAE", "SERSIC_ELLIPSE")
TARGET_SHAPELETS_RATIO = 1.10  # the VAE's median reduced χ² within 10 % of SHAPELETS n_max = 20

SERSIC_INIT = {"R_sersic": 0.2, "n_sersic": 1.5, "e1": 0.0, "e2": 0.0, "center_x": 0.0, "center_y": 0.0}
SERSIC_SIGMA = {"R_sersic": 0.1, "n_sersic": 0.5, "e1": 0.1, "e2": 0.1, "center_x": 0.03, "center_y": 0.03}
SERSIC_LOWER = {"R_sersic": 0.01, "n_sersic": 0.3, "e1": -0.6, "e2": -0.6, "center_x": -0.5, "center_y": -0.5}
SERSIC_UPPER = {"R_sersic": 3.0, "n_sersic": 8.0, "e1": 0.6, "e2": 0.6, "center_x": 0.5, "center_y": 0.5}
# beta up to 1″: n_max = 20 shapelets then reach √20 · 1″ ≈ 4.5″, beyond a 96-px (2.9″) stamp.
SHAPELETS_INIT = {"beta": 0.1, "center_x": 0.0, "center_y": 0.0}
SHAPELETS_SIGMA = {"beta": 0.05, "center_x": 0.03, "center_y": 0.03}
SHAPELETS_LOWER = {"beta": 0.01, "center_x": -0.5, "center_y": -0.5}
SHAPELETS_UPPER = {"beta": 1.0, "center_x": 0.5, "center_y": 0.5}
# Lensed SERSIC source: the source sits within ~0.2″ of the optical axis.
SOURCE_SERSIC_INIT = {**SERSIC_INIT, "R_sersic": 0.15}
SOURCE_SERSIC_SIGMA = {**SERSIC_SIGMA, "center_x": 0.05, "center_y": 0.05}


def default_shared():
    """``../shared`` beside the repository root."""
    return pathlib.Path(__file__).resolve().parents[1].parent / "shared"


@dataclasses.dataclass
class Budget:
    """Fit settings of the unlensed comparison (iterations, particles, stamp size in pixels)."""

    max_size: int = 96
    vae_lm_iterations: int = 50
    vae_restarts: int = 0  # fit_galaxy's extra LM starts, latents drawn from the prior
    vae_pso_particles: int = 20
    vae_pso_iterations: int = 20
    sersic_pso_particles: int = 30
    sersic_pso_iterations: int = 50
    sersic_simplex_iterations: int = 500
    shapelets_pso_particles: int = 10
    shapelets_pso_iterations: int = 15
    shapelets_simplex_iterations: int = 200
    noise_floor: bool = True
    floor_lm_iterations: int = 20
    floor_simplex_iterations: int = 300


@dataclasses.dataclass
class LensedBudget:
    """Fit settings of the lensed comparison; ``lens`` is the demo's simulated observation."""

    lens: LensSettings = dataclasses.field(default_factory=LensSettings)
    source_size: int = 96
    source_smoothing_fwhm: float = 0.12
    max_mag: float = 24.5
    pso_particles: int = 60
    pso_iterations: int = 60
    lm_iterations: int = 50
    simplex_iterations: int = 1000


@dataclasses.dataclass
class Stamp:
    """One COSMOS galaxy ready to fit.

    Attributes:
        index: row in the catalogue.
        ident: COSMOS IDENT.
        mag: F814W AB magnitude.
        image: the (cut) stamp minus NOISE_MEAN, e-/s per pixel.
        noise_sigma: √NOISE_VARIANCE, e-/s per pixel.
        psf: odd square PSF kernel at the stamp's pixel scale, unit sum.
        pixel_scale: arcsec per pixel.
        original_size: side of the catalogue stamp, pixels.
    """

    index: int
    ident: int
    mag: float
    image: np.ndarray
    noise_sigma: float
    psf: np.ndarray
    pixel_scale: float
    original_size: int


def square_psf(psf):
    """The largest odd square of ``psf`` centred on its peak, normalised to unit sum."""
    psf = np.asarray(psf, dtype=float)
    row, col = np.unravel_index(np.argmax(psf), psf.shape)
    half = min(row, col, psf.shape[0] - 1 - row, psf.shape[1] - 1 - col)
    kernel = psf[row - half: row + half + 1, col - half: col + half + 1]
    return kernel / kernel.sum()


def centred_cut(image, max_size):
    """The centred ``max_size`` square of a square image; the image itself if not larger."""
    size = image.shape[0]
    if size <= max_size:
        return image
    start = (size - max_size) // 2
    return image[start: start + max_size, start: start + max_size]


def load_stamps(cosmos_dir, indices, max_size=96):
    """Stamps ``indices`` of the COSMOS validation catalogue in ``cosmos_dir``, cut to ``max_size``."""
    from astropy.io import fits

    cosmos_dir = pathlib.Path(cosmos_dir)
    with fits.open(cosmos_dir / CATALOG) as catalog, fits.open(cosmos_dir / IMAGES) as images, \
            fits.open(cosmos_dir / PSFS) as psfs:
        table = catalog[1].data
        stamps = []
        for k in indices:
            row = table[k]
            raw = np.asarray(images[int(row["GAL_HDU"])].data, dtype=float)
            stamps.append(Stamp(
                index=int(k), ident=int(row["IDENT"]), mag=float(row["MAG"]),
                image=centred_cut(raw - float(row["NOISE_MEAN"]), max_size).copy(),
                noise_sigma=float(np.sqrt(row["NOISE_VARIANCE"])),
                psf=square_psf(psfs[int(row["PSF_HDU"])].data), pixel_scale=float(row["PIXEL_SCALE"]),
                original_size=raw.shape[0],
            ))
    return stamps


def catalog_size(cosmos_dir):
    """Number of galaxies in the catalogue."""
    from astropy.io import fits

    with fits.open(pathlib.Path(cosmos_dir) / CATALOG) as catalog:
        return len(catalog[1].data)


def correlated_noise(cosmos_dir, shape, pixel_scale, variance, seed):
    """One realisation of the drizzle-correlated COSMOS noise (GalSim, the catalogue's correlation function)."""
    import galsim

    noise = galsim.getCOSMOSNoise(file_name=str(pathlib.Path(cosmos_dir) / NOISE_CORRELATION),
                                  rng=galsim.BaseDeviate(int(seed) + 1), cosmos_scale=pixel_scale, variance=variance)
    image = galsim.ImageD(shape[1], shape[0], scale=pixel_scale)
    image.addNoise(noise)
    return image.array.copy()


# ----------------------------------------------------------------------------- unlensed fits

def galaxy_fitting_sequence(stamp, image, profile, params, likelihood=None, profile_kwargs=None):
    """lenstronomy FittingSequence of ``image`` (the stamp's data or a stand-in) with one unlensed component."""
    num_pix = image.shape[0]
    origin = -(num_pix - 1) / 2 * stamp.pixel_scale
    kwargs_data = {"image_data": image, "noise_map": np.full(image.shape, stamp.noise_sigma), "ra_at_xy_0": origin,
                   "dec_at_xy_0": origin, "transform_pix2angle": np.diag([stamp.pixel_scale] * 2)}
    data = {"multi_band_list": [[kwargs_data, {"psf_type": "PIXEL", "kernel_point_source": stamp.psf},
                                 {"supersampling_factor": 1}]], "multi_band_type": "single-band"}
    kwargs_model = {"lens_light_model_list": [profile]}
    if profile_kwargs is not None:
        kwargs_model["lens_light_profile_kwargs_list"] = [profile_kwargs]
    return FittingSequence(data, kwargs_model, {}, likelihood or {}, {"lens_light_model": params})


@contextlib.contextmanager
def _quiet():
    """Silence lenstronomy's prints and progress bars."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Maximum number of iterations", category=RuntimeWarning)
        yield


def _run(fitting, steps):
    """(kwargs of the one component, model image, seconds) of a quiet fit_sequence call."""
    start = time.perf_counter()
    with _quiet():
        chain = fitting.fit_sequence(steps)
    seconds = time.perf_counter() - start
    kwargs = fitting.best_fit()["kwargs_lens_light"]
    model_image, _, _, _ = fitting.likelihood_class.image_likelihood.imSim.image_linear_solve(kwargs_lens_light=kwargs)
    return kwargs[0], model_image, seconds, chain


def _reduced_chi2(image, model_image, sigma):
    return float(np.mean(((image - model_image) / sigma) ** 2))


def _vae_params(model, kwargs=None):
    """VAE init/sigma/fixed/bounds: the mean galaxy at the stamp centre, or ``kwargs`` (a fit)."""
    galaxy_model = load_galaxy_model(model)
    if kwargs is None:
        return [[part] for part in vae_source_params(model=model, scale=galaxy_model.pixel_scale, fix_phi_G=True)]
    latents = [kwargs[f"z_{i}"] for i in range(galaxy_model.latent_dim)]
    return [[part] for part in vae_source_params(model=model, center_x=kwargs["center_x"],
                                                 center_y=kwargs["center_y"], scale=kwargs["scale"],
                                                 phi_G=kwargs["phi_G"], latents=latents, fix_phi_G=True)]


def fit_vae(stamp, budget, model=None, seed=0, image=None, start=None):
    """VAE fit: LM from the mean galaxy (``fit_galaxy``) and LM after a PSO on centre and scale; the better.

    With ``start`` (a previous fit's kwargs), one LM from there instead (the noise-floor refit).
    ``image`` replaces the stamp's data.

    Returns:
        dict: ``kwargs``, ``model_image``, ``reduced_chi2``, ``seconds`` and, without ``start``,
        ``starts`` (reduced χ² and seconds of each start).
    """
    image = stamp.image if image is None else image
    galaxy_model = load_galaxy_model(model)
    likelihood = {"check_positive_flux": True, "prior_lens_light": latent_prior(0, model=model)}
    np.random.seed(seed)
    if start is not None:
        fitting = galaxy_fitting_sequence(stamp, image, "VAE", _vae_params(model, start), likelihood,
                                          {"model": model})
        kwargs, model_image, seconds, _ = _run(fitting, [["LM", {"max_iterations": budget.floor_lm_iterations}]])
        return {"kwargs": kwargs, "model_image": model_image, "seconds": seconds,
                "reduced_chi2": _reduced_chi2(image, model_image, stamp.noise_sigma)}

    begin = time.perf_counter()
    with _quiet():
        mean_start = fit_galaxy(image, stamp.noise_sigma, stamp.psf, stamp.pixel_scale, model=model,
                                max_iterations=budget.vae_lm_iterations, seed=seed, restarts=budget.vae_restarts)
    mean_seconds = time.perf_counter() - begin
    np.random.seed(seed)
    fitting = galaxy_fitting_sequence(stamp, image, "VAE", _vae_params(model), likelihood, {"model": model})
    pso_kwargs, pso_image, pso_seconds, _ = _run(fitting, warm_start_steps(
        galaxy_model.latent_dim, {"n_particles": budget.vae_pso_particles, "n_iterations": budget.vae_pso_iterations},
        budget.vae_lm_iterations, component="lens_light"))
    starts = {"mean galaxy → LM": {"reduced_chi2": mean_start["reduced_chi2"], "seconds": mean_seconds},
              "PSO (centre, scale) → LM": {"reduced_chi2": _reduced_chi2(image, pso_image, stamp.noise_sigma),
                                           "seconds": pso_seconds}}
    if starts["PSO (centre, scale) → LM"]["reduced_chi2"] < mean_start["reduced_chi2"]:
        kwargs, model_image = pso_kwargs, pso_image
    else:
        kwargs, model_image = mean_start["kwargs"], mean_start["model_image"]
    return {"kwargs": kwargs, "model_image": model_image, "seconds": mean_seconds + pso_seconds,
            "reduced_chi2": _reduced_chi2(image, model_image, stamp.noise_sigma), "starts": starts}


def fit_sersic(stamp, budget, seed=0, image=None, start=None):
    """SERSIC_ELLIPSE: PSO then SIMPLEX; with ``start``, SIMPLEX from there (the noise-floor refit)."""
    image = stamp.image if image is None else image
    init = SERSIC_INIT if start is None else {name: start[name] for name in SERSIC_INIT}
    fitting = galaxy_fitting_sequence(stamp, image, "SERSIC_ELLIPSE",
                                      [[init], [SERSIC_SIGMA], [{}], [SERSIC_LOWER], [SERSIC_UPPER]])
    if start is None:
        steps = [["PSO", {"n_particles": budget.sersic_pso_particles, "n_iterations": budget.sersic_pso_iterations}],
                 ["SIMPLEX", {"n_iterations": budget.sersic_simplex_iterations}]]
    else:
        steps = [["SIMPLEX", {"n_iterations": budget.floor_simplex_iterations}]]
    np.random.seed(seed)
    kwargs, model_image, seconds, _ = _run(fitting, steps)
    return {"kwargs": kwargs, "model_image": model_image, "seconds": seconds,
            "reduced_chi2": _reduced_chi2(image, model_image, stamp.noise_sigma)}


def fit_shapelets(stamp, n_max, budget, seed=0, image=None, start=None):
    """SHAPELETS of order ``n_max``: linear coefficients, beta and centre by PSO then SIMPLEX.

    With ``start``, beta and centre are held there and only the coefficients are solved (the
    noise-floor refit: three non-linear parameters absorb little noise next to the coefficients).
    """
    image = stamp.image if image is None else image
    init = SHAPELETS_INIT if start is None else {name: start[name] for name in SHAPELETS_INIT}
    fixed = {"n_max": n_max} if start is None else {"n_max": n_max, **init}
    fitting = galaxy_fitting_sequence(stamp, image, "SHAPELETS",
                                      [[init], [SHAPELETS_SIGMA], [fixed], [SHAPELETS_LOWER], [SHAPELETS_UPPER]])
    np.random.seed(seed)
    if start is None:
        kwargs, model_image, seconds, _ = _run(fitting, [
            ["PSO", {"n_particles": budget.shapelets_pso_particles, "n_iterations": budget.shapelets_pso_iterations}],
            ["SIMPLEX", {"n_iterations": budget.shapelets_simplex_iterations}]])
    else:
        begin = time.perf_counter()
        kwargs = {"n_max": n_max, **init}
        model_image, _, _, _ = fitting.likelihood_class.image_likelihood.imSim.image_linear_solve(
            kwargs_lens_light=[kwargs])
        seconds = time.perf_counter() - begin
    return {"kwargs": kwargs, "model_image": model_image, "seconds": seconds,
            "reduced_chi2": _reduced_chi2(image, model_image, stamp.noise_sigma)}


def fit_model(name, stamp, budget, model=None, seed=0, image=None, start=None):
    """Dispatch one of :data:`MODELS`."""
    if name == "VAE":
        return fit_vae(stamp, budget, model=model, seed=seed, image=image, start=start)
    if name == "SERSIC_ELLIPSE":
        return fit_sersic(stamp, budget, seed=seed, image=image, start=start)
    return fit_shapelets(stamp, int(name.split("=")[1]), budget, seed=seed, image=image, start=start)


def _compact_kwargs(kwargs):
    """Best-fit kwargs for the JSON: floats, without the shapelet coefficient arrays."""
    return {key: float(value) for key, value in kwargs.items() if np.ndim(value) == 0}


def validate_galaxies(stamps, cosmos_dir, budget=None, model=None, seed=0, models=MODELS):
    """Fit every stamp with every model; the noise floor of each fit too if ``budget.noise_floor``.

    Returns:
        (rows, images): one JSON-ready dict per stamp, and per stamp a dict model → model image.
    """
    budget = budget or Budget()
    rows, images = [], []
    for stamp in stamps:
        with threadpool_limits(limits=1, user_api="blas"):
            row, fitted = _validate_galaxy(stamp, cosmos_dir, budget, model, seed, models)
        rows.append(row)
        images.append(fitted)
        print(f"galaxy {stamp.index:2d} ({stamp.original_size:3d} px → {stamp.image.shape[0]:2d}, "
              f"mag {stamp.mag:.1f}): " + ", ".join(
                  f"{name} χ²/px {entry['reduced_chi2']:.3f}" + (f" (floor {entry['floor']:.3f})" if "floor" in entry
                                                                 else "") + f" {entry['seconds']:.1f} s"
                  for name, entry in row["models"].items()), flush=True)
    return rows, images


def _validate_galaxy(stamp, cosmos_dir, budget, model, seed, models):
    """(JSON row, model → model image) of one stamp."""
    galaxy_seed = seed + stamp.index
    row = {"index": stamp.index, "ident": stamp.ident, "mag": stamp.mag, "original_size": stamp.original_size,
           "fitted_size": stamp.image.shape[0], "noise_sigma": stamp.noise_sigma, "models": {}}
    images = {}
    for name in models:
        fit = fit_model(name, stamp, budget, model=model, seed=galaxy_seed)
        entry = {"reduced_chi2": fit["reduced_chi2"], "seconds": fit["seconds"],
                 "kwargs": _compact_kwargs(fit["kwargs"])}
        if "starts" in fit:
            entry["starts"] = fit["starts"]
        if budget.noise_floor:
            noise = correlated_noise(cosmos_dir, stamp.image.shape, stamp.pixel_scale, stamp.noise_sigma**2,
                                     galaxy_seed)
            floor = fit_model(name, stamp, budget, model=model, seed=galaxy_seed, image=fit["model_image"] + noise,
                              start=fit["kwargs"])
            entry.update(floor=floor["reduced_chi2"], excess=fit["reduced_chi2"] - floor["reduced_chi2"],
                         floor_seconds=floor["seconds"])
        row["models"][name] = entry
        images[name] = fit["model_image"]
    return row, images


def summarize(rows, models=MODELS):
    """Per model: medians over galaxies of reduced χ², seconds, floor and excess; the target check."""
    summary = {}
    for name in models:
        entries = [row["models"][name] for row in rows]
        summary[name] = {
            "galaxies": len(entries),
            "median_reduced_chi2": float(np.median([e["reduced_chi2"] for e in entries])),
            "median_seconds": float(np.median([e["seconds"] for e in entries])),
        }
        if all("floor" in e for e in entries):
            summary[name]["median_floor"] = float(np.median([e["floor"] for e in entries]))
            summary[name]["median_excess"] = float(np.median([e["excess"] for e in entries]))
            summary[name]["median_chi2_over_floor"] = float(np.median([e["reduced_chi2"] / e["floor"]
                                                                       for e in entries]))
    if "starts" in rows[0]["models"].get("VAE", {}):
        starts = list(rows[0]["models"]["VAE"]["starts"])
        wins = [min(starts, key=lambda s: row["models"]["VAE"]["starts"][s]["reduced_chi2"]) for row in rows]
        summary["VAE"]["start_wins"] = {start: wins.count(start) for start in starts}
    target = {}
    compared = ("VAE", "SERSIC_ELLIPSE", "SHAPELETS n_max=20")
    if set(compared) <= set(models):
        target = _target(*(summary[n]["median_reduced_chi2"] for n in compared))
        if "median_chi2_over_floor" in summary["VAE"]:
            # The same comparison with each χ² divided by its model's noise floor.
            target["floor_corrected"] = _target(*(summary[n]["median_chi2_over_floor"] for n in compared))
    return summary, target


def _target(vae, sersic, shapelets):
    return {"vae_below_sersic": bool(vae < sersic), "vae_over_shapelets20": vae / shapelets,
            "vae_within_10_percent_of_shapelets20": bool(vae <= TARGET_SHAPELETS_RATIO * shapelets)}


def plot_galaxies(stamps, rows, images, path, models=MODELS):
    """Per galaxy one row: data, then model and (data − model)/σ of each model (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 1 + 2 * len(models)
    figure, axes = plt.subplots(len(stamps), columns, figsize=(2.1 * columns, 2.6 * len(stamps)), squeeze=False)
    for axes_row, stamp, row, fitted in zip(axes, stamps, rows, images):
        sigma = stamp.noise_sigma
        style = dict(origin="lower", cmap="magma", vmin=-2 * sigma, vmax=max(np.percentile(stamp.image, 99.5), sigma))
        axes_row[0].imshow(stamp.image, **style)
        axes_row[0].set_title(f"#{stamp.index} data, mag {stamp.mag:.1f}", fontsize=8)
        for j, name in enumerate(models):
            axes_row[1 + 2 * j].imshow(fitted[name], **style)
            axes_row[1 + 2 * j].set_title(f"{name}\nχ²/px {row['models'][name]['reduced_chi2']:.2f}", fontsize=7)
            axes_row[2 + 2 * j].imshow((stamp.image - fitted[name]) / sigma, origin="lower", cmap="RdBu_r",
                                       vmin=-4, vmax=4)
            axes_row[2 + 2 * j].set_title("(data − model)/σ, ±4", fontsize=7)
        for axis in axes_row:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=90, format="png")
    plt.close(figure)


def run_galaxies(cosmos_dir, indices, out_dir, budget=None, model=None, seed=0, figure_galaxies=4,
                 models=MODELS):
    """The unlensed comparison: fit, print the table, write ``real_galaxies.json`` and ``.png``.

    Returns:
        the dict written to ``real_galaxies.json``.
    """
    budget = budget or Budget()
    out_dir = pathlib.Path(out_dir)
    stamps = load_stamps(cosmos_dir, indices, budget.max_size)
    rows, images = validate_galaxies(stamps, cosmos_dir, budget, model=model, seed=seed, models=models)
    summary, target = summarize(rows, models)
    print(f"\n{len(rows)} COSMOS F814W galaxies, stamps cut to ≤ {budget.max_size} px, σ² = NOISE_VARIANCE "
          f"(diagonal), {os.cpu_count()} CPU cores")
    print(f"{'model':>20} {'median χ²/px':>13} {'median floor':>13} {'median excess':>14} {'median χ²/floor':>16} "
          f"{'median s/fit':>13}")
    for name, row in summary.items():
        floor, excess, ratio = (f"{row[key]:.3f}" if key in row else "—"
                                for key in ("median_floor", "median_excess", "median_chi2_over_floor"))
        print(f"{name:>20} {row['median_reduced_chi2']:13.3f} {floor:>13} {excess:>14} {ratio:>16} "
              f"{row['median_seconds']:13.2f}")
    for label, check in (("χ²/px", target), ("χ²/floor", target.get("floor_corrected"))):
        if check:
            print(f"target on median {label}: VAE < SERSIC_ELLIPSE: {'yes' if check['vae_below_sersic'] else 'NO'}; "
                  f"VAE / SHAPELETS n_max=20 = {check['vae_over_shapelets20']:.3f} "
                  f"({'within' if check['vae_within_10_percent_of_shapelets20'] else 'NOT within'} 10 %)")
    chosen = _figure_choice(rows, figure_galaxies)
    plot_galaxies([stamps[i] for i in chosen], [rows[i] for i in chosen], [images[i] for i in chosen],
                  out_dir / "real_galaxies.png", models)
    results = {"cpu_count": os.cpu_count(), "seed": seed, "model": model or load_galaxy_model(model).name,
               "budget": dataclasses.asdict(budget), "summary": summary, "target": target, "galaxies": rows}
    write_json(out_dir / "real_galaxies.json", results)
    print(f"wrote {out_dir / 'real_galaxies.json'} and {out_dir / 'real_galaxies.png'}")
    return results


def _figure_choice(rows, count):
    """Indices of ``count`` galaxies spread over magnitude, brightest first."""
    order = sorted(range(len(rows)), key=lambda i: rows[i]["mag"])
    if count >= len(order):
        return order
    return [order[int(round(j))] for j in np.linspace(0, len(order) - 1, count)]


# ----------------------------------------------------------------------------- lensed fits

def real_source(cosmos_dir, index, size=96, pixel_scale=0.03, smoothing_fwhm=0.12):
    """A COSMOS galaxy (GalSim RealGalaxy, deconvolved) reconvolved with a small Gaussian, no pixel noise added.

    Returns:
        (stamp (size, size) in e-/s per pixel, pixel scale in arcsec).
    """
    import galsim

    catalog = galsim.RealGalaxyCatalog(CATALOG, dir=str(cosmos_dir))
    galaxy = galsim.Convolve(galsim.RealGalaxy(catalog, index=int(index)), galsim.Gaussian(fwhm=smoothing_fwhm))
    return galaxy.drawImage(nx=size, ny=size, scale=pixel_scale).array.astype(float), pixel_scale


def _lens_data(simulation):
    return {"multi_band_list": [[simulation.kwargs_data, simulation.kwargs_psf, simulation.kwargs_numerics]],
            "multi_band_type": "single-band"}


def _lens_fit_result(fitting, simulation, seconds):
    """Best-fit lens parameters, model image, normalised residuals, reduced χ² and seconds of a lensed fit."""
    kwargs = fitting.best_fit()
    model_image, _, _, _ = fitting.likelihood_class.image_likelihood.imSim.image_linear_solve(
        kwargs_lens=kwargs["kwargs_lens"], kwargs_source=kwargs["kwargs_source"])
    data = simulation.kwargs_data["image_data"]
    sigma = np.sqrt(fitting.likelihood_class.image_likelihood.imSim.Data.C_D_model(model_image))
    lens = {**kwargs["kwargs_lens"][0], **kwargs["kwargs_lens"][1]}
    residuals = (data - model_image) / sigma
    return {"lens": {name: float(lens[name]) for name in LENS_PARAMS}, "model_image": model_image,
            "residuals": residuals, "reduced_chi2": float(np.mean(residuals**2)), "seconds": seconds}


def fit_lens_vae(simulation, budget, model=None, seed=0):
    """SIE + SHEAR + 'VAE' source: PSO with the latents at the mean galaxy, then LM on everything."""
    galaxy_model = load_galaxy_model(model)
    source = vae_source_params(model=model, scale=galaxy_model.pixel_scale, fix_phi_G=True)
    kwargs_params = {"lens_model": lens_params_start(), "source_model": [[part] for part in source]}
    kwargs_model = {"lens_model_list": ["SIE", "SHEAR"], "source_light_model_list": ["VAE"],
                    "source_light_profile_kwargs_list": [{"model": model}]}
    likelihood = {"source_marg": False, "check_positive_flux": True, "prior_source": latent_prior(0, model=model)}
    np.random.seed(seed)
    fitting = FittingSequence(_lens_data(simulation), kwargs_model, {}, likelihood, kwargs_params)
    start = time.perf_counter()
    with _quiet():
        fitting.fit_sequence(warm_start_steps(
            galaxy_model.latent_dim,
            {"sigma_scale": 1.0, "n_particles": budget.pso_particles, "n_iterations": budget.pso_iterations},
            budget.lm_iterations))
    return _lens_fit_result(fitting, simulation, time.perf_counter() - start)


def fit_lens_sersic(simulation, budget, seed=0):
    """SIE + SHEAR + SERSIC_ELLIPSE source: PSO then SIMPLEX."""
    kwargs_params = {"lens_model": lens_params_start(),
                     "source_model": [[SOURCE_SERSIC_INIT], [SOURCE_SERSIC_SIGMA], [{}], [SERSIC_LOWER],
                                      [SERSIC_UPPER]]}
    kwargs_model = {"lens_model_list": ["SIE", "SHEAR"], "source_light_model_list": ["SERSIC_ELLIPSE"]}
    np.random.seed(seed)
    fitting = FittingSequence(_lens_data(simulation), kwargs_model, {}, {"check_positive_flux": True}, kwargs_params)
    start = time.perf_counter()
    with _quiet():
        fitting.fit_sequence([
            ["PSO", {"sigma_scale": 1.0, "n_particles": budget.pso_particles, "n_iterations": budget.pso_iterations}],
            ["SIMPLEX", {"n_iterations": budget.simplex_iterations}],
        ])
    return _lens_fit_result(fitting, simulation, time.perf_counter() - start)


def lensed_sources(cosmos_dir, indices, max_mag):
    """The catalogue rows among ``indices`` brighter than ``max_mag``, with their magnitudes."""
    from astropy.io import fits

    with fits.open(pathlib.Path(cosmos_dir) / CATALOG) as catalog:
        mags = np.asarray(catalog[1].data["MAG"], dtype=float)
    return [(int(k), float(mags[k])) for k in indices if mags[k] < max_mag]


def validate_lensed(cosmos_dir, indices, budget=None, model=None, seed=0):
    """Each real galaxy behind the simulated lens, fitted with a VAE and a SERSIC_ELLIPSE source.

    Returns:
        (rows, images): per galaxy a JSON-ready dict (truth, per model the lens parameters, their
        errors, reduced χ² and seconds), and per galaxy the data and each model image.
    """
    budget = budget or LensedBudget()
    truth = budget.lens.lens
    rows, images = [], []
    for k, mag in lensed_sources(cosmos_dir, indices, budget.max_mag):
        stamp, scale = real_source(cosmos_dir, k, budget.source_size, smoothing_fwhm=budget.source_smoothing_fwhm)
        simulation = simulate_lens(seed=seed + k, settings=budget.lens, source_stamp=stamp, source_pixel_scale=scale)
        with threadpool_limits(limits=1, user_api="blas"):
            fits_ = {"VAE": fit_lens_vae(simulation, budget, model=model, seed=seed + k),
                     "SERSIC_ELLIPSE": fit_lens_sersic(simulation, budget, seed=seed + k)}
        row = {"index": k, "mag": mag, "models": {}}
        images.append({"data": simulation.kwargs_data["image_data"]})
        for name, fit in fits_.items():
            row["models"][name] = {"lens": fit["lens"], "error": {p: fit["lens"][p] - truth[p] for p in LENS_PARAMS},
                                   "reduced_chi2": fit["reduced_chi2"], "seconds": fit["seconds"]}
            images[-1][name] = fit["model_image"]
            images[-1][f"{name} residuals"] = fit["residuals"]
        rows.append(row)
        print(f"lensed galaxy {k:2d} (mag {mag:.1f}): " + ", ".join(
            f"{name} θ_E − truth {entry['error']['theta_E']:+.4f}″ χ²/px {entry['reduced_chi2']:.3f} "
            f"{entry['seconds']:.0f} s" for name, entry in row["models"].items()), flush=True)
    return rows, images


def summarize_lensed(rows):
    """Per source model and lens parameter: median error and scatter (half the 16–84 % range) over galaxies."""
    summary = {}
    for name in LENSED_MODELS:
        entries = [row["models"][name] for row in rows]
        parameters = {}
        for param in LENS_PARAMS:
            errors = np.array([e["error"][param] for e in entries])
            low, high = np.percentile(errors, [16, 84])
            parameters[param] = {"median_error": float(np.median(errors)), "scatter": float(0.5 * (high - low)),
                                 "median_abs_error": float(np.median(np.abs(errors)))}
        summary[name] = {"galaxies": len(entries), "parameters": parameters,
                         "median_reduced_chi2": float(np.median([e["reduced_chi2"] for e in entries])),
                         "median_seconds": float(np.median([e["seconds"] for e in entries]))}
    return summary


def plot_lensed(rows, images, path, count=4):
    """Per galaxy: data, then model and normalised residuals of each source model (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = _figure_choice(rows, count)
    columns = 1 + 2 * len(LENSED_MODELS)
    figure, axes = plt.subplots(len(chosen), columns, figsize=(2.3 * columns, 2.4 * len(chosen)), squeeze=False)
    for axes_row, i in zip(axes, chosen):
        data = images[i]["data"]
        style = dict(origin="lower", cmap="magma", vmin=0, vmax=np.percentile(data, 99.5))
        axes_row[0].imshow(data, **style)
        axes_row[0].set_title(f"#{rows[i]['index']} lensed data", fontsize=8)
        for j, name in enumerate(LENSED_MODELS):
            entry = rows[i]["models"][name]
            axes_row[1 + 2 * j].imshow(images[i][name], **style)
            axes_row[1 + 2 * j].set_title(f"{name} source\nΔθ_E {entry['error']['theta_E']:+.3f}″", fontsize=7)
            axes_row[2 + 2 * j].imshow(images[i][f"{name} residuals"], origin="lower", cmap="RdBu_r", vmin=-4, vmax=4)
            axes_row[2 + 2 * j].set_title(f"(data − model)/σ, χ²/px {entry['reduced_chi2']:.2f}", fontsize=7)
        for axis in axes_row:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=90, format="png")
    plt.close(figure)


def run_lensed(cosmos_dir, indices, out_dir, budget=None, model=None, seed=0, figure_galaxies=4):
    """The lensed comparison: fit, print the bias table, write ``lensed.json`` and ``lensed.png``."""
    budget = budget or LensedBudget()
    out_dir = pathlib.Path(out_dir)
    rows, images = validate_lensed(cosmos_dir, indices, budget, model=model, seed=seed)
    if not rows:
        print(f"no galaxy brighter than mag {budget.max_mag} among the {len(indices)} selected: nothing to fit")
        return None
    summary = summarize_lensed(rows)
    print(f"\n{len(rows)} real galaxies (mag < {budget.max_mag}) behind an SIE + shear lens "
          f"(θ_E = {budget.lens.lens['theta_E']}″), {budget.lens.num_pix}² px at {budget.lens.pixel_scale}″; "
          "fitted − true lens parameters: median [scatter = half the 16–84 % range]")
    print(f"{'source model':>15} " + " ".join(f"{p:>17}" for p in LENS_PARAMS) + f" {'χ²/px':>6} {'s/fit':>6}")
    for name, row in summary.items():
        cells = " ".join(f"{row['parameters'][p]['median_error']:+8.4f} [{row['parameters'][p]['scatter']:6.4f}]"
                         for p in LENS_PARAMS)
        print(f"{name:>15} {cells} {row['median_reduced_chi2']:6.3f} {row['median_seconds']:6.0f}")
    plot_lensed(rows, images, out_dir / "lensed.png", figure_galaxies)
    results = {"cpu_count": os.cpu_count(), "seed": seed, "model": model or load_galaxy_model(model).name,
               "budget": {**dataclasses.asdict(budget), "lens": dataclasses.asdict(budget.lens)},
               "truth": budget.lens.lens, "summary": summary, "galaxies": rows}
    write_json(out_dir / "lensed.json", results)
    print(f"wrote {out_dir / 'lensed.json'} and {out_dir / 'lensed.png'}")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(default_shared()), help="the shared folder (default ../shared)")
    parser.add_argument("--n", type=int, default=None, help="fit the first n galaxies (default: all)")
    parser.add_argument("--indices", type=int, nargs="*", help="catalogue rows to fit (instead of --n)")
    parser.add_argument("--out", default="benchmarks/real_galaxies")
    parser.add_argument("--lensed", action="store_true", help="the lensed comparison instead of the unlensed one")
    parser.add_argument("--max-size", type=int, default=Budget.max_size, help="cut larger stamps to this (pixels)")
    parser.add_argument("--lensed-max-mag", type=float, default=LensedBudget.max_mag)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="unlensed models to fit")
    parser.add_argument("--no-noise-floor", action="store_true", help="skip the noise-floor refits")
    parser.add_argument("--vae-restarts", type=int, default=Budget.vae_restarts,
                        help="extra fit_galaxy starts of the VAE (latents drawn from the prior; the best kept)")
    parser.add_argument("--figure-galaxies", type=int, default=4)
    parser.add_argument("--model", default=None, help="VAE model name or .keras path (default: the shipped one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    cosmos_dir = pathlib.Path(args.shared) / "data" / "cosmos"
    if not (cosmos_dir / CATALOG).is_file():
        print(f"{cosmos_dir / CATALOG} not found: no real galaxies to validate on; skipping.")
        return 0
    total = catalog_size(cosmos_dir)
    indices = args.indices if args.indices else list(range(min(args.n or total, total)))
    if args.lensed:
        run_lensed(cosmos_dir, indices, args.out, LensedBudget(max_mag=args.lensed_max_mag), model=args.model,
                   seed=args.seed, figure_galaxies=args.figure_galaxies)
    else:
        budget = Budget(max_size=args.max_size, noise_floor=not args.no_noise_floor, vae_restarts=args.vae_restarts)
        run_galaxies(cosmos_dir, indices, args.out, budget, model=args.model, seed=args.seed,
                     figure_galaxies=args.figure_galaxies, models=tuple(args.models))
    return 0


if __name__ == "__main__":
    sys.exit(main())
