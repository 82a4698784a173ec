"""Image-quality metrics used to judge reconstructions."""

import numpy as np
from scipy.ndimage import gaussian_filter

# Wang et al. (2004) constants for a data range L: C1 = (K1 L)², C2 = (K2 L)².
_K1, _K2, _WINDOW_SIGMA = 0.01, 0.03, 1.5


def ssim(image, reference, data_range=None):
    """Mean structural similarity of two 2-D images (Wang et al. 2004, Gaussian window σ = 1.5 px).

    Args:
        image, reference: arrays (H, W) in the same units.
        data_range: dynamic range L of the images; default ``reference.max() - reference.min()``.

    Returns:
        SSIM in [-1, 1]; 1 for identical images.
    """
    image, reference = np.asarray(image, float), np.asarray(reference, float)
    if image.shape != reference.shape or image.ndim != 2:
        raise ValueError(f"ssim needs two 2-D images of one shape; got {image.shape} and {reference.shape}")
    if data_range is None:
        data_range = reference.max() - reference.min()
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2

    def blur(a):
        return gaussian_filter(a, _WINDOW_SIGMA, mode="reflect", truncate=3.5)

    mu_x, mu_y = blur(image), blur(reference)
    var_x = blur(image * image) - mu_x**2
    var_y = blur(reference * reference) - mu_y**2
    cov = blur(image * reference) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def relative_flux_error(image, reference):
    """(Σ image − Σ reference) / Σ reference over the last two (pixel) axes; dimensionless."""
    total = np.sum(reference, axis=(-2, -1))
    return (np.sum(image, axis=(-2, -1)) - total) / total
