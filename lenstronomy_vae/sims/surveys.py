"""Survey table: the one place that holds pixel scales, stamp sizes, bands, PSFs and noise levels.

Image units follow each survey's ``flux_unit``: a pixel value is the flux falling on that pixel,
and a galaxy of AB magnitude ``m`` in band ``b`` has a total flux of
``10 ** (-0.4 * (m - zero_points[b]))`` image units.
"""

import dataclasses
import math

import galsim
import numpy as np
import surveycodex


@dataclasses.dataclass(frozen=True)
class AiryPSF:
    """A space telescope PSF: an obscured Airy pattern convolved with a Gaussian.

    The Gaussian stands for everything the diffraction pattern leaves out (jitter, charge
    diffusion, drizzling), so its width is fitted to the survey's measured PSF.

    Attributes:
        lam: wavelength [nm].
        diam: primary mirror diameter [m].
        obscuration: linear central obscuration, as a fraction of ``diam``.
        jitter_fwhm: FWHM of the Gaussian [arcsec].
    """

    lam: float
    diam: float
    obscuration: float
    jitter_fwhm: float

    def build(self):
        """The PSF as a unit-flux ``galsim.GSObject`` in arcsec (no pixel response)."""
        airy = galsim.Airy(lam=self.lam, diam=self.diam, obscuration=self.obscuration, scale_unit=galsim.arcsec)
        return galsim.Convolve(airy, galsim.Gaussian(fwhm=self.jitter_fwhm))


@dataclasses.dataclass(frozen=True)
class KolmogorovPSF:
    """A ground-based seeing-limited PSF: a Kolmogorov turbulence profile.

    Attributes:
        fwhm: full width at half maximum [arcsec] (atmosphere and optics together).
    """

    fwhm: float

    def build(self):
        """The PSF as a unit-flux ``galsim.GSObject`` in arcsec (no pixel response)."""
        return galsim.Kolmogorov(fwhm=self.fwhm)


@dataclasses.dataclass(frozen=True)
class Survey:
    """Everything a simulation or a fit needs to know about one imaging survey.

    Per-band fields are tuples in the order of ``bands``.

    Attributes:
        name: key in :data:`SURVEYS`.
        pixel_scale: pixel size [arcsec / pixel].
        stamp_size: side of a galaxy stamp [pixels].
        bands: filter names.
        psf_models: PSF description of each band (e.g. :class:`AiryPSF`); ``psf()`` builds it.
        noise_sigma: Gaussian noise standard deviation of one pixel in each band [image units].
        zero_points: AB magnitude of a source whose total flux is one image unit, per band.
        flux_unit: what one image unit is, e.g. ``"e-/s"``.
        sky_levels: mean sky background of one pixel in each band [image units], or None for
            a space survey whose noise is Gaussian of ``noise_sigma``. With a sky, images are
            sky-subtracted and their noise is Poisson of (source + sky); ``noise_sigma`` is
            then the sky-only ``sqrt(sky_levels)``.
    """

    name: str
    pixel_scale: float
    stamp_size: int
    bands: tuple
    psf_models: tuple
    noise_sigma: tuple
    zero_points: tuple
    flux_unit: str
    sky_levels: tuple = None

    def __post_init__(self):
        for field in ("psf_models", "noise_sigma", "zero_points", "sky_levels"):
            values = getattr(self, field)
            if values is None:
                continue
            if len(values) != len(self.bands):
                raise ValueError(
                    f"survey {self.name!r}: {field} has {len(values)} entries but there are "
                    f"{len(self.bands)} bands {self.bands}; give one per band"
                )

    def band_index(self, band=None):
        """Position of ``band`` in ``bands``; ``None`` is accepted only for a single-band survey."""
        if band is None:
            if len(self.bands) != 1:
                raise ValueError(f"survey {self.name!r} has bands {self.bands}; pass band=... to choose one")
            return 0
        if band not in self.bands:
            raise ValueError(f"survey {self.name!r} has no band {band!r}; its bands are {self.bands}")
        return self.bands.index(band)

    def psf(self, band=None):
        """The PSF of ``band`` as a unit-flux ``galsim.GSObject`` in arcsec, without the pixel.

        Args:
            band: band name; may be omitted for a single-band survey.
        """
        return self.psf_models[self.band_index(band)].build()

    def mag_to_flux(self, mag, band=None):
        """Total flux [image units] of a source of AB magnitude ``mag``."""
        return 10.0 ** (-0.4 * (np.asarray(mag) - self.zero_points[self.band_index(band)]))

    def flux_to_mag(self, flux, band=None):
        """AB magnitude of a source of total flux ``flux`` [image units]."""
        return self.zero_points[self.band_index(band)] - 2.5 * np.log10(flux)


# HST/ACS F814W as in the COSMOS mosaics, in the units of GalSim's COSMOS catalogs (counts per
# second, i.e. makeGalaxy's default HST area and 1 s exposure), so simulated and real COSMOS
# stamps can be compared and fitted without conversion. Calibrated on the 50 real galaxies of
# the COSMOS validation sample (cosmos_f814w_validation_*.fits, developers' shared data):
# - zero point: MAG + 2.5 log10(stamp_flux) = 25.937 for every galaxy (the ACS F814W AB zero point).
# - PSF: least-squares fits of this model to the catalog's PSF images give jitter FWHM
#   0.086–0.092″ (median 0.087″). That matches their peak pixel (4.4 % of the flux) and the
#   light within 0.1″ (66 % vs 65 %); the FWHM is 0.11″ without the pixel. The real PSF has
#   somewhat more light at 0.2–0.4″ (89 % within 0.2″ against 92 %).
# - noise: the real noise is correlated by drizzling (median NOISE_VARIANCE 6.77e-6, i.e. 0.0026
#   per pixel, with acs_I_unrot_sci_20_cf.fits as its correlation function). White noise of
#   sigma 0.0057 gives simulated galaxies (default GalaxySimConfig) the same matched-filter S/N
#   as that correlated noise: the equivalent sigma is 0.0055–0.0059 for 80 % of them, and the
#   median S/N at F814W 23.5–24.5 is 46 under either noise.
HST_ACS_F814W = Survey(
    name="hst_acs_f814w",
    pixel_scale=0.03,
    stamp_size=64,
    bands=("F814W",),
    psf_models=(AiryPSF(lam=814.0, diam=2.4, obscuration=0.33, jitter_fwhm=0.087),),
    noise_sigma=(0.0057,),
    zero_points=(25.937,),
    flux_unit="e-/s",
)


def _lsst_from_surveycodex(stamp_size=45):
    """LSST u g r i z y at 10-year depth, every number taken from ``surveycodex``.

    Image units are electrons collected over the full 10-year exposure of each band, so the
    pixel values are Poisson counts (gain 1 e-/ADU) and no exposure time is needed elsewhere.
    surveycodex's zero point is the AB magnitude giving 1 e-/s; adding 2.5 log10(exposure)
    makes it the magnitude giving 1 e- over the survey. The sky per pixel is the sky
    brightness [mag / arcsec²] over one pixel's area, in the same electrons.
    """
    codex = surveycodex.get_survey("LSST")
    pixel_scale = float(codex.pixel_scale.to_value("arcsec"))
    bands = tuple(codex.available_filters)
    filters = [codex.get_filter(band) for band in bands]
    zero_points = tuple(
        float(f.zeropoint.value) + 2.5 * math.log10(f.full_exposure_time.to_value("s")) for f in filters
    )
    sky_levels = tuple(
        10 ** (-0.4 * (float(f.sky_brightness.value) - zero_point)) * pixel_scale**2
        for f, zero_point in zip(filters, zero_points)
    )
    return Survey(
        name="lsst",
        pixel_scale=pixel_scale,
        stamp_size=stamp_size,
        bands=bands,
        psf_models=tuple(KolmogorovPSF(fwhm=float(f.psf_fwhm.to_value("arcsec"))) for f in filters),
        noise_sigma=tuple(math.sqrt(sky) for sky in sky_levels),
        zero_points=zero_points,
        flux_unit="e- (full 10-year exposure)",
        sky_levels=sky_levels,
    )


# LSST 10-year depth in 45 × 45 stamps of 0.2″ (9″ on a side), as in BlendingToolKit.
LSST = _lsst_from_surveycodex()

SURVEYS = {survey.name: survey for survey in (HST_ACS_F814W, LSST)}


def get_survey(name):
    """The :class:`Survey` called ``name``, with the list of known names if there is none."""
    if name not in SURVEYS:
        raise ValueError(f"unknown survey {name!r}; known surveys: {sorted(SURVEYS)}")
    return SURVEYS[name]


class SurveySet:
    """Mixin of simulated sets whose ``config.survey`` names their survey: survey, bands, pixel scale."""

    @property
    def survey(self):
        """The :class:`Survey` the set was simulated for."""
        return get_survey(self.config.survey)

    @property
    def bands(self):
        return self.survey.bands

    @property
    def pixel_scale(self):
        """Stamp pixel size [arcsec]."""
        return self.survey.pixel_scale
