"""The model of a deblended scene: its galaxies (decoded, PSF-convolved, placed on stamps) and their fluxes.

Images are (H, W, bands) arrays in the survey's image units, sky-subtracted; positions are in
pixels with ``sep``'s convention (``x`` the column, ``y`` the row, pixel centres at integers).
"""

import dataclasses

import numpy as np
from scipy.optimize import nnls

from lenstronomy_vae.deblending.stamps import cutout_at, on_image, paste
from lenstronomy_vae.networks.decoding import decode
from lenstronomy_vae.sims.rendering import convolve_bands, psf_kernel
from lenstronomy_vae.sims.surveys import get_survey
from lenstronomy_vae.utils.checks import check_finite

# PSF kernels of 25 × 25 pixels (5″ for LSST) hold the seeing disc and its wings.
KERNEL_SIZE = 25

# A galaxy is likely_merged when the residual's χ² per pixel and band inside its footprint (the pixels where
# its model, combined over the bands as for detection, is above the detection image's noise σ) exceeds this.
# On training-like scenes (benchmarks/out_of_range_flags.py, 200 scenes, seed 31) the 25 targets with
# |Δf/f| > 50 % are unrecognised blends: two galaxies within ~1″ merged into one detection, whose model takes
# both. They fit only slightly worse than single galaxies (median χ² 1.50 against 1.02): 1.03 marks 24 of the 25
# and 40 % of the others (seed 41: 23 of 25, 45 %); 1.4 would mark 15 of 25 and 16 % (seed 41: 17, 15 %).
MERGED_CHI2 = 1.03

# Default largest distance between a position and the detection that stands for it [pixels]: field mode's
# default min_separation, under which it never keeps two detections (1″ for LSST, 1.4 PSF FWHM). A
# galaxy with no detection that close was not found; the nearest one further away is another galaxy.
MATCH_DISTANCE = 5.0


@dataclasses.dataclass
class SceneGalaxy:
    """One deblended galaxy of a scene.

    Attributes:
        x, y: detection centre: column and row [pixels]; its stamp is centred on the nearest pixel.
        row0, col0: image row and column of the stamp's top-left pixel (may be negative).
        latent: (latent_dim,) latent vector.
        intrinsic: (S, S, bands) decoded galaxy without PSF, times ``scale`` [image units].
        model: (S, S, bands) ``intrinsic`` convolved with the PSF [image units].
        scale: (bands,) factor from the decoded flux to the linearly fitted one (:func:`fit_fluxes`).
        out_of_range: short reasons why the galaxy is outside the deblender's training range
            (:meth:`lenstronomy_vae.networks.training_range.TrainingRange.reasons`); empty when it is
            inside, or when the deblender has no recorded range. Its flux and shape are then not to be
            trusted: a bright galaxy beyond the range came back with −95 % of its flux.
        footprint_chi2: the residual's χ² per pixel and band inside the galaxy's footprint
            (:func:`footprint_chi2`); NaN until field mode sets it. See :attr:`likely_merged`.
        blendedness: the galaxy's blendedness in the scene's model (:func:`model_blendedness`); NaN
            until field mode sets it.
    """

    x: float
    y: float
    row0: int
    col0: int
    latent: np.ndarray
    intrinsic: np.ndarray
    model: np.ndarray
    scale: np.ndarray = None
    out_of_range: tuple = ()
    footprint_chi2: float = float("nan")
    blendedness: float = float("nan")

    @property
    def likely_merged(self):
        """Whether the model fits the galaxy's light worse than :data:`MERGED_CHI2`: likely two galaxies in one."""
        return bool(self.footprint_chi2 > MERGED_CHI2)


@dataclasses.dataclass
class SceneResult:
    """A deblended scene.

    Attributes:
        galaxies: list of :class:`SceneGalaxy`, in the order they were found.
        model: (H, W, bands) sum of the galaxies' PSF-convolved models [image units].
        residual: image − model.
        map_loss: (before, after) MAP loss of a refined scene; None otherwise.
    """

    galaxies: list
    model: np.ndarray
    residual: np.ndarray
    map_loss: tuple = None

    def nearest(self, x, y, max_distance=MATCH_DISTANCE):
        """The galaxy whose detection is nearest to pixel (x, y), or None if none is within ``max_distance``.

        Args:
            x, y: column and row [pixels].
            max_distance: largest distance to the detection [pixels]; default :data:`MATCH_DISTANCE`
                (5 px), under which field mode never keeps two detections. None: no limit, the
                nearest detection however far.
        """
        distances = self._distances([x], [y], max_distance)[0]
        if not np.isfinite(distances).any():
            return None
        return self.galaxies[int(np.argmin(distances))]

    def match(self, x, y, max_distance=MATCH_DISTANCE):
        """Pair positions (e.g. true ones) with detections one to one, the closest pairs first.

        Each detection is paired with at most one position and each position with at most one
        detection, within ``max_distance``: of two galaxies that field mode merged into one
        detection, the nearer gets it and the other is unmatched.

        Args:
            x, y: (n,) columns and rows [pixels].
            max_distance: largest distance of a pair [pixels] (see :meth:`nearest`); None: no limit.

        Returns:
            list of n indices into ``galaxies``, None for a position left unmatched.
        """
        distances = self._distances(x, y, max_distance)
        matched = [None] * len(distances)
        taken = set()
        for position, galaxy in zip(*np.unravel_index(np.argsort(distances, axis=None), distances.shape)):
            if not np.isfinite(distances[position, galaxy]):
                break
            if matched[position] is None and galaxy not in taken:
                matched[position] = int(galaxy)
                taken.add(galaxy)
        return matched

    def _distances(self, x, y, max_distance):
        """(positions, galaxies) distances [pixels], inf beyond ``max_distance``."""
        if max_distance is not None and not max_distance >= 0:
            raise ValueError(f"max_distance must be a distance >= 0 in pixels or None, got {max_distance!r}")
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.ndim != 1 or x.shape != y.shape:
            raise ValueError(f"x and y must be 1-D arrays of the same length, got shapes {x.shape} and {y.shape}")
        centres = np.array([(galaxy.x, galaxy.y) for galaxy in self.galaxies]).reshape(-1, 2)
        distances = np.hypot(x[:, None] - centres[:, 0], y[:, None] - centres[:, 1])
        if max_distance is not None:
            distances[distances > max_distance] = np.inf
        return distances

    def isolated(self, galaxy):
        """(H, W, bands) image of one galaxy's PSF-convolved model alone on the scene's grid."""
        return scene_model(self.model.shape, [galaxy])

    def cleaned_stamp(self, galaxy):
        """(S, S, bands) the galaxy's stamp of the scene with the other galaxies subtracted [image units].

        Its model plus the residual, so light the model misses still counts; zeros beyond the image.
        """
        return cleaned_stamp(self.residual, galaxy)


def cleaned_stamp(residual, galaxy):
    """(S, S, bands) ``residual`` on the galaxy's stamp plus its own model, where the stamp is on the image."""
    size = galaxy.model.shape[0]
    return (cutout_at(residual, galaxy.row0, galaxy.col0, size)
            + galaxy.model * on_image(residual.shape, galaxy.row0, galaxy.col0, size))


def scene_model(shape, galaxies):
    """(H, W, bands) sum of the galaxies' PSF-convolved models placed on a scene of ``shape``."""
    model = np.zeros(shape)
    for galaxy in galaxies:
        paste(model, galaxy.model, galaxy.row0, galaxy.col0)
    return model


def survey_kernels(survey, bands):
    """(bands, KERNEL_SIZE, KERNEL_SIZE) PSF kernels of a survey for the model's bands."""
    survey = get_survey(survey) if isinstance(survey, str) else survey
    return np.stack([psf_kernel(survey, band, KERNEL_SIZE) for band in bands])


def checked_scene(image, deblender, dtype=np.float64):
    """``image`` as a finite (H, W, bands) array of ``dtype`` with the deblender's bands, or a ValueError."""
    image = np.asarray(image, dtype=dtype)
    bands = deblender.config.bands
    if image.ndim != 3 or image.shape[-1] != len(bands):
        raise ValueError(f"image must be (H, W, bands) with the model's {len(bands)} bands {bands}; "
                         f"got shape {image.shape}")
    check_finite("image", image, "row, column, band")
    return image


def decoded_galaxy(deblender, kernels, x, y, row0, col0, latent, scale=None):
    """The :class:`SceneGalaxy` of a latent vector: decoded, times ``scale`` per band, convolved with ``kernels``."""
    scale = np.ones(deblender.config.num_bands) if scale is None else np.asarray(scale, dtype=np.float64)
    intrinsic = decode(deblender, latent[None])[0] * scale
    return SceneGalaxy(x, y, row0, col0, np.asarray(latent, dtype=np.float64), intrinsic,
                       convolve_bands(intrinsic, kernels), scale)


def fit_fluxes(image, galaxies, sky):
    """Rescale each galaxy's model per band by a joint, non-negative linear fit to the image.

    The decoder's shapes are kept; their amplitudes in each band are the weighted least-squares
    (weights 1 / (sky + max(image, 0))) non-negative solution for all galaxies together, as
    lenstronomy solves linear amplitudes. The decoder's own flux is steep near the top of the
    normalisation (a decoded value near 1 maps to a flux far beyond the training range), so
    the linear fit is the flux estimate of record.

    Args:
        image: (H, W, bands) scene [image units].
        galaxies: list of :class:`SceneGalaxy`.
        sky: (bands,) sky level per pixel [image units].

    Returns:
        list of :class:`SceneGalaxy` with ``model`` and ``intrinsic`` rescaled per band.
    """
    templates = np.stack([scene_model(image.shape, [galaxy]) for galaxy in galaxies])
    scales = np.ones((len(galaxies), image.shape[-1]))
    for b in range(image.shape[-1]):
        weight = 1.0 / np.sqrt(sky[b] + np.maximum(image[..., b], 0.0)).ravel()
        design = templates[..., b].reshape(len(galaxies), -1).T * weight[:, None]
        usable = np.any(design != 0, axis=0)
        if usable.any():
            scales[usable, b] = nnls(design[:, usable], image[..., b].ravel() * weight)[0]
    return [dataclasses.replace(galaxy, model=galaxy.model * scale, intrinsic=galaxy.intrinsic * scale,
                                scale=galaxy.scale * scale) for galaxy, scale in zip(galaxies, scales)]


def reencoded(deblender, image, galaxies, kernels, sky, iterations=1):
    """Encode every galaxy again from the scene minus its neighbours' models, then refit the fluxes.

    The first encoding reads each galaxy's stamp with its neighbours' light in it; once every galaxy
    has a model, each stamp is read again with the others subtracted (the residual plus its own model),
    all galaxies at once, and the fluxes are refitted jointly (:func:`fit_fluxes`). Each iteration
    repeats this with the new models.

    Args:
        deblender: the network that encoded the galaxies.
        image: (H, W, bands) scene [image units].
        galaxies: list of :class:`SceneGalaxy`, placed on ``image``'s grid.
        kernels: (bands, K, K) PSF kernels (:func:`survey_kernels`).
        sky: (bands,) sky level per pixel [image units].
        iterations: how many times to re-encode; 0 returns ``galaxies`` unchanged.

    Returns:
        list of :class:`SceneGalaxy`, in the same order.
    """
    for _ in range(iterations):
        if not galaxies:
            break
        residual = image - scene_model(image.shape, galaxies)
        latents = deblender.encode(np.stack([cleaned_stamp(residual, galaxy) for galaxy in galaxies]))
        galaxies = fit_fluxes(image, [decoded_galaxy(deblender, kernels, galaxy.x, galaxy.y, galaxy.row0, galaxy.col0,
                                                     latent) for galaxy, latent in zip(galaxies, latents)], sky)
    return galaxies


def stamp_measures(network, stamp):
    """(peak, flux) per band of a stamp the encoder reads: largest normalised pixel and sum [image units]."""
    stamp = np.asarray(stamp, dtype=np.float64)
    return network.normalization.normalize(stamp).max(axis=(-3, -2)), stamp.sum(axis=(-3, -2))


def footprint_chi2(result, galaxy, sky, size):
    """Residual χ² per pixel and band inside a galaxy's footprint: how well its model and its neighbours' fit there.

    The footprint is the pixels of the scene where the galaxy's model, combined over the bands with the
    detection image's weights (:func:`~lenstronomy_vae.deblending.detection.detection_image`), is above
    that image's noise σ; the variance of a pixel is ``sky + max(image, 0)``, as in :func:`fit_fluxes`.
    A model that merged two galaxies (an unrecognised blend) fits their light worse than a single galaxy's.

    Args:
        result: the :class:`SceneResult`.
        galaxy: one of its galaxies.
        sky: (bands,) sky level per pixel [image units].
        size: the galaxy's stamp side [pixels].

    Returns:
        the mean of ``residual² / variance`` over the footprint's pixels and bands; NaN for an empty footprint.
    """
    sky = np.asarray(sky, dtype=np.float64)
    residual = cutout_at(result.residual, galaxy.row0, galaxy.col0, size)
    image = cutout_at(result.model, galaxy.row0, galaxy.col0, size) + residual
    inside = on_image(result.model.shape, galaxy.row0, galaxy.col0, size)[..., 0] > 0
    weights = 1.0 / sky / np.sum(1.0 / sky)
    footprint = inside & (galaxy.model @ weights > np.sum(1.0 / sky) ** -0.5)
    if not footprint.any():
        return float("nan")
    return float(np.mean(residual[footprint] ** 2 / (sky + np.maximum(image[footprint], 0.0))))


def model_blendedness(result, galaxy, sky):
    """The galaxy's blendedness in the scene's model: 1 − Σ m² / Σ m·M over its stamp.

    ``m`` is the galaxy's PSF-convolved model and ``M`` the whole scene's model, both combined over the
    bands with the detection image's weights (inverse sky variance); 0 for a galaxy alone, towards 1
    for one buried under brighter neighbours (the definition of the truth's blendedness, on models).
    """
    weights = 1.0 / np.asarray(sky, dtype=np.float64)
    weights /= weights.sum()
    size = galaxy.model.shape[0]
    own = galaxy.model @ weights
    scene = cutout_at(result.model, galaxy.row0, galaxy.col0, size) @ weights
    overlap = float(np.sum(own * scene))
    return 1.0 - float(np.sum(own**2)) / overlap if overlap > 0 else float("nan")


def with_footprint_chi2(result, sky, size):
    """The result with every galaxy's ``footprint_chi2`` (:func:`footprint_chi2`) and ``blendedness``
    (:func:`model_blendedness`) set."""
    return dataclasses.replace(result, galaxies=[
        dataclasses.replace(galaxy, footprint_chi2=footprint_chi2(result, galaxy, sky, size),
                            blendedness=model_blendedness(result, galaxy, sky))
        for galaxy in result.galaxies])
