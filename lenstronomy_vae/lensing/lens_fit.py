"""Fitting a lens with a 'VAE' source: the warm starts, then emcee, and what the fit found.

A VAE source is fitted from scratch by two kinds of warm start (:func:`run_warm_starts`), the better kept:

* the mean galaxy (:func:`warm_start_steps`): PSO of the lens and of the source's position and size with the
  latents held at 0, then Levenberg–Marquardt ('LM') on every parameter from PSO's best point;
* a lens search (:func:`shapelet_lens_search`): PSO of the lens with a low-order SHAPELETS source whose
  coefficients are solved linearly at every particle, so the search does not assume the mean galaxy's shape;
  then the VAE placed on that lens (:func:`placement_steps`) and 'LM' on every parameter.
"""

import contextlib
import copy
import dataclasses
import io
import time

import numpy as np
from lenstronomy.Data.imaging_data import ImageData
from lenstronomy.Data.psf import PSF
from lenstronomy.ImSim.image_linear_solve import ImageLinearFit
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LightModel.light_model import LightModel
from lenstronomy.Workflow.fitting_sequence import FittingSequence

from lenstronomy_vae.lensing.lens_simulation import LENS_PARAMS
from lenstronomy_vae.lensing.parameters import check_data, latent_prior, vae_source_params
from lenstronomy_vae.lensing.profile import latent_names
from lenstronomy_vae.networks.galaxy_model import load_galaxy_model

# The warm starts' 'LM' tolerance: 3·10⁻⁵ of a lensed image's χ² ≈ 6,400 is 0.2, a fifth of what one parameter
# moving by 1σ changes; with 10⁻⁶ (0.006 here) 'LM' spent about half of its steps on decreases below 0.1. On 20 real
# lensed sources (benchmarks/lensed_real.py, --seed 0 and 1, 80 fits) it took the median seconds per fit from
# 8.9–9.8 to 8.0–8.1 (SNR 30) and from 11.2–12.5 to 9.3–9.4 (SNR 100); the θ_E scatter went from 0.0089″ and
# 0.0082″ to 0.0092″ and 0.0082″ (SNR 30), from 0.0037″ and 0.0038″ to 0.0027″ and 0.0037″ (SNR 100), no
# failure either way. χ² rose by a median 0.1–0.4 and by 18 at most (of 6,481); two fits at SNR 30 moved by
# 0.010–0.012″ in θ_E on a χ² within 11 (of ~6,400).
WARM_START_LM_TOLERANCE = 3e-5


def warm_start_steps(latent_dim, pso, lm_iterations, component="source", index=0, lm_tolerance=None):
    """FittingSequence steps: PSO with the latents of one 'VAE' component at 0, then 'LM' on everything.

    Args:
        latent_dim: the component's latent dimension.
        pso: keyword arguments of lenstronomy's PSO step (``n_particles``, ``n_iterations``, ...).
        lm_iterations: iteration budget of the 'LM' step.
        component: ``"source"`` or ``"lens_light"``: the light model list holding the component.
        index: the component's position in that list.
        lm_tolerance: the 'LM' step's ``tolerance`` (relative χ² decrease under which it has converged); None
            for the step's own default.

    Returns:
        list of steps for ``FittingSequence.fit_sequence``.
    """
    names = latent_names(latent_dim)
    return [
        ["update_settings", {f"{component}_add_fixed": [[index, names, [0.0] * latent_dim]]}],
        ["PSO", dict(pso)],
        ["update_settings", {f"{component}_remove_fixed": [[index, names]]}],
        ["LM", _lm_kwargs(lm_iterations, lm_tolerance)],
    ]


def _lm_kwargs(iterations, tolerance):
    """Keyword arguments of an 'LM' step: its iteration budget, and its tolerance unless None (the step's own)."""
    return {"max_iterations": iterations, **({} if tolerance is None else {"tolerance": tolerance})}


def _lenstronomy_output(verbose):
    """What lenstronomy prints: heard when ``verbose``, else swallowed (its MCMC prints its settings whatever its
    own ``verbose`` says)."""
    return contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())


def _report(stage, stages, on_stage):
    """Add a stage's summary to ``stages`` and hand it to ``on_stage`` (if any) as soon as the stage ends."""
    stages.append(stage)
    if on_stage is not None:
        on_stage(stage)


# Warm starts of a lens fit, the PSO particles shared among them; odd-numbered starts hold the mean galaxy
# (warm_start_steps), even-numbered ones search the lens with SHAPELETS (shapelet_lens_search). On 20 real
# COSMOS sources behind SIE + shear (benchmarks/lensed_real.py, PSO 60 particles × 60 iterations in all, --seed 0),
# two mean-galaxy starts left galaxy 18, the largest and clumpiest source, at Δθ_E +0.345″ (SNR 30) and −0.127″
# (SNR 100): the mean galaxy's PSO settles on a lens that a smooth blob fits, and 'LM' does not leave it. With
# the lens search as the second start (and WARM_START_LM_TOLERANCE) that galaxy comes out at +0.032″ and +0.008″,
# and no fit of two draws of lenses (--seed 0 and 1, 80 fits) fails (3 did with two mean-galaxy starts); the θ_E
# scatter over both draws is 0.0092″ at SNR 30 and 0.0035″ at SNR 100 (0.0096″ and 0.0038″ before).
STARTS = 2

# The lens search's SHAPELETS order: 15 coefficients, solved linearly at every particle, on the image's own
# pixels (no supersampling, a ninth of the rays): a PSO of 30 particles × 60 iterations took 3.2–3.5 s on an 80 × 80
# image, about what the mean galaxy's PSO takes with 3 × 3 supersampling.
SEARCH_SHAPELETS_N_MAX = 4

# The placement PSO after the lens search (source centre and scale, lens and latents held): at most this many
# particles and iterations (no more than the start's own PSO).
PLACEMENT_PARTICLES = 10
PLACEMENT_ITERATIONS = 20


def shapelet_search_params(source_params, pixel_scale, image_size):
    """[init, sigma, fixed, lower, upper] of the lens search's SHAPELETS source, from the 'VAE' source's entries.

    The centre starts, moves and is bounded as the VAE's; ``beta`` [arcsec] starts at 4 decoder pixels
    (``pixel_scale``), moves by 2 and stays between a third of one and half the decoded stamp
    (``image_size`` pixels).
    """
    init, sigma, _, lower, upper = source_params
    centre = ("center_x", "center_y")
    return [{"beta": 4 * pixel_scale, **{name: init[name] for name in centre}},
            {"beta": 2 * pixel_scale, **{name: sigma[name] for name in centre}},
            {"n_max": SEARCH_SHAPELETS_N_MAX},
            {"beta": pixel_scale / 3, **{name: lower[name] for name in centre}},
            {"beta": image_size * pixel_scale / 2, **{name: upper[name] for name in centre}}]


def shapelet_lens_search(kwargs_data_joint, lens_model_list, lens_params, shapelet_params, pso, verbose=False):
    """PSO of the lens with a SHAPELETS source (n_max ``SEARCH_SHAPELETS_N_MAX``) solved linearly at every particle.

    A lens search that assumes no source shape: the coefficients (of either sign) fit whatever the
    data show at each particle's lens. It runs on the image's own pixels (``supersampling_factor`` 1).

    Args:
        kwargs_data_joint: the fit's ``multi_band_list`` and ``multi_band_type``.
        lens_model_list: the fit's lens models.
        lens_params: their [init, sigma, fixed, lower, upper].
        shapelet_params: the source's (:func:`shapelet_search_params`).
        pso: keyword arguments of lenstronomy's PSO step.
        verbose: lenstronomy's own output.

    Returns:
        the FittingSequence after the PSO: ``best_fit()`` has the lens and the SHAPELETS source's centre.
    """
    kwargs_data_joint = copy.copy(kwargs_data_joint)
    kwargs_data_joint["multi_band_list"] = [[kwargs_data, kwargs_psf, {**kwargs_numerics, "supersampling_factor": 1}]
                                            for kwargs_data, kwargs_psf, kwargs_numerics
                                            in kwargs_data_joint["multi_band_list"]]
    kwargs_model = {"lens_model_list": lens_model_list, "source_light_model_list": ["SHAPELETS"]}
    kwargs_params = {"lens_model": lens_params, "source_model": [[part] for part in shapelet_params]}
    fitting = FittingSequence(kwargs_data_joint, kwargs_model, {}, {}, kwargs_params, verbose=verbose)
    fitting.fit_sequence([["PSO", dict(pso)]])
    return fitting


def placement_steps(latent_dim, lens_free, pso, lm_iterations, lm_tolerance=None):
    """FittingSequence steps after a lens search: PSO of the 'VAE' source's centre and scale with the lens and the
    latents held (latents at 0), then 'LM' on every parameter.

    Args:
        latent_dim: the source's latent dimension.
        lens_free: per lens model, the names of its free parameters (held during the PSO).
        pso: keyword arguments of lenstronomy's PSO step.
        lm_iterations: iteration budget of the 'LM' step.
        lm_tolerance: the 'LM' step's ``tolerance``; None for the step's own default.
    """
    names = latent_names(latent_dim)
    lens = [[k, list(free)] for k, free in enumerate(lens_free) if free]
    return [
        ["update_settings", {"lens_add_fixed": lens, "source_add_fixed": [[0, names, [0.0] * latent_dim]]}],
        ["PSO", dict(pso)],
        ["update_settings", {"lens_remove_fixed": lens, "source_remove_fixed": [[0, names]]}],
        ["LM", _lm_kwargs(lm_iterations, lm_tolerance)],
    ]


def particles_per_start(pso_particles, starts=STARTS, name="pso_particles"):
    """PSO particles of each of ``starts`` warm starts that share ``pso_particles``.

    Raises:
        ValueError: no start, or fewer than 2 particles per start (``name`` names the option).
    """
    particles = pso_particles // max(starts, 1)
    if starts < 1 or particles < 2:
        raise ValueError(f"{name} {pso_particles} cannot be shared among the fit's {starts} warm starts: each needs "
                         "at least 2")
    return particles


@dataclasses.dataclass
class FitSettings:
    """Budget of the fit: PSO particles (in all) and iterations, warm starts, LM iterations, emcee walkers and steps.

    ``starts`` warm starts (:func:`run_warm_starts`: the mean galaxy's PSO, then the SHAPELETS lens search, in
    turn, each ending with 'LM') share the ``pso_particles`` (each gets ``pso_particles // starts``); emcee
    continues from the best.
    """

    pso_particles: int = 60
    pso_iterations: int = 60
    starts: int = STARTS
    lm_iterations: int = 50
    lm_tolerance: float = WARM_START_LM_TOLERANCE
    walker_ratio: int = 2
    mcmc_burn: int = 100
    mcmc_run: int = 100
    progress: bool = True


def lens_params_start(start=None):
    """Initial value, spread, fixed values, lower and upper bounds of the SIE + SHEAR parameters.

    Args:
        start: optional initial ``theta_E``, ``center_x``, ``center_y`` [arcsec] (default 1″ at the
            origin); the centre's bounds are ±0.3″ around the initial centre.
    """
    start = {"theta_E": 1.0, "center_x": 0.0, "center_y": 0.0, **(start or {})}
    x, y = start["center_x"], start["center_y"]
    init = [{"theta_E": start["theta_E"], "e1": 0.0, "e2": 0.0, "center_x": x, "center_y": y},
            {"gamma1": 0.0, "gamma2": 0.0, "ra_0": 0.0, "dec_0": 0.0}]
    sigma = [{"theta_E": 0.2, "e1": 0.1, "e2": 0.1, "center_x": 0.05, "center_y": 0.05},
             {"gamma1": 0.05, "gamma2": 0.05}]
    fixed = [{}, {"ra_0": 0.0, "dec_0": 0.0}]
    lower = [{"theta_E": 0.3, "e1": -0.5, "e2": -0.5, "center_x": x - 0.3, "center_y": y - 0.3},
             {"gamma1": -0.2, "gamma2": -0.2}]
    upper = [{"theta_E": 2.0, "e1": 0.5, "e2": 0.5, "center_x": x + 0.3, "center_y": y + 0.3},
             {"gamma1": 0.2, "gamma2": 0.2}]
    if not lower[0]["theta_E"] < start["theta_E"] < upper[0]["theta_E"]:
        raise ValueError(f"the initial theta_E {start['theta_E']} arcsec is outside the fitted range "
                         f"({lower[0]['theta_E']}, {upper[0]['theta_E']})")
    return init, sigma, fixed, lower, upper


def run_warm_starts(kwargs_data_joint, kwargs_model, kwargs_likelihood, kwargs_params, settings=None, seed=0,
                    on_stage=None, verbose=False):
    """The warm starts of a lens fit whose source is one 'VAE' (the first of ``source_light_model_list``).

    ``settings.starts`` starts share ``settings.pso_particles``; each gets ``pso_particles // starts`` and
    ``settings.pso_iterations``. Start 1, 3, ...: the mean galaxy (:func:`warm_start_steps`). Start 2, 4, ...:
    :func:`shapelet_lens_search`, then the VAE from the lens found and the search's source centre
    (:func:`placement_steps`, ``PLACEMENT_PARTICLES`` × ``PLACEMENT_ITERATIONS`` at most). Each ends with 'LM'
    (``settings.lm_iterations``). lenstronomy's PSO draws from numpy's global generator, seeded here (start k
    with ``seed + 1000 k``).

    Args:
        kwargs_data_joint, kwargs_model, kwargs_likelihood, kwargs_params: as lenstronomy's FittingSequence takes
            them (no constraints), ``kwargs_params`` with ``lens_model`` and ``source_model``.
        settings: :class:`FitSettings` (its PSO and LM budget); defaults if None.
        seed: seed of numpy's global generator.
        on_stage: called with each stage's summary as soon as the stage ends.
        verbose: lenstronomy's own output.

    Returns:
        (fittings, chain_lists, stages): one FittingSequence and chain list per start, and one dict per stage
        with ``name`` ("PSO", "lens search", "placement" or "LM"), ``seconds``, ``chi2`` (−2 logL at the best
        point so far, priors included; the lens search's is of its SHAPELETS source), ``start`` (1, 2, ...),
        ``starts``; the PSO stages also ``particles`` and ``iterations``, 'LM' ``iterations`` and ``converged``.

    Raises:
        ValueError: fewer than 2 PSO particles per start.
    """
    settings = settings or FitSettings()
    particles = particles_per_start(settings.pso_particles, settings.starts)
    profile_kwargs = (kwargs_model.get("source_light_profile_kwargs_list") or [{}])[0] or {}
    galaxy_model = load_galaxy_model(profile_kwargs.get("model"))
    pso = {"sigma_scale": 1.0, "n_particles": particles, "n_iterations": settings.pso_iterations}
    placement = {"sigma_scale": 1.0, "n_particles": min(PLACEMENT_PARTICLES, particles),
                 "n_iterations": min(PLACEMENT_ITERATIONS, settings.pso_iterations)}
    lens_params = kwargs_params["lens_model"]
    source_params = [part[0] for part in kwargs_params["source_model"]]
    lens_free = [sorted(set(init) - set(fixed)) for init, fixed in zip(lens_params[0], lens_params[2])]
    shapelets = shapelet_search_params(source_params, galaxy_model.pixel_scale, galaxy_model.image_size)
    fittings, chain_lists, stages = [], [], []

    def run_stage(fitting, name, steps, chain_list, **done):
        begin = time.perf_counter()
        with _lenstronomy_output(verbose):
            chains = fitting.fit_sequence(steps)
        chain_list += chains
        stage = {"name": name, "seconds": time.perf_counter() - begin, "chi2": -2.0 * fitting.best_fit_likelihood(),
                 **done}
        if name == "LM":
            stage.update(iterations=chains[-1][2]["iterations"], converged=chains[-1][2]["converged"])
        _report(stage, stages, on_stage)

    for k in range(settings.starts):
        np.random.seed(seed + 1000 * k)
        which = {"start": k + 1, "starts": settings.starts}
        chain_list = []
        if k % 2 == 0:
            fitting = FittingSequence(kwargs_data_joint, kwargs_model, {}, kwargs_likelihood, kwargs_params,
                                      verbose=verbose)
            fix_latents, pso_step, free_latents, lm_step = warm_start_steps(
                galaxy_model.latent_dim, pso, settings.lm_iterations, lm_tolerance=settings.lm_tolerance)
            run_stage(fitting, "PSO", [fix_latents, pso_step, free_latents], chain_list, particles=particles,
                      iterations=settings.pso_iterations, **which)
        else:
            begin = time.perf_counter()
            with _lenstronomy_output(verbose):
                search = shapelet_lens_search(kwargs_data_joint, kwargs_model["lens_model_list"], lens_params,
                                              shapelets, pso, verbose=verbose)
            _report({"name": "lens search", "seconds": time.perf_counter() - begin,
                     "chi2": -2.0 * search.best_fit_likelihood(), "particles": particles,
                     "iterations": settings.pso_iterations, "source": f"SHAPELETS n_max {SEARCH_SHAPELETS_N_MAX}",
                     **which}, stages, on_stage)
            found = search.best_fit()
            centre = {name: found["kwargs_source"][0][name] for name in ("center_x", "center_y")}
            placed = copy.deepcopy(kwargs_params)
            placed["lens_model"] = [found["kwargs_lens"], *lens_params[1:]]
            placed["source_model"][0][0] = {**source_params[0], **centre}
            fitting = FittingSequence(kwargs_data_joint, kwargs_model, {}, kwargs_likelihood, placed, verbose=verbose)
            *place, lm_step = placement_steps(galaxy_model.latent_dim, lens_free, placement, settings.lm_iterations,
                                              settings.lm_tolerance)
            run_stage(fitting, "placement", place, chain_list, particles=placement["n_particles"],
                      iterations=placement["n_iterations"], **which)
        run_stage(fitting, "LM", [lm_step], chain_list, **which)
        fittings.append(fitting)
        chain_lists.append(chain_list)
    return fittings, chain_lists, stages


def fit_lens(simulation, model=None, settings=None, seed=0, on_stage=None, verbose=False, start=None):
    """Fit SIE + SHEAR + 'VAE' source to a simulated lens with lenstronomy's FittingSequence.

    Stages: ``settings.starts`` warm starts sharing the PSO particles (:func:`run_warm_starts`: the mean
    galaxy's PSO then 'LM', and a SHAPELETS lens search, the VAE placed on its lens, then 'LM'); then emcee
    from the start with the best likelihood. The latents carry a standard-normal prior. lenstronomy's PSO
    and emcee draw from numpy's global generator, which is seeded here (start k with ``seed + 1000 k``).

    Args:
        simulation: what has ``kwargs_data``, ``kwargs_psf`` and ``kwargs_numerics``: a
            :class:`~lenstronomy_vae.lensing.lens_simulation.LensSimulation` or a
            :class:`~lenstronomy_vae.lensing.cutouts.LensCutout`.
        model: shipped model name or ``.keras`` path; None for the default model.
        settings: :class:`FitSettings`; defaults if None.
        seed: seed of numpy's global generator.
        on_stage: called with each stage's summary (see Returns) as soon as the stage ends.
        verbose: lenstronomy's own output (its FittingSequence ``verbose``): PSO's progress bar and
            parameter dictionaries.
        start: initial ``theta_E``, ``center_x``, ``center_y`` of the SIE [arcsec] (:func:`lens_params_start`).

    Returns:
        dict with ``kwargs_result`` (best fit), ``samples`` and ``param_names`` of the emcee chain,
        ``chain_list``, ``seconds`` and ``stages``: the warm starts' stages (:func:`run_warm_starts`), then
        emcee's, with ``name`` "emcee", ``seconds``, ``chi2``, ``walkers``, ``burn``, ``steps`` and ``start``,
        the warm start it continued.

    Raises:
        ValueError: fewer than 2 PSO particles per start.
    """
    settings = settings or FitSettings()
    check_data(simulation.kwargs_data)
    galaxy_model = load_galaxy_model(model)
    source = vae_source_params(model=model, scale=galaxy_model.pixel_scale, fix_phi_G=True)
    kwargs_params = {
        "lens_model": lens_params_start(start),
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
    begin = time.perf_counter()
    fittings, chain_lists, stages = run_warm_starts(kwargs_data_joint, kwargs_model, kwargs_likelihood,
                                                    kwargs_params, settings, seed, on_stage, verbose)
    best = int(np.argmax([fitting.best_fit_likelihood() for fitting in fittings]))
    fitting, chain_list = fittings[best], chain_lists[best]
    mcmc_step = ["MCMC", {"n_burn": settings.mcmc_burn, "n_run": settings.mcmc_run,
                          "walkerRatio": settings.walker_ratio, "sigma_scale": 0.1, "progress": settings.progress}]
    emcee_begin = time.perf_counter()
    with _lenstronomy_output(verbose):
        chain_list += fitting.fit_sequence([mcmc_step])
    _, samples, param_names, _ = chain_list[-1]
    _report({"name": "emcee", "seconds": time.perf_counter() - emcee_begin,
             "chi2": -2.0 * fitting.best_fit_likelihood(), "walkers": settings.walker_ratio * len(param_names),
             "burn": settings.mcmc_burn, "steps": settings.mcmc_run, "start": best + 1}, stages, on_stage)
    return {"kwargs_result": fitting.best_fit(), "samples": samples, "param_names": param_names,
            "chain_list": chain_list, "seconds": time.perf_counter() - begin, "stages": stages}


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


def fitted_images(observation, kwargs_result, model=None, source_pixels=64, source_pixel_scale=None):
    """Best-fit model image, normalised residuals and the reconstructed source of a lens fit.

    Args:
        observation: what has ``kwargs_data``, ``kwargs_psf`` and ``kwargs_numerics``.
        kwargs_result: the fit's best ``kwargs_lens`` and ``kwargs_source``.
        model: the 'VAE' source's model name or path (None: the default).
        source_pixels: side of the source grid [pixels].
        source_pixel_scale: its pixel scale [arcsec]; default the VAE model's, times the fitted ``scale``
            over it (the decoded stamp's own pixels).

    Returns:
        dict of 2-D arrays ``data``, ``model``, ``residuals`` ((data − model)/σ) and ``source_fit``
        (surface brightness, centred on the fitted source), ``source_fit_extent`` [arcsec] and ``reduced_chi2``.
    """
    image_fit = ImageLinearFit(
        ImageData(**observation.kwargs_data), PSF(**observation.kwargs_psf), LensModel(["SIE", "SHEAR"]),
        LightModel(["VAE"], profile_kwargs_list=[{"model": model}]), kwargs_numerics=observation.kwargs_numerics,
    )
    model_image, error_map, _, _ = image_fit.image_linear_solve(
        kwargs_lens=kwargs_result["kwargs_lens"], kwargs_source=kwargs_result["kwargs_source"]
    )
    residuals = image_fit.reduced_residuals(model_image, error_map)
    center = kwargs_result["kwargs_source"][0]
    scale = source_pixel_scale or center["scale"]
    offsets = (np.arange(source_pixels) - (source_pixels - 1) / 2) * scale
    x, y = np.meshgrid(offsets + center["center_x"], offsets + center["center_y"])
    fitted = LightModel(["VAE"], profile_kwargs_list=[{"model": model}])
    source_fit = fitted.surface_brightness(x.ravel(), y.ravel(), kwargs_result["kwargs_source"]).reshape(x.shape)
    return {
        "data": observation.kwargs_data["image_data"],
        "model": model_image,
        "residuals": residuals,
        "source_fit": source_fit,
        "source_fit_extent": _extent(offsets + center["center_x"], offsets + center["center_y"]),
        "reduced_chi2": float(np.mean(residuals**2)),
    }


def model_images(simulation, kwargs_result, model=None, source_pixels=64):
    """:func:`fitted_images` of a simulated lens, with its true source on the same grid scale.

    Returns:
        the dict of :func:`fitted_images` (source at the true source's pixel scale) and ``source_true``,
        ``source_true_extent``.
    """
    scale = simulation.source_pixel_scale
    images = fitted_images(simulation, kwargs_result, model, source_pixels, source_pixel_scale=scale)
    true_center = simulation.settings.source_center
    true_offsets = (np.arange(simulation.source_stamp.shape[0]) - (simulation.source_stamp.shape[0] - 1) / 2) * scale
    images["source_true"] = simulation.source_stamp / scale**2
    images["source_true_extent"] = _extent(true_offsets + true_center[0], true_offsets + true_center[1])
    return images


def _extent(x, y):
    half = 0.5 * (x[1] - x[0])
    return [x[0] - half, x[-1] + half, y[0] - half, y[-1] + half]
