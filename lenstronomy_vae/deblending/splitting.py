"""Galaxies hidden in merged detections: recentre on the light, then add sources where the residual asks for them.

Galaxies closer than a PSF FWHM make one peak, so ``sep`` detects one source at their barycentre.
Once a scene has a model, the light the model misses is visible in the residual. :func:`split_merged`
adds a galaxy at the residual's most significant peak, lets its neighbours re-encode and re-centre
around it, and keeps it only when the scene's χ² falls by more than ``penalty``: a model-selection
step, so the residuals of imperfect models (which a second detection pass on the residual finds
too) are not kept as galaxies. Images are (H, W, bands) in the survey's image units; positions are
pixels in ``sep``'s convention (``x`` the column, ``y`` the row, pixel centres at integers).
"""

import numpy as np
from scipy.ndimage import gaussian_filter

from lenstronomy_vae.deblending.scene_model import decoded_galaxy, fit_fluxes, reencoded, scene_model
from lenstronomy_vae.deblending.stamps import cutout

# Gaussian window of the centroid [pixels] (σ; ~0.6 of an LSST i-band PSF FWHM) and its iterations.
CENTROID_WINDOW = 2.0
CENTROID_STEPS = 3
# The residual's significance is smoothed by a Gaussian of this σ [pixels] before its peak is taken.
SIGNIFICANCE_SMOOTHING = 1.5
# A new galaxy is not tried within this distance of a galaxy already there [pixels].
EXCLUSION = 1.5


def placed(deblender, image, positions, kernels, sky):
    """Galaxies encoded from ``image``'s stamps centred on ``positions``, decoded, fluxes fitted jointly.

    Args:
        deblender: the encoder and decoder.
        image: (H, W, bands) what the stamps are cut from [image units].
        positions: sequence of (x, y) [pixels].
        kernels: (bands, K, K) PSF kernels.
        sky: (bands,) sky level per pixel [image units].

    Returns:
        list of :class:`~lenstronomy_vae.deblending.scene_model.SceneGalaxy`, in the order of ``positions``.
    """
    if len(positions) == 0:
        return []
    size = deblender.config.image_size
    stamps, corners = zip(*(cutout(image, x, y, size) for x, y in positions))
    latents = deblender.encode(np.stack(stamps))
    galaxies = [decoded_galaxy(deblender, kernels, float(x), float(y), row0, col0, latent)
                for (x, y), (row0, col0), latent in zip(positions, corners, latents)]
    return fit_fluxes(image, galaxies, sky)


def detection_weights(sky):
    """(bands,) weights of the detection image (inverse sky variance, summing to one)."""
    inverse = 1.0 / np.asarray(sky, dtype=np.float64)
    return inverse / inverse.sum()


def centroids(image, galaxies, sky):
    """Each galaxy's light-weighted centre in its cleaned light (the scene minus the other galaxies' models).

    The cleaned light is combined over the bands with the detection weights, clipped at zero and
    weighted by a Gaussian window of σ :data:`CENTROID_WINDOW` pixels around the current centre,
    :data:`CENTROID_STEPS` times. A galaxy detected at the barycentre of a merged pair moves onto
    the member its model kept once the other has its own model.

    Returns:
        list of (x, y) [pixels], one per galaxy.
    """
    weights = detection_weights(sky)
    others = image - scene_model(image.shape, galaxies)
    rows, cols = np.mgrid[:image.shape[0], :image.shape[1]]
    positions = []
    for galaxy in galaxies:
        light = np.clip((others + scene_model(image.shape, [galaxy])) @ weights, 0.0, None)
        x, y = galaxy.x, galaxy.y
        for _ in range(CENTROID_STEPS):
            window = light * np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * CENTROID_WINDOW**2))
            total = window.sum()
            if total <= 0:
                break
            x, y = float(np.sum(window * cols) / total), float(np.sum(window * rows) / total)
        positions.append((x, y))
    return positions


def recentred(deblender, image, galaxies, kernels, sky, reencode):
    """The galaxies placed again at their :func:`centroids`, then re-encoded ``reencode`` times."""
    if not galaxies:
        return galaxies
    return reencoded(deblender, image, placed(deblender, image, centroids(image, galaxies, sky), kernels, sky),
                     kernels, sky, reencode)


def chi2(image, model, sky):
    """Σ (image − model)² / (sky + max(image, 0)) over pixels and bands: the weights of ``fit_fluxes``."""
    return float(np.sum((image - model) ** 2 / (sky + np.maximum(image, 0.0))))


def residual_peak(image, galaxies, sky):
    """(x, y, significance) of the residual's most significant pixel away from every galaxy, or None.

    The significance is the residual on the detection image over its noise (sky plus the source's
    Poisson term), smoothed by a Gaussian of σ :data:`SIGNIFICANCE_SMOOTHING` pixels; pixels within
    :data:`EXCLUSION` pixels of a galaxy's centre are left out.
    """
    weights = detection_weights(sky)
    residual = image - scene_model(image.shape, galaxies)
    noise = np.sqrt((sky + np.maximum(image, 0.0)) @ weights**2)
    significance = gaussian_filter((residual @ weights) / noise, SIGNIFICANCE_SMOOTHING)
    rows, cols = np.mgrid[:image.shape[0], :image.shape[1]]
    for galaxy in galaxies:
        significance[np.hypot(cols - galaxy.x, rows - galaxy.y) < EXCLUSION] = -np.inf
    row, col = np.unravel_index(np.argmax(significance), significance.shape)
    if not significance[row, col] > 0:
        return None
    return float(col), float(row), float(significance[row, col])


def split_merged(deblender, image, galaxies, kernels, sky, penalty, max_new, reencode, excess_fraction=0.0):
    """Add galaxies at the residual's peaks while each lowers the scene's χ² by more than ``penalty``.

    Each try adds a galaxy at :func:`residual_peak`, encoded from the residual's stamp; then the
    galaxies whose stamps overlap it are refitted together in the scene without the others:
    re-encoded once, re-centred (:func:`recentred`) and re-encoded ``reencode`` times. The try is
    kept if :func:`chi2` of the scene falls by more than ``penalty`` plus ``excess_fraction`` times
    the χ² above noise (one per pixel and band) before the try; the first try that fails ends the
    search. Only the overlapping galaxies change, so a try costs the same in a large image.

    Args:
        deblender: the encoder and decoder.
        image: (H, W, bands) scene [image units].
        galaxies: the scene's galaxies so far.
        kernels: (bands, K, K) PSF kernels.
        sky: (bands,) sky level per pixel [image units].
        penalty: least fall of χ² that keeps a new galaxy (a galaxy adds latent_dim + bands numbers).
        max_new: most galaxies added.
        reencode: re-encodings after re-centring.
        excess_fraction: share of the χ² above noise that a new galaxy must explain, beyond ``penalty``.

    Returns:
        list of :class:`~lenstronomy_vae.deblending.scene_model.SceneGalaxy`: the old ones (some moved),
        then the new ones.
    """
    size = deblender.config.image_size
    for _ in range(max_new):
        peak = residual_peak(image, galaxies, sky)
        if peak is None:
            break
        x, y, _ = peak
        near = [g for g in galaxies if abs(g.x - x) < size and abs(g.y - y) < size]
        rest = [g for g in galaxies if not (abs(g.x - x) < size and abs(g.y - y) < size)]
        scene = image - scene_model(image.shape, rest)
        newcomer = placed(deblender, scene - scene_model(image.shape, near), [(x, y)], kernels, sky)
        trial = reencoded(deblender, scene, fit_fluxes(scene, near + newcomer, sky), kernels, sky, 1)
        trial = recentred(deblender, scene, trial, kernels, sky, reencode)
        before = chi2(scene, scene_model(image.shape, near), sky)
        excess = max(before - scene.size, 0.0)  # above the χ² of noise alone (one per pixel and band)
        if before - chi2(scene, scene_model(image.shape, trial), sky) <= penalty + excess_fraction * excess:
            break
        galaxies = rest + trial
    return galaxies
