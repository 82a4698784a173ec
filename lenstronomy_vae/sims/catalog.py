"""The COSMOS parametric catalogue (shipped in the ``fpfs`` wheel) and the cuts that select from it.

GalSim reads the catalogue (``galsim.COSMOSCatalog``, parametric fits only); this module finds it
without importing ``fpfs``, chooses the morphology source, and selects the rows whose magnitude,
size and flux inside the stamp pass a configuration's cuts.
"""

import functools
import importlib.util
import os

import galsim
import numpy as np
from scipy.special import gammainc, gammaincinv

from lenstronomy_vae.sims.surveys import get_survey

SOURCES = ("auto", "cosmos", "parametric")
COSMOS_FILE = "src_cosmos.fits"


class CatalogUnavailableError(ValueError, RuntimeError):
    """``source="cosmos"`` was asked for, but the COSMOS catalog (from the ``fpfs`` wheel) is not installed.

    A ValueError, like any argument that cannot be used; also a RuntimeError, which callers
    caught before it had its own class.
    """


def cosmos_catalog_dir():
    """Directory of the COSMOS parametric catalog shipped in the ``fpfs`` wheel, or None.

    The package is located without importing it: importing ``fpfs`` needs jax, which this
    package does not.
    """
    spec = importlib.util.find_spec("fpfs")
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = os.path.join(spec.submodule_search_locations[0], "data")
    return directory if os.path.isfile(os.path.join(directory, COSMOS_FILE)) else None


def resolve_source(source):
    """The morphology source to use: ``"cosmos"`` or ``"parametric"``.

    Raises:
        ValueError: an unknown source.
        CatalogUnavailableError: ``source="cosmos"`` but the catalog is not installed.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {SOURCES}")
    available = cosmos_catalog_dir() is not None
    if source == "cosmos" and not available:
        raise CatalogUnavailableError(
            f"source='cosmos' needs the COSMOS parametric catalog {COSMOS_FILE} from the fpfs wheel: "
            "run `pip install fpfs --no-deps`, or use source='parametric' (or 'auto')"
        )
    if source == "auto":
        return "cosmos" if available else "parametric"
    return source


@functools.lru_cache(maxsize=1)
def cosmos_catalog():
    # exclusion_level="none" keeps every row, so catalog index == row of param_cat.
    return galsim.COSMOSCatalog(
        file_name=COSMOS_FILE, dir=cosmos_catalog_dir(), use_real=False, exclusion_level="none"
    )


def flux_in_circle(n, hlr, q, radius):
    """Fraction of a Sersic profile's flux within ``radius`` [arcsec] of its centre.

    GalSim's ``hlr`` is that of the circular profile before shearing; the major-axis radius
    ``hlr / sqrt(q)`` is used in every direction, so the fraction is underestimated.
    """
    n = np.clip(n, 0.3, 6.0)
    b = gammaincinv(2 * n, 0.5)
    # A zero radius (a component the fit does not have) must give 1, not a division warning.
    major = np.maximum(hlr / np.sqrt(np.clip(q, 1e-3, 1.0)), 1e-12)
    return gammainc(2 * n, b * (radius / major) ** (1 / n))


def stamp_radius(config):
    """Radius [arcsec] of the circle inscribed in the stamp, around the most offset centre."""
    survey = get_survey(config.survey)
    return (survey.stamp_size / 2 - config.max_offset) * survey.pixel_scale


@functools.lru_cache(maxsize=8)
def _cosmos_selection(survey_name, mag_range, hlr_range, min_flux_in_stamp, radius):
    """Rows of the COSMOS catalog that pass the cuts, in catalog order."""
    cat = cosmos_catalog().param_cat
    survey = get_survey(survey_name)
    bulge_disk = cat["use_bulgefit"] == 1
    flux = np.where(bulge_disk, cat["flux"][:, 1] + cat["flux"][:, 2], cat["flux"][:, 0])
    usable = (bulge_disk | (cat["viable_sersic"] == 1)) & (flux > 0)
    flux = np.where(usable, flux, 1.0)
    bulge_fraction = np.where(bulge_disk, cat["flux"][:, 1] / flux, 0.0)
    in_stamp = np.where(
        bulge_disk,
        bulge_fraction * flux_in_circle(4.0, cat["hlr"][:, 1], cat["bulgefit"][:, 11], radius)
        + (1 - bulge_fraction) * flux_in_circle(1.0, cat["hlr"][:, 2], cat["bulgefit"][:, 3], radius),
        flux_in_circle(cat["sersicfit"][:, 2], cat["hlr"][:, 0], cat["sersicfit"][:, 3], radius),
    )
    mag = survey.flux_to_mag(flux)
    hlr = cat["hlr"][:, 0]
    keep = (
        usable
        & (mag >= mag_range[0]) & (mag <= mag_range[1])
        & (hlr >= hlr_range[0]) & (hlr <= hlr_range[1])
        & (in_stamp >= min_flux_in_stamp)
    )
    return np.flatnonzero(keep)


def cosmos_selection(config):
    """Rows of the COSMOS parametric catalog that ``config``'s cuts keep (needs ``fpfs``)."""
    resolve_source("cosmos")
    return _cosmos_selection(config.survey, config.mag_range, config.hlr_range,
                             config.min_flux_in_stamp, stamp_radius(config))

