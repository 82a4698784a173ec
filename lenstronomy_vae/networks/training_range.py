"""A network's training range: what its training stamps spanned, as recorded in its manifest entry.

A network is only trusted inside the range of the stamps it learnt from. Four quantities are
recorded (:func:`summarise_training_range`), each one measurable on a galaxy deblended from a
real image, before deblending (on the stamp the encoder reads) or after (on the fitted model):

``peak`` (before)
    per band, the largest pixel of the normalised encoder input (``normalization.normalize``
    of the stamp, in (-1, 1)); recorded: the 99.9th percentile and the maximum over training stamps.
``stamp_flux`` (before)
    per band, the sum of the encoder's stamp [image units]: what a bright galaxy whose model
    falls short of it (-95 % for i = 17.8) still shows; 0.1th and 99.9th percentiles, min and max.
``flux`` (after)
    per band, the total flux of the training targets (the sum of the intrinsic stamp, which the
    decoder draws) [image units], against a galaxy's fitted flux; percentiles, min and max.
``size`` (after)
    adaptive-moment σ [arcsec] of the noisy isolated training target in one band (``i`` when
    the network has it), against the same measure on the deblended galaxy's stamp with the
    other galaxies subtracted; percentiles, min and max.

A galaxy is out of range (:meth:`TrainingRange.reasons`) when a peak, stamp flux or fitted flux is
above its 99.9th percentile in any band, its fitted flux in the reference band (the size band,
``i``, in which the training magnitudes were drawn) below :data:`FAINT_MARGIN` × the 0.1th
percentile, or its size above :data:`SIZE_MARGIN` × the 99.9th percentile. Not flagged: faint
stamps (a noisy stamp has no lower bound on its sum), a faint flux in another band (a red galaxy
has almost none in u), small sizes (a galaxy smaller than the PSF is not a problem).
"""

import dataclasses

import numpy as np

LOW, HIGH = 0.1, 99.9  # percentiles recorded as the range [%]

# Margins of the two checks that in-range galaxies cross through measurement noise alone. On 185
# targets of 200 training-like scenes (benchmarks/out_of_range_flags.py, shipped lsst45_deblender):
# - the training set ends sharply at i = 25.3, and noise scatters the fitted i flux of galaxies at
#   that edge down to 0.64 × the 0.1th percentile (5 of 185 below it): flagged only below FAINT_MARGIN ×;
# - the size of a galaxy in a blend is measured with its neighbours' residuals, which enlarge it:
#   11 of 185 were above the 99.9th percentile, 10 of them by at most 1.2 ×: flagged beyond SIZE_MARGIN ×.
# No target with |Δf/f| > 50 % was flagged by these two checks alone, on those or on bright scenes.
FAINT_MARGIN = 0.5
SIZE_MARGIN = 1.25
_QUANTITIES = ("peak", "stamp_flux", "flux", "size")


def _limits(values, axis=0):
    """{"p0.1", "p99.9", "min", "max"} of finite ``values`` along ``axis``, as lists (or floats for 1-D)."""
    values = np.asarray(values, dtype=np.float64)
    out = {f"p{LOW:g}": np.nanpercentile(values, LOW, axis=axis),
           f"p{HIGH:g}": np.nanpercentile(values, HIGH, axis=axis),
           "min": np.nanmin(values, axis=axis), "max": np.nanmax(values, axis=axis)}
    return {key: value.tolist() for key, value in out.items()}


def summarise_training_range(peaks, stamp_fluxes, fluxes, sizes, bands, size_band, unit, source):
    """The manifest's ``training_range`` entry of a training set, from per-stamp measurements.

    Args:
        peaks: (n, bands) largest normalised pixel of each encoder input stamp.
        stamp_fluxes: (n, bands) sum of each encoder input stamp [image units].
        fluxes: (n, bands) total flux of each training target (intrinsic stamp sum) [image units].
        sizes: (n,) adaptive-moment σ of each noisy isolated target in ``size_band`` [arcsec];
            NaN where the measurement failed (those are left out and counted).
        bands: the network's bands.
        size_band: band of ``sizes``.
        unit: the image unit (e.g. ``"electron"``).
        source: what the stamps were (a sentence: file or simulation, seed, rows).

    Returns:
        a JSON-ready dict (see :class:`TrainingRange`).
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    return {
        "stamps": int(len(fluxes)),
        "source": source,
        "bands": list(bands),
        "peak": {"measure": "largest pixel of the normalised encoder input stamp", **_limits(peaks)},
        "stamp_flux": {"measure": "sum of the encoder input stamp", "unit": unit, **_limits(stamp_fluxes)},
        "flux": {"measure": "total flux of the target (sum of the intrinsic stamp)", "unit": unit, **_limits(fluxes)},
        "size": {"measure": "adaptive-moment sigma of the noisy isolated target", "band": size_band,
                 "unit": "arcsec", "failed": int(np.sum(~np.isfinite(sizes))), **_limits(sizes)},
    }


@dataclasses.dataclass(frozen=True)
class TrainingRange:
    """The range a network was trained on (a manifest's ``training_range`` entry), and the checks against it.

    Attributes:
        entry: the manifest entry (:func:`summarise_training_range`'s dict).
    """

    entry: dict

    def __post_init__(self):
        missing = [key for key in ("bands", *_QUANTITIES) if key not in self.entry]
        if missing:
            raise ValueError(f"a training_range entry needs {missing}; got keys {sorted(self.entry)}")
        n = len(self.bands)
        for key in ("peak", "stamp_flux", "flux"):
            for limit in (f"p{HIGH:g}", f"p{LOW:g}"):
                if key == "peak" and limit != f"p{HIGH:g}":
                    continue
                if len(np.atleast_1d(self.entry[key][limit])) != n:
                    raise ValueError(f"training_range {key} {limit} must have one value per band {self.bands}")

    @classmethod
    def from_manifest(cls, entry):
        """The range of a model's manifest entry, or None when it has none (a model trained before ranges)."""
        return cls(entry["training_range"]) if entry and entry.get("training_range") else None

    @property
    def bands(self):
        return tuple(self.entry["bands"])

    @property
    def size_band(self):
        return self.entry["size"]["band"]

    def high(self, quantity):
        """Upper limit (99.9th percentile) of ``quantity``: per band, a float for ``size``."""
        return np.asarray(self.entry[quantity][f"p{HIGH:g}"], dtype=np.float64)

    def low(self, quantity):
        """Lower limit (0.1th percentile) of ``quantity``."""
        return np.asarray(self.entry[quantity][f"p{LOW:g}"], dtype=np.float64)

    def reasons(self, peak=None, stamp_flux=None, flux=None, size=None):
        """Short reasons why a galaxy is outside the range; empty when it is inside (or nothing was measured).

        Args:
            peak, stamp_flux: (bands,) of the stamp the encoder read (see the module docstring).
            flux: (bands,) fitted total flux of the galaxy [image units].
            size: adaptive-moment σ [arcsec] in :attr:`size_band`; NaN or None: not measured.

        Returns:
            tuple of strings, at most one per quantity and direction, naming the band furthest beyond
            the limit and the others beyond it: ``"peak_i 0.9990 > 0.9943 (also r, z)"``,
            ``"stamp_flux_i 8.1e+06 > 2.4e+06 (3.4x; also g, r, z)"``, ``"flux_i 1.2e+04 < 2.8e+04 (0.43x)"``,
            ``"size 1.62 > 0.82 arcsec (2x)"`` (the limits with their margins); ASCII, for FITS tables.
        """
        reasons = []
        for name, values in (("peak", peak), ("stamp_flux", stamp_flux), ("flux", flux)):
            if values is not None:
                reasons += self._above(name, values)
        if flux is not None:
            b = self.bands.index(self.size_band)
            value, low = flux[b], FAINT_MARGIN * float(self.low("flux")[b])
            if value < low:
                reasons.append(f"flux_{self.size_band} {value:.3g} < {low:.3g} ({max(value, 0) / low:.2g}x)")
        limit = SIZE_MARGIN * float(self.high("size"))
        if size is not None and np.isfinite(size) and size > limit:
            reasons.append(f"size {size:.2f} > {limit:.2f} arcsec ({size / limit:.2g}x)")
        return tuple(reasons)

    def _above(self, name, values):
        """[one reason] when ``values`` exceed the upper limit of ``name`` in a band (the furthest, and others)."""
        values = np.asarray(values, dtype=np.float64)
        limits = self.high(name)
        above = values > limits
        if not above.any():
            return []
        worst = int(np.argmax(np.where(above, values / limits, -np.inf)))
        value, limit = values[worst], limits[worst]
        notes = [] if name == "peak" else [f"{value / limit:.2g}x"]
        others = [band for band, is_above in zip(self.bands, above) if is_above and band != self.bands[worst]]
        notes += [f"also {', '.join(others)}"] if others else []
        numbers = f"{value:.4f} > {limit:.4f}" if name == "peak" else f"{value:.3g} > {limit:.3g}"
        return [f"{name}_{self.bands[worst]} {numbers}" + (f" ({'; '.join(notes)})" if notes else "")]
