"""Figures (PNG, written atomically): fit panels, the deblending report, and a deblended scene.

Drawn on matplotlib ``Figure`` objects without pyplot, so no backend or global state is touched.
"""

import numpy as np
from astropy.io import fits
from matplotlib.figure import Figure

from lenstronomy_vae.utils.files import atomic_path


def plot_fit_panels(data, model, residuals, path, sources=()):
    """Write a row of panels: data, model, (data − model)/σ, then each source image.

    Args:
        data, model: 2-D images in the same flux units, shown on one colour scale.
        residuals: 2-D normalised residuals (data − model)/σ, shown on ±4.
        path: PNG file to write (atomically).
        sources: (title, image, extent in arcsec [x0, x1, y0, y1]) per extra panel, shown on the
            colour scale of the first one.
    """
    figure = Figure(figsize=(4 * (3 + len(sources)), 4.2))
    axes = figure.subplots(1, 3 + len(sources))
    vmax = np.percentile(data, 99.5)
    panels = [
        ("data", data, dict(cmap="magma", vmin=0, vmax=vmax)),
        ("model", model, dict(cmap="magma", vmin=0, vmax=vmax)),
        ("(data − model) / σ", residuals, dict(cmap="RdBu_r", vmin=-4, vmax=4)),
    ]
    for axis, (title, image, style) in zip(axes, panels):
        shown = axis.imshow(image, origin="lower", **style)
        axis.set_title(title)
        figure.colorbar(shown, ax=axis, fraction=0.046)
    source_max = max(image.max() for _, image, _ in sources) if sources else None
    for axis, (title, image, extent) in zip(axes[3:], sources):
        shown = axis.imshow(image, origin="lower", cmap="magma", vmin=0, vmax=source_max, extent=extent)
        axis.set_title(title)
        axis.set_xlabel("arcsec")
        figure.colorbar(shown, ax=axis, fraction=0.046)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")


def plot_deblending_report(report, per_scene, path):
    """Write the report's figure: σ(Δe1) against SNR, |Δf/f| against blendedness, Δe1 histograms.

    Args:
        report: dict from :func:`lenstronomy_vae.evaluation.report.compare`.
        per_scene: its per-scene metric arrays.
        path: PNG file to write (atomically).
    """
    figure = Figure(figsize=(15, 4.4))
    axes = figure.subplots(1, 3)
    for method, bins in report["binned"].items():
        snr = bins["abs_de1"]["snr"]
        centres = [np.sqrt(max(b["low"], 1.0) * min(b["high"], 300.0)) for b in snr]
        # |Δe1| robust σ about zero: 1.4826 · median |Δe1|.
        axes[0].plot(centres, [1.4826 * b["median"] for b in snr], "o-", label=method)
        if "abs_flux_error" in bins:
            blend = bins["abs_flux_error"]["blendedness"]
            axes[1].plot([0.5 * (b["low"] + b["high"]) for b in blend], [b["mean"] for b in blend], "o-", label=method)
    for method, metrics in per_scene.items():
        de = metrics["de"][:, 0]
        axes[2].hist(de[np.isfinite(de)], bins=np.linspace(-0.3, 0.3, 61), histtype="step", label=method)
    axes[0].set(xscale="log", xlabel="target SNR (measure band)", ylabel="1.4826 · median |Δe1|")
    axes[1].set(xlabel="target blendedness", ylabel="mean |Δf/f| (measure band)", yscale="log")
    axes[2].set(xlabel="Δe1 (reduced shear)", ylabel="targets")
    for axis in axes:
        axis.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")



def _robust_sigma(image):
    """1.4826 × the median absolute deviation of ``image``, 1 where it is 0 (an image without noise)."""
    sigma = 1.4826 * np.median(np.abs(image - np.median(image)))
    return sigma if sigma > 0 else 1.0


def _arcsinh_composite(channels, softening, top):
    """(H, W, 3) RGB in [0, 1] of (H, W, 3) channels: their mean intensity on an arcsinh scale, colours kept.

    The intensity ``I`` is shown as ``arcsinh(I / softening) / arcsinh(top / softening)`` (Lupton et
    al. 2004): linear below ``softening``, logarithmic above, 1 at ``top``; each channel is scaled by
    the same factor, and a pixel whose brightest channel exceeds 1 is divided by it (its hue kept).
    """
    intensity = channels.mean(axis=-1, keepdims=True)
    positive = intensity > 0
    shown = np.arcsinh(np.where(positive, intensity, 0.0) / softening) / np.arcsinh(top / softening)
    rgb = np.clip(np.where(positive, channels * shown / np.where(positive, intensity, 1.0), 0.0), 0.0, None)
    return rgb / np.maximum(rgb.max(axis=-1, keepdims=True), 1.0)


# The deblend figure shows at most this many pixels per side: a larger field is shown binned, so that
# drawing a 4096² field costs megabytes, not gigabytes. Detections are numbered up to LABELLED_DETECTIONS.
DISPLAY_PIXELS = 1024
LABELLED_DETECTIONS = 100


def display_binning(shape):
    """The block side [pixels] that brings an image of ``shape`` (H, W, ...) to ≤ :data:`DISPLAY_PIXELS` per side."""
    return max(1, -(-max(shape[:2]) // DISPLAY_PIXELS))


def binned(image, factor):
    """Mean of ``image`` (H, W[, bands]) over ``factor`` × ``factor`` blocks, as float32.

    Rows and columns that do not fill a whole block at the far edges are dropped.
    """
    height, width = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    blocks = np.asarray(image[:height, :width], dtype=np.float32)
    blocks = blocks.reshape(height // factor, factor, width // factor, factor, *image.shape[2:])
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def plot_deblended_scene(image, model, residual, x, y, bands, path, factor=1):
    """Write a deblended scene: the scene and its model (colour or i band), the residual, detections marked.

    The scene and the model share one display: a composite of the i, r and g bands (red, green,
    blue) when the image has them, else the i band (or the first band) in grey, on an arcsinh
    scale (Lupton et al. 2004) softened at twice the noise of the scene's intensity and reaching
    full brightness at its 99.5th percentile. The residual is the i band's (or the first band's)
    divided by its robust noise (1.4826 MAD), on ±5. Detections are circled on the scene and the
    residual, and numbered in their order (the ``id`` of the galaxy table) when there are at most
    :data:`LABELLED_DETECTIONS`.

    Args:
        image, model, residual: (H, W, bands) arrays [image units], binned by ``factor`` (:func:`binned`)
            for a large field.
        x, y: (n,) detection columns and rows on the unbinned image [pixels, 0-indexed, pixel centres
            at integers]; the axes are in unbinned pixels.
        bands: band names of the last axis, e.g. ``("u", "g", "r", "i", "z", "y")``.
        path: PNG file to write (atomically).
        factor: side of the blocks each shown pixel averages [pixels].
    """
    bands = list(bands)
    measure = bands.index("i") if "i" in bands else 0
    colour = {"g", "r", "i"} <= set(bands)
    channels = [bands.index(band) for band in ("i", "r", "g")] if colour else [measure] * 3
    shown = "i r g" if colour else bands[measure]
    intensity = image[..., channels].mean(axis=-1)
    softening = 2.0 * _robust_sigma(intensity)
    top = max(np.percentile(intensity, 99.5), softening)
    sigma = _robust_sigma(residual[..., measure])
    extent = (-0.5, image.shape[1] * factor - 0.5, -0.5, image.shape[0] * factor - 0.5)

    figure = Figure(figsize=(14, 4.8))
    axes = figure.subplots(1, 3)
    for axis, array in zip(axes, (image, model)):
        axis.imshow(_arcsinh_composite(array[..., channels], softening, top), origin="lower", extent=extent)
    residual_image = axes[2].imshow(residual[..., measure] / sigma, origin="lower", cmap="RdBu_r", vmin=-5, vmax=5,
                                    extent=extent)
    figure.colorbar(residual_image, ax=axes[2], fraction=0.046)
    n = len(x)
    binning = f", {factor}×{factor} binned" if factor > 1 else ""
    titles = (f"scene ({shown}{binning}), {n} detection{'' if n == 1 else 's'}", f"model ({shown})",
              f"residual ({bands[measure]}) / σ, σ = {sigma:.3g}")
    for axis, title in zip(axes, titles):
        axis.set_title(title)
        axis.set_xlabel("x [pixels]")
    axes[0].set_ylabel("y [pixels]")
    labelled = n <= LABELLED_DETECTIONS
    for axis in (axes[0], axes[2]):
        axis.scatter(x, y, s=160 if labelled else 4, facecolors="none", edgecolors="lime",
                     linewidths=1.2 if labelled else 0.4)
        for k, (column, row) in enumerate(zip(x, y) if labelled else ()):
            axis.annotate(str(k), (column, row), xytext=(6, 6), textcoords="offset points", color="lime", fontsize=9)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")


def plot_deblend_outputs(fits_path, path):
    """Write :func:`plot_deblended_scene` from the ``deblended.fits`` of ``lenstronomy-vae deblend``.

    A field larger than :data:`DISPLAY_PIXELS` is read band by band (memory-mapped) and shown binned
    (:func:`display_binning`), so memory stays small whatever the field's size.

    Args:
        fits_path: the file :func:`lenstronomy_vae.deblending.deblend_fits` writes: HDUs ``MODEL``
            and ``RESIDUAL`` (bands, H, W) with the bands in header ``BANDS``, and the table
            ``GALAXIES`` (detection ``x``, ``y`` in pixels). The scene is model + residual.
        path: PNG file to write (atomically).
    """
    with fits.open(fits_path, memmap=True) as hdus:
        factor = display_binning(hdus["MODEL"].shape[1:])
        model, residual = (np.stack([binned(plane, factor) for plane in hdus[name].data], axis=-1)
                           for name in ("MODEL", "RESIDUAL"))
        bands = hdus["MODEL"].header["BANDS"].split()
        galaxies = hdus["GALAXIES"].data
        x, y = np.array(galaxies["x"]), np.array(galaxies["y"])
    plot_deblended_scene(model + residual, model, residual, x, y, bands, path, factor)
