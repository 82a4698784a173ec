"""Deblending a whole scene: detect, deblend each source on its own stamp, re-encode, split merged detections; MAP.

Field mode (:func:`deblend_scene`), after Arcelin et al. (2021): sources are detected (``sep``); the
deblender reads a stamp centred on each, its decoded galaxy is convolved with the survey PSF and the
fluxes per band of all galaxies are fitted jointly (:func:`fit_fluxes`); every galaxy is then read
again with its neighbours' models subtracted, re-centred, and galaxies hidden in merged detections
are added where the residual needs them (:mod:`lenstronomy_vae.deblending.splitting`).

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
    reencoded,
    scene_model,
    stamp_measures,
    survey_kernels,
    with_footprint_chi2,
)
from lenstronomy_vae.deblending.splitting import placed, recentred, split_merged
from lenstronomy_vae.networks.training_range import TrainingRange
from lenstronomy_vae.sims.shapes import adaptive_moments_size
from lenstronomy_vae.sims.surveys import get_survey
from lenstronomy_vae.utils.checks import check_finite

# Detection threshold in units of the detection image's pixel noise (sep smooths with a 3 × 3
# kernel first, which makes this ≈ 4σ of the smoothed noise). On 150 LSST-like blends it finds
# 79 % of all galaxies and 99.3 % of the targets with no spurious detection; 5 finds 33 % of them.
DETECTION_THRESHOLD = 1.5

# Times every galaxy is encoded again with its neighbours subtracted (scene_model.reencoded). On 100 BTK
# scenes (benchmarks/btk_deblending.py, seed 3, true positions, lsst45_deblender of 2026-11-24) 0, 1, 2 gave
# σ(Δe1) 0.067, 0.059, 0.057 and median |Δf/f| 15.2 %, 13.4 %, 12.5 %.
REENCODE = 2
# Splitting merged detections (splitting.split_merged): a galaxy found in the residual is kept when the χ² falls
# by more than SPLIT_PENALTY plus SPLIT_EXCESS times the χ² above noise (one per pixel and band) around it: a
# model that fits bright galaxies imperfectly leaves residuals that a fixed penalty would explain with extra
# galaxies. On 100 BTK scenes (seed 3, shipped deblender) excess fractions 0, 0.1, 0.25, 0.5 found 1.25, 1.11,
# 0.89, 0.63 galaxies per true one with field-mode σ(Δe1) 0.062, 0.061, 0.061, 0.060; on the 4-galaxy scene of
# examples/deblend_lsst_scene.py, 9, 9, 4, 4 galaxies. MAX_NEW_SOURCES caps the galaxies added per scene.
SPLIT_PENALTY = 50.0
SPLIT_EXCESS = 0.25
MAX_NEW_SOURCES = 6

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


def deblend_scene(deblender, image, survey="lsst", positions=None, reencode=REENCODE, split_penalty=SPLIT_PENALTY,
                  split_excess=SPLIT_EXCESS, max_new_sources=MAX_NEW_SOURCES, refine=False, map_steps=100,
                  threshold=DETECTION_THRESHOLD, training_range=None, **detect_kwargs):
    """Detect and deblend every galaxy of a scene; optionally refine all of them jointly (MAP).

    Field mode (``positions=None``): ``sep`` detects the sources; each is encoded from its stamp,
    decoded, convolved with the PSF and its fluxes fitted jointly with the others'; every galaxy is
    re-encoded with its neighbours' models subtracted (``reencode`` times), moved to the centroid of
    its cleaned light and re-encoded again; then :func:`~lenstronomy_vae.deblending.splitting.split_merged`
    adds galaxies hidden in merged detections, each kept only if it lowers the scene's χ² by more than
    ``split_penalty``. With ``positions`` given (e.g. a catalogue's), the galaxies are placed there
    and re-encoded, without detection, re-centring or splitting.

    Args:
        deblender: a trained :class:`lenstronomy_vae.networks.deblender.Deblender`.
        image: (H, W, bands) sky-subtracted scene in image units, bands as the deblender's.
        survey: survey name or :class:`~lenstronomy_vae.sims.surveys.Survey` (PSF and sky noise).
        positions: None (detect), or (x, y): columns and rows of the galaxies [pixels].
        reencode: how many times every galaxy is encoded again with its neighbours' models subtracted
            (:func:`~lenstronomy_vae.deblending.scene_model.reencoded`).
        split_penalty: least fall of χ² that keeps a galaxy found in the residual ...
        split_excess: ... plus this fraction of the χ² above noise around it (see :data:`SPLIT_EXCESS`).
        max_new_sources: most galaxies added to the detections from the residual; 0 turns splitting off.
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
        SkyBackgroundWarning: once, in field mode, when the image's background differs from zero (see
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
    kernels = survey_kernels(survey, bands)
    if isinstance(max_new_sources, bool) or not isinstance(max_new_sources, (int, np.integer)) or max_new_sources < 0:
        raise ValueError(f"max_new_sources must be a non-negative integer, got {max_new_sources!r}")
    if positions is None:
        detections = detect(image, np.sqrt(sky), threshold=threshold, **detect_kwargs)
        check_sky_subtracted(image, np.sqrt(sky), bands, survey.flux_unit, segmentation=detections.segmentation)
        galaxies = placed(deblender, image, list(zip(detections.x, detections.y)), kernels, sky)
        galaxies = recentred(deblender, image, reencoded(deblender, image, galaxies, kernels, sky, reencode),
                             kernels, sky, reencode)
        galaxies = split_merged(deblender, image, galaxies, kernels, sky, split_penalty, max_new_sources, reencode,
                                split_excess)
    else:
        x, y = checked_positions(positions)
        galaxies = reencoded(deblender, image, placed(deblender, image, list(zip(x, y)), kernels, sky), kernels, sky,
                             reencode)
    model = scene_model(image.shape, galaxies)
    result = SceneResult(galaxies, model, image - model)
    if refine and galaxies:
        result = map_refine(deblender, image, result, survey, steps=map_steps)
    result = with_footprint_chi2(result, sky, deblender.config.image_size)
    if training_range is None:
        training_range = getattr(deblender, "training_range", None)
    elif not isinstance(training_range, TrainingRange):
        training_range = TrainingRange(training_range)
    return flag_out_of_range(result, deblender, training_range, survey, name=deblender.name)


def checked_positions(positions):
    """(x, y) as two equal-length 1-D float arrays of finite pixel coordinates."""
    try:
        x, y = (np.atleast_1d(np.asarray(values, dtype=np.float64)) for values in positions)
    except (TypeError, ValueError):
        raise ValueError("positions must be (x, y): two sequences of pixel coordinates") from None
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"positions must be (x, y) of equal length; got shapes {x.shape} and {y.shape}")
    check_finite("positions", np.stack([x, y]), "coordinate, galaxy")
    return x, y


def flag_out_of_range(result, deblender, training_range, survey, name="the deblender"):
    """Set each galaxy's ``out_of_range`` and warn once for the scene.

    Measured on each galaxy's stamp of the scene with the other galaxies subtracted (its model plus
    the residual, so light the model misses still counts; what the encoder read last): its normalised
    peak and its sum per band, and its adaptive-moment size in the range's size band; and on the
    result: the fitted flux per band (the model's sum).

    Args:
        result: the :class:`SceneResult`.
        deblender: the network (bands, stamp size, normalisation).
        training_range: :class:`~lenstronomy_vae.networks.training_range.TrainingRange`, or None.
        survey: the :class:`~lenstronomy_vae.sims.surveys.Survey` (pixel scale).
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
    bands = deblender.config.bands
    if tuple(training_range.bands) != tuple(bands):
        raise ValueError(f"the training range is for bands {training_range.bands}, the deblender's are {bands}")
    size_band = bands.index(training_range.size_band)
    galaxies = []
    for galaxy in result.galaxies:
        alone = result.cleaned_stamp(galaxy)
        peak, stamp_flux = stamp_measures(deblender, alone)
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
