"""Deblend a simulated LSST-like scene (u g r i z y, 10-year depth) with the VAE deblender and MAP.

Simulates one 45×45-pixel scene of several galaxies (GalSim, bulge + disk with template colours,
Poisson noise), detects them (sep), deblends each with the shipped ``lsst45_deblender``,
refines all of them jointly (MAP in latent space), and compares each galaxy with its true
isolated image: flux per band and adaptive-moment ellipticity (reduced shear) in the i band.

    python examples/deblend_lsst_scene.py [--seed 4] [--out deblend_scene]

Writes ``OUT/scene.png`` (the scene, the model, the residual, and each galaxy next to its truth).
"""

import argparse
import pathlib

import numpy as np

from lenstronomy_vae.deblending import deblend_scene
from lenstronomy_vae.networks import Deblender, load_network
from lenstronomy_vae.sims import BlendSimConfig, adaptive_moments_shape, simulate_blends


def simulate_scene(seed, n_objects=4):
    """One LSST-like scene with ``n_objects`` galaxies (a BlendSet of length 1)."""
    return simulate_blends(1, BlendSimConfig(n_objects_range=(n_objects, n_objects), mag_range=(20.0, 24.0)),
                           seed=seed)


def deblend(scenes, deblender="lsst45_deblender", map_steps=100):
    """Deblend the scene; return (result before MAP, result after MAP, rows pairing truth and galaxies)."""
    model = load_network(deblender, Deblender)
    before = deblend_scene(model, scenes.blend[0], scenes.survey)
    after = deblend_scene(model, scenes.blend[0], scenes.survey, refine=True, map_steps=map_steps)
    centre = (scenes.blend.shape[2] - 1) / 2
    i_band = scenes.survey.band_index("i")
    rows = []
    for k in range(int(scenes.n_objects[0])):
        truth = scenes.truth[k]
        x, y = centre + truth["dx"], centre + truth["dy"]
        true_image = scenes.isolated[0, k].astype(np.float64)
        row = {"object": k, "x": x, "y": y, "true_flux_i": float(true_image[..., i_band].sum()),
               "true_e": adaptive_moments_shape(true_image[..., i_band], scenes.pixel_scale)}
        for label, result in (("deblender", before), ("map", after)):
            galaxy = result.nearest(x, y)
            found = galaxy is not None and np.hypot(galaxy.x - x, galaxy.y - y) < 3
            image = result.isolated(galaxy) if found else np.zeros_like(true_image)
            row[f"{label}_flux_i"] = float(image[..., i_band].sum())
            row[f"{label}_e"] = adaptive_moments_shape(image[..., i_band], scenes.pixel_scale)
        rows.append(row)
    return before, after, rows


def plot(scenes, result, rows, path):
    """The scene (i band), the MAP model and residual, and each galaxy's truth against its model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    i_band = scenes.survey.band_index("i")
    n = len(rows)
    figure, axes = plt.subplots(2, max(3, n), figsize=(3.2 * max(3, n), 6.4), squeeze=False)
    scene = scenes.blend[0, ..., i_band]
    vmax = np.percentile(scene, 99.5)
    sigma = np.sqrt(scenes.survey.sky_levels[i_band])
    for axis, (title, image, style) in zip(axes[0], (
            ("scene (i)", scene, dict(vmin=-sigma, vmax=vmax)),
            ("MAP model", result.model[..., i_band], dict(vmin=-sigma, vmax=vmax)),
            ("residual / σ_sky", result.residual[..., i_band] / sigma, dict(vmin=-5, vmax=5, cmap="RdBu_r")))):
        axis.imshow(image, origin="lower", **{"cmap": "magma", **style})
        axis.set_title(title)
    for axis, row in zip(axes[1], rows):
        true_image = scenes.isolated[0, row["object"], ..., i_band]
        galaxy = result.nearest(row["x"], row["y"])
        model = result.isolated(galaxy)[..., i_band] if galaxy is not None else np.zeros_like(true_image)
        axis.imshow(np.hstack([true_image, model]), origin="lower", cmap="magma")
        axis.set_title(f"object {row['object']}: truth | MAP")
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return pathlib.Path(path)


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
    print("object  i-band flux: true  deblender   MAP     e1, e2: true          deblender       MAP")
    for row in rows:
        print(f"{row['object']:>6} {row['true_flux_i']:>17.0f} {row['deblender_flux_i']:>10.0f} "
              f"{row['map_flux_i']:>7.0f}   " + "  ".join(f"({e[0]:+.3f}, {e[1]:+.3f})" for e in (
                  row["true_e"], row["deblender_e"], row["map_e"])))
    print(f"wrote {plot(scenes, after, rows, out / 'scene.png')}")


if __name__ == "__main__":
    main()
