"""Measuring the networks: image and shape metrics, reconstruction quality, the deblending report, figures."""

from lenstronomy_vae.evaluation.metrics import (
    binned_statistics,
    cosine_similarity,
    flux_errors,
    robust_sigma,
    shape_errors,
    shear_bias,
    ssim,
)
from lenstronomy_vae.evaluation.reconstruction import reconstruction_metrics
from lenstronomy_vae.evaluation.report import compare

__all__ = ["binned_statistics", "compare", "cosine_similarity", "flux_errors", "reconstruction_metrics",
           "robust_sigma", "shape_errors", "shear_bias", "ssim"]
