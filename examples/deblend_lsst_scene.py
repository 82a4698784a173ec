"""Deblend a simulated LSST-like scene (u g r i z y, 10-year depth) with the VAE deblender and MAP.

Simulates one 45×45-pixel scene of several galaxies (GalSim, bulge + disk with template colours,
Poisson noise), detects them (sep), deblends each with the shipped ``lsst45_deblender``,
refines all of them jointly (MAP in latent space), and compares each galaxy with its true
isolated image: flux per band and adaptive-moment ellipticity (reduced shear) in the i band.

    python examples/deblend_lsst_scene.py [--seed 4] [--out deblend_scene]

Each true galaxy is paired with at most one detection (closest pairs first, within 5 px): of two
galaxies that field mode found as one source, the one farther from it is shown as unmatched.
Writes ``OUT/scene.png`` (the scene, the model, the residual, and each galaxy next to its
matched model).
"""

import argparse
import pathlib

import numpy as np
from matplotlib.figure import Figure

from lenstronomy_vae.deblending import deblend_scene
from lenstronomy_vae.networks import Deblender, load_network
from lenstronomy_vae.sims import BlendSimConfig, adaptive_moments_shape, simulate_blends


def simulate_scene(seed, n_objects=4):
    """One LSST-like scene with ``n_objects`` galaxies (a BlendSet of length 1)."""
    return simulate_blends(1, BlendSimConfig(n_objects_range=(n_objects, n_objects), mag_range=(20.0, 24.0)),
                           seed=seed)


def deblend(scenes, deblender="lsst45_deblender", map_steps=100):
    """Deblend the scene; return (result before MAP, result after MAP, one row per true galaxy).

    Each true galaxy is paired with at most one detection and each detection with at most one
    true galaxy (:meth:`SceneResult.match`, closest pairs first, within 5 px): of two galaxies
    found as one source, the one farther from it is unmatched, its detection and values None.
    """
    model = load_network(deblender, Deblender)
    before = deblend_scene(model, scenes.blend[0], scenes.survey)
    after = deblend_scene(model, scenes.blend[0], scenes.survey, refine=True, map_steps=map_steps)
    centre = (scenes.blend.shape[2] - 1) / 2
    i_band = scenes.survey.band_index("i")
    n_objects = int(scenes.n_objects[0])
    truth = scenes.truth[:n_objects]
    x, y = centre + np.asarray(truth["dx"]), centre + np.asarray(truth["dy"])
    matches = {label: result.match(x, y) for label, result in (("deblender", before), ("map", after))}
    rows = []
    for k in range(n_objects):
        true_image = scenes.isolated[0, k].astype(np.float64)
        row = {"object": k, "x": x[k], "y": y[k], "true_flux_i": float(true_image[..., i_band].sum()),
               "true_e": adaptive_moments_shape(true_image[..., i_band], scenes.pixel_scale)}
        for label, result in (("deblender", before), ("map", after)):
            index = matches[label][k]
            row[f"{label}_detection"] = index
            image = result.isolated(result.galaxies[index]) if index is not None else None
            row[f"{label}_flux_i"] = float(image[..., i_band].sum()) if image is not None else None
            row[f"{label}_e"] = (adaptive_moments_shape(image[..., i_band], scenes.pixel_scale)
                                 if image is not None else None)
        rows.append(row)
    return before, after, rows


def scene_figure(scenes, result, rows):
    """The scene (i band), the MAP model and residual; below, each true galaxy against its matched model."""
    i_band = scenes.survey.band_index("i")
    figure = Figure(figsize=(3.2 * max(3, len(rows)), 6.0), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=(3, 2))
    scene = scenes.blend[0, ..., i_band]
    vmax = np.percentile(scene, 99.5)
    sigma = np.sqrt(scenes.survey.sky_levels[i_band])
    axes = top.subplots(1, 3)
    for axis, (title, image, style) in zip(axes, (
            ("scene (i), detections", scene, dict(vmin=-sigma, vmax=vmax)),
            ("MAP model", result.model[..., i_band], dict(vmin=-sigma, vmax=vmax)),
            ("residual / σ_sky", result.residual[..., i_band] / sigma, dict(vmin=-5, vmax=5, cmap="RdBu_r")))):
        axis.imshow(image, origin="lower", **{"cmap": "magma", **style})
        axis.set_title(title)
    for index, galaxy in enumerate(result.galaxies):
        axes[0].plot(galaxy.x, galaxy.y, "o", mfc="none", mec="lime", ms=12)
        axes[0].annotate(str(index), (galaxy.x, galaxy.y), xytext=(7, 7), textcoords="offset points", color="lime")
    for axis, row in zip(np.atleast_1d(bottom.subplots(1, len(rows))), rows):
        true_image = scenes.isolated[0, row["object"], ..., i_band]
        index = row["map_detection"]
        if index is None:
            model, label = np.zeros_like(true_image), "unmatched"
        else:
            model, label = result.isolated(result.galaxies[index])[..., i_band], f"detection {index}"
        axis.imshow(np.hstack([true_image, model]), origin="lower", cmap="magma")
        axis.set_title(f"object {row['object']}: truth | {label}")
    for axis in figure.get_axes():
        axis.set_xticks([])
        axis.set_yticks([])
    return figure


def plot(scenes, result, rows, path):
    """Write :func:`scene_figure` to ``path`` (PNG)."""
    scene_figure(scenes, result, rows).savefig(path, dpi=100)
    return pathlib.Path(path)


def _flux(flux):
    """A flux [electrons] as printed, "unmatched" for None."""
    return "unmatched" if flux is None else f"{flux:.0f}"


def _shape(e):
    """A shape (e1, e2) as printed, "unmatched" for None."""
    return "unmatched" if e is None else f"({e[0]:+.3f}, {e[1]:+.3f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--out", default="deblend_scene")
    parser.add_argument("--map-steps", type=int, default=100)
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scenes = simulate_scene(args.seed)
    _, after, rows = deblend(scenes, map_steps=args.map_steps)
    print(f"{len(after.galaxies)} galaxies detected of {int(scenes.n_objects[0])} simulated")
    print(f"{'object':>6} {'detection':>10} {'i-band flux: true':>18} {'deblender':>10} {'MAP':>10}  "
          + "  ".join(f"{title:>16}" for title in ("e1, e2: true", "deblender", "MAP")))
    for row in rows:
        detection = "unmatched" if row["map_detection"] is None else row["map_detection"]
        print(f"{row['object']:>6} {detection:>10} {row['true_flux_i']:>18.0f} {_flux(row['deblender_flux_i']):>10} "
              f"{_flux(row['map_flux_i']):>10}  " + "  ".join(
                  f"{_shape(e):>16}" for e in (row["true_e"], row["deblender_e"], row["map_e"])))
    print(f"wrote {plot(scenes, after, rows, out / 'scene.png')}")


if __name__ == "__main__":
    main()
