"""Detection of blended galaxies, side by side in one run: completeness and purity against separation and contrast.

Scenes of two LSST-like galaxies (``simulate_blends``, the target at the centre, the neighbour
anywhere within ``--max-offset`` pixels), each detector's positions paired one to one with the
true centres (Hungarian assignment, pairs closer than ``--radius`` pixels). Completeness: the
fraction of true galaxies with a detection; purity: the fraction of detections with a galaxy.
Binned by the pair's separation in units of the i-band PSF FWHM and by its contrast (fainter /
brighter i-band flux). Detectors:

- sep on the inverse-variance-weighted detection image at the field-mode threshold, with its
  default deblending (``deblend_cont`` 0.005) and with finer deblending (10⁻⁴, 10⁻⁵ with 64 levels);
- field mode (``deblend_scene``, shipped ``lsst45_deblender``): its detections re-centred, without and
  with the splitting of merged detections (galaxies added at residual peaks when they lower χ²).

Prints a table and writes JSON (``--out``). ``OMP_NUM_THREADS=1`` is advised on a shared machine.

    python benchmarks/detection_completeness.py --scenes 300 --seed 21 --out detection.json
"""

import argparse
import time

import numpy as np
from scipy.optimize import linear_sum_assignment

from lenstronomy_vae.deblending import deblend_scene, detect
from lenstronomy_vae.deblending.scene import DETECTION_THRESHOLD, MAX_NEW_SOURCES
from lenstronomy_vae.networks import Deblender, load_network
from lenstronomy_vae.sims import BlendSimConfig, simulate_blends
from lenstronomy_vae.utils import write_json

SEPARATION_EDGES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 100.0)  # PSF FWHM
CONTRAST_EDGES = (0.0, 0.1, 0.3, 1.0)  # fainter / brighter i-band flux


def sep_detector(**settings):
    """Positions (x, y) [pixels] of sep detections with the given deblending settings."""
    def positions(scene, noise_sigma, deblender):
        found = detect(scene, noise_sigma, threshold=DETECTION_THRESHOLD, **settings)
        return np.stack([found.x, found.y], axis=1)
    return positions


def field_mode_detector(max_new_sources):
    """Positions (x, y) [pixels] of the galaxies field mode keeps, adding at most ``max_new_sources`` from residuals."""
    def positions(scene, noise_sigma, deblender):
        result = deblend_scene(deblender, scene, "lsst", max_new_sources=max_new_sources)
        return np.array([[galaxy.x, galaxy.y] for galaxy in result.galaxies]).reshape(-1, 2)
    return positions


DETECTORS = {
    "sep, deblend_cont 0.005 (field mode's)": sep_detector(),
    "sep, deblend_cont 1e-4": sep_detector(deblend_cont=1e-4),
    "sep, deblend_cont 1e-5, 64 levels": sep_detector(deblend_cont=1e-5, deblend_nthresh=64),
    "field mode, detections only": field_mode_detector(0),
    "field mode, splitting merged detections": field_mode_detector(MAX_NEW_SOURCES),
}


def matched(true_positions, found, radius):
    """Boolean (n_true,) and (n_found,): which true galaxies and which detections are paired within ``radius``."""
    hit_true, hit_found = np.zeros(len(true_positions), bool), np.zeros(len(found), bool)
    if len(found):
        distance = np.linalg.norm(true_positions[:, None, :] - found[None, :, :], axis=-1)
        rows, cols = linear_sum_assignment(distance)
        close = distance[rows, cols] < radius
        hit_true[rows[close]], hit_found[cols[close]] = True, True
    return hit_true, hit_found


def run(scenes_count, seed, radius, max_offset, deblender_name):
    """Per detector: completeness and purity overall and in separation × contrast bins, and seconds per scene."""
    # i = 20–25.3 and neighbours uniform within ±max_offset: the configuration of the figures in the README.
    config = BlendSimConfig(n_objects_range=(2, 2), neighbour_max_offset=max_offset, mag_range=(20.0, 25.3),
                            close_fraction=0.0)
    scenes = simulate_blends(scenes_count, config, seed=seed, processes=2)
    survey = scenes.survey
    i_band = survey.band_index("i")
    fwhm = survey.psf("i").calculateFWHM() / survey.pixel_scale  # pixels
    centre = (scenes.blend.shape[2] - 1) / 2
    noise_sigma = np.sqrt(np.asarray(survey.sky_levels))
    deblender = load_network(deblender_name, Deblender)
    truth = scenes.truth
    positions = np.stack([centre + truth["dx"], centre + truth["dy"]], axis=1).reshape(scenes_count, 2, 2)
    flux = truth["flux"][:, i_band].reshape(scenes_count, 2)
    separation = np.linalg.norm(positions[:, 0] - positions[:, 1], axis=1) / fwhm
    contrast = flux.min(axis=1) / flux.max(axis=1)
    results = {"scenes": scenes_count, "seed": seed, "radius_pixels": radius, "psf_fwhm_pixels": float(fwhm),
               "separation_edges_fwhm": SEPARATION_EDGES, "contrast_edges": CONTRAST_EDGES, "detectors": {}}
    for name, detector in DETECTORS.items():
        start = time.perf_counter()
        hits, purity_hits, detections = np.zeros((scenes_count, 2), bool), 0, 0
        for k in range(scenes_count):
            found = detector(scenes.blend[k].astype(np.float64), noise_sigma, deblender)
            hit_true, hit_found = matched(positions[k], found, radius)
            hits[k] = hit_true
            purity_hits += int(hit_found.sum())
            detections += len(found)
        seconds = (time.perf_counter() - start) / scenes_count
        by_bin = [[{"scenes": int(np.sum(chosen)), "completeness": float(hits[chosen].mean()) if chosen.any() else None,
                    "both_found": float(hits[chosen].all(axis=1).mean()) if chosen.any() else None}
                   for chosen in ((separation >= s0) & (separation < s1) & (contrast >= c0) & (contrast < c1)
                                  for c0, c1 in zip(CONTRAST_EDGES[:-1], CONTRAST_EDGES[1:]))]
                  for s0, s1 in zip(SEPARATION_EDGES[:-1], SEPARATION_EDGES[1:])]
        results["detectors"][name] = {
            "completeness": float(hits.mean()), "target_completeness": float(hits[:, 0].mean()),
            "both_found": float(hits.all(axis=1).mean()), "purity": purity_hits / max(detections, 1),
            "detections_per_scene": detections / scenes_count, "seconds_per_scene": seconds, "bins": by_bin}
    return results


def print_table(results):
    print(f"{results['scenes']} two-galaxy scenes; pairs within {results['radius_pixels']} px; "
          f"i-band PSF FWHM {results['psf_fwhm_pixels']:.2f} px")
    print(f"{'detector':<40} {'complete':>8} {'target':>7} {'both':>6} {'purity':>7} {'per scene':>9} {'s/scene':>8}")
    for name, row in results["detectors"].items():
        print(f"{name:<40} {row['completeness']:8.3f} {row['target_completeness']:7.3f} {row['both_found']:6.3f} "
              f"{row['purity']:7.3f} {row['detections_per_scene']:9.2f} {row['seconds_per_scene']:8.3f}")
    edges = results["separation_edges_fwhm"]
    print("\nboth galaxies found, by separation [PSF FWHM] (all contrasts):")
    print(f"{'detector':<40} " + " ".join(f"{f'{a:g}-{b:g}':>8}" for a, b in zip(edges[:-1], edges[1:])))
    for name, row in results["detectors"].items():
        cells = []
        for bins in row["bins"]:
            scenes = sum(b["scenes"] for b in bins)
            both = sum(b["both_found"] * b["scenes"] for b in bins if b["scenes"])
            cells.append(f"{both / scenes:8.2f}" if scenes else f"{'-':>8}")
        print(f"{name:<40} " + " ".join(cells))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=300, help="two-galaxy scenes")
    parser.add_argument("--seed", type=int, default=21, help="seed of the scenes")
    parser.add_argument("--radius", type=float, default=2.0, help="largest distance of a pair [pixels]")
    parser.add_argument("--max-offset", type=float, default=8.0, help="largest neighbour offset per axis [pixels]")
    parser.add_argument("--out", default="benchmarks/detection_completeness.json", help="JSON output")
    parser.add_argument("--deblender", default="lsst45_deblender", help="field mode's deblender (name or .keras path)")
    args = parser.parse_args(argv)
    results = run(args.scenes, args.seed, args.radius, args.max_offset, args.deblender)
    print_table(results)
    write_json(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
