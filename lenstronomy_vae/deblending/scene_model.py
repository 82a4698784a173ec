"""The model of a deblended scene: its galaxies (decoded, PSF-convolved, placed on stamps) and their fluxes.

Images are (H, W, bands) arrays in the survey's image units, sky-subtracted; positions are in
pixels with ``sep``'s convention (``x`` the column, ``y`` the row, pixel centres at integers).
"""

import dataclasses

import numpy as np
from scipy.optimize import nnls

from lenstronomy_vae.deblending.stamps import paste
from lenstronomy_vae.networks.decoding import decode
from lenstronomy_vae.sims.rendering import convolve_bands, psf_kernel
from lenstronomy_vae.sims.surveys import get_survey
from lenstronomy_vae.utils.checks import check_finite

# PSF kernels of 25 × 25 pixels (5″ for LSST) hold the seeing disc and its wings.
KERNEL_SIZE = 25


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
    """

    x: float
    y: float
    row0: int
    col0: int
    latent: np.ndarray
    intrinsic: np.ndarray
    model: np.ndarray
    scale: np.ndarray = None


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

    def nearest(self, x, y):
        """The galaxy whose detection is nearest to pixel (x, y), or None if there is none."""
        if not self.galaxies:
            return None
        return min(self.galaxies, key=lambda galaxy: np.hypot(galaxy.x - x, galaxy.y - y))

    def isolated(self, galaxy):
        """(H, W, bands) image of one galaxy's PSF-convolved model alone on the scene's grid."""
        return scene_model(self.model.shape, [galaxy])


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


def checked_scene(image, deblender):
    image = np.asarray(image, dtype=np.float64)
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
