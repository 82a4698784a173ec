"""The main job: simulate a galaxy-scale lens with a realistic source and fit it with a 'VAE' source.

The lens is an SIE with external shear; the source is a GalSim galaxy (COSMOS morphology with
star-forming knots) drawn without PSF and placed behind the lens through lenstronomy's INTERPOL
profile, so the model being fitted did not generate the data. The fit is an ordinary lenstronomy
``FittingSequence``: PSO with the latents held at the mean galaxy, Levenberg–Marquardt ('LM', added by
this package) on everything, then emcee.
"""

import dataclasses
import pathlib
import time

import numpy as np
from lenstronomy.Data.imaging_data import ImageData
from lenstronomy.Data.psf import PSF
from lenstronomy.ImSim.image_linear_solve import ImageLinearFit
from lenstronomy.ImSim.image_model import ImageModel
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LightModel.light_model import LightModel
from lenstronomy.Util import simulation_util
from lenstronomy.Workflow.fitting_sequence import FittingSequence

from lenstronomy_vae.fitting import check_data, latent_prior, vae_source_params
from lenstronomy_vae.io import write_json
from lenstronomy_vae.models import load_galaxy_model
from lenstronomy_vae.plots import plot_fit_panels
from lenstronomy_vae.simulate import GalaxySimConfig, simulate_galaxies

LENS_PARAMS = ["theta_E", "e1", "e2", "center_x", "center_y", "gamma1", "gamma2"]


@dataclasses.dataclass
class LensSettings:
    """The simulated observation.

    Attributes:
        num_pix: image side, pixels.
        pixel_scale: arcsec per pixel.
        exposure_time: seconds (Poisson noise of the source).
        background_rms: background noise per pixel, counts/s.
        source_flux: total source flux, counts/s.
        lens: SIE and SHEAR parameters (arcsec, dimensionless ellipticities and shears).
        source_center: source position (arcsec).
        psf_fwhm: Gaussian PSF FWHM, arcsec.
    """

    num_pix: int = 64
    pixel_scale: float = 0.05
    exposure_time: float = 2000.0
    background_rms: float = 0.02
    source_flux: float = 40.0
    lens: dict = dataclasses.field(
        default_factory=lambda: {"theta_E": 0.85, "e1": 0.08, "e2": -0.05, "center_x": 0.02,
                                 "center_y": -0.01, "gamma1": 0.03, "gamma2": 0.02}
    )
    source_center: tuple = (0.06, -0.04)
    psf_fwhm: float = 0.1


@dataclasses.dataclass
class LensSimulation:
    """A simulated lens: lenstronomy data, PSF and numerics kwargs, the truth and the noise."""

    settings: LensSettings
    kwargs_data: dict
    kwargs_psf: dict
    kwargs_numerics: dict
    source_stamp: np.ndarray
    source_pixel_scale: float


def _lens_kwargs(lens):
    return [
        {key: lens[key] for key in ("theta_E", "e1", "e2", "center_x", "center_y")},
        {"gamma1": lens["gamma1"], "gamma2": lens["gamma2"], "ra_0": 0.0, "dec_0": 0.0},
    ]


def extended_galaxy(seed=0, candidates=16, half_light_radius=0.18):
    """The intrinsic stamp (no PSF) of a resolved simulated HST-like galaxy.

    Of ``candidates`` galaxies, the one whose half-light radius is closest to
    ``half_light_radius`` (arcsec): resolved behind the lens, yet inside the region of
    multiple images.

    Returns:
        (stamp (H, W) in image units, pixel scale in arcsec).
    """
    galaxies = simulate_galaxies(candidates, GalaxySimConfig(), seed=seed)
    chosen = int(np.argmin(np.abs(galaxies.truth["hlr"] - half_light_radius)))
    return galaxies.intrinsic[chosen, ..., 0].astype(float), galaxies.pixel_scale


def simulate_lens(seed=0, settings=None, source_stamp=None, source_pixel_scale=None):
    """Simulate a lensed galaxy; every random draw comes from ``seed``.

    Args:
        seed: seed of the source galaxy and of the noise.
        settings: :class:`LensSettings`; defaults if None.
        source_stamp: intrinsic source image (H, W), any flux units (rescaled to
            ``settings.source_flux``); default: :func:`extended_galaxy`.
        source_pixel_scale: arcsec per pixel of ``source_stamp``.

    Returns:
        :class:`LensSimulation` whose ``kwargs_data['image_data']`` holds the noisy image (counts/s).
    """
    settings = settings or LensSettings()
    if source_stamp is None:
        source_stamp, source_pixel_scale = extended_galaxy(seed)
    galaxy = np.asarray(source_stamp, dtype=float) * settings.source_flux / np.sum(source_stamp)
    kwargs_data = simulation_util.data_configure_simple(
        settings.num_pix, settings.pixel_scale, settings.exposure_time, settings.background_rms
    )
    kwargs_psf = {"psf_type": "GAUSSIAN", "fwhm": settings.psf_fwhm, "truncation": 5}
    kwargs_numerics = {"supersampling_factor": 3}
    truth_model = ImageModel(
        ImageData(**kwargs_data), PSF(**kwargs_psf), LensModel(["SIE", "SHEAR"]), LightModel(["INTERPOL"]),
        kwargs_numerics=kwargs_numerics,
    )
    scale = source_pixel_scale
    kwargs_source = [{"image": galaxy / scale**2, "amp": 1.0, "center_x": settings.source_center[0],
                      "center_y": settings.source_center[1], "phi_G": 0.0, "scale": scale}]
    clean = truth_model.image(_lens_kwargs(settings.lens), kwargs_source)
    rng = np.random.default_rng(seed)
    counts = rng.poisson(np.maximum(clean, 0) * settings.exposure_time) / settings.exposure_time
    kwargs_data["image_data"] = counts + rng.normal(0.0, settings.background_rms, clean.shape)
    return LensSimulation(settings, kwargs_data, kwargs_psf, kwargs_numerics, galaxy, scale)


@dataclasses.dataclass
class FitSettings:
    """Budget of the fit: PSO particles and iterations, LM iterations, emcee walkers and steps."""

    pso_particles: int = 60
    pso_iterations: int = 60
    lm_iterations: int = 50
    walker_ratio: int = 2
    mcmc_burn: int = 100
    mcmc_run: int = 100
    progress: bool = True


def lens_params_start():
    """Initial value, spread, fixed values, lower and upper bounds of the SIE + SHEAR parameters."""
    init = [{"theta_E": 1.0, "e1": 0.0, "e2": 0.0, "center_x": 0.0, "center_y": 0.0},
            {"gamma1": 0.0, "gamma2": 0.0, "ra_0": 0.0, "dec_0": 0.0}]
    sigma = [{"theta_E": 0.2, "e1": 0.1, "e2": 0.1, "center_x": 0.05, "center_y": 0.05},
             {"gamma1": 0.05, "gamma2": 0.05}]
    fixed = [{}, {"ra_0": 0.0, "dec_0": 0.0}]
    lower = [{"theta_E": 0.3, "e1": -0.5, "e2": -0.5, "center_x": -0.3, "center_y": -0.3},
             {"gamma1": -0.2, "gamma2": -0.2}]
    upper = [{"theta_E": 2.0, "e1": 0.5, "e2": 0.5, "center_x": 0.3, "center_y": 0.3},
             {"gamma1": 0.2, "gamma2": 0.2}]
    return init, sigma, fixed, lower, upper


def fit_lens(simulation, model=None, settings=None, seed=0):
    """Fit SIE + SHEAR + 'VAE' source to a simulated lens with lenstronomy's FittingSequence.

    Stages: PSO on the lens and the source position/size with the latents fixed at 0 (the mean
    galaxy), LM on every parameter, then emcee. The latents carry a standard-normal prior.
    lenstronomy's PSO and emcee draw from numpy's global generator, which is seeded here.

    Returns:
        dict with ``kwargs_result`` (best fit), ``samples`` and ``param_names`` of the emcee chain,
        ``chain_list`` and ``seconds``.
    """
    settings = settings or FitSettings()
    check_data(simulation.kwargs_data)
    galaxy_model = load_galaxy_model(model)
    latent_names = [f"z_{i}" for i in range(galaxy_model.latent_dim)]
    source = vae_source_params(model=model, scale=galaxy_model.pixel_scale, fix_phi_G=True)
    kwargs_params = {
        "lens_model": lens_params_start(),
        "source_model": [[part] for part in source],
    }
    kwargs_model = {
        "lens_model_list": ["SIE", "SHEAR"],
        "source_light_model_list": ["VAE"],
        "source_light_profile_kwargs_list": [{"model": model}],
    }
    kwargs_likelihood = {"source_marg": False, "check_positive_flux": True,
                         "prior_source": latent_prior(0, model=model)}
    kwargs_data_joint = {
        "multi_band_list": [[simulation.kwargs_data, simulation.kwargs_psf, simulation.kwargs_numerics]],
        "multi_band_type": "single-band",
    }
    np.random.seed(seed)
    fitting = FittingSequence(kwargs_data_joint, kwargs_model, {}, kwargs_likelihood, kwargs_params)
    pso = {"sigma_scale": 1.0, "n_particles": settings.pso_particles}
    fitting_list = [
        ["update_settings", {"source_add_fixed": [[0, latent_names, [0.0] * len(latent_names)]]}],
        ["PSO", {**pso, "n_iterations": settings.pso_iterations}],
        ["update_settings", {"source_remove_fixed": [[0, latent_names]]}],
        ["LM", {"max_iterations": settings.lm_iterations}],
        ["MCMC", {"n_burn": settings.mcmc_burn, "n_run": settings.mcmc_run, "walkerRatio": settings.walker_ratio,
                  "sigma_scale": 0.1, "progress": settings.progress}],
    ]
    start = time.perf_counter()
    chain_list = fitting.fit_sequence(fitting_list)
    seconds = time.perf_counter() - start
    _, samples, param_names, _ = chain_list[-1]
    return {"kwargs_result": fitting.best_fit(), "samples": samples, "param_names": param_names,
            "chain_list": chain_list, "seconds": seconds}


def lens_parameter_table(simulation, fit):
    """Median, 16th and 84th percentiles of each lens parameter against the truth (arcsec, unitless)."""
    names = fit["param_names"]
    suffix = {"theta_E": "lens0", "e1": "lens0", "e2": "lens0", "center_x": "lens0", "center_y": "lens0",
              "gamma1": "lens1", "gamma2": "lens1"}
    rows = {}
    for param in LENS_PARAMS:
        column = names.index(f"{param}_{suffix[param]}")
        low, median, high = np.percentile(fit["samples"][:, column], [16, 50, 84])
        truth = simulation.settings.lens[param]
        rows[param] = {"truth": truth, "median": median, "minus": median - low, "plus": high - median,
                       "sigma": 0.5 * (high - low), "pull": (median - truth) / max(0.5 * (high - low), 1e-12)}
    return rows


def model_images(simulation, kwargs_result, model=None, source_pixels=64):
    """Best-fit model image, normalised residuals, and true and reconstructed source images.

    Returns:
        dict of 2-D arrays: ``data``, ``model``, ``residuals`` ((data − model)/σ), ``source_true`` and
        ``source_fit`` (surface brightness on a ``source_pixels``² grid at the true source's pixel
        scale, centred on the fitted source), and ``reduced_chi2``.
    """
    image_fit = ImageLinearFit(
        ImageData(**simulation.kwargs_data), PSF(**simulation.kwargs_psf), LensModel(["SIE", "SHEAR"]),
        LightModel(["VAE"], profile_kwargs_list=[{"model": model}]), kwargs_numerics=simulation.kwargs_numerics,
    )
    model_image, error_map, _, _ = image_fit.image_linear_solve(
        kwargs_lens=kwargs_result["kwargs_lens"], kwargs_source=kwargs_result["kwargs_source"]
    )
    residuals = image_fit.reduced_residuals(model_image, error_map)
    scale = simulation.source_pixel_scale
    center = kwargs_result["kwargs_source"][0]
    offsets = (np.arange(source_pixels) - (source_pixels - 1) / 2) * scale
    x, y = np.meshgrid(offsets + center["center_x"], offsets + center["center_y"])
    fitted = LightModel(["VAE"], profile_kwargs_list=[{"model": model}])
    source_fit = fitted.surface_brightness(x.ravel(), y.ravel(), kwargs_result["kwargs_source"]).reshape(x.shape)
    true_center = simulation.settings.source_center
    true_offsets = (np.arange(simulation.source_stamp.shape[0]) - (simulation.source_stamp.shape[0] - 1) / 2) * scale
    return {
        "data": simulation.kwargs_data["image_data"],
        "model": model_image,
        "residuals": residuals,
        "source_true": simulation.source_stamp / scale**2,
        "source_true_extent": _extent(true_offsets + true_center[0], true_offsets + true_center[1]),
        "source_fit": source_fit,
        "source_fit_extent": _extent(offsets + center["center_x"], offsets + center["center_y"]),
        "reduced_chi2": float(np.mean(residuals**2)),
    }


def _extent(x, y):
    half = 0.5 * (x[1] - x[0])
    return [x[0] - half, x[-1] + half, y[0] - half, y[-1] + half]


def plot_fit(images, path):
    """Five panels: data, model, normalised residuals, true source, reconstructed source (PNG)."""
    sources = [("true source", images["source_true"], images["source_true_extent"]),
               ("VAE source (fit)", images["source_fit"], images["source_fit_extent"])]
    plot_fit_panels(images["data"], images["model"], images["residuals"], path, sources=sources)


def run_demo(out_dir="demo_output", seed=0, model=None, fit_settings=None, lens_settings=None):
    """Simulate, fit, print the lens parameters against the truth, write ``fit.png`` and ``results.json``.

    Returns:
        the results dict written to ``results.json``.
    """
    out_dir = pathlib.Path(out_dir)
    start = time.perf_counter()
    load_galaxy_model(model)  # fail before the simulation if the model is unusable
    simulation = simulate_lens(seed=seed, settings=lens_settings)
    print(f"simulated a {simulation.settings.num_pix}² lens at {simulation.settings.pixel_scale}″/px "
          f"(SIE + shear, COSMOS-like source); fitting with a 'VAE' source ...", flush=True)
    fit = fit_lens(simulation, model=model, settings=fit_settings, seed=seed)
    table = lens_parameter_table(simulation, fit)
    images = model_images(simulation, fit["kwargs_result"], model=model)
    print(f"\n{'parameter':>10} {'truth':>8} {'fit':>8} {'-1σ':>7} {'+1σ':>7} {'pull':>6}")
    for name, row in table.items():
        print(f"{name:>10} {row['truth']:8.4f} {row['median']:8.4f} {row['minus']:7.4f} {row['plus']:7.4f} "
              f"{row['pull']:6.2f}")
    print(f"reduced χ² of the best fit: {images['reduced_chi2']:.3f}; fit time {fit['seconds']:.0f} s")
    plot_fit(images, out_dir / "fit.png")
    results = {
        "seed": seed,
        "model": model or load_galaxy_model(model).name,
        "lens_parameters": table,
        "reduced_chi2": images["reduced_chi2"],
        "fit_seconds": fit["seconds"],
        "total_seconds": time.perf_counter() - start,
        "kwargs_result": _jsonable(fit["kwargs_result"]),
        "settings": {"lens": dataclasses.asdict(simulation.settings),
                     "fit": dataclasses.asdict(fit_settings or FitSettings())},
    }
    write_json(out_dir / "results.json", results)
    print(f"wrote {out_dir / 'fit.png'} and {out_dir / 'results.json'}")
    return results


def _jsonable(value):
    """Nested kwargs with numpy scalars and arrays turned into JSON types."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
