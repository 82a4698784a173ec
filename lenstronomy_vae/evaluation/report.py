"""Side-by-side deblending metrics on the same blends: no deblending, sep, VAE, VAE at true positions, MAP, regressor.

For the target (central) galaxy of each scene, every method gives an image of that galaxy
alone, PSF-convolved, in image units; it is compared with the true noiseless isolated image:

- ``Δe``: adaptive-moment shape (GalSim HSM, reduced shear) of the estimate minus that of the
  truth, in the truth's ``measure_band``;
- ``Δf/f``: relative flux error per band over the stamp;
- SSIM (scikit-image, Gaussian σ = 1.5 px, border of 5 px excluded) in the measure band, and cosine
  similarity over all bands.

The regressor predicts the target's intrinsic shape (reduced shear, applied shear included)
instead of an image; its Δe is the prediction minus the input shape. Shear bias (m, c) of the
regressor comes from sets with applied shear ±g, each also with every galaxy turned by 90°
(:func:`lenstronomy_vae.evaluation.metrics.shear_bias`).
"""

import warnings

import numpy as np
from tqdm import tqdm

from lenstronomy_vae.deblending.detection import segmentation_deblend
from lenstronomy_vae.deblending.scene import DETECTION_THRESHOLD, OutOfTrainingRangeWarning, deblend_scene
from lenstronomy_vae.deblending.scene_model import survey_kernels
from lenstronomy_vae.evaluation.metrics import (
    adaptive_shapes,
    binned_statistics,
    cosine_similarities,
    flux_errors,
    robust_sigma,
    shear_bias,
    ssim_scores,
)
from lenstronomy_vae.sims.rendering import convolve_bands

METHODS = ("no_deblending", "sep_segmentation", "vae_deblender", "vae_true_positions", "vae_map")
SNR_EDGES = (0, 10, 20, 40, 80, 1e5)
BLENDEDNESS_EDGES = (0, 0.01, 0.05, 0.2, 0.5, 1.0)


def target_estimates(blends, deblender, map_scenes=None, map_steps=100, progress=False):
    """Each method's image of the target galaxy of every scene.

    Args:
        blends: :class:`lenstronomy_vae.sims.blends.BlendSet`.
        deblender: trained :class:`lenstronomy_vae.networks.deblender.Deblender` for the set's bands.
        map_scenes: scenes (the first ones) that also get field mode + MAP refinement, which
            costs seconds per scene on a CPU; default all.
        map_steps: largest number of L-BFGS iterations of the MAP refinement.
        progress: tqdm progress bar over the MAP scenes.

    Returns:
        dict method → (n, H, W, bands) array; ``vae_map`` holds NaN beyond ``map_scenes``.
    """
    survey = blends.survey
    sigma = np.sqrt(np.asarray(survey.sky_levels))
    kernels = survey_kernels(survey, blends.bands)
    estimates = {
        "no_deblending": blends.blend.astype(np.float64),
        "sep_segmentation": np.stack([segmentation_deblend(scene, sigma, threshold=DETECTION_THRESHOLD).image
                                      for scene in blends.blend]),
        "vae_deblender": convolve_bands(deblender.deblend(blends.blend), kernels),
    }
    centre = (blends.blend.shape[2] - 1) / 2, (blends.blend.shape[1] - 1) / 2
    estimates["vae_true_positions"] = np.stack([
        _at_true_positions(deblender, blends, i, survey, centre) for i in range(len(blends))])
    n_map = len(blends) if map_scenes is None else min(map_scenes, len(blends))
    refined = np.full(blends.blend.shape, np.nan)
    for i in tqdm(range(n_map), disable=not progress, desc="MAP", unit="scene"):
        result = deblend_scene(deblender, blends.blend[i], survey, refine=True, map_steps=map_steps)
        target = result.nearest(*centre, max_distance=None)  # as measured for the README: the nearest detection
        refined[i] = result.isolated(target) if target is not None else 0.0
    estimates["vae_map"] = refined
    return estimates


def _at_true_positions(deblender, blends, i, survey, centre):
    """The target of scene ``i`` deblended as a catalogue would place it: every galaxy at its true position,
    re-encoded with the others subtracted, fluxes fitted jointly (``deblend_scene(positions=...)``)."""
    rows = blends.truth[blends.truth["scene"] == i]
    positions = (centre[0] + rows["dx"], centre[1] + rows["dy"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfTrainingRangeWarning)  # counted by the flags, not here
        result = deblend_scene(deblender, blends.blend[i], survey, positions=positions)
    return result.isolated(result.galaxies[0])


def _scatter(valid, values):
    """Rows ``values`` of the scenes where ``valid`` is True, NaN rows elsewhere."""
    rows = np.full((len(valid),) + values.shape[1:], np.nan)
    rows[valid] = values
    return rows


def image_metrics(estimates, blends):
    """Per-scene metrics of each method's target image against the true isolated target.

    Args:
        estimates: dict method → (n, H, W, bands) array of target images (see :func:`target_estimates`);
            a scene with a non-finite pixel has no estimate.
        blends: the :class:`lenstronomy_vae.sims.blends.BlendSet` they come from.

    Returns:
        dict method → dict of arrays: ``de`` (n, 2) shape error (reduced shear,
        :func:`~lenstronomy_vae.evaluation.metrics.adaptive_shapes`), ``flux_error`` (n, bands)
        (:func:`~lenstronomy_vae.evaluation.metrics.flux_errors`), ``ssim`` (n,) SSIM (scikit-image, Gaussian
        σ = 1.5 px, border of 5 px excluded) in the measure band, ``cosine`` (n,) over all bands; all
        dimensionless, NaN rows where a method has no estimate, NaN ``de`` where HSM fails.
    """
    truth = blends.target.astype(np.float64)
    band = blends.survey.band_index(blends.config.measure_band)
    true_shapes = adaptive_shapes(truth, band, blends.pixel_scale)
    metrics = {}
    for method, images in estimates.items():
        images = np.asarray(images, np.float64)
        valid = np.all(np.isfinite(images), axis=(1, 2, 3))
        found, reference = images[valid], truth[valid]
        metrics[method] = {
            "de": _scatter(valid, adaptive_shapes(found, band, blends.pixel_scale) - true_shapes[valid]),
            "flux_error": _scatter(valid, flux_errors(found, reference)),
            "ssim": _scatter(valid, ssim_scores(found, reference, band)),
            "cosine": _scatter(valid, cosine_similarities(found, reference)),
        }
    return metrics


def regressor_errors(regressor, blends):
    """(n, 2) predicted minus true intrinsic shape of each target, and (n,) redshift error or None."""
    predicted = regressor.predict_quantities(blends.blend)
    truth = blends.target_truth
    de = np.stack([predicted["g1"] - truth["g1"], predicted["g2"] - truth["g2"]], axis=1)
    dz = predicted["redshift"] - truth["redshift"] if "redshift" in predicted else None
    return de, dz


def summarise(de, flux_error=None, ssim_values=None, cosine=None, band=None):
    """One row of the side-by-side table (failures are NaN and counted).

    Args:
        de: (n, 2) shape errors (reduced shear); a row with a NaN is a failure.
        flux_error, ssim_values, cosine: optional (n, bands), (n,), (n,) arrays of :func:`image_metrics`; the
            SSIM is scikit-image's (Gaussian σ = 1.5 px, border of 5 px excluded).
        band: index of the band of ``flux_error`` summarised by the mean and median.

    Returns:
        dict of dimensionless statistics: σ, robust σ (:func:`~lenstronomy_vae.evaluation.metrics.robust_sigma`)
        and mean of Δe, and with ``flux_error`` the mean and median |Δf/f| and median SSIM and cosine.
    """
    finite = np.all(np.isfinite(de), axis=1)
    row = {
        "n": int(len(de)),
        "n_failed": int(np.sum(~finite)),
        "sigma_de1": float(np.std(de[finite, 0])),
        "sigma_de2": float(np.std(de[finite, 1])),
        "robust_sigma_de1": robust_sigma(de[:, 0]),
        "robust_sigma_de2": robust_sigma(de[:, 1]),
        "mean_de1": float(np.mean(de[finite, 0])),
    }
    if flux_error is not None:
        relative = np.abs(flux_error[:, band])
        row["mean_abs_flux_error"] = float(np.nanmean(relative))
        row["median_abs_flux_error"] = float(np.nanmedian(relative))
        row["mean_abs_flux_error_per_band"] = np.nanmean(np.abs(flux_error), axis=0).tolist()
        row["median_ssim"] = float(np.nanmedian(ssim_values))
        row["median_cosine"] = float(np.nanmedian(cosine))
    return row


def binned(values, blends, scenes=None):
    """|values| statistics binned by the targets' SNR and blendedness (dict of lists of bins)."""
    truth = blends.target_truth if scenes is None else blends.target_truth[scenes]
    return {"snr": binned_statistics(truth["snr"], values, SNR_EDGES),
            "blendedness": binned_statistics(truth["blendedness"], values, BLENDEDNESS_EDGES)}


def regressor_shear_bias(regressor, plus, minus, plus_turned, minus_turned):
    """Shear bias m, c of the regressor on four sets of the same galaxies: shear ±g, turned or not.

    The sets must share seed, scenes and configuration apart from ``shear`` (opposite) and
    ``quarter_turn`` (see :class:`lenstronomy_vae.sims.blends.BlendSimConfig`).
    """
    shear = np.asarray(plus.config.shear)
    for name, other, turned, sign in (("minus", minus, False, -1), ("plus_turned", plus_turned, True, 1),
                                      ("minus_turned", minus_turned, True, -1)):
        if (other.seed != plus.seed or len(other) != len(plus) or other.config.quarter_turn != turned
                or not np.allclose(other.config.shear, sign * shear)):
            raise ValueError(f"{name} set does not pair with the plus set: seed {other.seed} vs {plus.seed}, "
                             f"{len(other)} vs {len(plus)} scenes, shear {other.config.shear} (expected "
                             f"{tuple((sign * shear).tolist())}), quarter_turn {other.config.quarter_turn} "
                             f"(expected {turned})")
    estimates = [np.stack([p["g1"], p["g2"]], axis=1)
                 for p in (regressor.predict_quantities(s.blend) for s in (plus, minus, plus_turned, minus_turned))]
    return shear_bias(estimates[0], estimates[1], tuple(shear), estimates[2], estimates[3])


def compare(blends, deblender, regressor=None, shear_sets=None, map_scenes=None, map_steps=100, progress=False):
    """The side-by-side report: a JSON-ready dict with a table row per method, binned rows, shear bias.

    Args:
        blends: :class:`lenstronomy_vae.sims.blends.BlendSet` not used in training.
        deblender: trained :class:`lenstronomy_vae.networks.deblender.Deblender`.
        regressor: trained :class:`lenstronomy_vae.networks.regressor.LatentRegressor`, or None.
        shear_sets: (plus, minus, plus_turned, minus_turned) BlendSets for shear bias, or None.
        map_scenes, map_steps, progress: see :func:`target_estimates`.

    Returns:
        (report, per_scene): ``report`` with ``table`` (method → row), ``binned`` and, with
        shear sets, ``shear_bias``; ``per_scene`` the metric arrays, for figures.
    """
    band = blends.survey.band_index(blends.config.measure_band)
    estimates = target_estimates(blends, deblender, map_scenes=map_scenes, map_steps=map_steps, progress=progress)
    per_scene = image_metrics(estimates, blends)
    map_rows = np.all(np.isfinite(estimates["vae_map"]), axis=(1, 2, 3))
    table, bins = {}, {}
    for method, metrics in per_scene.items():
        rows = map_rows if method == "vae_map" else slice(None)
        table[method] = summarise(metrics["de"][rows], metrics["flux_error"][rows], metrics["ssim"][rows],
                                  metrics["cosine"][rows], band)
        scenes = np.flatnonzero(map_rows) if method == "vae_map" else None
        bins[method] = {"abs_de1": binned(np.abs(metrics["de"][rows, 0]), blends, scenes),
                        "abs_flux_error": binned(np.abs(metrics["flux_error"][rows, band]), blends, scenes)}
    report = {"scenes": len(blends), "map_scenes": int(map_rows.sum()), "measure_band": blends.config.measure_band,
              "bands": list(blends.bands), "table": table, "binned": bins}
    if not map_rows.all():  # every method on the scenes MAP ran on
        report["table_map_scenes"] = {
            method: summarise(m["de"][map_rows], m["flux_error"][map_rows], m["ssim"][map_rows], m["cosine"][map_rows],
                              band) for method, m in per_scene.items()}
    if regressor is not None:
        de, dz = regressor_errors(regressor, blends)
        per_scene["regressor"] = {"de": de}
        report["table"]["regressor"] = summarise(de)
        report["binned"]["regressor"] = {"abs_de1": binned(np.abs(de[:, 0]), blends)}
        truth = blends.target_truth
        report["regressor_slope"] = [float(np.polyfit(truth[name], truth[name] + de[:, k], 1)[0])
                                     for k, name in enumerate(("g1", "g2"))]
        if dz is not None:
            report["regressor_redshift"] = {"sigma_dz_over_1pz": robust_sigma(dz / (1 + truth["redshift"])),
                                            "median_dz": float(np.median(dz))}
        if shear_sets is not None:
            report["shear_bias"] = regressor_shear_bias(regressor, *shear_sets)
    return report, per_scene
