"""Real COSMOS galaxies behind simulated lenses: how well each source model recovers the lens.

Each real HST/COSMOS F814W galaxy of ``../shared/data/cosmos`` brighter than ``--max-mag`` is the
source behind its own simulated SIE + external shear lens, observed at two (or more) signal-to-noise
ratios, and every observation is fitted, side by side in one run and under the same PSO budget
(``--pso-particles``, ``--pso-iterations``), with each source model:
  - VAE: the 'VAE' profile (default model), as ``fit_lens`` fits it (``run_warm_starts``): two warm starts
    sharing the PSO particles, a PSO with the latents held at the mean galaxy (0) then 'LM' on every parameter,
    and a PSO of the lens with a SHAPELETS n_max = 4 source solved linearly, the VAE placed on that lens
    (PSO of its centre and scale, 10 particles × 20 iterations), then 'LM'; the better kept; each 'LM' stops at a
    relative χ² decrease of 3·10⁻⁵ (``FitSettings.lm_tolerance``); latents under their standard-normal prior;
  - SHAPELETS<n> for each n_max of ``--shapelet-nmax`` (default 8 and 15: 45 and 136 coefficients):
    coefficients solved linearly by lenstronomy, beta and centre by PSO then SIMPLEX;
  - SERSIC_ELLIPSE: PSO then SIMPLEX (amplitude solved linearly);
  - TRUE_SOURCE: the truth's own stamp (INTERPOL), only its centre free, PSO then SIMPLEX: a source model that
    is exactly right, so its lens errors are those the noise alone leaves, the floor of the others.
The lens model (SIE + SHEAR) is fitted in every case, from ``lens_params_start()`` (θ_E = 1″ at the
origin, no ellipticity, no shear).

Reported per source model and SNR (over galaxies): the bias (median of fitted − true) and scatter
(half the 16–84 % range of fitted − true) of θ_E [arcsec], of the SIE's e1, e2 and of the shear's
γ1, γ2; the median reduced χ² of the best fit, χ²_ν = χ² / (pixels − free parameters), the free
parameters being the sampled ones plus the linearly solved amplitudes; the median seconds per fit;
the failures, fits with |fitted − true θ_E| > 0.05″ (counted in the medians too); and the fitted
source's flux over the truth's (median and farthest from 1), in all and on the truth's pixels of light
(``in fp``: the cleaned stamp's non-zero pixels, :func:`truth_footprint`), the difference being light
a model puts where the truth has none; and both medians per bin of the truth's half-light radius
(``SIZE_BIN_EDGES``: < 0.17″, 0.17–0.25″, > 0.25″; :func:`half_light_radius` of the cleaned stamp). Per VAE fit
the JSON also holds the fitted ``scale`` and |z|.
``--latent-prior-sigma`` sets the σ of the VAE latents' Gaussian prior (default 1, the VAE's own). Prints one
table and writes ``--out`` (JSON) with the truth and every fit of every galaxy and SNR.

Choices:
  - Sources: as ``real_galaxies.py --lensed``: a deconvolved GalSim RealGalaxy is noise amplified
    beyond the HST band limit, so it is drawn reconvolved with a 0.12″-FWHM Gaussian (wider than
    the F814W PSF) on a 96 × 96 grid at the catalogue's 0.03″/px, and only galaxies brighter than
    ``--max-mag`` (24.5: 21 of the 50) are used. The stamp, scaled to unit total flux, is
    lenstronomy's INTERPOL source (surface brightness, ``scale`` 0.03″, ``phi_G`` 0). It keeps the COSMOS stamp's
    own noise, smoothed: negative pixels summed to 10–47 % of the flux for 19 of the 21 galaxies, a part of the
    truth that no source model reproduces. That noise is set to 0 outside the galaxy's footprint
    (:func:`noise_outside_footprint_removed`: its 1.5σ ``sep`` segment, not deblended, so a clumpy galaxy stays
    whole, grown by 3 pixels); inside it the stamp is kept as it is, noise included. The galaxy's own light below
    that isophote goes too, so the truth is a real galaxy cut at the COSMOS noise: ``--cleaning-loss N`` measures
    how much light that cut takes from N simulated galaxies of known light (:func:`cleaning_loss`), light that a
    source model with realistic wings puts back.
  - INTERPOL cache: lenstronomy's INTERPOL profile builds the interpolator of the first image it
    renders and keeps it (``Interpol.image_interp``), whatever image later calls pass; only
    ``Interpol.delete_cache()`` clears it. Every truth image is therefore rendered through a fresh
    LightModel (:func:`lensed_image`), so no galaxy is drawn with another one's stamp.
  - Lens: per galaxy, seeded by ``--seed`` and the catalogue row (the same lens at every SNR):
    θ_E uniform in 0.7–1.2″, SIE e1, e2 uniform in ±0.1, shear γ1, γ2 uniform in ±0.05, lens centre
    uniform in ±0.05″, source centre within ±0.1″ (each axis) of the lens centre, near the caustics
    (arcs and rings).
  - Observation: 80 × 80 pixels of 0.05″; a Gaussian PSF of FWHM 0.1″ (HST-like; the demo's
    ``LensSettings.psf_fwhm``) rather than each galaxy's catalogue PSF, which is sampled at 0.03″
    and already undone in the source; the fits are given this PSF exactly, so PSF errors are not
    part of the measured bias. The truth is rendered with 5 × 5 supersampling, the fits use 3 × 3.
  - Noise: Gaussian, the same σ in every pixel, no Poisson noise of the source (a sky-dominated
    exposure), set so that SNR = √(Σ I²) / σ over all pixels, I being the noise-free lensed image:
    the SNR of the whole arc with a matched filter. ``--snrs 30 100`` by default. The fits are
    given σ as the noise map.

lenstronomy's optimisers draw from numpy's global generator, seeded per galaxy before each fit.
BLAS runs on one thread during the fits (as in real_galaxies.py). Exits 0 with a message when the
data are absent.

    python benchmarks/lensed_real.py [--n 20] [--snrs 30 100] [--out lensed_real.json] [--shared ../shared]
    python benchmarks/lensed_real.py --cleaning-loss 600 [--out cleaning_loss.json]
    python benchmarks/lensed_real.py --n 2 --snrs 30 --pso-particles 10 --pso-iterations 5 \\
        --models VAE SERSIC_ELLIPSE SHAPELETS8 --out /tmp/lensed_smoke.json
"""

import argparse
import dataclasses
import os
import pathlib
import sys
import time

import numpy as np
from lenstronomy.Data.imaging_data import ImageData
from lenstronomy.Data.psf import PSF
from lenstronomy.ImSim.image_model import ImageModel
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LightModel.light_model import LightModel
from lenstronomy.Workflow.fitting_sequence import FittingSequence
from scipy import ndimage
from threadpoolctl import threadpool_limits

HERE = pathlib.Path(__file__).resolve().parent  # real_galaxies.py
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from real_galaxies import (  # noqa: E402
    CATALOG,
    SERSIC_LOWER,
    SERSIC_UPPER,
    SHAPELETS_INIT,
    SHAPELETS_LOWER,
    SHAPELETS_SIGMA,
    SHAPELETS_UPPER,
    SOURCE_SERSIC_INIT,
    SOURCE_SERSIC_SIGMA,
    LensedBudget,
    _lens_data,
    _quiet,
    catalog_size,
    default_shared,
    lensed_sources,
    real_source,
)

from lenstronomy_vae import latent_prior, load_galaxy_model, vae_source_params  # noqa: E402  (registers 'VAE', 'LM')
from lenstronomy_vae.lensing import FitSettings, LensSettings, lens_params_start  # noqa: E402
from lenstronomy_vae.lensing.lens_fit import particles_per_start, run_warm_starts  # noqa: E402
from lenstronomy_vae.lensing.lens_simulation import LENS_PARAMS  # noqa: E402
from lenstronomy_vae.utils import write_json  # noqa: E402

REPORTED = ("theta_E", "e1", "e2", "gamma1", "gamma2")  # the lens parameters in the table
FAILURE_THETA_E = 0.05  # arcsec: a fit with |fitted − true θ_E| above this failed
THETA_E_RANGE = (0.7, 1.2)  # arcsec
ELLIPTICITY_MAX = 0.1  # SIE |e1|, |e2|
SHEAR_MAX = 0.05  # |γ1|, |γ2|
LENS_CENTER_MAX = 0.05  # arcsec, each axis
SOURCE_OFFSET_MAX = 0.1  # arcsec, source centre from the lens centre, each axis
SHAPELET_PREFIX = "SHAPELETS"
TRUE_SOURCE = "TRUE_SOURCE"  # the truth's own stamp as the source model: the lens errors the noise alone leaves
TRUE_SOURCE_CENTER_SIGMA = 0.05  # arcsec: PSO spread of its centre ...
TRUE_SOURCE_CENTER_MAX = 0.5  # arcsec: ... and its bound, each axis
FLUX_GRID_HALF_SIZE = 4.0  # arcsec: a fitted source's flux is summed over ±this around its centre ...
FLUX_GRID_STEP = 0.015  # arcsec: ... on pixels of this side
FOOTPRINT_THRESHOLD = 1.5  # σ: the galaxy's footprint in the source stamp
FOOTPRINT_GROWTH = 3  # pixels the footprint is grown by
# The footprint is the whole connected region above the threshold: sep's default deblending (contrast 0.005)
# splits clumpy real galaxies into pieces, and the central piece alone held 18–77 % of the catalogue magnitude's
# light for 5 of the 20 sources; the whole segment holds 85–111 % for 17 of them (the other 3: 59, 71 and 81 %,
# the cut-out or the 96-px grid lacking that light too).
FOOTPRINT_DEBLEND_CONTRAST = 1.0
SIZE_BIN_EDGES = (0.17, 0.25)  # arcsec: the flux is reported per bin of the truth's half-light radius


@dataclasses.dataclass
class Settings:
    """The observation, the drawing of the sources and the fit budget (arcsec, pixels, iterations)."""

    num_pix: int = 80
    pixel_scale: float = LensSettings.pixel_scale
    psf_fwhm: float = LensSettings.psf_fwhm
    truth_supersampling: int = 5
    fit_supersampling: int = 3
    source_size: int = LensedBudget.source_size
    source_smoothing_fwhm: float = LensedBudget.source_smoothing_fwhm
    max_mag: float = LensedBudget.max_mag
    pso_particles: int = LensedBudget.pso_particles
    pso_iterations: int = LensedBudget.pso_iterations
    lm_iterations: int = LensedBudget.lm_iterations
    simplex_iterations: int = LensedBudget.simplex_iterations
    latent_prior_sigma: float = 1.0  # σ of the VAE latents' Gaussian prior


@dataclasses.dataclass
class Observation:
    """One noisy lensed image as lenstronomy kwargs, with its noise σ (counts/s per pixel)."""

    kwargs_data: dict
    kwargs_psf: dict
    kwargs_numerics: dict
    noise_sigma: float


@dataclasses.dataclass
class SourceModel:
    """One source model's lenstronomy setup.

    Attributes:
        name: the name in the table (``VAE``, ``SERSIC_ELLIPSE``, ``SHAPELETS8``, ...).
        profile: lenstronomy light profile.
        profile_kwargs: its entry of ``source_light_profile_kwargs_list``, or None.
        params: [init, sigma, fixed, lower, upper], each a one-element list.
        likelihood: ``kwargs_likelihood``.
        steps: ``fit_sequence`` steps.
        starts: how many times the steps run from the start, each with its own seed; the fit with the best
            likelihood is kept.
        warm_starts: for a 'VAE' source, the budget of ``run_warm_starts`` (as ``fit_lens`` fits it), which
            then replaces ``steps`` and ``starts``; None for the others.
    """

    name: str
    profile: str
    profile_kwargs: dict | None
    params: list
    likelihood: dict
    steps: list
    starts: int = 1
    warm_starts: FitSettings | None = None


# ----------------------------------------------------------------------------- truth

def cutout_shape(cosmos_dir, index):
    """(rows, columns) of the original COSMOS cut-out of catalogue row ``index`` (the extent of its noise)."""
    import galsim

    return galsim.RealGalaxyCatalog(CATALOG, dir=str(cosmos_dir)).getGalImage(int(index)).array.shape


def stamp_noise_sigma(stamp, patch):
    """σ of a stamp's noise [its units], which covers a ``patch`` (rows, columns) at its centre: 1.4826 × the median
    |value| of the patch's negative pixels (galaxy light is positive, noise symmetric); 0 without any."""
    rows, columns = (slice(max((n - m) // 2, 0), max((n - m) // 2, 0) + min(m, n)) for n, m in zip(stamp.shape, patch))
    inside = stamp[rows, columns]
    return float(1.4826 * np.median(-inside[inside < 0])) if np.any(inside < 0) else 0.0


def noise_outside_footprint_removed(stamp, patch):
    """The source stamp with the COSMOS noise outside the galaxy set to 0, and the flux that removed (fraction).

    The noise covers only the original COSMOS cut-out, a ``patch`` (rows, columns) pixels square at
    the stamp's centre (its σ: :func:`stamp_noise_sigma`). The footprint: the ``sep`` segment (threshold
    FOOTPRINT_THRESHOLD × σ, not deblended: FOOTPRINT_DEBLEND_CONTRAST) nearest the stamp's centre, grown by
    FOOTPRINT_GROWTH pixels. Inside it the stamp's own noise stays, as part of the truth; objects of the cut-out
    not connected to the galaxy at that threshold go with the noise.
    """
    import sep

    sigma = stamp_noise_sigma(stamp, patch)
    data = np.ascontiguousarray(stamp, dtype=np.float64)
    objects, segmentation = sep.extract(data, FOOTPRINT_THRESHOLD, err=sigma, segmentation_map=True,
                                        deblend_cont=FOOTPRINT_DEBLEND_CONTRAST)
    centre = (np.array(stamp.shape) - 1) / 2
    if len(objects) == 0:
        return stamp, 0.0
    nearest = int(np.argmin(np.hypot(objects["x"] - centre[1], objects["y"] - centre[0])))
    footprint = ndimage.binary_dilation(segmentation == nearest + 1, iterations=FOOTPRINT_GROWTH)
    cleaned = np.where(footprint, stamp, 0.0)
    return cleaned, float(1.0 - cleaned.sum() / stamp.sum())


def light_kept_by_cleaning(stamps, pixel_scale, noise_sigma, settings, rng):
    """Fraction of each galaxy's light inside the footprint that :func:`noise_outside_footprint_removed` keeps.

    What the truths lose: each noise-free stamp (n, H, W) [flux per pixel, ``pixel_scale`` arcsec] is placed on
    a ``settings.source_size`` grid and smoothed like a real source (Gaussian of ``source_smoothing_fwhm``),
    noise of standard deviation ``noise_sigma`` [the stamps' units] smoothed by the same Gaussian is added, and
    the cleaning's footprint is found on that; the light kept is the noise-free stamp's inside it.

    Returns:
        (kept fraction (n,), half-light radius (n,) [arcsec] of the smoothed noise-free stamps).
    """
    sigma_pixels = settings.source_smoothing_fwhm / (2 * np.sqrt(2 * np.log(2))) / pixel_scale
    noise_scale = noise_sigma * 2 * np.sqrt(np.pi) * sigma_pixels  # smoothed unit white noise has σ 1/(2√π σ_px)
    kept, radii = [], []
    for stamp in np.asarray(stamps, dtype=np.float64):
        pad = [((settings.source_size - n) // 2, settings.source_size - n - (settings.source_size - n) // 2)
               for n in stamp.shape]
        smooth = ndimage.gaussian_filter(np.pad(stamp, pad), sigma_pixels, mode="constant")
        noise = ndimage.gaussian_filter(rng.normal(size=smooth.shape), sigma_pixels, mode="wrap") * noise_scale
        cleaned, _ = noise_outside_footprint_removed(smooth + noise, smooth.shape)
        kept.append(float(smooth[cleaned != 0].sum() / smooth.sum()))
        radii.append(half_light_radius(smooth, pixel_scale))
    return np.array(kept), np.array(radii)


def cleaning_loss(cosmos_dir, n, settings, seed=0):
    """Print and return the light that cleaning takes from simulated galaxies like the real sources, per size bin.

    ``n`` galaxies of the HST simulation (:func:`lenstronomy_vae.sims.simulate_galaxies`, COSMOS parametric
    fits with knots when the catalogue is installed, magnitudes up to ``settings.max_mag``) go through
    :func:`light_kept_by_cleaning` with the median noise σ of the first 20 real sources' stamps.

    Returns:
        dict: ``noise_sigma`` [e-/s per pixel] and per bin of half-light radius (SIZE_BIN_EDGES) the galaxies
        and the median and 16th percentile of the kept fraction.
    """
    from lenstronomy_vae.sims import GalaxySimConfig, get_survey, simulate_galaxies

    sigmas = []
    for index, _ in lensed_sources(cosmos_dir, range(catalog_size(cosmos_dir)), settings.max_mag)[:20]:
        stamp, _ = real_source(cosmos_dir, index, settings.source_size, smoothing_fwhm=settings.source_smoothing_fwhm)
        sigmas.append(stamp_noise_sigma(stamp, cutout_shape(cosmos_dir, index)))
    noise_sigma = float(np.median(sigmas))
    config = GalaxySimConfig(mag_range=(GalaxySimConfig.mag_range[0], settings.max_mag))
    galaxies = simulate_galaxies(n, config, seed=seed)
    kept, radii = light_kept_by_cleaning(galaxies.intrinsic[..., 0], get_survey(config.survey).pixel_scale,
                                         noise_sigma, settings, np.random.default_rng(seed))
    result = {"noise_sigma": noise_sigma, "galaxies": n, "bins": []}
    print(f"\nlight the cleaning keeps of {n} simulated galaxies (mag < {settings.max_mag}, "
          f"noise σ {noise_sigma:.5f}):")
    for size_bin, label in zip(size_bins(), size_labels()):
        inside = kept[[in_size_bin(radius, size_bin) for radius in radii]]
        entry = {"half_light_radius": list(size_bin), "galaxies": int(inside.size),
                 "median_kept": float(np.median(inside)) if inside.size else None,
                 "p16_kept": float(np.percentile(inside, 16)) if inside.size else None}
        result["bins"].append(entry)
        print(f"  half-light radius {label:>10}: {inside.size:4d} galaxies, kept median "
              f"{_ratio(entry['median_kept'])}, 16th percentile {_ratio(entry['p16_kept'])}")
    return result


def draw_truth(rng):
    """A random SIE + SHEAR lens (``LENS_PARAMS``: arcsec, dimensionless) and ``source_x``, ``source_y`` [arcsec]."""
    center_x, center_y = rng.uniform(-LENS_CENTER_MAX, LENS_CENTER_MAX, 2)
    e1, e2 = rng.uniform(-ELLIPTICITY_MAX, ELLIPTICITY_MAX, 2)
    gamma1, gamma2 = rng.uniform(-SHEAR_MAX, SHEAR_MAX, 2)
    offset_x, offset_y = rng.uniform(-SOURCE_OFFSET_MAX, SOURCE_OFFSET_MAX, 2)
    values = {"theta_E": rng.uniform(*THETA_E_RANGE), "e1": e1, "e2": e2, "center_x": center_x,
              "center_y": center_y, "gamma1": gamma1, "gamma2": gamma2,
              "source_x": center_x + offset_x, "source_y": center_y + offset_y}
    return {name: float(value) for name, value in values.items()}


def lens_kwargs(truth):
    """lenstronomy ``kwargs_lens`` of SIE + SHEAR from a truth dict."""
    return [{name: truth[name] for name in ("theta_E", "e1", "e2", "center_x", "center_y")},
            {"gamma1": truth["gamma1"], "gamma2": truth["gamma2"], "ra_0": 0.0, "dec_0": 0.0}]


def coordinates(settings):
    """ImageData coordinate kwargs of the square observation grid, centred on the origin."""
    origin = -(settings.num_pix - 1) / 2 * settings.pixel_scale
    return {"ra_at_xy_0": origin, "dec_at_xy_0": origin, "transform_pix2angle": np.diag([settings.pixel_scale] * 2)}


def psf_kwargs(settings):
    """The Gaussian PSF of the observation (FWHM in arcsec)."""
    return {"psf_type": "GAUSSIAN", "fwhm": settings.psf_fwhm, "truncation": 5}


def lensed_image(stamp, stamp_scale, truth, settings):
    """Noise-free lensed image (counts/s per pixel) of a source stamp (counts/s per pixel) behind the lens.

    A fresh LightModel renders each stamp: lenstronomy's INTERPOL keeps the interpolator of the
    first image it is given (see the module docstring).
    """
    shape = (settings.num_pix, settings.num_pix)
    image_model = ImageModel(
        ImageData(image_data=np.zeros(shape), **coordinates(settings)), PSF(**psf_kwargs(settings)),
        LensModel(["SIE", "SHEAR"]), LightModel(["INTERPOL"]),
        kwargs_numerics={"supersampling_factor": settings.truth_supersampling},
    )
    kwargs_source = [{"image": stamp / stamp_scale**2, "scale": stamp_scale, "center_x": truth["source_x"],
                      "center_y": truth["source_y"], "phi_G": 0.0, "amp": 1.0}]
    return image_model.image(lens_kwargs(truth), kwargs_source)


def noise_sigma_for(clean, snr):
    """Per-pixel Gaussian σ giving SNR = √(Σ clean²) / σ."""
    return float(np.sqrt(np.sum(clean**2)) / snr)


def observe(clean, snr, settings, rng):
    """The clean image plus Gaussian noise at ``snr``, as an :class:`Observation` for the fits."""
    sigma = noise_sigma_for(clean, snr)
    kwargs_data = {"image_data": clean + rng.normal(0.0, sigma, clean.shape),
                   "noise_map": np.full(clean.shape, sigma), **coordinates(settings)}
    return Observation(kwargs_data, psf_kwargs(settings), {"supersampling_factor": settings.fit_supersampling}, sigma)


# ----------------------------------------------------------------------------- source models

def model_names(shapelet_nmax):
    """Every available source model: VAE, SERSIC_ELLIPSE, SHAPELETS<n> for each n of ``shapelet_nmax`` and
    TRUE_SOURCE."""
    return ["VAE", "SERSIC_ELLIPSE"] + [f"{SHAPELET_PREFIX}{n}" for n in shapelet_nmax] + [TRUE_SOURCE]


def _pso(settings):
    return ["PSO", {"sigma_scale": 1.0, "n_particles": settings.pso_particles,
                    "n_iterations": settings.pso_iterations}]


def vae_source(settings, model=None):
    """'VAE' source at the origin with the model's pixel scale, fitted as ``fit_lens`` fits it (``run_warm_starts``:
    the mean galaxy's PSO then LM, and a SHAPELETS lens search then LM, sharing the PSO particles); latents under
    N(0, ``settings.latent_prior_sigma``²)."""
    galaxy_model = load_galaxy_model(model)
    params = vae_source_params(model=model, scale=galaxy_model.pixel_scale, fix_phi_G=True)
    likelihood = {"source_marg": False, "check_positive_flux": True,
                  "prior_source": latent_prior(0, model=model, sigma=settings.latent_prior_sigma)}
    particles_per_start(settings.pso_particles, name="--pso-particles")
    budget = FitSettings(pso_particles=settings.pso_particles, pso_iterations=settings.pso_iterations,
                         lm_iterations=settings.lm_iterations)
    return SourceModel("VAE", "VAE", {"model": model}, [[part] for part in params], likelihood, [],
                       warm_starts=budget)


def sersic_source(settings):
    """SERSIC_ELLIPSE source (real_galaxies.py's lensed start and bounds); PSO then SIMPLEX."""
    params = [[SOURCE_SERSIC_INIT], [SOURCE_SERSIC_SIGMA], [{}], [SERSIC_LOWER], [SERSIC_UPPER]]
    steps = [_pso(settings), ["SIMPLEX", {"n_iterations": settings.simplex_iterations}]]
    return SourceModel("SERSIC_ELLIPSE", "SERSIC_ELLIPSE", None, params, {"check_positive_flux": True}, steps)


def shapelets_source(n_max, settings):
    """SHAPELETS of order ``n_max`` (coefficients of either sign, solved linearly); PSO then SIMPLEX on beta, centre."""
    params = [[SHAPELETS_INIT], [SHAPELETS_SIGMA], [{"n_max": n_max}], [SHAPELETS_LOWER], [SHAPELETS_UPPER]]
    steps = [_pso(settings), ["SIMPLEX", {"n_iterations": settings.simplex_iterations}]]
    return SourceModel(f"{SHAPELET_PREFIX}{n_max}", "SHAPELETS", None, params, {}, steps)


def true_source(stamp, stamp_scale, settings):
    """The truth's own stamp (unit flux, ``stamp_scale`` arcsec per pixel) as an INTERPOL source with only its
    centre free (amplitude solved linearly); PSO then SIMPLEX. No source model can know more about the
    source, so its lens errors are those the noise alone leaves: the floor of every other row."""
    image = stamp / stamp.sum() / stamp_scale**2
    fixed = {"image": image, "scale": stamp_scale, "phi_G": 0.0}
    params = [[{**fixed, "center_x": 0.0, "center_y": 0.0}],
              [{"center_x": TRUE_SOURCE_CENTER_SIGMA, "center_y": TRUE_SOURCE_CENTER_SIGMA}], [fixed],
              [{"center_x": -TRUE_SOURCE_CENTER_MAX, "center_y": -TRUE_SOURCE_CENTER_MAX}],
              [{"center_x": TRUE_SOURCE_CENTER_MAX, "center_y": TRUE_SOURCE_CENTER_MAX}]]
    steps = [_pso(settings), ["SIMPLEX", {"n_iterations": settings.simplex_iterations}]]
    return SourceModel(TRUE_SOURCE, "INTERPOL", None, params, {}, steps)


def source_model(name, settings, model=None):
    """The :class:`SourceModel` of a name of :func:`model_names`, but TRUE_SOURCE (per galaxy: :func:`true_source`)."""
    if name == "VAE":
        return vae_source(settings, model)
    if name == "SERSIC_ELLIPSE":
        return sersic_source(settings)
    return shapelets_source(int(name[len(SHAPELET_PREFIX):]), settings)


# ----------------------------------------------------------------------------- fits

def fit_lensed(observation, source, seed, footprint=None):
    """Fit SIE + SHEAR + ``source`` to an observation from ``lens_params_start()``.

    Args:
        observation: the :class:`Observation`.
        source: the :class:`SourceModel`.
        seed: numpy's global seed for the optimisers.
        footprint: (x, y, pixel side) [arcsec] of the true source's pixels of light (:func:`truth_footprint`),
            or None.

    Returns:
        dict: ``lens`` (best-fit ``LENS_PARAMS``), ``chi2``, ``free_parameters``, ``reduced_chi2``
        (χ² / (pixels − free parameters)), ``seconds`` (the optimisers only), ``source_flux``
        (:func:`source_flux`; the truth's is 1), with ``footprint`` also ``source_flux_in_footprint``
        (the fitted source's flux on the truth's pixels of light; the truth's is 1), and for a 'VAE'
        source its fitted ``source_scale`` [arcsec per decoder pixel] and ``latent_norm`` (|z|).
    """
    kwargs_model = {"lens_model_list": ["SIE", "SHEAR"], "source_light_model_list": [source.profile]}
    if source.profile_kwargs is not None:
        kwargs_model["source_light_profile_kwargs_list"] = [source.profile_kwargs]
    kwargs_params = {"lens_model": lens_params_start(), "source_model": source.params}
    start = time.perf_counter()
    if source.warm_starts is not None:
        with _quiet():
            fittings, _, _ = run_warm_starts(_lens_data(observation), kwargs_model, source.likelihood, kwargs_params,
                                             source.warm_starts, seed)
    else:
        fittings = []
        for k in range(source.starts):
            np.random.seed(seed + 1000 * k)
            fittings.append(FittingSequence(_lens_data(observation), kwargs_model, {}, source.likelihood,
                                            kwargs_params))
            with _quiet():
                fittings[-1].fit_sequence(source.steps)
    seconds = time.perf_counter() - start
    fitting = max(fittings, key=lambda candidate: candidate.best_fit_likelihood())
    kwargs = fitting.best_fit()
    image_fit = fitting.likelihood_class.image_likelihood.imSim
    model_image, _, _, amplitudes = image_fit.image_linear_solve(kwargs_lens=kwargs["kwargs_lens"],
                                                                 kwargs_source=kwargs["kwargs_source"])
    data = observation.kwargs_data["image_data"]
    chi2 = float(np.sum(((data - model_image) / observation.noise_sigma) ** 2))
    free = int(fitting.param_class.num_param()[0] + fitting.param_class.num_param_linear())
    lens = {**kwargs["kwargs_lens"][0], **kwargs["kwargs_lens"][1]}
    kwargs_source = image_fit.update_linear_kwargs(amplitudes, kwargs["kwargs_lens"], kwargs["kwargs_source"], [],
                                                   [])[1]
    fit = {"lens": {name: float(lens[name]) for name in LENS_PARAMS}, "chi2": chi2, "free_parameters": free,
           "reduced_chi2": chi2 / (data.size - free), "seconds": seconds,
           "source_flux": source_flux(kwargs_model, kwargs_source)}
    if footprint is not None:
        fit["source_flux_in_footprint"] = source_flux_in(kwargs_model, kwargs_source, *footprint)
    if source.profile == "VAE":
        latents = [value for name, value in kwargs_source[0].items() if name.startswith("z_")]
        fit["source_scale"] = float(kwargs_source[0]["scale"])
        fit["latent_norm"] = float(np.linalg.norm(latents))
    return fit


def source_flux(kwargs_model, kwargs_source):
    """Total flux of a fitted source [counts/s]: its surface brightness summed over a FLUX_GRID_HALF_SIZE″ grid."""
    steps = np.arange(-FLUX_GRID_HALF_SIZE, FLUX_GRID_HALF_SIZE, FLUX_GRID_STEP) + FLUX_GRID_STEP / 2
    x, y = np.meshgrid(steps + kwargs_source[0]["center_x"], steps + kwargs_source[0]["center_y"])
    return source_flux_in(kwargs_model, kwargs_source, x.ravel(), y.ravel(), FLUX_GRID_STEP)


def source_flux_in(kwargs_model, kwargs_source, x, y, pixel_scale):
    """Flux of a fitted source [counts/s] on square pixels of side ``pixel_scale`` centred at (x, y) [arcsec]."""
    light = LightModel(kwargs_model["source_light_model_list"],
                       profile_kwargs_list=kwargs_model.get("source_light_profile_kwargs_list"))
    return float(np.sum(light.surface_brightness(x, y, kwargs_source)) * pixel_scale**2)


def half_light_radius(stamp, stamp_scale):
    """Half-light radius [arcsec] of a source stamp: the radius about the stamp's centre that holds half its flux."""
    import galsim

    return float(galsim.ImageD(np.asarray(stamp, dtype=np.float64), scale=stamp_scale).calculateHLR())


def truth_footprint(stamp, stamp_scale, truth):
    """(x, y, pixel side) [arcsec] of the true source's pixels of light: the non-zero pixels of the cleaned stamp.

    The stamp is placed as :func:`lensed_image` places it (INTERPOL: centred on the source position,
    columns along +x); its light outside these pixels was removed with the COSMOS noise
    (:func:`noise_outside_footprint_removed`), so a fitted source's flux beyond them is light that the
    truth does not have: wings the model extrapolates below the noise.
    """
    rows, columns = np.nonzero(stamp)
    centre = (np.array(stamp.shape) - 1) / 2
    return ((columns - centre[1]) * stamp_scale + truth["source_x"], (rows - centre[0]) * stamp_scale
            + truth["source_y"], stamp_scale)


def fit_observation(observation, truth, sources, seed, footprint=None):
    """Every source model's fit of one observation, with the errors (fitted − true) and the failure flag.

    ``footprint``: as for :func:`fit_lensed`.
    """
    fits = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for source in sources:
            fit = fit_lensed(observation, source, seed, footprint)
            fit["error"] = {name: fit["lens"][name] - truth[name] for name in LENS_PARAMS}
            fit["failed"] = bool(abs(fit["error"]["theta_E"]) > FAILURE_THETA_E)
            fits[source.name] = fit
    return fits


def run_fits(cosmos_dir, sources_rows, snrs, sources, settings, seed):
    """Each galaxy behind its lens at each SNR, fitted with every source model.

    Args:
        sources_rows: (catalogue row, F814W magnitude) of the galaxies.
        sources: :class:`SourceModel` s, or TRUE_SOURCE for each galaxy's own stamp (:func:`true_source`).

    Returns:
        one JSON-ready dict per (galaxy, SNR): row, mag, snr, truth, noise_sigma and per model its fit.
    """
    rows = []
    for index, mag in sources_rows:
        stamp, stamp_scale = real_source(cosmos_dir, index, settings.source_size,
                                         smoothing_fwhm=settings.source_smoothing_fwhm)
        stamp, removed = noise_outside_footprint_removed(stamp, cutout_shape(cosmos_dir, index))
        truth = draw_truth(np.random.default_rng([seed, index]))
        clean = lensed_image(stamp / stamp.sum(), stamp_scale, truth, settings)
        footprint = truth_footprint(stamp, stamp_scale, truth)
        galaxy_sources = [true_source(stamp, stamp_scale, settings) if source == TRUE_SOURCE else source
                          for source in sources]
        for snr in snrs:
            observation = observe(clean, snr, settings, np.random.default_rng([seed, index, round(1000 * snr)]))
            fits = fit_observation(observation, truth, galaxy_sources, seed + index, footprint)
            rows.append({"index": index, "mag": mag, "snr": snr, "truth": truth, "stamp_noise_removed": removed,
                         "source_half_light_radius": half_light_radius(stamp, stamp_scale),
                         "noise_sigma": observation.noise_sigma, "models": fits})
            print(f"galaxy {index:2d} (mag {mag:.1f}, θ_E {truth['theta_E']:.3f}″) SNR {snr:g}: " + ", ".join(
                f"{name} Δθ_E {fit['error']['theta_E']:+.4f}″ χ²_ν {fit['reduced_chi2']:.3f} {fit['seconds']:.0f} s"
                for name, fit in fits.items()), flush=True)
    return rows


# ----------------------------------------------------------------------------- summary

def bias_and_scatter(errors):
    """(median, half the 16–84 % range) of an array of fitted − true values."""
    low, high = np.percentile(errors, [16, 84])
    return float(np.median(errors)), float(0.5 * (high - low))


def summarize(rows, names, snrs):
    """Per SNR and source model: bias and scatter of each reported parameter, medians, failures."""
    summary = {}
    for snr in snrs:
        at_snr = [row for row in rows if row["snr"] == snr]
        summary[f"{snr:g}"] = {}
        for name in names:
            fits = [row["models"][name] for row in at_snr]
            parameters = {}
            for param in REPORTED:
                bias, scatter = bias_and_scatter(np.array([fit["error"][param] for fit in fits]))
                parameters[param] = {"bias": bias, "scatter": scatter}
            entry = summary[f"{snr:g}"][name] = {
                "galaxies": len(fits), "parameters": parameters,
                "median_reduced_chi2": float(np.median([fit["reduced_chi2"] for fit in fits])),
                "median_seconds": float(np.median([fit["seconds"] for fit in fits])),
                "failures": sum(fit["failed"] for fit in fits),
                "median_source_flux": _median(fits, "source_flux"),
                "worst_source_flux": _farthest_from_one(fits, "source_flux"),
            }
            if all("source_flux_in_footprint" in fit for fit in fits):
                entry["median_source_flux_in_footprint"] = _median(fits, "source_flux_in_footprint")
                entry["worst_source_flux_in_footprint"] = _farthest_from_one(fits, "source_flux_in_footprint")
            if all("source_half_light_radius" in row for row in at_snr):
                entry["source_flux_by_size"] = flux_by_size(at_snr, name)
    return summary


def flux_by_size(rows, name):
    """Median fitted source flux over the true one (in all and, where recorded, on the truth's pixels of light) of
    model ``name`` per bin of the truth's half-light radius (:func:`size_bins`); rows of one SNR. A median is None
    where the bin is empty or a fit lacks the figure."""
    bins = []
    for size_bin in size_bins():
        fits = [row["models"][name] for row in rows if in_size_bin(row["source_half_light_radius"], size_bin)]
        bins.append({"half_light_radius": list(size_bin), "galaxies": len(fits),
                     "median_source_flux": _median(fits, "source_flux"),
                     "median_source_flux_in_footprint": _median(fits, "source_flux_in_footprint")})
    return bins


def _median(fits, key):
    return float(np.median([fit[key] for fit in fits])) if fits and all(key in fit for fit in fits) else None


def _farthest_from_one(fits, key):
    """The fits' value of ``key`` (a fitted / true ratio) farthest from 1."""
    return float(max((fit[key] for fit in fits), key=lambda ratio: abs(ratio - 1)))


def print_table(summary, settings):
    """One line per SNR and source model: bias [scatter] of each reported parameter, χ²_ν, s/fit, failures, and the
    fitted source flux over the true one (median, and the farthest from 1), in all and on the truth's pixels of
    light ("in fp", :func:`truth_footprint`)."""
    print(f"\nfitted − true: bias (median) [scatter (half the 16–84 % range)]; θ_E in arcsec; "
          f"{settings.num_pix}² px at {settings.pixel_scale}″, PSO {settings.pso_particles} particles × "
          f"{settings.pso_iterations} iterations; failure: |Δθ_E| > {FAILURE_THETA_E}″")
    labels = {"theta_E": "θ_E", "e1": "e1", "e2": "e2", "gamma1": "γ1", "gamma2": "γ2"}
    print(f"{'SNR':>5} {'source model':>15} {'n':>3} " + " ".join(f"{labels[p]:>18}" for p in REPORTED)
          + f" {'χ²_ν':>6} {'s/fit':>6} {'failed':>6} {'flux':>6} {'worst':>6} {'in fp':>6} {'worst':>6}")
    for snr, by_model in summary.items():
        for name, row in by_model.items():
            cells = " ".join(f"{row['parameters'][p]['bias']:+8.4f} [{row['parameters'][p]['scatter']:7.4f}]"
                             for p in REPORTED)
            print(f"{snr:>5} {name:>15} {row['galaxies']:3d} {cells} {row['median_reduced_chi2']:6.3f} "
                  f"{row['median_seconds']:6.1f} {row['failures']:6d} {row['median_source_flux']:6.3f} "
                  f"{row['worst_source_flux']:6.3f} {row.get('median_source_flux_in_footprint', np.nan):6.3f} "
                  f"{row.get('worst_source_flux_in_footprint', np.nan):6.3f}")
    print_flux_by_size(summary)


def print_flux_by_size(summary):
    """Median fitted flux over the true one per bin of the truth's half-light radius (in all, and "in fp")."""
    if not any("source_flux_by_size" in row for by_model in summary.values() for row in by_model.values()):
        return
    print("\nfitted source flux / true (median; in fp) by the truth's half-light radius (galaxies)")
    print(f"{'SNR':>5} {'source model':>15} " + " ".join(f"{label:>22}" for label in size_labels()))
    for snr, by_model in summary.items():
        for name, row in by_model.items():
            cells = " ".join(
                f"{_ratio(entry['median_source_flux'])}; {_ratio(entry['median_source_flux_in_footprint'])} "
                f"({entry['galaxies']:2d})" for entry in row.get("source_flux_by_size", []))
            print(f"{snr:>5} {name:>15} {cells}")


def size_bins():
    """The bins of half-light radius, (low, high) [arcsec] from SIZE_BIN_EDGES; high None: no upper edge."""
    edges = (0.0, *SIZE_BIN_EDGES, None)
    return list(zip(edges[:-1], edges[1:]))


def in_size_bin(radius, size_bin):
    """Whether a half-light radius [arcsec] falls in a bin of :func:`size_bins`."""
    low, high = size_bin
    return low <= radius and (high is None or radius < high)


def size_labels():
    """The bins of half-light radius (SIZE_BIN_EDGES) as table headings."""
    low, high = SIZE_BIN_EDGES
    return f"< {low:g}″", f"{low:g}–{high:g}″", f"> {high:g}″"


def _ratio(value):
    return f"{value:6.3f}" if value is not None else f"{'—':>6}"


def run(cosmos_dir, n, snrs, names, out, settings=None, model=None, seed=0):
    """Select the galaxies, fit, print the table and write ``out`` (JSON); returns what was written."""
    settings = settings or Settings()
    selected = lensed_sources(cosmos_dir, range(catalog_size(cosmos_dir)), settings.max_mag)[:n]
    if not selected:
        print(f"no galaxy brighter than mag {settings.max_mag} in {cosmos_dir}: nothing to fit")
        return None
    sources = [name if name == TRUE_SOURCE else source_model(name, settings, model) for name in names]
    rows = run_fits(cosmos_dir, selected, snrs, sources, settings, seed)
    summary = summarize(rows, names, snrs)
    print(f"\n{len(selected)} COSMOS galaxies (mag < {settings.max_mag}) behind random SIE + shear lenses, "
          f"{os.cpu_count()} CPU cores")
    print_table(summary, settings)
    results = {"cpu_count": os.cpu_count(), "seed": seed, "model": model or load_galaxy_model(model).name,
               "settings": dataclasses.asdict(settings), "snrs": list(snrs), "source_models": list(names),
               "failure_theta_E": FAILURE_THETA_E, "summary": summary, "galaxies": rows}
    write_json(out, results)
    print(f"wrote {out}")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(default_shared()), help="the shared folder (default ../shared)")
    parser.add_argument("--n", type=int, default=20, help="number of galaxies (the first ones brighter than the cut)")
    parser.add_argument("--snrs", type=float, nargs="+", default=[30.0, 100.0], help="√(Σ I²)/σ of the lensed image")
    parser.add_argument("--shapelet-nmax", type=int, nargs="+", default=[8, 15], help="SHAPELETS orders to fit")
    parser.add_argument("--models", nargs="+", default=None,
                        help="source models to fit (default all: VAE SERSIC_ELLIPSE SHAPELETS<n> per --shapelet-nmax)")
    parser.add_argument("--pso-particles", type=int, default=Settings.pso_particles)
    parser.add_argument("--pso-iterations", type=int, default=Settings.pso_iterations)
    parser.add_argument("--lm-iterations", type=int, default=Settings.lm_iterations, help="VAE's LM after PSO")
    parser.add_argument("--simplex-iterations", type=int, default=Settings.simplex_iterations,
                        help="SERSIC_ELLIPSE's and SHAPELETS' SIMPLEX after PSO")
    parser.add_argument("--latent-prior-sigma", type=float, default=Settings.latent_prior_sigma,
                        help="σ of the VAE latents' Gaussian prior (1: the VAE's own)")
    parser.add_argument("--max-mag", type=float, default=Settings.max_mag, help="use galaxies brighter than this")
    parser.add_argument("--model", default=None, help="VAE model name or .keras path (default: the shipped one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cleaning-loss", type=int, default=0, metavar="N",
                        help="instead of fitting, measure the light the truths' cleaning takes from N "
                             "simulated galaxies")
    parser.add_argument("--out", default="lensed_real.json")
    args = parser.parse_args(argv)

    available = model_names(args.shapelet_nmax)
    names = args.models or available
    unknown = [name for name in names if name not in available]
    if unknown:
        parser.error(f"unknown source model(s) {unknown}; choose among {available} (SHAPELETS orders: --shapelet-nmax)")
    cosmos_dir = pathlib.Path(args.shared) / "data" / "cosmos"
    if not (cosmos_dir / CATALOG).is_file():
        print(f"{cosmos_dir / CATALOG} not found: no real galaxies to lens; skipping.")
        return 0
    settings = Settings(max_mag=args.max_mag, pso_particles=args.pso_particles, pso_iterations=args.pso_iterations,
                        lm_iterations=args.lm_iterations, simplex_iterations=args.simplex_iterations,
                        latent_prior_sigma=args.latent_prior_sigma)
    if args.cleaning_loss:
        write_json(args.out, cleaning_loss(cosmos_dir, args.cleaning_loss, settings, seed=args.seed))
        return 0
    run(cosmos_dir, args.n, args.snrs, names, args.out, settings, model=args.model, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
