"""Galaxy morphologies: COSMOS parametric fits, COSMOS-like bulge + disk draws, star-forming knots
(scattered like the disk, along logarithmic spiral arms, or bright and off-centre in irregular galaxies).

Sizes are in arcsec and angles in radians; profiles are ``galsim.GSObject`` in image units.
"""

import dataclasses
import math

import galsim
import numpy as np

from lenstronomy_vae.sims.catalog import cosmos_catalog, flux_in_circle, stamp_radius
from lenstronomy_vae.sims.surveys import get_survey

# Fallback morphology, fitted on COSMOS parametric galaxies passing the default cuts
# (F814W 18–25, Sersic hlr 0.05–0.5″, ≥ 90 % of the flux in a 64 × 0.03″ stamp).
COUNTS_SLOPE = 0.55              # dN/dm ∝ 10^(slope · m), fitted over F814W 21–25
_LOG_HLR_AT_24 = -0.77           # log10 disk hlr [arcsec] at F814W = 24 ...
_LOG_HLR_PER_MAG = -0.09         # ... its change per magnitude ...
_LOG_HLR_SCATTER = 0.19          # ... and scatter [dex]
_BULGE_PROBABILITY = 0.26        # fraction of galaxies fitted better by bulge + disk
_BULGE_TO_TOTAL = (0.1, 0.8)     # uniform range of the bulge flux fraction
_LOG_BULGE_TO_DISK_HLR = (-0.45, 0.30)  # mean and sigma of log10(bulge hlr / disk hlr)
_DISK_Q = (0.2, 0.9)             # uniform ranges of the axis ratios
_BULGE_Q = (0.4, 1.0)            # rounder than COSMOS bulge fits (median 0.26): a choice, not a fit
_MAX_DRAWS = 1000                # rejection-sampling attempts per fallback galaxy

# Single-Sersic COSMOS fits steeper than this are treated as spheroids: they get no knots.
_MAX_DISK_SERSIC_N = 2.5


@dataclasses.dataclass
class Morphology:
    """A galaxy before rotation, knots and offset.

    Attributes:
        profile: smooth light profile, total flux in image units.
        disk: (hlr [arcsec], q, position angle [rad]) of the component knots follow, or None.
        shape: (q, position angle [rad]) of the component carrying most of the flux.
        index: catalog row, or -1.
        redshift: photometric redshift, or NaN.
    """

    profile: galsim.GSObject
    disk: tuple
    shape: tuple
    index: int
    redshift: float


def cosmos_morphology(index):
    cat = cosmos_catalog()
    record = cat.param_cat[index]
    profile = cat.makeGalaxy(int(index), gal_type="parametric")
    if record["use_bulgefit"]:
        fit = record["bulgefit"]
        disk = (record["hlr"][2], fit[3], fit[7])
        bulge_dominant = record["flux"][1] > record["flux"][2]
        shape = (fit[11], fit[15]) if bulge_dominant else (fit[3], fit[7])
    else:
        fit = record["sersicfit"]
        shape = (fit[3], fit[7])
        disk = (record["hlr"][0], fit[3], fit[7]) if fit[2] < _MAX_DISK_SERSIC_N else None
    return Morphology(profile, disk, shape, int(index), float(record["zphot"]))


@dataclasses.dataclass
class _BulgeDisk:
    """Parameters of a parametric bulge + disk galaxy (sizes in arcsec, angles in radians).

    ``mag`` is the AB magnitude of the total flux in the survey's reference band (its only
    band for HST, the colour reference band for multi-band surveys).
    """

    mag: float
    disk_hlr: float
    disk_q: float
    beta: float
    bulge_fraction: float
    bulge_hlr: float
    bulge_q: float


def draw_bulge_disk(rng, config):
    """A bulge + disk galaxy drawn from COSMOS-like distributions, by rejection until it passes the cuts.

    ``config`` needs ``survey``, ``mag_range``, ``counts_slope``, ``hlr_range``, ``min_flux_in_stamp`` and
    ``max_offset`` (a :class:`GalaxySimConfig` or a blend config).
    """
    radius = stamp_radius(config)
    slope = config.counts_slope * math.log(10)
    lo, hi = config.mag_range
    for _ in range(_MAX_DRAWS):
        # Inverse CDF of dN/dm ∝ exp(slope · m) on [lo, hi].
        u = rng.uniform()
        mag = hi + math.log(u + (1 - u) * math.exp(-slope * (hi - lo))) / slope
        disk_hlr = 10 ** rng.normal(_LOG_HLR_AT_24 + _LOG_HLR_PER_MAG * (mag - 24), _LOG_HLR_SCATTER)
        disk_q = rng.uniform(*_DISK_Q)
        beta = rng.uniform(0, math.pi)
        bulge_fraction = rng.uniform(*_BULGE_TO_TOTAL) if rng.uniform() < _BULGE_PROBABILITY else 0.0
        bulge_hlr = disk_hlr * 10 ** rng.normal(*_LOG_BULGE_TO_DISK_HLR)
        bulge_q = rng.uniform(*_BULGE_Q)
        in_stamp = (bulge_fraction * flux_in_circle(4.0, bulge_hlr, bulge_q, radius)
                    + (1 - bulge_fraction) * flux_in_circle(1.0, disk_hlr, disk_q, radius))
        if config.hlr_range[0] <= disk_hlr <= config.hlr_range[1] and in_stamp >= config.min_flux_in_stamp:
            return _BulgeDisk(mag, disk_hlr, disk_q, beta, bulge_fraction, bulge_hlr, bulge_q)
    raise RuntimeError(
        f"no parametric galaxy passed the cuts in {_MAX_DRAWS} draws: widen hlr_range "
        f"{config.hlr_range} or mag_range {config.mag_range}, or lower min_flux_in_stamp "
        f"{config.min_flux_in_stamp}"
    )


def parametric_morphology(rng, config):
    """A single-band bulge + disk galaxy drawn by :func:`draw_bulge_disk`."""
    p = draw_bulge_disk(rng, config)
    flux = float(get_survey(config.survey).mag_to_flux(p.mag))
    profile = galsim.Exponential(half_light_radius=p.disk_hlr, flux=(1 - p.bulge_fraction) * flux).shear(
        q=p.disk_q, beta=p.beta * galsim.radians
    )
    if p.bulge_fraction > 0:
        profile += galsim.DeVaucouleurs(half_light_radius=p.bulge_hlr, flux=p.bulge_fraction * flux).shear(
            q=p.bulge_q, beta=p.beta * galsim.radians
        )
    shape = (p.bulge_q, p.beta) if p.bulge_fraction > 0.5 else (p.disk_q, p.beta)
    return Morphology(profile, (p.disk_hlr, p.disk_q, p.beta), shape, -1, math.nan)


# Spiral arms: knots scatter about each arm by this much in angle [radians] and in log radius.
_ARM_ANGLE_SCATTER = 0.15
_ARM_LOG_RADIUS_SCATTER = 0.1
# An exponential disk's scale length is its half-light radius over this.
_EXPONENTIAL_HLR_PER_SCALE = 1.678


def spiral_arm_positions(rng, count, hlr, n_arms, pitch):
    """Knot positions along ``n_arms`` logarithmic spiral arms of a face-on exponential disk.

    Radii follow the disk's light (r e^(−r/h), h = hlr / 1.678); each knot sits on one arm, at the
    angle θ = θ₀ + 2πk / n_arms + ln(r / h) / tan(pitch), scattered by 0.15 rad in angle and 0.1 in
    ln r.

    Args:
        rng: numpy Generator.
        count: number of knots.
        hlr: the disk's half-light radius [arcsec].
        n_arms: number of arms.
        pitch: pitch angle of the arms [radians], in (0, π/2).

    Returns:
        (count, 2) array of the (x, y) positions [arcsec], disk centre at the origin (as
        ``galsim.RandomKnots.points``).
    """
    scale_length = hlr / _EXPONENTIAL_HLR_PER_SCALE
    radius = rng.gamma(2.0, scale_length, count) * np.exp(rng.normal(0.0, _ARM_LOG_RADIUS_SCATTER, count))
    arm = rng.integers(0, n_arms, count)
    angle = (rng.uniform(0.0, 2 * np.pi) + 2 * np.pi * arm / n_arms + np.log(radius / scale_length) / np.tan(pitch)
             + rng.normal(0.0, _ARM_ANGLE_SCATTER, count))
    return np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])


def lopsided(positions, rng, hlr, shift_range):
    """Knot positions (count, 2) [arcsec] moved together off the disk centre by a uniform fraction of
    ``shift_range`` times the disk's ``hlr``, in a uniformly random direction: a lopsided, clumpy galaxy."""
    shift = rng.uniform(*shift_range) * hlr
    direction = rng.uniform(0.0, 2 * np.pi)
    return positions + shift * np.array([np.cos(direction), np.sin(direction)])


def draw_knots(rng, disk, flux, config):
    """Gaussian star-forming knots and the fraction of the galaxy's flux they carry.

    The knots scatter like the disk (same hlr scale and ellipticity); with probability
    ``config.spiral_probability`` there are more of them along the disk's spiral arms
    (:func:`spiral_arm_positions`, ``config.arm_knots_range`` knots); otherwise, with probability
    ``config.irregular_probability``, they carry ``config.irregular_flux_fraction_range`` of the flux and sit
    off the disk centre (:func:`lopsided`, ``config.irregular_shift_range`` hlr).

    Args:
        rng: numpy Generator.
        disk: (hlr [arcsec], q, position angle [rad]) of the disk the knots follow.
        flux: the galaxy's total flux [image units].
        config: a :class:`~lenstronomy_vae.sims.galaxies.GalaxySimConfig`.

    Returns:
        (knots, fraction): the knots (``galsim.GSObject``, flux ``fraction × flux``) and ``fraction``.
    """
    hlr, q, beta = disk
    fraction = rng.uniform(*config.knot_flux_fraction_range)
    # Each kind is drawn only when asked for: the galaxies of a config without it stay as they were.
    spiral = config.spiral_probability > 0 and rng.uniform() < config.spiral_probability
    irregular = not spiral and config.irregular_probability > 0 and rng.uniform() < config.irregular_probability
    low, high = config.arm_knots_range if spiral else config.n_knots_range
    count = int(rng.integers(low, high + 1))
    fwhm = rng.uniform(*config.knot_fwhm_range)
    if spiral:
        n_arms = int(rng.integers(config.n_arms_range[0], config.n_arms_range[1] + 1))
        pitch = rng.uniform(*config.arm_pitch_range)
        positions = spiral_arm_positions(rng, count, hlr, n_arms, pitch)
    else:
        positions = galsim.RandomKnots(
            count, half_light_radius=hlr, rng=galsim.BaseDeviate(int(rng.integers(1, 2**31 - 1)))
        ).points
    if irregular:  # replaces the fraction drawn above, which stays drawn so that other galaxies are unchanged
        fraction = rng.uniform(*config.irregular_flux_fraction_range)
        positions = lopsided(positions, rng, hlr, config.irregular_shift_range)
    # Gaussians rather than RandomKnots' point sources: the intrinsic stamp must be drawable
    # without a PSF, and real clumps are extended.
    knot = galsim.Gaussian(fwhm=fwhm, flux=fraction * flux / count)
    knots = galsim.Add([knot.shift(x, y) for x, y in positions]).shear(q=q, beta=beta * galsim.radians)
    return knots, fraction
