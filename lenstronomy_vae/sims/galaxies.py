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
import math

import galsim
import numpy as np
from tqdm import tqdm

from lenstronomy_vae.sims.catalog import SOURCES, cosmos_selection, resolve_source
from lenstronomy_vae.sims.config import SimConfig
from lenstronomy_vae.sims.datasets import HDF5Set
from lenstronomy_vae.sims.morphology import COUNTS_SLOPE, cosmos_morphology, draw_knots, parametric_morphology
from lenstronomy_vae.sims.rendering import render
from lenstronomy_vae.sims.surveys import SurveySet, get_survey
from lenstronomy_vae.utils.checks import check_count, check_seed, checked_range
from lenstronomy_vae.utils.parallel import chunk_bounds, parallel_map

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


@dataclasses.dataclass
class GalaxySimConfig(SimConfig):
    """What galaxies to simulate and how.

    Attributes:
        survey: key of :data:`lenstronomy_vae.sims.surveys.SURVEYS` (pixel scale, stamp, PSF, noise); a
            single-band one (for multi-band galaxies, see :mod:`lenstronomy_vae.sims.blends`).
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
        spiral_probability: probability that a galaxy's knots lie along logarithmic spiral arms of its
            disk rather than scattered like it (0: none, and the galaxies are those of a config without
            this field).
        n_arms_range: (min, max) number of spiral arms, inclusive.
        arm_knots_range: (min, max) number of knots of a spiral galaxy, inclusive (instead of
            ``n_knots_range``: arms need more, fainter knots to be seen as arms).
        arm_pitch_range: (min, max) pitch angle of the arms [radians] (0.17–0.52: 10°–30°).
        irregular_probability: probability that a knotted galaxy without arms is irregular: its knots
            carry ``irregular_flux_fraction_range`` of the flux and sit together off the disk centre, shifted
            by ``irregular_shift_range`` (min, max) times the disk's hlr (0: none, and the galaxies are those
            of a config without these fields).
        counts_slope: parametric magnitudes are drawn from dN/dm ∝ 10^(counts_slope · m) over
            ``mag_range`` (0.55 follows the COSMOS counts; COSMOS rows keep the catalogue's counts).
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
    spiral_probability: float = 0.0
    n_arms_range: tuple = (2, 4)
    arm_knots_range: tuple = (60, 150)
    arm_pitch_range: tuple = (0.17, 0.52)
    irregular_probability: float = 0.0
    irregular_flux_fraction_range: tuple = (0.3, 0.6)
    irregular_shift_range: tuple = (0.3, 1.0)
    counts_slope: float = COUNTS_SLOPE
    max_offset: float = 0.5
    random_rotation: bool = True

    def __post_init__(self):
        super().__post_init__()
        bands = get_survey(self.survey).bands
        if len(bands) != 1:
            raise ValueError(f"survey {self.survey!r} has bands {bands}; isolated galaxy stamps are single-band. For "
                             "multi-band galaxies with colours simulate blends with one object each (`lenstronomy-vae "
                             "simulate-blends --objects 1 1`, or simulate_blends with n_objects_range=(1, 1))")
        if self.source not in SOURCES:
            raise ValueError(f"unknown source {self.source!r}; choose one of {SOURCES}")
        self.knot_flux_fraction_range = checked_range(
            "knot_flux_fraction_range", self.knot_flux_fraction_range, low=0.0, high=1.0
        )
        self.n_knots_range = tuple(int(v) for v in checked_range("n_knots_range", self.n_knots_range, low=1))
        self.knot_fwhm_range = checked_range("knot_fwhm_range", self.knot_fwhm_range, low=0.0)
        if self.knot_fwhm_range[0] == 0:
            raise ValueError(f"knot_fwhm_range must be positive [arcsec], got {self.knot_fwhm_range}")
        for name in ("knot_probability", "spiral_probability", "irregular_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        self.n_arms_range = tuple(int(v) for v in checked_range("n_arms_range", self.n_arms_range, low=1))
        self.arm_knots_range = tuple(int(v) for v in checked_range("arm_knots_range", self.arm_knots_range, low=1))
        self.arm_pitch_range = checked_range("arm_pitch_range", self.arm_pitch_range, low=0.0, high=math.pi / 2)
        if self.arm_pitch_range[0] == 0 or self.arm_pitch_range[1] == math.pi / 2:
            raise ValueError(f"arm_pitch_range must lie inside (0, π/2) [radians], got {self.arm_pitch_range}")
        self.irregular_flux_fraction_range = checked_range(
            "irregular_flux_fraction_range", self.irregular_flux_fraction_range, low=0.0, high=1.0
        )
        self.irregular_shift_range = checked_range("irregular_shift_range", self.irregular_shift_range, low=0.0)


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
        morphology = parametric_morphology(rng, config)
    else:
        morphology = cosmos_morphology(context.order[i % len(context.order)])
    profile = morphology.profile
    flux = profile.flux
    knots = None
    if morphology.disk is not None and rng.uniform() < config.knot_probability:
        knots, knot_fraction = draw_knots(rng, morphology.disk, flux, config)
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


def _simulate_chunk(bounds, context):
    """Galaxies start … stop-1 as (start, intrinsic, convolved, observed, sigma, truth) arrays."""
    start, stop = bounds
    results = [_simulate_one(i, context) for i in range(start, stop)]
    intrinsic, convolved, observed, sigma, truth = zip(*results)
    images = [np.asarray(a, dtype=np.float32)[..., None] for a in (intrinsic, convolved, observed)]
    return (start, *images, np.asarray(sigma, dtype=np.float32), np.array(list(truth), dtype=TRUTH_DTYPE))


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
    work = functools.partial(_simulate_chunk, context=context)
    with tqdm(total=n, disable=not progress, unit="galaxy", desc="simulating") as bar:
        _collect(parallel_map(work, chunk_bounds(n, processes, 64), processes), images, sigma, truth, bar)
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
