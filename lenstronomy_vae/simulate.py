"""Isolated galaxy stamps: the intrinsic galaxy, the same galaxy seen through the PSF, and with noise.

The intrinsic stamp (no PSF, integrated over pixels) is what the VAE decoder learns, because
lenstronomy applies the PSF itself; the observed stamp is what its encoder sees. Morphologies
are the parametric (Sersic or bulge + disk) fits of real COSMOS galaxies that ship with the
``fpfs`` wheel, or, without it, bulge + disk galaxies drawn from distributions measured on that
catalog; star-forming knots add structure that smooth profiles lack.

Example::

    galaxies = simulate_galaxies(1000, GalaxySimConfig(), seed=1, processes=2)
    galaxies.save_hdf5("data/hst64.h5")
"""

import dataclasses
import functools
import importlib.util
import math
import multiprocessing
import os

import galsim
import numpy as np
from scipy.special import gammainc, gammaincinv
from tqdm import tqdm

from lenstronomy_vae.io import HDF5Set, JSONConfig
from lenstronomy_vae.rendering import EXACT_HALF_WIDTH, render
from lenstronomy_vae.surveys import SURVEYS, SurveySet, get_survey
from lenstronomy_vae.validation import check_count, check_seed, checked_range

SOURCES = ("auto", "cosmos", "parametric")
COSMOS_FILE = "src_cosmos.fits"
FILE_FORMAT = "lenstronomy_vae.GalaxySet/1"
_ARRAYS = ("intrinsic", "convolved", "observed", "noise_sigma", "truth")

TRUTH_DTYPE = np.dtype([
    ("index", np.int64),       # row in the COSMOS parametric catalog; -1 for source="parametric"
    ("flux", np.float64),      # total flux [image units], knots included
    ("magnitude", np.float64),  # AB magnitude of ``flux``
    ("hlr", np.float64),       # circular half-light radius of the intrinsic stamp [arcsec]
    ("g1", np.float64),        # ellipticity (1 - q) / (1 + q) · cos 2φ of the dominant component
    ("g2", np.float64),        # same, · sin 2φ; φ counter-clockwise from the +x (column) axis
    ("redshift", np.float64),  # COSMOS photometric redshift; NaN for source="parametric"
    ("snr", np.float64),       # sqrt(Σ convolved²) / noise sigma: matched-filter S/N, band 0
    ("has_knots", np.bool_),
    ("dx", np.float64),        # galaxy centre minus stamp centre along x (columns) [pixels]
    ("dy", np.float64),        # same along y (rows) [pixels]
])

# Fallback morphology, fitted on COSMOS parametric galaxies passing the default cuts
# (F814W 18–25, Sersic hlr 0.05–0.5″, ≥ 90 % of the flux in a 64 × 0.03″ stamp).
_COUNTS_SLOPE = 0.55             # dN/dm ∝ 10^(slope · m), fitted over F814W 21–25
_LOG_HLR_AT_24 = -0.77           # log10 disk hlr [arcsec] at F814W = 24 ...
_LOG_HLR_PER_MAG = -0.09         # ... its change per magnitude ...
_LOG_HLR_SCATTER = 0.19          # ... and scatter [dex]
_BULGE_PROBABILITY = 0.26        # fraction of galaxies fitted better by bulge + disk
_BULGE_TO_TOTAL = (0.1, 0.8)     # uniform range of the bulge flux fraction
_LOG_BULGE_TO_DISK_HLR = (-0.45, 0.30)  # mean and sigma of log10(bulge hlr / disk hlr)
_DISK_Q = (0.2, 0.9)             # uniform ranges of the axis ratios
_BULGE_Q = (0.4, 1.0)            # rounder than COSMOS bulge fits (median 0.26): a choice, not a fit
_MAX_DRAWS = 1000                # rejection-sampling attempts per fallback galaxy

# Single-Sersic COSMOS fits steeper than this are treated as spheroids: they get no knots.
_MAX_DISK_SERSIC_N = 2.5


@dataclasses.dataclass
class GalaxySimConfig(JSONConfig):
    """What galaxies to simulate and how.

    Attributes:
        survey: key of :data:`lenstronomy_vae.surveys.SURVEYS` (pixel scale, stamp, PSF, noise).
        source: ``"cosmos"`` (parametric fits of real COSMOS galaxies; needs the ``fpfs`` wheel),
            ``"parametric"`` (bulge + disk drawn from distributions) or ``"auto"`` (cosmos when
            available). :func:`simulate_galaxies` records the source it actually used.
        mag_range: AB magnitudes (min, max) of the galaxies' total model flux.
        hlr_range: half-light radius (min, max) [arcsec] of the single-Sersic fit (cosmos) or
            of the disk (parametric).
        min_flux_in_stamp: least fraction of a galaxy's flux inside the circle inscribed in
            the stamp, estimated from its Sersic components as if each extended along its
            major axis in every direction (so an underestimate).
        knot_probability: probability that a galaxy with a disk (a bulge + disk fit, a single
            Sersic fit with n < 2.5, or any parametric galaxy) gets star-forming knots.
        knot_flux_fraction_range: (min, max) fraction of the total flux moved into the knots.
        n_knots_range: (min, max) number of knots, inclusive.
        knot_fwhm_range: (min, max) FWHM of each Gaussian knot [arcsec].
        max_offset: largest shift of the galaxy centre from the stamp centre along each axis
            [pixels].
        random_rotation: rotate every galaxy by a uniform random angle.
    """

    survey: str = "hst_acs_f814w"
    source: str = "auto"
    mag_range: tuple = (18.0, 25.0)
    hlr_range: tuple = (0.05, 0.5)
    min_flux_in_stamp: float = 0.9
    knot_probability: float = 0.5
    knot_flux_fraction_range: tuple = (0.05, 0.3)
    n_knots_range: tuple = (5, 30)
    knot_fwhm_range: tuple = (0.03, 0.06)
    max_offset: float = 0.5
    random_rotation: bool = True

    def __post_init__(self):
        if self.survey not in SURVEYS:
            raise ValueError(f"unknown survey {self.survey!r}; known surveys: {sorted(SURVEYS)}")
        if self.source not in SOURCES:
            raise ValueError(f"unknown source {self.source!r}; choose one of {SOURCES}")
        self.mag_range = checked_range("mag_range", self.mag_range)
        self.hlr_range = checked_range("hlr_range", self.hlr_range, low=0.0)
        self.knot_flux_fraction_range = checked_range(
            "knot_flux_fraction_range", self.knot_flux_fraction_range, low=0.0, high=1.0
        )
        self.n_knots_range = tuple(int(v) for v in checked_range("n_knots_range", self.n_knots_range, low=1))
        self.knot_fwhm_range = checked_range("knot_fwhm_range", self.knot_fwhm_range, low=0.0)
        if self.knot_fwhm_range[0] == 0:
            raise ValueError(f"knot_fwhm_range must be positive [arcsec], got {self.knot_fwhm_range}")
        for name in ("min_flux_in_stamp", "knot_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        survey = get_survey(self.survey)
        largest = survey.stamp_size / 2 - EXACT_HALF_WIDTH - 1
        if not 0.0 <= self.max_offset <= largest:
            raise ValueError(
                f"max_offset must lie in [0, {largest}] pixels for {survey.stamp_size}-pixel stamps, "
                f"got {self.max_offset}"
            )


def cosmos_catalog_dir():
    """Directory of the COSMOS parametric catalog shipped in the ``fpfs`` wheel, or None.

    The package is located without importing it: importing ``fpfs`` needs jax, which this
    package does not.
    """
    spec = importlib.util.find_spec("fpfs")
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = os.path.join(spec.submodule_search_locations[0], "data")
    return directory if os.path.isfile(os.path.join(directory, COSMOS_FILE)) else None


def resolve_source(source):
    """The morphology source to use: ``"cosmos"`` or ``"parametric"``.

    Raises:
        RuntimeError: ``source="cosmos"`` but the catalog is not installed.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {SOURCES}")
    available = cosmos_catalog_dir() is not None
    if source == "cosmos" and not available:
        raise RuntimeError(
            f"source='cosmos' needs the COSMOS parametric catalog {COSMOS_FILE} from the fpfs wheel: "
            "run `pip install fpfs --no-deps`, or use source='parametric' (or 'auto')"
        )
    if source == "auto":
        return "cosmos" if available else "parametric"
    return source


@functools.lru_cache(maxsize=1)
def _cosmos_catalog():
    # exclusion_level="none" keeps every row, so catalog index == row of param_cat.
    return galsim.COSMOSCatalog(
        file_name=COSMOS_FILE, dir=cosmos_catalog_dir(), use_real=False, exclusion_level="none"
    )


def _flux_in_circle(n, hlr, q, radius):
    """Fraction of a Sersic profile's flux within ``radius`` [arcsec] of its centre.

    GalSim's ``hlr`` is that of the circular profile before shearing; the major-axis radius
    ``hlr / sqrt(q)`` is used in every direction, so the fraction is underestimated.
    """
    n = np.clip(n, 0.3, 6.0)
    b = gammaincinv(2 * n, 0.5)
    # A zero radius (a component the fit does not have) must give 1, not a division warning.
    major = np.maximum(hlr / np.sqrt(np.clip(q, 1e-3, 1.0)), 1e-12)
    return gammainc(2 * n, b * (radius / major) ** (1 / n))


def _stamp_radius(config):
    """Radius [arcsec] of the circle inscribed in the stamp, around the most offset centre."""
    survey = get_survey(config.survey)
    return (survey.stamp_size / 2 - config.max_offset) * survey.pixel_scale


@functools.lru_cache(maxsize=8)
def _cosmos_selection(survey_name, mag_range, hlr_range, min_flux_in_stamp, radius):
    """Rows of the COSMOS catalog that pass the cuts, in catalog order."""
    cat = _cosmos_catalog().param_cat
    survey = get_survey(survey_name)
    bulge_disk = cat["use_bulgefit"] == 1
    flux = np.where(bulge_disk, cat["flux"][:, 1] + cat["flux"][:, 2], cat["flux"][:, 0])
    usable = (bulge_disk | (cat["viable_sersic"] == 1)) & (flux > 0)
    flux = np.where(usable, flux, 1.0)
    bulge_fraction = np.where(bulge_disk, cat["flux"][:, 1] / flux, 0.0)
    in_stamp = np.where(
        bulge_disk,
        bulge_fraction * _flux_in_circle(4.0, cat["hlr"][:, 1], cat["bulgefit"][:, 11], radius)
        + (1 - bulge_fraction) * _flux_in_circle(1.0, cat["hlr"][:, 2], cat["bulgefit"][:, 3], radius),
        _flux_in_circle(cat["sersicfit"][:, 2], cat["hlr"][:, 0], cat["sersicfit"][:, 3], radius),
    )
    mag = survey.flux_to_mag(flux)
    hlr = cat["hlr"][:, 0]
    keep = (
        usable
        & (mag >= mag_range[0]) & (mag <= mag_range[1])
        & (hlr >= hlr_range[0]) & (hlr <= hlr_range[1])
        & (in_stamp >= min_flux_in_stamp)
    )
    return np.flatnonzero(keep)


def cosmos_selection(config):
    """Rows of the COSMOS parametric catalog that ``config``'s cuts keep (needs ``fpfs``)."""
    resolve_source("cosmos")
    return _cosmos_selection(config.survey, config.mag_range, config.hlr_range,
                             config.min_flux_in_stamp, _stamp_radius(config))


@dataclasses.dataclass
class _Morphology:
    """A galaxy before rotation, knots and offset.

    Attributes:
        profile: smooth light profile, total flux in image units.
        disk: (hlr [arcsec], q, position angle [rad]) of the component knots follow, or None.
        shape: (q, position angle [rad]) of the component carrying most of the flux.
        index: catalog row, or -1.
        redshift: photometric redshift, or NaN.
    """

    profile: galsim.GSObject
    disk: tuple
    shape: tuple
    index: int
    redshift: float


def _cosmos_morphology(index):
    cat = _cosmos_catalog()
    record = cat.param_cat[index]
    profile = cat.makeGalaxy(int(index), gal_type="parametric")
    if record["use_bulgefit"]:
        fit = record["bulgefit"]
        disk = (record["hlr"][2], fit[3], fit[7])
        bulge_dominant = record["flux"][1] > record["flux"][2]
        shape = (fit[11], fit[15]) if bulge_dominant else (fit[3], fit[7])
    else:
        fit = record["sersicfit"]
        shape = (fit[3], fit[7])
        disk = (record["hlr"][0], fit[3], fit[7]) if fit[2] < _MAX_DISK_SERSIC_N else None
    return _Morphology(profile, disk, shape, int(index), float(record["zphot"]))


@dataclasses.dataclass
class _BulgeDisk:
    """Parameters of a parametric bulge + disk galaxy (sizes in arcsec, angles in radians).

    ``mag`` is the AB magnitude of the total flux in the survey's reference band (its only
    band for HST, the colour reference band for multi-band surveys).
    """

    mag: float
    disk_hlr: float
    disk_q: float
    beta: float
    bulge_fraction: float
    bulge_hlr: float
    bulge_q: float


def _draw_bulge_disk(rng, config):
    """A bulge + disk galaxy drawn from COSMOS-like distributions, by rejection until it passes the cuts.

    ``config`` needs ``survey``, ``mag_range``, ``hlr_range``, ``min_flux_in_stamp`` and
    ``max_offset`` (a :class:`GalaxySimConfig` or a blend config).
    """
    radius = _stamp_radius(config)
    slope = _COUNTS_SLOPE * math.log(10)
    lo, hi = config.mag_range
    for _ in range(_MAX_DRAWS):
        # Inverse CDF of dN/dm ∝ exp(slope · m) on [lo, hi].
        u = rng.uniform()
        mag = hi + math.log(u + (1 - u) * math.exp(-slope * (hi - lo))) / slope
        disk_hlr = 10 ** rng.normal(_LOG_HLR_AT_24 + _LOG_HLR_PER_MAG * (mag - 24), _LOG_HLR_SCATTER)
        disk_q = rng.uniform(*_DISK_Q)
        beta = rng.uniform(0, math.pi)
        bulge_fraction = rng.uniform(*_BULGE_TO_TOTAL) if rng.uniform() < _BULGE_PROBABILITY else 0.0
        bulge_hlr = disk_hlr * 10 ** rng.normal(*_LOG_BULGE_TO_DISK_HLR)
        bulge_q = rng.uniform(*_BULGE_Q)
        in_stamp = (bulge_fraction * _flux_in_circle(4.0, bulge_hlr, bulge_q, radius)
                    + (1 - bulge_fraction) * _flux_in_circle(1.0, disk_hlr, disk_q, radius))
        if config.hlr_range[0] <= disk_hlr <= config.hlr_range[1] and in_stamp >= config.min_flux_in_stamp:
            return _BulgeDisk(mag, disk_hlr, disk_q, beta, bulge_fraction, bulge_hlr, bulge_q)
    raise RuntimeError(
        f"no parametric galaxy passed the cuts in {_MAX_DRAWS} draws: widen hlr_range "
        f"{config.hlr_range} or mag_range {config.mag_range}, or lower min_flux_in_stamp "
        f"{config.min_flux_in_stamp}"
    )


def _parametric_morphology(rng, config):
    """A single-band bulge + disk galaxy drawn by :func:`_draw_bulge_disk`."""
    p = _draw_bulge_disk(rng, config)
    flux = float(get_survey(config.survey).mag_to_flux(p.mag))
    profile = galsim.Exponential(half_light_radius=p.disk_hlr, flux=(1 - p.bulge_fraction) * flux).shear(
        q=p.disk_q, beta=p.beta * galsim.radians
    )
    if p.bulge_fraction > 0:
        profile += galsim.DeVaucouleurs(half_light_radius=p.bulge_hlr, flux=p.bulge_fraction * flux).shear(
            q=p.bulge_q, beta=p.beta * galsim.radians
        )
    shape = (p.bulge_q, p.beta) if p.bulge_fraction > 0.5 else (p.disk_q, p.beta)
    return _Morphology(profile, (p.disk_hlr, p.disk_q, p.beta), shape, -1, math.nan)


# Colours: the bulge shines with an elliptical's spectrum, the disk with a spiral or irregular
# one (Coleman, Wu & Weedman templates extended to the UV, shipped with GalSim), redshifted
# and integrated through each band's throughput. GalSim ships LSST throughputs only, so
# colours are available for surveys whose band names are LSST's.
_BULGE_SED = "CWW_E_ext.sed"
_DISK_SEDS = ("CWW_Sbc_ext.sed", "CWW_Scd_ext.sed", "CWW_Im_ext.sed")
_SED_BANDPASS = "LSST_{band}.dat"
# Redshifts follow the Smail et al. form p(z) ∝ z² exp(-(z / z0)^1.5), whose mean 1.41 z0 is
# 0.9 for z0 = 0.64, about that of an i < 25.3 sample; drawn independently of magnitude.
_SMAIL_Z0 = 0.64
_MAX_REDSHIFT = 3.0


@functools.lru_cache(maxsize=None)
def _sed(name):
    return galsim.SED(name, wave_type="Ang", flux_type="flambda")


@functools.lru_cache(maxsize=None)
def _bandpass(band):
    path = os.path.join(galsim.meta_data.share_dir, "bandpasses", _SED_BANDPASS.format(band=band))
    if not os.path.isfile(path):
        raise ValueError(f"no throughput {_SED_BANDPASS.format(band=band)} in GalSim for band {band!r}; "
                         f"colours need LSST band names (u, g, r, i, z, y)")
    return galsim.Bandpass(path, "nm").withZeropoint("AB")


def sed_colours(sed_name, redshift, bands, reference_band):
    """AB magnitude in each band minus that in ``reference_band`` of a template SED at ``redshift``.

    Args:
        sed_name: SED file in GalSim's share directory (e.g. ``"CWW_E_ext.sed"``).
        redshift: redshift of the source.
        bands: LSST band names.
        reference_band: band the magnitudes are relative to.

    Returns:
        float64 array of len(bands) colours [mag].
    """
    sed = _sed(sed_name).atRedshift(redshift)
    reference = sed.calculateMagnitude(_bandpass(reference_band))
    return np.array([sed.calculateMagnitude(_bandpass(band)) - reference for band in bands])


def draw_redshift(rng):
    """A redshift from the Smail et al. distribution with z0 = 0.64, truncated at 3."""
    while True:
        # z^1.5 / z0^1.5 ~ Gamma(2): p(z) ∝ z² exp(-(z/z0)^1.5) after the change of variable.
        z = _SMAIL_Z0 * rng.gamma(2.0) ** (2 / 3)
        if z <= _MAX_REDSHIFT:
            return z


@dataclasses.dataclass
class ColourGalaxy:
    """A bulge + disk galaxy with a spectrum per component, centred at the origin.

    Attributes:
        components: list of (unit-flux ``galsim.GSObject`` in arcsec, flux per band [image units]).
        shape: (q, position angle [rad]) of the component with most reference-band flux.
        redshift: the galaxy's redshift.
        bulge_fraction: bulge share of the reference-band flux.
        seds: SED file name of each component.
    """

    components: list
    shape: tuple
    redshift: float
    bulge_fraction: float
    seds: tuple

    def profile(self, band_index):
        """The galaxy in band ``band_index`` as one ``galsim.GSObject`` (flux in image units)."""
        return galsim.Add([unit * float(fluxes[band_index]) for unit, fluxes in self.components])

    @property
    def fluxes(self):
        """Total flux per band [image units]."""
        return np.sum([fluxes for _, fluxes in self.components], axis=0)


def draw_colour_galaxy(rng, config, reference_band, round_shape=False):
    """A bulge + disk galaxy with redshifted template SEDs, its fluxes in every survey band.

    The morphology comes from :func:`_draw_bulge_disk` (``mag`` is the reference-band
    magnitude), the redshift from :func:`draw_redshift`; the bulge gets an elliptical SED and
    the disk a spiral or irregular one chosen uniformly, so bulge-dominated galaxies are redder.
    Band fluxes follow from the survey's zero points (``Survey.mag_to_flux``).

    Args:
        rng: numpy Generator.
        config: object with ``survey``, ``mag_range``, ``hlr_range``, ``min_flux_in_stamp`` and
            ``max_offset``.
        reference_band: band in which ``mag_range`` is measured.
        round_shape: make both components round (q = 1), e.g. to measure an applied shear.
    """
    survey = get_survey(config.survey)
    p = _draw_bulge_disk(rng, config)
    redshift = draw_redshift(rng)
    disk_sed = _DISK_SEDS[int(rng.integers(len(_DISK_SEDS)))]
    if round_shape:
        p.disk_q = p.bulge_q = 1.0
    reference_flux = float(survey.mag_to_flux(p.mag, reference_band))
    components, seds = [], []
    for fraction, unit, sed in (
        (1 - p.bulge_fraction, galsim.Exponential(half_light_radius=p.disk_hlr).shear(
            q=p.disk_q, beta=p.beta * galsim.radians), disk_sed),
        (p.bulge_fraction, galsim.DeVaucouleurs(half_light_radius=p.bulge_hlr).shear(
            q=p.bulge_q, beta=p.beta * galsim.radians), _BULGE_SED),
    ):
        if fraction == 0:
            continue
        mags = survey.flux_to_mag(fraction * reference_flux, reference_band) + sed_colours(
            sed, redshift, survey.bands, reference_band)
        fluxes = np.array([survey.mag_to_flux(m, band) for m, band in zip(mags, survey.bands)])
        components.append((unit, fluxes))
        seds.append(sed)
    shape = (p.bulge_q, p.beta) if p.bulge_fraction > 0.5 else (p.disk_q, p.beta)
    return ColourGalaxy(components, shape, redshift, p.bulge_fraction, tuple(seds))


def _knots(rng, disk, flux, config):
    """Gaussian star-forming knots scattered like the disk (same hlr scale and ellipticity)."""
    hlr, q, beta = disk
    count = int(rng.integers(config.n_knots_range[0], config.n_knots_range[1] + 1))
    fwhm = rng.uniform(*config.knot_fwhm_range)
    positions = galsim.RandomKnots(
        count, half_light_radius=hlr, rng=galsim.BaseDeviate(int(rng.integers(1, 2**31 - 1)))
    ).points
    # Gaussians rather than RandomKnots' point sources: the intrinsic stamp must be drawable
    # without a PSF, and real clumps are extended.
    knot = galsim.Gaussian(fwhm=fwhm, flux=flux / count)
    return galsim.Add([knot.shift(x, y) for x, y in positions]).shear(q=q, beta=beta * galsim.radians)


@dataclasses.dataclass
class _Context:
    """Everything a worker needs to simulate galaxy ``i``: config, seed, catalog order."""

    config: GalaxySimConfig
    seed: int
    order: np.ndarray  # catalog rows, galaxy i uses order[i % len(order)]; None if parametric


def _galaxy_rng(seed, i):
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))


def _simulate_one(i, context):
    """Galaxy i: (H, W) intrinsic, convolved and observed images, per-band noise sigmas, truth row."""
    config = context.config
    survey = get_survey(config.survey)
    rng = _galaxy_rng(context.seed, i)
    if context.order is None:
        morphology = _parametric_morphology(rng, config)
    else:
        morphology = _cosmos_morphology(context.order[i % len(context.order)])
    profile = morphology.profile
    flux = profile.flux
    knots = None
    if morphology.disk is not None and rng.uniform() < config.knot_probability:
        knot_fraction = rng.uniform(*config.knot_flux_fraction_range)
        knots = _knots(rng, morphology.disk, knot_fraction * flux, config)
        profile = profile * (1 - knot_fraction)
    angle = rng.uniform(0, 2 * math.pi) if config.random_rotation else 0.0
    profile = profile.rotate(angle * galsim.radians)
    if knots is not None:
        knots = knots.rotate(angle * galsim.radians)
    offset = tuple(rng.uniform(-config.max_offset, config.max_offset, size=2))

    band = survey.bands[0]
    sigma = survey.noise_sigma[0]
    intrinsic, convolved = render(profile, knots, survey, band, offset)
    observed = convolved + rng.normal(0.0, sigma, convolved.shape)

    q, beta = morphology.shape
    g = (1 - q) / (1 + q)
    phi = beta + angle
    stamp = galsim.Image(intrinsic, scale=survey.pixel_scale)
    hlr = stamp.calculateHLR(center=stamp.true_center + galsim.PositionD(*offset), flux=flux)
    truth = (morphology.index, flux, survey.flux_to_mag(flux), hlr, g * math.cos(2 * phi), g * math.sin(2 * phi),
             morphology.redshift, math.sqrt(np.sum(convolved**2)) / sigma, knots is not None, *offset)
    return intrinsic, convolved, observed, (sigma,), truth


_WORKER_CONTEXT = None


def _set_worker_context(context):
    global _WORKER_CONTEXT
    _WORKER_CONTEXT = context


def _simulate_chunk(start, stop, context=None):
    """Galaxies start … stop-1 as (start, intrinsic, convolved, observed, sigma, truth) arrays."""
    context = context or _WORKER_CONTEXT
    results = [_simulate_one(i, context) for i in range(start, stop)]
    intrinsic, convolved, observed, sigma, truth = zip(*results)
    images = [np.asarray(a, dtype=np.float32)[..., None] for a in (intrinsic, convolved, observed)]
    return (start, *images, np.asarray(sigma, dtype=np.float32), np.array(list(truth), dtype=TRUTH_DTYPE))


def _simulate_chunk_in_worker(bounds):
    return _simulate_chunk(*bounds)


def simulate_galaxies(n, config=None, seed=0, progress=False, processes=1):
    """Simulate ``n`` isolated galaxies: intrinsic, PSF-convolved and noisy stamps with their truth.

    Galaxy ``i`` draws every random number from its own generator seeded by ``(seed, i)``, so
    a seed always gives the same galaxies, whatever ``processes``. With the COSMOS source, the
    catalog rows that pass the cuts are taken in a random order fixed by ``seed``, so no row
    repeats until every one has been used: :meth:`GalaxySet.split` then separates distinct
    galaxies.

    Args:
        n: number of galaxies.
        config: :class:`GalaxySimConfig`; default ``GalaxySimConfig()``.
        seed: non-negative integer.
        progress: show a tqdm progress bar.
        processes: worker processes (forked); 1 runs in this process.

    Returns:
        :class:`GalaxySet` whose ``config.source`` is the source actually used.
    """
    check_count("n", n)
    check_seed(seed)
    check_count("processes", processes)
    config = config or GalaxySimConfig()
    config = dataclasses.replace(config, source=resolve_source(config.source))
    survey = get_survey(config.survey)
    if len(survey.bands) != 1:
        raise NotImplementedError(
            f"survey {survey.name!r} has bands {survey.bands}; simulate_galaxies makes single-band stamps. "
            "For multi-band galaxies with colours use lenstronomy_vae.blends.simulate_blends "
            "(n_objects_range=(1, 1) for isolated ones)"
        )
    order = None
    if config.source == "cosmos":
        rows = cosmos_selection(config)
        if len(rows) == 0:
            raise ValueError(f"no COSMOS galaxy passes the cuts of {config}; widen them")
        order = np.random.default_rng(np.random.SeedSequence(seed)).permutation(rows)
    context = _Context(config, int(seed), order)

    size = survey.stamp_size
    images = [np.empty((n, size, size, 1), dtype=np.float32) for _ in range(3)]
    sigma = np.empty((n, 1), dtype=np.float32)
    truth = np.empty(n, dtype=TRUTH_DTYPE)
    chunk = max(1, min(64, n // (8 * processes)))
    bounds = [(start, min(start + chunk, n)) for start in range(0, n, chunk)]
    with tqdm(total=n, disable=not progress, unit="galaxy", desc="simulating") as bar:
        if processes == 1:
            results = (_simulate_chunk(start, stop, context) for start, stop in bounds)
            _collect(results, images, sigma, truth, bar)
        else:
            pool_context = multiprocessing.get_context("fork")
            with pool_context.Pool(min(processes, len(bounds)), _set_worker_context, (context,)) as pool:
                _collect(pool.imap(_simulate_chunk_in_worker, bounds), images, sigma, truth, bar)
    return GalaxySet(*images, sigma, truth, config, int(seed))


def _collect(results, images, sigma, truth, bar):
    for start, *chunk_images, chunk_sigma, chunk_truth in results:
        stop = start + len(chunk_truth)
        for target, source in zip(images, chunk_images):
            target[start:stop] = source
        sigma[start:stop] = chunk_sigma
        truth[start:stop] = chunk_truth
        bar.update(stop - start)


@dataclasses.dataclass
class GalaxySet(SurveySet, HDF5Set):
    """Simulated galaxy stamps and their truth.

    Images are float32 arrays of shape (n, H, W, bands) in the survey's image units (flux per
    pixel, e.g. e-/s for HST), centred on the stamp up to the truth's (dx, dy).

    Attributes:
        intrinsic: galaxy without PSF, integrated over pixels: the VAE decoder's target.
        convolved: galaxy convolved with the survey PSF, integrated over pixels, noiseless. As in
            lenstronomy's forward model of a stamp, the PSF is a stamp-wide kernel normalised to
            unit sum (HST's Airy wings put ~2 % of the light beyond it) and no light comes in
            from beyond the stamp. It matches GalSim's own rendering to 0.15 % of the peak
            (median; 0.9 % at worst for compact bulges) away from the stamp edges.
        observed: ``convolved`` plus Gaussian noise of standard deviation ``noise_sigma``.
        noise_sigma: (n, bands) float32 noise standard deviation per pixel [image units].
        truth: structured array of :data:`TRUTH_DTYPE`, one row per galaxy.
        config: the :class:`GalaxySimConfig` that generated the set (source resolved).
        seed: the seed given to :func:`simulate_galaxies`.
    """

    FILE_FORMAT = FILE_FORMAT
    ARRAYS = _ARRAYS
    CONFIG = GalaxySimConfig

    intrinsic: np.ndarray
    convolved: np.ndarray
    observed: np.ndarray
    noise_sigma: np.ndarray
    truth: np.ndarray
    config: GalaxySimConfig
    seed: int

    def __post_init__(self):
        n = len(self.truth)
        shape = self.intrinsic.shape
        for name in ("intrinsic", "convolved", "observed"):
            if getattr(self, name).shape != shape or shape[0] != n:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}; expected (n={n}, H, W, bands) "
                                 f"like intrinsic {shape}")
        if self.noise_sigma.shape != (n, shape[-1]):
            raise ValueError(f"noise_sigma has shape {self.noise_sigma.shape}; expected {(n, shape[-1])}")

    def __len__(self):
        return len(self.truth)

    def split(self, n_first):
        """The first ``n_first`` galaxies and the rest, as two sets (e.g. held-out and training)."""
        if isinstance(n_first, bool) or not isinstance(n_first, (int, np.integer)) or not 0 < n_first < len(self):
            raise ValueError(f"n_first must be an integer in [1, {len(self) - 1}] for a set of {len(self)}, "
                             f"got {n_first!r}")
        return self._subset(slice(0, n_first)), self._subset(slice(n_first, None))

    def _subset(self, rows):
        return GalaxySet(self.intrinsic[rows], self.convolved[rows], self.observed[rows],
                         self.noise_sigma[rows], self.truth[rows], self.config, self.seed)
