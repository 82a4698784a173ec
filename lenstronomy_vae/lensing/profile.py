"""The lenstronomy light profile 'VAE': a decoded VAE galaxy, placed, scaled and rotated on the sky.

The profile reads like lenstronomy's own profile classes (``param_names``, ``lower_limit_default``,
``upper_limit_default``, ``function``, ``total_flux``). The decoded stamp is normalised to unit
total flux, so ``amp`` is the total flux of the galaxy (in the units of the data, e.g.
counts/s), and ``function`` returns surface brightness in flux per arcsec², as lenstronomy
expects. Bilinear interpolation between stamp pixels, with a ring of zeros around the stamp,
keeps the profile continuous in every parameter and makes it integrate exactly to ``amp``.
"""

import contextlib
import functools
import os

import numpy as np

from lenstronomy_vae.lensing.threads import limit_threads_of_a_worker
from lenstronomy_vae.networks.galaxy_model import load_galaxy_model
from lenstronomy_vae.networks.jacobian import unit_flux_stamp_jacobian
from lenstronomy_vae.networks.model_files import resolve

# Decoded stamps kept per profile: lenstronomy evaluates the same parameters several times per
# likelihood (linear solve, model image, positivity checks), with different coordinates.
_STAMP_CACHE_SIZE = 8

# Hard limits on the parameters (lenstronomy's defaults for sampling bounds).
_AMP_RANGE = (0.0, 1e6)  # total flux, data units
_CENTER_RANGE = (-100.0, 100.0)  # arcsec, as lenstronomy's SERSIC
_SCALE_FACTOR_RANGE = (0.1, 10.0)  # × the model's training pixel scale
_LATENT_RANGE = (-5.0, 5.0)  # the prior is N(0, 1): ±5σ


def latent_names(latent_dim):
    """Parameter names of the latent coordinates: ``["z_0", ..., "z_{d-1}"]``."""
    return [f"z_{i}" for i in range(latent_dim)]


class VAEProfile:
    """Surface brightness of a VAE-decoded galaxy (lenstronomy light profile 'VAE').

    Parameters of :meth:`function`: ``amp`` (total flux, data units), ``center_x``/``center_y``
    (arcsec), ``scale`` (arcsec per decoder pixel), ``phi_G`` (counter-clockwise rotation of the
    stamp, radians) and the latent coordinates ``z_0 ... z_{d-1}``. Stamp column index runs
    along +x, row index along +y; the stamp centre ((N-1)/2, (N-1)/2) sits at the centre.

    Args:
        model: model name (shipped, or yours: `lenstronomy-vae models`) or path to a ``.keras`` file; None for
            the default model.
        band: band name or index, required for a multi-band model.

    Raises:
        ModelFileError: the model cannot be found or loaded.
        ValueError: ``band`` missing for a multi-band model, or not one of its bands.
    """

    def __init__(self, model=None, band=None):
        if model is not None and not isinstance(model, (str, os.PathLike)):
            raise TypeError(f"model must be a model name or a .keras path; got {type(model).__name__}")
        if model is not None:
            path, entry = resolve(os.fspath(model))
            # Workers of a parallel fit unpickle the profile, maybe elsewhere: keep paths absolute.
            model = os.fspath(model) if entry is not None else str(path)
        self.model = model
        self.galaxy_model = load_galaxy_model(model)
        self.band, self._band_index = self._select_band(band)
        self.latent_dim = self.galaxy_model.latent_dim
        self.pixel_scale = self.galaxy_model.pixel_scale
        self._latent_names = latent_names(self.latent_dim)
        self._latent_name_set = frozenset(self._latent_names)

        self.param_names = ["amp", "center_x", "center_y", "scale", "phi_G", *self._latent_names]
        self.param_names_latex = [
            r"$F$", r"$x_0$", r"$y_0$", r"$s$", r"$\phi_G$",
            *[rf"$z_{{{i}}}$" for i in range(self.latent_dim)],
        ]
        scale_low, scale_high = (f * self.pixel_scale for f in _SCALE_FACTOR_RANGE)
        self.lower_limit_default = {
            "amp": _AMP_RANGE[0], "center_x": _CENTER_RANGE[0], "center_y": _CENTER_RANGE[0],
            "scale": scale_low, "phi_G": -np.pi,
            **{name: _LATENT_RANGE[0] for name in self._latent_names},
        }
        self.upper_limit_default = {
            "amp": _AMP_RANGE[1], "center_x": _CENTER_RANGE[1], "center_y": _CENTER_RANGE[1],
            "scale": scale_high, "phi_G": np.pi,
            **{name: _LATENT_RANGE[1] for name in self._latent_names},
        }
        self._stamp = functools.lru_cache(maxsize=_STAMP_CACHE_SIZE)(self._decode_stamp)
        self._substitute = None
        self._positions_memo = None

    def _select_band(self, band):
        """(name, index) of the requested band in the model's bands."""
        bands = tuple(self.galaxy_model.bands)
        if band is None:
            if len(bands) > 1:
                raise ValueError(
                    f"model {self.galaxy_model.name!r} has {len(bands)} bands {bands}: "
                    "pass band=<name or index> to VAEProfile (profile_kwargs {'band': ...})"
                )
            return bands[0], 0
        if isinstance(band, (int, np.integer)) and not isinstance(band, bool):
            if not -len(bands) <= band < len(bands):
                raise ValueError(f"band index {band} out of range for model bands {bands}")
            return bands[band], int(band) % len(bands)
        if band not in bands:
            raise ValueError(f"band {band!r} is not in model {self.galaxy_model.name!r}: bands are {bands}")
        return band, bands.index(band)

    def _decode_stamp(self, latents):
        """Unit-flux stamp of one band, zero-padded by one pixel, read-only (N+2, N+2).

        Args:
            latents: tuple of d floats.
        """
        stamp = self.galaxy_model.decode(np.asarray(latents))[0, :, :, self._band_index]
        total = stamp.sum()
        padded = np.zeros((stamp.shape[0] + 2, stamp.shape[1] + 2))
        # A decoder can return an all-zero stamp far from the training set: a zero profile is
        # the honest answer (the likelihood then penalises it), not a division by zero.
        if total > 0:
            padded[1:-1, 1:-1] = stamp / total
        padded.setflags(write=False)  # shared between calls through the cache
        return padded

    def _latent_tuple(self, latents):
        """The latent values in order z_0..z_{d-1}; a clear error for missing or extra names."""
        if latents.keys() != self._latent_name_set:
            missing = sorted(self._latent_name_set - latents.keys(), key=self._latent_names.index)
            extra = sorted(latents.keys() - self._latent_name_set)
            raise ValueError(
                f"VAE profile of model {self.galaxy_model.name!r} has a {self.latent_dim}-dimensional "
                f"latent space (z_0..z_{self.latent_dim - 1}): missing latents {missing}, "
                f"unknown parameters {extra}"
            )
        return tuple(float(latents[name]) for name in self._latent_names)

    def normalized_stamp(self, **latents):
        """Decoded stamp of the latents, normalised to unit sum (N, N), row index along +y.

        Args:
            **latents: z_0 ... z_{d-1}.
        """
        return np.array(self._stamp(self._latent_tuple(latents))[1:-1, 1:-1])

    def function(self, x, y, amp, center_x=0.0, center_y=0.0, scale=None, phi_G=0.0, **latents):
        """Surface brightness of the galaxy at (x, y).

        Args:
            x: x coordinates, arcsec (scalar or array).
            y: y coordinates, arcsec, same shape as x.
            amp: total flux of the galaxy, data units (e.g. counts/s).
            center_x: x of the stamp centre, arcsec.
            center_y: y of the stamp centre, arcsec.
            scale: arcsec per decoder pixel; None for the model's training pixel scale.
            phi_G: counter-clockwise rotation of the stamp, radians.
            **latents: the latent coordinates z_0 ... z_{d-1}.

        Returns:
            Surface brightness, data units per arcsec², shape of x; zero outside the stamp.

        Raises:
            ValueError: missing or unknown latent names, or a non-positive scale.
        """
        padded = self._substitute if self._substitute is not None else self._stamp(self._latent_tuple(latents))
        if scale is None:
            scale = self.pixel_scale
        if not scale > 0:
            raise ValueError(f"scale must be a positive number of arcsec per pixel; got {scale}")
        geometry = (center_x, center_y, scale, phi_G)
        if self._positions_memo is None:
            weights = self._interpolation_weights(x, y, *geometry, padded.shape[0])
        else:
            weights = self._positions_memo.weights(x, y, geometry, padded.shape[0], self._interpolation_weights)
        return (amp / scale**2) * _bilinear(padded, weights)

    @staticmethod
    def _interpolation_weights(x, y, center_x, center_y, scale, phi_G, size):
        """Bilinear weights (:func:`_bilinear_weights`) of the sky positions (x, y) [arcsec] on a padded stamp."""
        dx = np.asarray(x, dtype=float) - center_x
        dy = np.asarray(y, dtype=float) - center_y
        cos, sin = np.cos(phi_G), np.sin(phi_G)
        # Sky → stamp frame is a clockwise rotation by phi_G (lenstronomy.Util.util.rotate), so
        # the stamp appears rotated counter-clockwise; +1 for the zero padding.
        offset = (size - 3) / 2 + 1
        col = (cos * dx + sin * dy) / scale + offset
        row = (cos * dy - sin * dx) / scale + offset
        return _bilinear_weights(size, col, row)

    def stamp_jacobian(self, **latents):
        """The unit-flux stamp (N, N) and its derivatives with respect to the latents (N, N, d).

        Args:
            **latents: z_0 ... z_{d-1}.
        """
        return unit_flux_stamp_jacobian(self.galaxy_model, self._latent_tuple(latents), self._band_index)

    @contextlib.contextmanager
    def substituted_stamp(self, stamp):
        """Within the block, :meth:`function` places ``stamp`` (N, N) instead of the decoded galaxy.

        The image of the profile is linear in its stamp, so passing a column of
        :meth:`stamp_jacobian` through lenstronomy's own lensing, PSF and pixel machinery gives
        the derivative of the model image with respect to that latent.
        """
        padded = np.zeros((stamp.shape[0] + 2, stamp.shape[1] + 2))
        padded[1:-1, 1:-1] = stamp
        self._substitute = padded
        try:
            yield self
        finally:
            self._substitute = None

    @contextlib.contextmanager
    def positions_reused(self):
        """Within the block, :meth:`function` called again at the same positions reuses its interpolation.

        "The same" is x and y arrays of the same values (lenstronomy's ``surface_brightness`` hands each
        profile a fresh copy of them, so identity alone would never match) and the same centre, scale
        and rotation: the derivative images of one 'LM' Jacobian sample every latent's stamp at the one
        set of positions that the lens gives (:meth:`substituted_stamp`). The arrays are held for the block.
        """
        self._positions_memo = _PositionsMemo()
        try:
            yield self
        finally:
            self._positions_memo = None

    def total_flux(self, amp, **kwargs):
        """Total flux of the profile: ``amp`` itself (the stamp has unit flux).

        Args:
            amp: total flux, data units.
            **kwargs: the other parameters (unused: the flux does not depend on them).
        """
        return amp

    def __getstate__(self):
        # The Keras model does not pickle (and should not travel to every worker): keep the
        # constructor arguments and re-load through the per-process cache.
        return {"model": self.model, "band": self.band}

    def __setstate__(self, state):
        # Unpickling imports this module, hence the package, which registers 'VAE' with
        # lenstronomy in the worker process too; a worker of a parallel fit gets its thread
        # pools limited (lenstronomy_vae.lensing.threads).
        limit_threads_of_a_worker()
        self.__init__(**state)

    def __repr__(self):
        return f"VAEProfile(model={self.model!r}, band={self.band!r})"


class _PositionsMemo:
    """The interpolation weights of the last positions (x, y objects and geometry) a profile was evaluated at."""

    def __init__(self):
        self._key = None
        self._weights = None

    def weights(self, x, y, geometry, size, compute):
        key = (x, y, geometry, size)
        if self._key is None or not (self._key[2:] == key[2:] and _same_values(x, self._key[0])
                                     and _same_values(y, self._key[1])):
            self._key, self._weights = key, compute(x, y, *geometry, size)
        return self._weights


def _same_values(a, b):
    """Whether two coordinate arrays are one object or hold the same values (shape and elements)."""
    return a is b or np.array_equal(a, b)


def _bilinear_weights(n, col, row):
    """Where and how to interpolate a zero-bordered (n, n) image at fractional pixel positions.

    Positions are clipped onto the image; since its border is zero, every position outside
    interpolates to zero. NaN positions give NaN, like an analytic profile would.

    Args:
        n: side of the padded image, pixels.
        col: column positions (along +x), pixels.
        row: row positions (along +y), pixels, same shape as col.

    Returns:
        (flat index of the lower-left neighbour, column fraction, row fraction, NaN mask or None).
    """
    bad = np.isnan(col + row)
    if not bad.any():
        bad = None
    col = np.clip(col, 0.0, n - 1.0)
    row = np.clip(row, 0.0, n - 1.0)
    if bad is not None:
        col = np.where(bad, 0.0, col)
        row = np.where(bad, 0.0, row)
    # Positions are non-negative after clipping, so truncation is the floor.
    c0 = np.minimum(col.astype(np.intp), n - 2)
    r0 = np.minimum(row.astype(np.intp), n - 2)
    return r0 * n + c0, col - c0, row - r0, bad


def _bilinear(padded, weights):
    """Bilinear interpolation of a zero-bordered square image with :func:`_bilinear_weights`."""
    i00, fc, fr, bad = weights
    n = padded.shape[0]
    flat = padded.ravel()
    v00 = flat[i00]
    v01 = flat[i00 + 1]
    v10 = flat[i00 + n]
    v11 = flat[i00 + n + 1]
    low = v00 + fc * (v01 - v00)
    high = v10 + fc * (v11 - v10)
    result = low + fr * (high - low)
    if bad is not None:
        result = np.where(bad, np.nan, result)
    return result
