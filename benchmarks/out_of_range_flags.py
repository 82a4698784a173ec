"""Out-of-range flags of field mode against the flux errors they warn of, on normal and on bright, large galaxies.

Scenes from ``simulate_blends``: the training-like default config, and bright (i = 17–20) galaxies
with disks up to ``--bright-hlr`` arcsec, and the case that motivated the flags (one galaxy, i ≈ 17.8,
disk half-light radius 1.4–1.8″). Each scene is deblended in field mode (``deblend_scene``, shipped
``lsst45_deblender`` with its recorded training range); the target (the galaxy at the centre) is
matched to its detection within 5 px, and its flux error Δf/f is the i-band flux of its model against
its true noiseless image's, over the scene (45 × 45 px). Prints, per set: targets found, fraction
flagged, median and mean |Δf/f| of flagged and unflagged targets, how many have |Δf/f| > 50 %
with and without the flag, and the reasons; then how marking also the galaxies whose footprint
χ² (``SceneGalaxy.footprint_chi2``, likely merged blends) is above thresholds around ``MERGED_CHI2``,
or whose blendedness in the scene's model (``SceneGalaxy.blendedness``) is above thresholds, trades
marked targets for caught failures; writes JSON (``--out``) with every target.

    python benchmarks/out_of_range_flags.py --scenes 200 --seed 31 --out out_of_range.json
"""

import argparse
import collections
import time
import warnings

import numpy as np

from lenstronomy_vae.deblending import deblend_scene
from lenstronomy_vae.deblending.scene import NoTrainingRangeWarning, OutOfTrainingRangeWarning, SkyBackgroundWarning
from lenstronomy_vae.deblending.scene_model import MERGED_CHI2
from lenstronomy_vae.networks import Deblender, load_network
from lenstronomy_vae.sims import BlendSimConfig, simulate_blends
from lenstronomy_vae.utils import write_json

LARGE_ERROR = 0.5
CHI2_THRESHOLDS = (1.0, MERGED_CHI2, 1.1, 1.2, 1.4, 1.6, 2.0, np.inf)
BLENDEDNESS_THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, np.inf)


def measure(deblender, scenes):
    """Per target: (found, flagged, Δf/f in i, reasons, footprint_chi2, i-band true flux, blendedness, snr)."""
    i = scenes.bands.index("i")
    rows = []
    for k in range(len(scenes)):
        truth = scenes.target_truth[k]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfTrainingRangeWarning)
            warnings.simplefilter("ignore", SkyBackgroundWarning)  # the wings of bright galaxies
            warnings.simplefilter("error", NoTrainingRangeWarning)
            result = deblend_scene(deblender, scenes.blend[k].astype(np.float64))
        galaxy = result.nearest(22 + truth["dx"], 22 + truth["dy"])
        true_flux = float(scenes.isolated[k, 0, ..., i].sum())
        row = {"scene": k, "found": galaxy is not None, "true_flux_i": true_flux,
               "blendedness": float(truth["blendedness"]), "snr": float(truth["snr"]),
               "n_objects": int(scenes.n_objects[k])}
        if galaxy is not None:
            row.update(flagged=bool(galaxy.out_of_range), reasons=list(galaxy.out_of_range),
                       footprint_chi2=galaxy.footprint_chi2, model_blendedness=galaxy.blendedness,
                       error=float(result.isolated(galaxy)[..., i].sum() / true_flux - 1))
        rows.append(row)
    return rows


def summarise(name, rows):
    found = [r for r in rows if r["found"]]
    flagged = [r for r in found if r["flagged"]]
    unflagged = [r for r in found if not r["flagged"]]

    def stats(group):
        errors = np.abs([r["error"] for r in group])
        return (f"{len(group):4d}  median {np.median(errors) if len(group) else np.nan:6.1%}  "
                f"mean {np.mean(errors) if len(group) else np.nan:7.1%}  >50 %: {int(np.sum(errors > LARGE_ERROR)):3d}")

    kinds = collections.Counter(reason.split()[0].rsplit("_", 1)[0] if "_" in reason.split()[0] else "size"
                                for r in flagged for reason in r["reasons"])
    print(f"{name}: {len(rows)} targets, {len(found)} found; flagged {len(flagged) / max(len(found), 1):.1%}")
    print(f"  flagged   {stats(flagged)}")
    print(f"  unflagged {stats(unflagged)}")
    print(f"  reasons (targets): {dict(kinds)}")
    missed = [r for r in unflagged if abs(r["error"]) > LARGE_ERROR]
    for r in missed:
        print(f"  unflagged |Δf/f| > 50 %: scene {r['scene']} Δf/f {r['error']:+.0%}, true i flux "
              f"{r['true_flux_i']:.3g}, {r['n_objects']} objects, blendedness {r['blendedness']:.2f}, "
              f"S/N {r['snr']:.0f}")
    print("  out_of_range or footprint_chi2 above: marked, |Δf/f| > 50 % marked / unmarked, "
          "median |Δf/f| marked / unmarked")
    for threshold in CHI2_THRESHOLDS:
        flags = np.array([bool(r["reasons"]) or r["footprint_chi2"] > threshold for r in found], dtype=bool)
        errors = np.abs([r["error"] for r in found])
        large = errors > LARGE_ERROR
        print(f"    {threshold:5.2f}: {flags.mean() if len(found) else np.nan:6.1%}  {int(np.sum(flags & large)):3d} / "
              f"{int(np.sum(~flags & large)):3d}   {np.median(errors[flags]) if flags.any() else np.nan:6.1%} / "
              f"{np.median(errors[~flags]) if (~flags).any() else np.nan:6.1%}")
    print("  out_of_range or model blendedness above: marked, |Δf/f| > 50 % marked / unmarked")
    for threshold in BLENDEDNESS_THRESHOLDS:
        flags = np.array([bool(r["reasons"]) or r["model_blendedness"] > threshold for r in found], dtype=bool)
        large = np.abs([r["error"] for r in found]) > LARGE_ERROR
        print(f"    {threshold:5.2f}: {flags.mean() if len(found) else np.nan:6.1%}  {int(np.sum(flags & large)):3d} / "
              f"{int(np.sum(~flags & large)):3d}")
    return {"targets": len(rows), "found": len(found), "flagged": len(flagged), "unflagged_large_error": len(missed),
            "flagged_large_error": int(sum(abs(r["error"]) > LARGE_ERROR for r in flagged)), "rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--bright-hlr", type=float, default=2.5, help="largest disk half-light radius [arcsec]")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--out", default="out_of_range.json")
    parser.add_argument("--deblender", default="lsst45_deblender", help="deblender name or .keras path")
    args = parser.parse_args()
    deblender = load_network(args.deblender, Deblender)
    sets = {
        "training-like (default config: i 17-26, 30 % close neighbours)": (BlendSimConfig(), args.scenes),
        f"bright (i 17-20, hlr 0.05-{args.bright_hlr}″)": (
            BlendSimConfig(mag_range=(17.0, 20.0), hlr_range=(0.05, args.bright_hlr)), args.scenes),
        "peer's case (alone, i 17.7-17.9, hlr 1.4-1.8″)": (
            BlendSimConfig(mag_range=(17.7, 17.9), hlr_range=(1.4, 1.8), n_objects_range=(1, 1),
                           min_flux_in_stamp=0.7), max(args.scenes // 10, 10)),
    }
    results = {}
    for name, (config, n) in sets.items():
        start = time.time()
        scenes = simulate_blends(n, config, seed=args.seed, processes=args.processes)
        results[name] = summarise(name, measure(deblender, scenes))
        print(f"  ({time.time() - start:.0f} s)", flush=True)
    write_json(args.out, results)


if __name__ == "__main__":
    main()
