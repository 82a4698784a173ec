"""Multi-band blended scenes: a centred target galaxy and up to three neighbours, with their truth.

Each scene holds 1–4 bulge + disk galaxies with template-SED colours
(:func:`lenstronomy_vae.sims.colours.draw_colour_galaxy`), drawn through the survey PSF of each
band. Noise is Poisson of (source + sky), sky-subtracted, so the images are in the survey's
image units (for :data:`lenstronomy_vae.sims.surveys.LSST`, electrons of the full 10-year exposure).
A deblender learns to map ``blend`` to ``target``; a weak-lensing regressor learns the
target's shape (``g1``, ``g2``) or the applied ``shear``.

Example::

    scenes = simulate_blends(1000, BlendSimConfig(), seed=1)
    scenes.save_hdf5("data/lsst_blends.h5")
"""

import dataclasses
import functools
import math

import galsim
import numpy as np
from tqdm import tqdm

from lenstronomy_vae.sims.colours import draw_colour_galaxy
from lenstronomy_vae.sims.config import SimConfig
from lenstronomy_vae.sims.datasets import HDF5Set
from lenstronomy_vae.sims.morphology import COUNTS_SLOPE
from lenstronomy_vae.sims.rendering import render
from lenstronomy_vae.sims.shapes import truth_shapes
from lenstronomy_vae.sims.surveys import SurveySet, get_survey
from lenstronomy_vae.utils.checks import check_count, check_seed, checked_range
from lenstronomy_vae.utils.parallel import chunk_bounds, parallel_map

FILE_FORMAT = "lenstronomy_vae.BlendSet/1"
_ARRAYS = ("blend", "isolated", "target_intrinsic", "target_noisy", "n_objects", "truth")


def truth_dtype(n_bands):
    """Structured dtype of one truth row (one galaxy of one scene) for ``n_bands`` bands."""
    return np.dtype([
        ("scene", np.int64),          # scene index
        ("object", np.int64),         # index in the scene; 0 is the target
        ("dx", np.float64),           # centre minus stamp centre along x (columns) [pixels]
        ("dy", np.float64),           # same along y (rows) [pixels]
        ("flux", np.float64, (n_bands,)),  # total flux per band [image units], also beyond the stamp
        ("redshift", np.float64),
        ("bulge_fraction", np.float64),  # bulge share of the reference-band flux
        ("g1", np.float64),           # input shape (1 - q)/(1 + q) · cos 2φ of the dominant component,
        ("g2", np.float64),           # · sin 2φ, with the applied shear added (GalSim's shear addition)
        ("hsm_g1", np.float64),       # adaptive-moment shape of the noiseless PSF-convolved isolated
        ("hsm_g2", np.float64),       # image in measure_band (reduced-shear convention); NaN if it failed
        ("regauss_g1", np.float64),   # the same shape corrected for the PSF by re-Gaussianization
        ("regauss_g2", np.float64),   # (GalSim hsm.EstimateShear), as a reduced shear; NaN if it failed
        ("snr", np.float64),          # sqrt(Σ I² / (I + sky)) of the isolated noiseless image, measure_band
        ("blendedness", np.float64),  # 1 - Σ I² / Σ I · blend over noiseless images, measure_band
    ])


@dataclasses.dataclass
class BlendSimConfig(SimConfig):
    """What scenes to simulate.

    Attributes:
        survey: key of :data:`lenstronomy_vae.sims.surveys.SURVEYS`; needs LSST band names.
        mag_range: AB magnitudes (min, max) of each galaxy in ``reference_band``.
        hlr_range: disk half-light radius (min, max) [arcsec].
        counts_slope: magnitudes are drawn from dN/dm ∝ 10^(counts_slope · m) over ``mag_range``:
            0.55 follows the COSMOS counts; training sets use a flatter slope (e.g. 0.15) so that
            bright galaxies are not rare.
        min_flux_in_stamp: least fraction of the target's flux inside the stamp (see
            :class:`lenstronomy_vae.sims.galaxies.GalaxySimConfig`).
        max_offset: largest shift of the target from the stamp centre along each axis [pixels].
        n_objects_range: (min, max) galaxies per scene, target included, drawn uniformly.
        neighbour_max_offset: largest shift of a neighbour from the stamp centre along each axis
            [pixels], before the shear.
        close_fraction: probability that a neighbour is placed close instead, within
            ``close_max_offset`` of the centre along each axis: compact groups like BlendingToolKit's
            (all galaxies within ±0.9″) and pairs well inside a PSF FWHM.
        close_max_offset: largest shift of a close neighbour along each axis [pixels] (4.5 px = 0.9″
            on LSST's 0.2″ pixels).
        reference_band: band in which ``mag_range`` applies.
        measure_band: band of the shapes, S/N and blendedness in the truth.
        shear: reduced shear (g1, g2) applied to every galaxy and to the neighbours' positions.
        round_galaxies: give every galaxy axis ratio 1, so measured shapes are the shear's.
        quarter_turn: turn every galaxy by a further 90° (π/2 rad) before the shear, which
            negates its intrinsic (g1, g2). With the same seed, the sets with and without it
            hold the same galaxies with opposite intrinsic shapes: their shape noise cancels
            in a shear-bias measurement.
    """

    survey: str = "lsst"
    mag_range: tuple = (17.0, 26.0)
    hlr_range: tuple = (0.05, 2.0)
    counts_slope: float = COUNTS_SLOPE
    min_flux_in_stamp: float = 0.9
    max_offset: float = 0.5
    n_objects_range: tuple = (1, 4)
    neighbour_max_offset: float = 15.0
    close_fraction: float = 0.3
    close_max_offset: float = 4.5
    reference_band: str = "i"
    measure_band: str = "i"
    shear: tuple = (0.0, 0.0)
    round_galaxies: bool = False
    quarter_turn: bool = False

    def __post_init__(self):
        super().__post_init__()
        survey = get_survey(self.survey)
        if survey.sky_levels is None:
            raise ValueError(f"survey {self.survey!r} has no sky_levels; blends need a ground survey "
                             f"with Poisson sky noise, e.g. 'lsst'")
        for name in ("reference_band", "measure_band"):
            survey.band_index(getattr(self, name))
        low, high = checked_range("n_objects_range", self.n_objects_range, low=1)
        if low != int(low) or high != int(high):
            raise ValueError(f"n_objects_range must be two integers, got {self.n_objects_range!r}")
        self.n_objects_range = (int(low), int(high))
        try:
            g1, g2 = (float(g) for g in self.shear)
        except (TypeError, ValueError):
            raise ValueError(f"shear must be two numbers (g1, g2), got {self.shear!r}") from None
        if math.hypot(g1, g2) >= 1:
            raise ValueError(f"shear {self.shear} has |g| >= 1; a reduced shear needs |g| < 1")
        self.shear = (g1, g2)
        largest = self.largest_offset
        # Largest factor the shear matrix stretches a coordinate by (its max-row-sum norm).
        stretch = (1 + abs(g1) + abs(g2)) / math.sqrt(1 - g1 * g1 - g2 * g2)
        if not 0.0 <= self.close_fraction <= 1.0:
            raise ValueError(f"close_fraction must lie in [0, 1], got {self.close_fraction}")
        if not 0.0 <= self.close_max_offset * stretch <= largest:
            raise ValueError(f"close_max_offset {self.close_max_offset} pixels puts a sheared neighbour beyond "
                             f"{largest} pixels of the centre; keep it in [0, {largest / stretch:.2f}]")
        if not 0.0 <= self.neighbour_max_offset * stretch <= largest:
            raise ValueError(
                f"neighbour_max_offset {self.neighbour_max_offset} pixels puts a sheared neighbour beyond "
                f"{largest} pixels of the centre of {survey.stamp_size}-pixel stamps; keep it in "
                f"[0, {largest / stretch:.2f}]"
            )


def _rng(seed, scene, stream):
    """Independent generators per scene for galaxies (0), blend noise (1) and target noise (2),
    so the galaxies of a seed do not depend on how their noise is drawn."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(scene, stream)))


def _poisson_noisy(image, sky, rng):
    """Sky-subtracted Poisson realisation of ``image`` (H, W, bands) over ``sky`` (bands,)."""
    # FFT ringing leaves ~1e-12 negative pixels, which are not valid Poisson means.
    mean = np.clip(image, 0.0, None) + sky
    return (rng.poisson(mean) - sky).astype(np.float32)


def _psf_image(survey, band):
    """The PSF with its pixel response on the stamp grid, as HSM's PSF-correction needs."""
    size = survey.stamp_size
    return survey.psf(band).drawImage(nx=size, ny=size, scale=survey.pixel_scale)


def _simulate_scene(i, config, seed, psf_image):
    """Scene i: noisy blend, per-object noiseless images, target intrinsic and noisy images, truth rows."""
    survey = get_survey(config.survey)
    bands = survey.bands
    sky = np.asarray(survey.sky_levels)
    measure = survey.band_index(config.measure_band)
    rng = _rng(seed, i, 0)
    n_objects = int(rng.integers(config.n_objects_range[0], config.n_objects_range[1] + 1))
    applied = galsim.Shear(g1=config.shear[0], g2=config.shear[1])
    size = survey.stamp_size

    isolated = np.zeros((n_objects, size, size, len(bands)))
    target_intrinsic = np.zeros((size, size, len(bands)))
    rows = []
    for k in range(n_objects):
        galaxy = draw_colour_galaxy(rng, config, config.reference_band, round_shape=config.round_galaxies)
        angle = rng.uniform(0, 2 * math.pi) + (math.pi / 2 if config.quarter_turn else 0.0)
        if k == 0:
            limit = config.max_offset
        elif config.close_fraction > 0 and rng.uniform() < config.close_fraction:
            limit = config.close_max_offset
        else:
            limit = config.neighbour_max_offset
        # Lensing shears positions as well as shapes: the neighbours' offsets go through the shear matrix.
        offset = tuple(applied.getMatrix() @ rng.uniform(-limit, limit, size=2))
        for b, band in enumerate(bands):
            profile = galaxy.profile(b).rotate(angle * galsim.radians).shear(applied)
            intrinsic, isolated[k, :, :, b] = render(profile, None, survey, band, offset)
            if k == 0:
                target_intrinsic[:, :, b] = intrinsic
        q, beta = galaxy.shape
        g = (1 - q) / (1 + q)
        shape = galsim.Shear(g=g, beta=(beta + angle) * galsim.radians) + applied
        image = isolated[k, :, :, measure]
        snr = math.sqrt(np.sum(image**2 / (np.clip(image, 0, None) + sky[measure])))
        rows.append([i, k, *offset, galaxy.fluxes, galaxy.redshift, galaxy.bulge_fraction, shape.g1, shape.g2,
                     *truth_shapes(image, psf_image, survey.pixel_scale, offset), snr])

    blend_noiseless = isolated.sum(axis=0)
    for k, row in enumerate(rows):
        image = isolated[k, :, :, measure]
        # An object alone in its scene has Σ I·blend = Σ I²: blendedness exactly 0.
        overlap = np.sum(image * blend_noiseless[:, :, measure])
        row.append(1.0 - np.sum(image**2) / overlap if overlap > 0 else 0.0)
    blend = _poisson_noisy(blend_noiseless, sky, _rng(seed, i, 1))
    target_noisy = _poisson_noisy(isolated[0], sky, _rng(seed, i, 2))
    return blend, isolated, target_intrinsic, target_noisy, [tuple(row) for row in rows]


def _simulate_scenes(bounds, config, seed, psf_image):
    """Scenes start … stop-1, as (start, list of :func:`_simulate_scene` results)."""
    start, stop = bounds
    return start, [_simulate_scene(i, config, seed, psf_image) for i in range(start, stop)]


def simulate_blends(n, config=None, seed=0, progress=False, processes=1):
    """Simulate ``n`` blended scenes with their isolated targets and truth.

    Scene ``i`` draws its galaxies and each of its noise fields from generators seeded by
    ``(seed, i)``, so a seed always gives the same scenes, whatever ``processes``; and two
    configs that differ only in ``shear`` or ``quarter_turn`` give the same galaxies.

    Args:
        n: number of scenes.
        config: :class:`BlendSimConfig`; default ``BlendSimConfig()``.
        seed: non-negative integer.
        progress: show a tqdm progress bar.
        processes: worker processes (forked); 1 runs in this process.

    Returns:
        :class:`BlendSet`.
    """
    check_count("n", n)
    check_seed(seed)
    check_count("processes", processes)
    config = config or BlendSimConfig()
    survey = get_survey(config.survey)
    size, n_bands, max_objects = survey.stamp_size, len(survey.bands), config.n_objects_range[1]
    psf_image = _psf_image(survey, config.measure_band)

    blend = np.empty((n, size, size, n_bands), dtype=np.float32)
    isolated = np.zeros((n, max_objects, size, size, n_bands), dtype=np.float32)
    target_intrinsic = np.empty_like(blend)
    target_noisy = np.empty_like(blend)
    n_objects = np.empty(n, dtype=np.int64)
    rows = [None] * n
    work = functools.partial(_simulate_scenes, config=config, seed=int(seed), psf_image=psf_image)
    with tqdm(total=n, disable=not progress, unit="scene", desc="simulating") as bar:
        for start, scenes in parallel_map(work, chunk_bounds(n, processes, 32), processes):
            for i, (scene_blend, scene_isolated, intrinsic, noisy, scene_rows) in enumerate(scenes, start):
                blend[i], target_intrinsic[i], target_noisy[i] = scene_blend, intrinsic, noisy
                n_objects[i] = len(scene_rows)
                isolated[i, :len(scene_rows)] = scene_isolated
                rows[i] = scene_rows
            bar.update(len(scenes))
    truth = np.array([row for scene_rows in rows for row in scene_rows], dtype=truth_dtype(n_bands))
    return BlendSet(blend, isolated, target_intrinsic, target_noisy, n_objects, truth, config, int(seed))


@dataclasses.dataclass
class BlendSet(SurveySet, HDF5Set):
    """Simulated scenes, their isolated galaxies and truth.

    Images are float32 (n, H, W, bands) arrays in the survey's image units, sky-subtracted.

    Attributes:
        blend: the noisy scene: Poisson noise of (all galaxies + sky), minus the sky.
        isolated: (n, max_objects, H, W, bands) noiseless PSF-convolved image of each galaxy
            alone, object 0 the target; zeros beyond ``n_objects``.
        target_intrinsic: the target without PSF, integrated over pixels (a VAE decoder's target).
        target_noisy: the target alone with its own Poisson noise (independent of ``blend``'s).
        n_objects: (n,) galaxies in each scene.
        truth: one row per galaxy of :func:`truth_dtype`, scene by scene, target first.
        config: the :class:`BlendSimConfig` that generated the set (its ``shear`` is the applied shear).
        seed: the seed given to :func:`simulate_blends`.
    """

    FILE_FORMAT = FILE_FORMAT
    ARRAYS = _ARRAYS
    CONFIG = BlendSimConfig

    blend: np.ndarray
    isolated: np.ndarray
    target_intrinsic: np.ndarray
    target_noisy: np.ndarray
    n_objects: np.ndarray
    truth: np.ndarray
    config: BlendSimConfig
    seed: int

    def __post_init__(self):
        n, shape = len(self.n_objects), self.blend.shape
        for name in ("target_intrinsic", "target_noisy"):
            if getattr(self, name).shape != shape or shape[0] != n:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}; expected blend's {shape} "
                                 f"with n={n} scenes")
        if self.isolated.shape[:1] + self.isolated.shape[2:] != shape:
            raise ValueError(f"isolated has shape {self.isolated.shape}; expected (n, max_objects) + {shape[1:]}")
        if len(self.truth) != int(np.sum(self.n_objects)):
            raise ValueError(f"truth has {len(self.truth)} rows but n_objects adds up to {int(np.sum(self.n_objects))}")

    def __len__(self):
        return len(self.n_objects)

    @property
    def observed(self):
        """The target alone with noise, (n, H, W, bands): what a VAE's encoder sees in training."""
        return self.target_noisy

    @property
    def intrinsic(self):
        """The target without PSF, (n, H, W, bands): what a VAE's decoder is scored against."""
        return self.target_intrinsic

    @property
    def noise_sigma(self):
        """(n, bands) sky-only noise standard deviation per pixel, sqrt(sky level) [image units].

        Faint galaxies are sky-limited; a galaxy's own Poisson noise adds to it at its core.
        """
        return np.broadcast_to(np.sqrt(np.asarray(self.survey.sky_levels, dtype=np.float32)),
                               (len(self), len(self.bands)))

    def split(self, n_first):
        """The first ``n_first`` scenes and the rest, as two sets (e.g. held-out and training)."""
        check_count("n_first", n_first)
        if n_first >= len(self):
            raise ValueError(f"n_first must be below the set's {len(self)} scenes, got {n_first}")
        first_rows = int(np.sum(self.n_objects[:n_first]))
        return self._subset(slice(0, n_first), slice(0, first_rows)), self._subset(slice(n_first, None),
                                                                                   slice(first_rows, None))

    def _subset(self, scenes, rows):
        return BlendSet(self.blend[scenes], self.isolated[scenes], self.target_intrinsic[scenes],
                        self.target_noisy[scenes], self.n_objects[scenes], self.truth[rows], self.config, self.seed)

    @property
    def target(self):
        """Noiseless PSF-convolved isolated target, (n, H, W, bands): the deblender's target."""
        return self.isolated[:, 0]

    @property
    def blend_noiseless(self):
        """Noiseless scene, (n, H, W, bands): the sum of the isolated galaxies."""
        return self.isolated.sum(axis=1)

    @property
    def target_truth(self):
        """The truth rows of the targets, one per scene."""
        return self.truth[self.truth["object"] == 0]
