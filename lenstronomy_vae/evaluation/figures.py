"""Figures (PNG, written atomically): fit panels (data, model, residuals, sources) and the deblending report.

Drawn on matplotlib ``Figure`` objects without pyplot, so no backend or global state is touched.
"""

import numpy as np
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
