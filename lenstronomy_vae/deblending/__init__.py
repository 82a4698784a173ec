"""Deblending scenes: detection, stamps, field mode, splitting merged detections, tiles, MAP, the FITS pipeline."""

from lenstronomy_vae.deblending.detection import detect, segmentation_deblend
from lenstronomy_vae.deblending.fits_pipeline import deblend_fits
from lenstronomy_vae.deblending.map import map_refine
from lenstronomy_vae.deblending.scene import (
    NoTrainingRangeWarning,
    OutOfTrainingRangeWarning,
    SkyBackgroundWarning,
    deblend_scene,
)
from lenstronomy_vae.deblending.scene_model import SceneGalaxy, SceneResult, survey_kernels
from lenstronomy_vae.deblending.stamps import cutout, paste
from lenstronomy_vae.deblending.tiling import deblend_field

__all__ = ["NoTrainingRangeWarning", "OutOfTrainingRangeWarning", "SceneGalaxy", "SceneResult",
           "SkyBackgroundWarning", "cutout", "deblend_field", "deblend_fits", "deblend_scene", "detect",
           "map_refine", "paste", "segmentation_deblend", "survey_kernels"]
