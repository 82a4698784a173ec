"""Our deblender inside BlendingToolKit (BTK 1.0.9): a ``btk.deblend.Deblender``, and BTK's generators, fixed.

Needs the optional ``blending-toolkit`` package (see the README, "BlendingToolKit"); the rest of
:mod:`lenstronomy_vae.deblending` does not import this module.

.. code-block:: python

    import btk
    from lenstronomy_vae.deblending.btk_adapter import CatsimGenerator, VAEDeblender
    from lenstronomy_vae.sims.catsim import catsim_catalog

    catalog = btk.catalog.CatsimCatalog(catsim_catalog(2000))
    sampling = btk.sampling_functions.DefaultSampling(max_number=4, min_number=2, stamp_size=9.0,
                                                      max_shift=0.9, max_mag=25.3)
    draw = CatsimGenerator(catalog, sampling, btk.survey.get_surveys("LSST"), batch_size=8)
    blend_batch, deblended = next(btk.deblend.DeblendGenerator(VAEDeblender(max_n_sources=6), draw))

BTK 1.0.9 hands every array channels first, (bands, H, W); this package works bands last, (H, W, bands).
:class:`VAEDeblender` turns BTK's arrays round itself and gives BTK channels-first images back;
:meth:`VAEDeblender.deblend_image` and :meth:`VAEDeblender.deblend_stamps` take either layout.

Two faults of BTK 1.0.9's ``DrawBlendsGenerator`` are worked around by :class:`CatsimGenerator` and
:class:`CosmosGenerator` (drop-in subclasses of BTK's own), not by pinning an old numpy:

- it seeds GalSim with ``SeedSequence.generate_state(1)``, a one-element array, which numpy ≥ 2.4 no longer
  converts to an int: ``TypeError: BaseDeviate must be initialized with either an int or another BaseDeviate``;
- it draws the random rotations (``augment_data=True``) of every blend of a mini-batch from the same
  ``generate_state(1)``, so all blends of a batch get the same rotations; and it seeds a blend's galaxy
  (Poisson) noise and its sky noise with one number, so the two noise fields are the same draw.

The subclasses hand BTK a seed sequence whose ``generate_state(1)`` returns a Python int from a newly spawned
child at every call: GalSim gets an int, each blend its own rotations, each noise field its own seed.
"""

import btk.deblend
import btk.draw_blends
import numpy as np
from astropy.table import Table
from btk.blend_batch import BlendBatch, DeblendExample

from lenstronomy_vae.deblending.scene import DETECTION_THRESHOLD, REENCODE, deblend_scene
from lenstronomy_vae.deblending.scene_model import checked_scene, survey_kernels
from lenstronomy_vae.networks import Deblender, load_network
from lenstronomy_vae.sims.rendering import convolve_bands
from lenstronomy_vae.sims.surveys import get_survey

POSITIONS = ("detected", "truth")


class _IntSeeds:
    """A ``numpy.random.SeedSequence`` as BTK uses it, whose ``generate_state(1)`` is a new Python int each call.

    ``spawn`` wraps the children likewise; ``generate_state(n)`` spawns a fresh child and returns its state
    (an int for ``n == 1``), so two calls never give the same seed.
    """

    def __init__(self, sequence):
        self._sequence = sequence

    def spawn(self, n_children):
        return [_IntSeeds(child) for child in self._sequence.spawn(n_children)]

    def generate_state(self, n_words, dtype=np.uint32):
        state = self._sequence.spawn(1)[0].generate_state(n_words, dtype)
        return int(state[0]) if n_words == 1 else state


class _FixedSeeds:
    """Mixin for BTK's ``DrawBlendsGenerator`` subclasses: int seeds, a rotation per blend, separate noise seeds."""

    def _render_mini_batch(self, catalog_list, psf, wcs, survey, seedseq_minibatch):
        return super()._render_mini_batch(catalog_list, psf, wcs, survey, _IntSeeds(seedseq_minibatch))


class CatsimGenerator(_FixedSeeds, btk.draw_blends.CatsimGenerator):
    """``btk.draw_blends.CatsimGenerator`` with the seeding fixed (see the module docstring); same arguments."""


class CosmosGenerator(_FixedSeeds, btk.draw_blends.CosmosGenerator):
    """``btk.draw_blends.CosmosGenerator`` with the seeding fixed (see the module docstring); same arguments."""


def channels_last(images, n_bands):
    """``images`` with bands last: (..., bands, H, W) arrays (BTK's) are moved to (..., H, W, bands).

    An array whose last axis already has ``n_bands`` entries and whose third-last has not is returned as it is.
    """
    images = np.asarray(images)
    if images.ndim < 3:
        raise ValueError(f"images must be (..., H, W, bands) or (..., bands, H, W); got shape {images.shape}")
    if images.shape[-1] == n_bands:
        return images
    if images.shape[-3] == n_bands:
        return np.moveaxis(images, -3, -1)
    raise ValueError(f"images have no axis of {n_bands} bands last or third-last; got shape {images.shape}")


class VAEDeblender(btk.deblend.Deblender):
    """The VAE deblender as a BTK deblender: field mode (detection, then the network), optionally MAP.

    For each blend it returns BTK's ``DeblendExample``: a catalogue of the galaxies (``ra``, ``dec`` in
    arcsec as BTK's own deblenders, ``x_peak``, ``y_peak`` in pixels, ``flux`` per band, and the flags
    ``out_of_range`` and ``likely_merged`` of :class:`~lenstronomy_vae.deblending.scene_model.SceneGalaxy`)
    and ``deblended_images`` (max_n_sources, bands, H, W): each galaxy's PSF-convolved model alone, in the
    blend's units (electrons).

    Args:
        deblender: a :class:`lenstronomy_vae.networks.Deblender` or the name of one (default the shipped
            ``"lsst45_deblender"``); its bands must be the BTK survey's, in the same order.
        max_n_sources: BTK's largest number of sources per blend; beyond it the brightest (sum over bands)
            are kept.
        survey: our survey (name or :class:`lenstronomy_vae.sims.surveys.Survey`) whose PSF and sky the
            deblender uses; default ``"lsst"`` (surveycodex's numbers, as BTK's ``get_surveys("LSST")``; its
            PSF is Kolmogorov only, BTK's default adds the telescope's Airy pattern).
        positions: ``"detected"``: field mode (:func:`lenstronomy_vae.deblending.deblend_scene`).
            ``"truth"``: the network on stamps centred on the catalogue positions (BTK's truth catalogue,
            or ``reference_catalogs`` of ``deblend``), as BTK's ``Scarlet``; fluxes refitted jointly.
        reencode: times every galaxy is encoded again with its neighbours' models subtracted
            (:func:`lenstronomy_vae.deblending.scene_model.reencoded`).
        refine: add the joint MAP refinement (:func:`lenstronomy_vae.deblending.map_refine`).
        map_steps: largest number of L-BFGS iterations of the refinement.
        **detect_kwargs: passed to ``deblend_scene`` (``threshold``, ``min_area``, ...).
    """

    def __init__(self, deblender="lsst45_deblender", max_n_sources=10, survey="lsst", positions="detected",
                 reencode=REENCODE, refine=False, map_steps=100, **detect_kwargs):
        super().__init__(max_n_sources)
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
        self.deblender = load_network(deblender, Deblender) if isinstance(deblender, str) else deblender
        self.survey = get_survey(survey) if isinstance(survey, str) else survey
        self.positions = positions
        self.reencode = reencode
        self.refine = refine
        self.map_steps = map_steps
        self.detect_kwargs = {"threshold": DETECTION_THRESHOLD, **detect_kwargs}
        self.bands = tuple(self.deblender.config.bands)

    def _checked_batch(self, blend_batch):
        if not isinstance(blend_batch, BlendBatch):
            raise TypeError(f"expected a btk BlendBatch, got {type(blend_batch).__name__}")
        bands = tuple(blend_batch.survey.available_filters)
        if bands != self.bands:
            raise ValueError(f"the BTK survey's bands {bands} are not the deblender's {self.bands}")

    def deblend_image(self, image, x=None, y=None):
        """Deblend one scene, (bands, H, W) as BTK's or (H, W, bands); a :class:`SceneResult` (bands last).

        Args:
            image: sky-subtracted scene [electrons].
            x, y: (n,) columns and rows [pixels] of the galaxies: the network runs on stamps centred
                there. None: field mode's detections.
        """
        image = checked_scene(channels_last(image, len(self.bands)), self.deblender)
        positions = None if x is None else (x, y)
        return deblend_scene(self.deblender, image, self.survey, positions=positions, reencode=self.reencode,
                             refine=self.refine, map_steps=self.map_steps, **self.detect_kwargs)

    def deblend_stamps(self, stamps):
        """The network alone on centred stamps (n, bands, H, W) or (n, H, W, bands): intrinsic targets, same layout."""
        stamps = np.asarray(stamps, dtype=np.float64)
        last = channels_last(stamps, len(self.bands))
        out = self.deblender.deblend(last)
        return out if last is stamps else np.moveaxis(out, -1, -3)

    def psf_convolved(self, intrinsic):
        """Convolve intrinsic images (..., H, W, bands) with the survey's PSF (as the deblended images BTK gets)."""
        return convolve_bands(intrinsic, survey_kernels(self.survey, self.bands))

    def deblend(self, ii, blend_batch, reference_catalogs=None):
        """BTK's call: deblend the ``ii``-th blend of ``blend_batch`` into a ``DeblendExample``.

        Args:
            ii: index of the blend in the batch.
            blend_batch: ``btk.blend_batch.BlendBatch``.
            reference_catalogs: with ``positions="truth"``, a list of catalogues (``ra``, ``dec`` in arcsec
                as BTK's, or ``x_peak``, ``y_peak`` in pixels) used instead of the truth catalogue.
        """
        self._checked_batch(blend_batch)
        image = blend_batch.blend_images[ii]
        wcs = blend_batch.wcs
        x = y = None
        if self.positions == "truth":
            catalog = blend_batch.catalog_list[ii] if reference_catalogs is None else reference_catalogs[ii]
            if "x_peak" in catalog.colnames:
                x, y = np.asarray(catalog["x_peak"], float), np.asarray(catalog["y_peak"], float)
            else:
                x, y = wcs.world_to_pixel_values(np.asarray(catalog["ra"]) / 3600, np.asarray(catalog["dec"]) / 3600)
        result = self.deblend_image(image, x, y)
        galaxies = result.galaxies
        if len(galaxies) > self.max_n_sources:
            brightest = np.argsort([-g.model.sum() for g in galaxies], kind="stable")[: self.max_n_sources]
            galaxies = [galaxies[k] for k in sorted(brightest)]
        n_bands, size = len(self.bands), blend_batch.image_size
        deblended = np.zeros((self.max_n_sources, n_bands, size, size))
        for k, galaxy in enumerate(galaxies):
            deblended[k] = np.moveaxis(result.isolated(galaxy), -1, 0)
        gx = np.array([g.x for g in galaxies], float)
        gy = np.array([g.y for g in galaxies], float)
        ra, dec = wcs.pixel_to_world_values(gx, gy) if len(galaxies) else (np.zeros(0), np.zeros(0))
        catalog = Table()
        # Offsets from the stamp centre [arcsec] as in BTK's truth catalogues (RA −0.1″ is not 359.99997°).
        catalog["ra"] = (np.asarray(ra, float) + 180) % 360 * 3600 - 180 * 3600
        catalog["dec"] = np.asarray(dec, float) * 3600
        catalog["x_peak"], catalog["y_peak"] = gx, gy
        catalog["flux"] = np.array([g.model.sum(axis=(0, 1)) for g in galaxies]).reshape(len(galaxies), n_bands)
        catalog["out_of_range"] = np.array([bool(g.out_of_range) for g in galaxies], dtype=bool)
        catalog["likely_merged"] = np.array([g.likely_merged for g in galaxies], dtype=bool)
        catalog["blendedness"] = np.array([g.blendedness for g in galaxies], dtype=float)
        return DeblendExample(self.max_n_sources, catalog, n_bands, size, None, deblended.clip(0),
                              extra_data={"map_loss": result.map_loss})
