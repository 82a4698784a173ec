"""Reading images from FITS files, with the pixel scale from their WCS; streaming a cube of stamps into one."""

import warnings

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning


def _leading_axes_squeezed(data, ndim):
    """``data`` with leading axes of length 1 dropped down to ``ndim`` dimensions (a (1, H, W) cube → (H, W))."""
    shape = np.shape(data)
    while len(shape) > ndim and shape[0] == 1:
        shape = shape[1:]
    return np.reshape(data, shape)


def read_image(path, hdu=None, ndim=2, dtype=np.float64):
    """An image (or a cube) and its pixel scale from a FITS file.

    Leading axes of length 1 are dropped: a (1, H, W) cube reads as an (H, W) image.

    Args:
        path: FITS file.
        hdu: HDU index; default the first HDU holding ``ndim``-dimensional data.
        ndim: 2 for an image (H, W), 3 for a cube (bands, H, W) as FITS stores it.
        dtype: of the returned data (float32 halves a large field's memory).

    Returns:
        (data as ``dtype``, pixel scale in arcsec or None when the header has no celestial WCS).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a FITS file, no ``ndim``-D data in it, or the HDU does not exist.
    """
    try:
        hdul = fits.open(path, memmap=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such FITS file: {path}") from None
    except OSError as error:
        raise ValueError(f"{path} is not a readable FITS file: {error}") from None
    with hdul:
        if hdu is None:
            found = [i for i, unit in enumerate(hdul)
                     if unit.data is not None and _leading_axes_squeezed(unit.data, ndim).ndim == ndim]
            if not found:
                raise ValueError(f"{path} holds no {ndim}-D data (HDUs: {[np.shape(u.data) for u in hdul]})")
            hdu = found[0]
        if not 0 <= hdu < len(hdul):
            raise ValueError(f"{path} has {len(hdul)} HDUs; HDU {hdu} does not exist")
        data, header = hdul[hdu].data, hdul[hdu].header
        if data is None or _leading_axes_squeezed(data, ndim).ndim != ndim:
            raise ValueError(f"HDU {hdu} of {path} is not {ndim}-D (shape {np.shape(data)})")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            celestial = WCS(header).celestial
        scale = None
        if celestial.has_celestial:
            scales = celestial.proj_plane_pixel_scales()
            scale = float(np.mean([s.to_value("arcsec") for s in scales]))
        return np.asarray(_leading_axes_squeezed(data, ndim), dtype=dtype), scale


def append_stamp_cube(path, stamps, count, shape, header, name):
    """Append to FITS file ``path`` an image HDU (count, *shape) of float32, written stamp by stamp.

    The cube is never held in memory (``astropy.io.fits.StreamingHDU``): a field's 10⁴ stamps cost
    one stamp's memory to write.

    Args:
        path: an existing FITS file.
        stamps: iterable of ``count`` arrays of ``shape`` (FITS order, e.g. (bands, S, S)).
        count: number of stamps.
        shape: shape of each stamp.
        header: cards to copy into the HDU's header.
        name: the HDU's ``EXTNAME``.
    """
    cards = fits.ImageHDU(np.zeros((1, *shape), dtype=np.float32), header, name=name).header
    cards[f"NAXIS{len(shape) + 1}"] = count
    stream = fits.StreamingHDU(str(path), cards)  # a pathlib.Path would be read as its bare file name
    written = 0
    for stamp in stamps:
        stamp = np.asarray(stamp, dtype=np.float32)
        if stamp.shape != tuple(shape):
            raise ValueError(f"stamp {written} of {name} has shape {stamp.shape}, not {tuple(shape)}")
        stream.write(stamp)
        written += 1
    stream.close()
    if written != count:
        raise ValueError(f"{name}: {written} stamps written, {count} announced")
