"""Deblending a whole scene: detect, deblend each source on its own stamp, subtract, repeat; then MAP.

Field mode (:func:`deblend_scene`), after Arcelin et al. (2021): sources are detected on the
residual image (``sep``), brightest first; for each new one the deblender reads a stamp centred
on it, its decoded galaxy is convolved with the survey PSF, its flux per band fitted linearly
(:func:`fit_fluxes`) and it is subtracted from the residual. With ``max_iterations`` > 1,
detection runs again on the residual to find sources hidden by brighter ones. All fluxes are
refitted jointly at the end.

With ``refine=True`` the result is refined jointly by :func:`lenstronomy_vae.deblending.map.map_refine`.

Images are (H, W, bands) arrays in the survey's image units, sky-subtracted; positions are in
pixels with ``sep``'s convention (``x`` the column, ``y`` the row, pixel centres at integers).
"""

import dataclasses
import warnings

import numpy as np

from lenstronomy_vae.deblending.detection import background_levels, detect
from lenstronomy_vae.deblending.map import map_refine
from lenstronomy_vae.deblending.scene_model import (
    SceneResult,
    checked_scene,
    decoded_galaxy,
    fit_fluxes,
    scene_model,
    stamp_measures,
    survey_kernels,
    with_footprint_chi2,
)
from lenstronomy_vae.deblending.stamps import cutout, paste
from lenstronomy_vae.networks.training_range import TrainingRange
from lenstronomy_vae.sims.shapes import adaptive_moments_size
from lenstronomy_vae.sims.surveys import get_survey

# Detection threshold in units of the detection image's pixel noise (sep smooths with a 3 × 3
# kernel first, which makes this ≈ 4σ of the smoothed noise). On 150 LSST-like blends it finds
# 79 % of all galaxies and 99.3 % of the targets with no spurious detection; 5 finds 33 % of them.
DETECTION_THRESHOLD = 1.5

# A band's background level (see check_sky_subtracted) is reported when it lies further from zero than
# SKY_TOLERANCE noise sigmas and than SKY_SIGNIFICANCE standard errors of the median it is measured by.
# 0.25 σ in every band (or in the band that dominates detection, u for LSST) raises the 3 × 3-smoothed
# detection image by at least 0.67 of its noise: the threshold of 4 smoothed σ falls to 3.3 and noise
# peaks above it become ~13 times more frequent. Sky-subtracted LSST-like blends (45 × 45 px) stay
# within 0.2 σ (the faint wings of their galaxies), 180 × 180 px fields of them within 0.05 σ.
SKY_TOLERANCE = 0.25
SKY_SIGNIFICANCE = 5.0



class SkyBackgroundWarning(UserWarning):
    """The image's background is not consistent with a sky-subtracted image."""


class OutOfTrainingRangeWarning(UserWarning):
    """Deblended galaxies lie outside the deblender's training range: their fluxes and shapes may be wrong."""


class NoTrainingRangeWarning(UserWarning):
    """The deblender has no recorded training range, so galaxies outside it cannot be flagged."""


def check_sky_subtracted(image, noise_sigma, bands, unit, segmentation=None):
    """Warn (:class:`SkyBackgroundWarning`, once) when the image's background is not consistent with zero.

    The background level of each band is the median of the pixels outside the detected sources
    (:func:`lenstronomy_vae.deblending.detection.background_levels`). A band is off when the level
    differs from zero by more than :data:`SKY_TOLERANCE` × its noise sigma and by more than
    :data:`SKY_SIGNIFICANCE` standard errors of the median (1.2533 σ / √n over n pixels).

    Args:
        image: (H, W, bands) scene [image units], meant to be sky-subtracted.
        noise_sigma: (bands,) the survey's noise per pixel [image units].
        bands: band names, for the message.
        unit: the image unit, for the message.
        segmentation: the segmentation map of a detection already run on ``image`` (field mode's
            first pass), so that the sources are not detected twice.

    Returns:
        (bands,) background levels [image units].
    """
    levels, n = background_levels(image, noise_sigma, DETECTION_THRESHOLD, segmentation=segmentation)
    pixels = n or image.shape[0] * image.shape[1]
    noise_sigma = np.asarray(noise_sigma, dtype=np.float64)
    standard_error = 1.2533 * noise_sigma / np.sqrt(pixels)
    off = np.abs(levels) > np.maximum(SKY_TOLERANCE * noise_sigma, SKY_SIGNIFICANCE * standard_error)
    if off.any():
        per_band = ", ".join(f"{band} {level:+.1f} ({level / sigma:+.2f}σ)"
                             for band, level, sigma in zip(bands, levels, noise_sigma))
        where = (f"the median of the {n} pixels outside the detected sources" if n else
                 f"the detected sources cover the whole image, and the median of its {pixels} pixels")
        off_bands = ", ".join(band for band, is_off in zip(bands, off) if is_off)
        warnings.warn(
            f"the image's background is not consistent with a sky-subtracted image: {where} is {per_band} "
            f"[{unit}] per pixel, where σ is the survey's noise per pixel; in {off_bands} it is further than "
            f"{SKY_TOLERANCE}σ from 0. A sky level left in the image turns noise into detections and biases the "
            "fluxes: subtract the sky (e.g. with sep.Background) before deblending, and check that the image is in "
            "the survey's units.",
            SkyBackgroundWarning, stacklevel=3)
    return levels


def deblend_scene(deblender, image, survey="lsst", max_iterations=1, min_separation=5.0, refine=False,
                  map_steps=100, threshold=DETECTION_THRESHOLD, training_range=None, **detect_kwargs):
    """Detect and deblend every galaxy of a scene; optionally refine all of them jointly (MAP).

    Args:
        deblender: a trained :class:`lenstronomy_vae.networks.deblender.Deblender`.
        image: (H, W, bands) sky-subtracted scene in image units, bands as the deblender's.
        survey: survey name or :class:`~lenstronomy_vae.sims.surveys.Survey` (PSF and sky noise).
        max_iterations: detection passes; passes after the first run on the residual, to find
            galaxies hidden by brighter ones. Default 1: on LSST-like blends with the shipped
            deblender a second pass mostly finds the residuals of imperfect models (a 4-galaxy
            scene of examples/deblend_lsst_scene.py gave 3 true and 2 spurious detections).
        min_separation: a detection closer than this to a galaxy already found is ignored [pixels]: 5
            (1″ for LSST, 1.4 PSF widths) keeps the residual of an imperfect model from being found again.
        refine: run :func:`map_refine` on the result.
        map_steps: largest number of L-BFGS iterations of the MAP refinement.
        threshold: detection threshold (see :data:`DETECTION_THRESHOLD`).
        training_range: the :class:`~lenstronomy_vae.networks.training_range.TrainingRange` (or its
            manifest dict) to flag galaxies against; default the deblender's own, which
            :func:`~lenstronomy_vae.networks.model_files.load_network` reads from its manifest entry.
        **detect_kwargs: passed to :func:`lenstronomy_vae.deblending.detection.detect` (e.g. ``min_area``).

    Returns:
        :class:`SceneResult`; each galaxy's ``out_of_range`` says why it is outside the training range
        (see :func:`flag_out_of_range`), and its ``footprint_chi2`` how well the scene's model fits its
        light (``likely_merged`` above :data:`~lenstronomy_vae.deblending.scene_model.MERGED_CHI2`).

    Warns:
        SkyBackgroundWarning: once, when the image's background differs from zero (see
            :func:`check_sky_subtracted`).
        OutOfTrainingRangeWarning: once, when galaxies are outside the deblender's training range:
            how many, and why.
        NoTrainingRangeWarning: once, when there are galaxies and the deblender has no recorded
            range (a model trained before ranges were recorded, or loaded from a path without a manifest).
    """
    survey = get_survey(survey) if isinstance(survey, str) else survey
    image = checked_scene(image, deblender)
    bands = deblender.config.bands
    sky = np.array([survey.sky_levels[survey.band_index(band)] for band in bands])
    noise_sigma = np.sqrt(sky)
    detections = detect(image, noise_sigma, threshold=threshold, **detect_kwargs)
    check_sky_subtracted(image, noise_sigma, bands, survey.flux_unit, segmentation=detections.segmentation)
    kernels = survey_kernels(survey, bands)
    size = deblender.config.image_size
    residual = image.copy()
    galaxies, inputs = [], []
    for iteration in range(max_iterations):
        if iteration:  # the first pass uses the detections the sky check was made with
            detections = detect(residual, noise_sigma, threshold=threshold, **detect_kwargs)
        new = [(x, y) for x, y in zip(detections.x, detections.y)
               if all(np.hypot(x - g.x, y - g.y) >= min_separation for g in galaxies)]
        if not new:
            break
        for x, y in new:
            stamp, (row0, col0) = cutout(residual, x, y, size)
            latent = deblender.encode(stamp[None])[0]
            inputs.append(stamp_measures(deblender, stamp))
            galaxy = decoded_galaxy(deblender, kernels, float(x), float(y), row0, col0, latent)
            galaxy = fit_fluxes(residual, [galaxy], sky)[0]
            paste(residual, -galaxy.model, row0, col0)
            galaxies.append(galaxy)
    galaxies = fit_fluxes(image, galaxies, sky) if galaxies else galaxies
    model = scene_model(image.shape, galaxies)
    result = SceneResult(galaxies, model, image - model)
    if refine and galaxies:
        result = map_refine(deblender, image, result, survey, steps=map_steps)
    result = with_footprint_chi2(result, sky, size)
    if training_range is None:
        training_range = getattr(deblender, "training_range", None)
    elif not isinstance(training_range, TrainingRange):
        training_range = TrainingRange(training_range)
    return flag_out_of_range(result, inputs, training_range, survey, bands, deblender.config.image_size,
                             name=deblender.name)


def flag_out_of_range(result, inputs, training_range, survey, bands, size, name="the deblender"):
    """Set each galaxy's ``out_of_range`` and warn once for the scene.

    Measured before deblending, on the stamp the encoder read (``inputs``): its normalised peak
    and its sum per band; after, on the result: the fitted flux per band (the model's sum) and the
    adaptive-moment size, in the range's size band, of the galaxy's stamp of the scene with the
    other galaxies subtracted (the model plus the residual, so light the model misses still counts).

    Args:
        result: the :class:`SceneResult`.
        inputs: per galaxy, (peak, stamp_flux) of :func:`~lenstronomy_vae.deblending.scene_model.stamp_measures`.
        training_range: :class:`~lenstronomy_vae.networks.training_range.TrainingRange`, or None.
        survey: the :class:`~lenstronomy_vae.sims.surveys.Survey` (pixel scale).
        bands: the deblender's bands.
        size: stamp side [pixels].
        name: the deblender's name, for the warnings.

    Returns:
        the result with ``out_of_range`` set on every galaxy.
    """
    if not result.galaxies:
        return result
    if training_range is None:
        warnings.warn(f"{name} has no recorded training range (a model trained before ranges were recorded, or "
                      "loaded from a .keras path without its manifest), so galaxies outside it are not flagged: "
                      "their out_of_range is empty. Bright or large galaxies beyond the training set can come back "
                      "with most of their flux missing: retrain with this version (training records the range), or "
                      "pass deblend_scene(..., training_range=...).",
                      NoTrainingRangeWarning, stacklevel=3)
        return result
    if tuple(training_range.bands) != tuple(bands):
        raise ValueError(f"the training range is for bands {training_range.bands}, the deblender's are {bands}")
    size_band = bands.index(training_range.size_band)
    galaxies = []
    for galaxy, (peak, stamp_flux) in zip(result.galaxies, inputs):
        alone = cutout(result.residual, galaxy.x, galaxy.y, size)[0] + galaxy.model
        reasons = training_range.reasons(peak=peak, stamp_flux=stamp_flux, flux=galaxy.model.sum(axis=(0, 1)),
                                         size=adaptive_moments_size(alone[..., size_band], survey.pixel_scale))
        galaxies.append(dataclasses.replace(galaxy, out_of_range=reasons))
    flagged = [g for g in galaxies if g.out_of_range]
    if flagged:
        counts = {}
        for galaxy in flagged:
            for kind in {_reason_kind(reason) for reason in galaxy.out_of_range}:
                counts[kind] = counts.get(kind, 0) + 1
        why = ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items(), key=lambda item: -item[1]))
        example = f"(x, y) = ({flagged[0].x:.1f}, {flagged[0].y:.1f}): {'; '.join(flagged[0].out_of_range)}"
        warnings.warn(f"{len(flagged)} of {len(galaxies)} deblended galaxies are outside {name}'s training range "
                      f"(galaxies per reason: {why}; e.g. {example}); their fluxes and shapes may be badly wrong. "
                      "Each galaxy's out_of_range (galaxies.ecsv: out_of_range, out_of_range_reasons) says why.",
                      OutOfTrainingRangeWarning, stacklevel=3)
    return dataclasses.replace(result, galaxies=galaxies)


def _reason_kind(reason):
    """The quantity of a reason: ``"peak_i 1.000 > 0.999"`` → ``"peak"``."""
    word = reason.split()[0]
    return word.rsplit("_", 1)[0] if "_" in word else word
