"""Figures of fits: data, model, normalised residuals, and optional source panels (PNG, atomic)."""

import numpy as np

from lenstronomy_vae.io import atomic_path


def plot_fit_panels(data, model, residuals, path, sources=()):
    """Write a row of panels: data, model, (data − model)/σ, then each source image.

    Args:
        data, model: 2-D images in the same flux units, shown on one colour scale.
        residuals: 2-D normalised residuals (data − model)/σ, shown on ±4.
        path: PNG file to write (atomically).
        sources: (title, image, extent in arcsec [x0, x1, y0, y1]) per extra panel, shown on the
            colour scale of the first one.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3 + len(sources), figsize=(4 * (3 + len(sources)), 4.2))
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
    plt.close(figure)
