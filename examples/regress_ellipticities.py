"""Read ellipticities and redshifts of blended LSST-like galaxies from the deblender's latent space.

Simulates blended scenes (1–4 galaxies, the target centred), predicts the target's intrinsic
shape (g1, g2 as reduced shear, (1 − q)/(1 + q)·(cos 2φ, sin 2φ)) and redshift with the shipped
``lsst45_regressor``, and compares with the truth: scatter and slope. A regressor trained by
least squares shrinks shapes towards zero (slope 0.56); the shipped one divides them by its
shear response, measured on sheared simulations, so the slope is near 1 at the price of a
larger scatter. Adaptive moments of the VAE-deblended image are shown too (they measure the
PSF-convolved shape, hence smaller).

    python examples/regress_ellipticities.py [--n 300] [--seed 21] [--out regress]

Writes ``OUT/ellipticities.png``.
"""

import argparse
import pathlib

import numpy as np

from lenstronomy_vae.deblending import survey_kernels
from lenstronomy_vae.evaluation import robust_sigma
from lenstronomy_vae.networks import Deblender, LatentRegressor, load_network
from lenstronomy_vae.sims import BlendSimConfig, adaptive_moments_shape, convolve_bands, simulate_blends


def predict(n, seed, regressor="lsst45_regressor", deblender="lsst45_deblender"):
    """Simulate ``n`` scenes; return (truth rows of the targets, regressor predictions, deblended shapes)."""
    scenes = simulate_blends(n, BlendSimConfig(), seed=seed)
    predicted = load_network(regressor, LatentRegressor).predict_quantities(scenes.blend)
    model = load_network(deblender, Deblender)
    images = convolve_bands(model.deblend(scenes.blend), survey_kernels(scenes.survey, scenes.bands))
    i_band = scenes.survey.band_index("i")
    deblended = np.array([adaptive_moments_shape(image[..., i_band], scenes.pixel_scale) for image in images])
    return scenes.target_truth, predicted, deblended


def summary(truth, predicted):
    """σ (robust) of predicted − true and the least-squares slope of predicted on true, per component."""
    rows = {}
    for name in ("g1", "g2"):
        error = predicted[name] - truth[name]
        slope = float(np.polyfit(truth[name], predicted[name], 1)[0])
        rows[name] = {"robust_sigma": robust_sigma(error), "slope": slope}
    if "redshift" in predicted:
        dz = (predicted["redshift"] - truth["redshift"]) / (1 + truth["redshift"])
        rows["redshift"] = {"robust_sigma_dz_over_1pz": robust_sigma(dz)}
    return rows


def plot(truth, predicted, deblended, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for axis, k, name in ((axes[0], 0, "g1"), (axes[1], 1, "g2")):
        axis.scatter(truth[name], predicted[name], s=4, label="regressor (intrinsic shape)")
        axis.scatter(truth[f"hsm_{name}"], deblended[:, k], s=4, label="HSM of deblended image (PSF-convolved)")
        axis.plot([-0.7, 0.7], [-0.7, 0.7], "k--", lw=1)
        axis.set(xlabel=f"true {name}", ylabel=f"estimated {name}", xlim=(-0.7, 0.7), ylim=(-0.7, 0.7))
        axis.legend(fontsize=8)
    if "redshift" in predicted:
        axes[2].scatter(truth["redshift"], predicted["redshift"], s=4)
        axes[2].plot([0, 3], [0, 3], "k--", lw=1)
        axes[2].set(xlabel="true redshift", ylabel="predicted redshift")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return pathlib.Path(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="scenes")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--out", default="regress")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    truth, predicted, deblended = predict(args.n, args.seed)
    for name, row in summary(truth, predicted).items():
        print(name, ", ".join(f"{key} {value:.3f}" for key, value in row.items()))
    print(f"wrote {plot(truth, predicted, deblended, out / 'ellipticities.png')}")


if __name__ == "__main__":
    main()
