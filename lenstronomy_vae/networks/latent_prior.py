"""A learned latent prior: where a VAE's encoder puts real galaxies, as recorded in its manifest entry.

A β-VAE's encoder does not fill its N(0, 1) prior. The latent means of 2,000 of ``lsst45``'s
training galaxies spread only 0.19–0.94 per latent, around means up to 1.0 away from 0: a MAP fit
under N(0, 1) may wander where the decoder met no galaxy. :class:`LatentPrior` is the
diagonal Gaussian of those means, per latent their mean and standard deviation — the simplest
learned prior (MADNESS uses a normalising flow). MAP refinement of a scene
(:func:`lenstronomy_vae.deblending.map.map_refine`) uses it when the deblender has one.

Manifest entry ``latent_prior``: ``{"mean": [...], "std": [...], "stamps": n, "source": "..."}``.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class LatentPrior:
    """A diagonal Gaussian over latent vectors: per latent its mean and standard deviation (latent units).

    Raises:
        ValueError: mean and std not finite 1-D arrays of one length, or a std that is not positive.
    """

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self):
        mean, std = (np.asarray(values, dtype=np.float64) for values in (self.mean, self.std))
        if mean.ndim != 1 or mean.shape != std.shape or not mean.size:
            raise ValueError(f"latent prior mean and std must be 1-D arrays of one length, got shapes {mean.shape} "
                             f"and {std.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
            raise ValueError("latent prior mean and std must be finite")
        if not np.all(std > 0):
            raise ValueError(f"latent prior std must be positive, got a minimum of {std.min()}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def latent_dim(self):
        return self.mean.size

    @classmethod
    def standard(cls, latent_dim):
        """N(0, 1) on each of ``latent_dim`` latents: the VAE's own prior."""
        return cls(np.zeros(latent_dim), np.ones(latent_dim))

    def check_latent_dim(self, latent_dim):
        """Raise ValueError unless the prior is over ``latent_dim`` latents (a network's)."""
        if self.latent_dim != latent_dim:
            raise ValueError(f"the latent prior has {self.latent_dim} latents, the network {latent_dim}")

    @classmethod
    def of_latents(cls, latents):
        """The prior of latent vectors (n, latent_dim): their mean and standard deviation per latent."""
        latents = np.asarray(latents, dtype=np.float64)
        if latents.ndim != 2 or len(latents) < 2:
            raise ValueError(f"latents must be (n, latent_dim) with n >= 2, got shape {latents.shape}")
        return cls(latents.mean(axis=0), latents.std(axis=0))

    @classmethod
    def from_manifest(cls, entry):
        """The prior recorded in a manifest entry; None for an entry without one (or no entry)."""
        recorded = (entry or {}).get("latent_prior")
        if recorded is None:
            return None
        return cls(recorded["mean"], recorded["std"])

    def to_manifest(self, stamps, source):
        """The manifest's ``latent_prior`` entry: mean, std, how many stamps and where they came from."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "stamps": int(stamps), "source": str(source)}
