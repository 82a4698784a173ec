"""Training arrays: normalised (observed, target, χ² weight) stamps for the VAE, the deblender and the regressor."""

import numpy as np

from lenstronomy_vae.networks.decoding import encode
from lenstronomy_vae.networks.regressor import ALL_OUTPUTS

# Normalised-unit error added in quadrature to the propagated pixel noise. Without it the χ² weight
# of a bright core grows like (1 + u²)³ and the normalisation's compression is undone.
MODEL_ERROR = 0.02


def training_arrays(galaxies, normalization, model_error=MODEL_ERROR, observed=None):
    """Normalised (observed, target, χ² weight) float32 arrays (n, H, W, C) of a GalaxySet or BlendSet.

    The weight of a pixel is 1 / (σ_y² + model_error²), σ_y being the survey noise propagated into
    normalised units at the intrinsic (target) value. ``observed`` replaces the set's own
    observed stamps (a deblender sees the blends, ``BlendSet.blend``).
    """
    observed = galaxies.observed if observed is None else observed
    for name, stamps in (("observed", observed), ("intrinsic", galaxies.intrinsic)):
        bad = ~np.isfinite(stamps)
        if bad.any():
            raise ValueError(
                f"{name} stamps hold {int(bad.sum())} NaN or infinite pixel(s), first in galaxy "
                f"{int(np.argwhere(bad)[0][0])}; remove those galaxies before training"
            )
    observed = normalization.normalize(observed.astype(np.float64))
    target = normalization.normalize(galaxies.intrinsic.astype(np.float64))
    sigma = galaxies.noise_sigma[:, None, None, :]
    noise_variance = 1.0 / normalization.inverse_variance(galaxies.intrinsic.astype(np.float64), sigma)
    weight = 1.0 / (noise_variance + model_error**2)
    return tuple(a.astype(np.float32) for a in (observed, target, weight))


def deblender_arrays(blends, vae):
    """(blend, target, weight, latent_target) float32 training arrays of a BlendSet for a VAE's deblender."""
    blend, target, weight = training_arrays(blends, vae.normalization, observed=blends.blend)
    return blend, target, weight, encode(vae, blends.target_noisy).astype(np.float32)


def regression_arrays(blends, normalization, outputs=ALL_OUTPUTS):
    """(normalised blends, labels) float32 arrays of a BlendSet: the targets' truth in ``outputs`` order."""
    truth = blends.target_truth
    labels = np.stack([truth[name] for name in outputs], axis=1)
    if not np.all(np.isfinite(labels)):
        raise ValueError(f"the targets' truth has non-finite {outputs} values; drop 'redshift' from outputs when "
                         "the data has none")
    return normalization.normalize(blends.blend.astype(np.float64)).astype(np.float32), labels.astype(np.float32)
