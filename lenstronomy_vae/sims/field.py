"""Large LSST-like fields: galaxies scattered at random over an image of any size, with their truth.

The galaxies are those of the blend simulator (:func:`lenstronomy_vae.sims.colours.draw_colour_galaxy`:
bulge + disk, template-SED colours, the configuration's magnitude and size ranges), at uniform random
positions, drawn through the survey PSF of each band and added to the field; the noise is Poisson of
(galaxies + sky), sky-subtracted, so the image is in the survey's image units. Fields test and
benchmark deblending at scale (:func:`lenstronomy_vae.deblending.deblend_field`): the truth says
where every galaxy is.

Example::

    field = simulate_field((1024, 1024), density=60, seed=1)
    field.save_fits("field.fits")   # a (bands, H, W) cube that ``lenstronomy-vae deblend`` reads
"""

import dataclasses
import functools
import math

import galsim
import numpy as np
from astropy.io import fits
from astropy.nddata.utils import add_array
from astropy.table import Table
from tqdm import tqdm

from lenstronomy_vae.sims.blends import BlendSimConfig
from lenstronomy_vae.sims.colours import draw_colour_galaxy
from lenstronomy_vae.sims.rendering import render
from lenstronomy_vae.sims.surveys import get_survey
from lenstronomy_vae.utils.checks import check_count, check_seed
from lenstronomy_vae.utils.files import atomic_path
from lenstronomy_vae.utils.parallel import chunk_bounds, parallel_map

ARCMIN2_PER_ARCSEC2 = 1.0 / 3600.0


def _rng(seed, stream, index=0):
    """Independent generators: positions (0), galaxy ``index`` (1), noise (2)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index)))


def _galaxy_stamps(bounds, positions, config, seed):
    """PSF-convolved stamps (n, S, S, bands) and truth rows of galaxies start … stop-1."""
    start, stop = bounds
    survey = get_survey(config.survey)
    stamps = np.empty((stop - start, survey.stamp_size, survey.stamp_size, len(survey.bands)), dtype=np.float32)
    rows = []
    for k in range(start, stop):
        rng = _rng(seed, 1, k)
        galaxy = draw_colour_galaxy(rng, config, config.reference_band)
        angle = rng.uniform(0, 2 * math.pi)
        x, y = positions[k]
        offset = (x - round(x), y - round(y))  # within the stamp centred on the nearest pixel
        for b, band in enumerate(survey.bands):
            profile = galaxy.profile(b).rotate(angle * galsim.radians)
            stamps[k - start, :, :, b] = render(profile, None, survey, band, offset)[1]
        q, beta = galaxy.shape
        g = (1 - q) / (1 + q)
        rows.append((k, x, y, galaxy.fluxes, galaxy.redshift, g * math.cos(2 * (beta + angle)),
                     g * math.sin(2 * (beta + angle))))
    return start, stamps, rows


@dataclasses.dataclass
class FieldSet:
    """A simulated field and its truth.

    Attributes:
        image: (H, W, bands) float32 noisy field, sky-subtracted [image units].
        truth: astropy Table, one row per galaxy: ``x`` (column), ``y`` (row) [pixels, pixel centres
            at integers], ``flux`` (bands,) [image units, the whole galaxy], ``redshift``, and
            ``g1``, ``g2`` (reduced-shear convention, (1 − q)/(1 + q) · (cos 2φ, sin 2φ) of the
            dominant component).
        config: the :class:`~lenstronomy_vae.sims.blends.BlendSimConfig` of the galaxies.
        density: galaxies per square arcminute asked for.
        seed: the seed of :func:`simulate_field`.
    """

    image: np.ndarray
    truth: Table
    config: BlendSimConfig
    density: float
    seed: int

    @property
    def survey(self):
        return get_survey(self.config.survey)

    def save_fits(self, path):
        """Write the field as a (bands, H, W) cube (primary HDU, ``BANDS`` in its header) and the truth
        (a ``TRUTH`` table HDU), atomically."""
        header = fits.Header()
        header["BANDS"] = " ".join(self.survey.bands)
        header["BUNIT"] = self.survey.flux_unit
        header["PIXSCALE"] = (self.survey.pixel_scale, "arcsec per pixel")
        header["DENSITY"] = (self.density, "galaxies per arcmin^2 asked for")
        header["SEED"] = self.seed
        primary = fits.PrimaryHDU(np.moveaxis(self.image, -1, 0), header=header)
        truth = fits.table_to_hdu(self.truth)
        truth.name = "TRUTH"
        with atomic_path(path) as tmp:
            fits.HDUList([primary, truth]).writeto(tmp, overwrite=True)


def simulate_field(shape, density, config=None, seed=0, progress=False, processes=1):
    """Simulate a field of ``shape`` pixels with ``density`` galaxies per square arcminute on average.

    The number of galaxies is Poisson with mean ``density`` × the field's area; their centres are
    uniform over the image (galaxies near the edges are cut by them). Galaxy ``k`` is drawn from a
    generator seeded by ``(seed, k)``, so a seed gives the same field whatever ``processes``.

    Args:
        shape: (H, W) [pixels].
        density: mean number of galaxies per square arcminute (LSST's 10-year i < 25.3 sample: ~40).
        config: :class:`~lenstronomy_vae.sims.blends.BlendSimConfig` for the galaxies (survey,
            magnitudes, sizes); its placement and shear fields are not used. Default ``BlendSimConfig()``.
        seed: non-negative integer.
        progress: show a tqdm progress bar.
        processes: worker processes (forked).

    Returns:
        :class:`FieldSet`.
    """
    try:
        height, width = (int(n) for n in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (H, W) in pixels, got {shape!r}") from None
    check_count("height", height)
    check_count("width", width)
    if not (math.isfinite(density) and density >= 0):
        raise ValueError(f"density must be a non-negative number of galaxies per arcmin², got {density!r}")
    check_seed(seed)
    check_count("processes", processes)
    config = config or BlendSimConfig()
    survey = get_survey(config.survey)
    area = height * width * survey.pixel_scale**2 * ARCMIN2_PER_ARCSEC2
    rng = _rng(seed, 0)
    n = int(rng.poisson(density * area))
    positions = np.column_stack([rng.uniform(-0.5, width - 0.5, n), rng.uniform(-0.5, height - 0.5, n)])
    image = np.zeros((height, width, len(survey.bands)), dtype=np.float32)
    rows = []
    work = functools.partial(_galaxy_stamps, positions=positions, config=config, seed=int(seed))
    with tqdm(total=n, disable=not progress, unit="galaxy", desc="simulating field") as bar:
        for start, stamps, chunk_rows in parallel_map(work, chunk_bounds(n, processes, 64), processes):
            for (x, y), stamp in zip(positions[start:start + len(stamps)], stamps):
                for b in range(stamp.shape[-1]):
                    add_array(image[:, :, b], stamp[:, :, b], (int(round(y)), int(round(x))))
            rows.extend(chunk_rows)
            bar.update(len(stamps))
    rows.sort(key=lambda row: row[0])
    sky = np.asarray(survey.sky_levels, dtype=np.float64)
    noise = _rng(seed, 2)
    for b in range(image.shape[-1]):  # band by band: the field's float64 mean never exists whole
        image[:, :, b] = noise.poisson(np.clip(image[:, :, b], 0.0, None) + sky[b]) - sky[b]
    columns = list(zip(*rows)) if rows else [[]] * 7
    truth = Table()
    for k, name in enumerate(("x", "y", "flux", "redshift", "g1", "g2"), start=1):
        truth[name] = np.array(columns[k], dtype=np.float64)
    truth["flux"] = truth["flux"].reshape(len(rows), len(survey.bands))
    return FieldSet(image, truth, config, float(density), int(seed))
