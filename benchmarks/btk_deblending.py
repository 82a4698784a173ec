"""Deblenders side by side on BlendingToolKit-drawn scenes: none, sep, VAE at true positions, field mode, MAP, scarlet.

BTK 1.0.9 (``pip install ".[btk]"``, see the README) draws the scenes from a CatSim-format catalogue built from
our blend simulator's population (:func:`lenstronomy_vae.sims.catsim.catsim_catalog`): CatSim bulge + disk
galaxies, 45 × 45 LSST stamps (0.2″, 10-year depth, BTK's default PSF), 2–4 galaxies shifted within ±0.9″,
i ≤ 25.3. The target of a scene is the galaxy nearest the centre; its truth is BTK's noiseless isolated image.
Detection is measured on every galaxy of every scene: completeness of sep's detection and of field mode against
the separation from the nearest neighbour (in i-band PSF FWHM).
Every method's image of the target is compared with it as in ``lenstronomy-vae report``: Δe of the
adaptive-moment shapes (i band, reduced shear), Δf/f over the stamp (i band), SSIM (i band). MAP runs on the
first ``--map-scenes`` scenes only; the row "VAE field, MAP's scenes" is field mode on those same scenes, the
baseline MAP is to be compared with.

scarlet (``btk.deblend.Scarlet``, true positions) runs when ``import scarlet`` works and is skipped otherwise;
see ``../shared/README.md`` for building it.

    python benchmarks/btk_deblending.py --scenes 60 --map-scenes 20 --seed 0 --out btk_deblending.json
"""

import argparse
import json
import time
import warnings

import numpy as np
from btk.catalog import CatsimCatalog
from btk.deblend import Scarlet
from btk.sampling_functions import DefaultSampling
from btk.survey import get_surveys
from detection_completeness import SEPARATION_EDGES, matched

from lenstronomy_vae.deblending.btk_adapter import CatsimGenerator, VAEDeblender
from lenstronomy_vae.deblending.detection import detect, segmentation_deblend
from lenstronomy_vae.deblending.scene import (
    DETECTION_THRESHOLD,
    REENCODE,
    OutOfTrainingRangeWarning,
    SkyBackgroundWarning,
)
from lenstronomy_vae.evaluation.metrics import (
    adaptive_shapes,
    binned_statistics,
    cosine_similarities,
    flux_errors,
    ssim_scores,
)
from lenstronomy_vae.evaluation.report import BLENDEDNESS_EDGES, summarise
from lenstronomy_vae.networks import Deblender, load_network
from lenstronomy_vae.sims.catsim import catsim_catalog
from lenstronomy_vae.sims.surveys import LSST

BAND = 3  # i
STAMP_ARCSEC = 9.0  # 45 × 0.2″
MAG_EDGES = (18.0, 23.0, 24.0, 24.5, 25.0, 25.31)
FAILURE = 0.5  # |Δf/f| above which a target's flux is a failure, to be flagged
MATCH_RADIUS = 2.0  # pixels: a true galaxy is found when a detection is paired with it this close
METHODS = ("none", "sep", "vae_truth", "field", "field_map", "scarlet")
LABELS = {"none": "no deblending", "sep": "sep segmentation", "vae_truth": "VAE at true positions",
          "field": "VAE field mode", "field_on_map_scenes": "VAE field, MAP's scenes", "field_map": "VAE field + MAP",
          "scarlet": "scarlet (true positions)"}
# Rows of the table: each method, and field mode again on the scenes that MAP ran on, MAP's baseline.
ROWS = ("none", "sep", "vae_truth", "field", "field_on_map_scenes", "field_map", "scarlet")


def scarlet_available():
    """Import scarlet and patch its autograd fault under numpy ≥ 2.4 (see ../shared/README.md), or False."""
    try:
        import scarlet.component  # noqa: F401  (optional, benchmark only)
        from scarlet.fft import fast_zero_pad
    except ImportError:
        return False

    def get_model(self, *parameters, frame=None):
        """scarlet's CombinedComponent.get_model with an out-of-place sum (ndarray += ArrayBox fails)."""
        models = self.get_models_of_children(*parameters, frame=None)
        bbox = self.bbox
        model = np.zeros(bbox.shape)
        for k, model_ in enumerate(models):
            c = self.children[k]
            if c.bbox != bbox:
                padding = tuple((c.bbox.start[d] - bbox.start[d], bbox.stop[d] - c.bbox.stop[d]) for d in range(bbox.D))
                model_ = fast_zero_pad(model_, padding)
            model = model + model_ if self.operation == "add" else model * model_
        if frame is not None:
            model = self.model_to_box(frame.bbox, model)
        return model

    scarlet.component.CombinedComponent.get_model = get_model
    return True


def draw_scenes(n, seed, batch_size, catalogue_size):
    """BTK batches until ``n`` scenes: (blend, isolated targets, catalogues, target indices, batches)."""
    catalog = CatsimCatalog(catsim_catalog(catalogue_size, seed=seed))
    sampling = DefaultSampling(stamp_size=STAMP_ARCSEC, max_number=4, min_number=2, max_shift=0.9, max_mag=25.3,
                               seed=seed)
    draw = CatsimGenerator(catalog, sampling, get_surveys("LSST"), batch_size=batch_size, seed=seed)
    batches = []
    while sum(b.batch_size for b in batches) < n:
        batches.append(next(draw))
    return batches


def target_index(catalogue, centre=22.0):
    return int(np.argmin(np.hypot(catalogue["x_peak"] - centre, catalogue["y_peak"] - centre)))


def run(args):
    # Flags are counted in the table; the per-scene warnings would drown the progress line.
    warnings.simplefilter("ignore", OutOfTrainingRangeWarning)
    warnings.simplefilter("ignore", SkyBackgroundWarning)
    have_scarlet = scarlet_available() and not args.no_scarlet
    deblender = load_network(args.deblender, Deblender)
    field = VAEDeblender(deblender, max_n_sources=10, reencode=args.reencode)
    field_map = VAEDeblender(deblender, max_n_sources=10, reencode=args.reencode, refine=True,
                             map_steps=args.map_steps)
    field.name, field_map.name = "field", "field_map"
    truth_mode = VAEDeblender(deblender, max_n_sources=4, positions="truth", reencode=args.reencode)
    scarlet = Scarlet(max_n_sources=4) if have_scarlet else None
    sigma = np.sqrt(np.asarray(LSST.sky_levels))

    start = time.perf_counter()
    batches = draw_scenes(args.scenes, args.seed, args.batch, args.catalogue_size)
    draw_seconds = time.perf_counter() - start
    estimates = {m: [] for m in METHODS}
    flags = {m: [] for m in METHODS}  # (out_of_range, likely_merged) of the target's galaxy
    model_blendedness = {"vae_truth": [], "field": [], "field_map": []}  # the target galaxy's, in the model
    seconds = dict.fromkeys(METHODS, 0.0)
    runs = dict.fromkeys(METHODS, 0)
    truth, magnitude, blendedness, n_galaxies = [], [], [], []
    # Every true galaxy of every scene: its separation from its nearest neighbour [PSF FWHM] and whether
    # sep's detection and field mode found it (paired one to one within MATCH_RADIUS).
    fwhm = LSST.psf("i").calculateFWHM() / LSST.pixel_scale  # pixels
    separations, found_by = [], {"sep": [], "field": []}
    scene = 0
    for batch in batches:
        for ii in range(batch.batch_size):
            if scene >= args.scenes:
                break
            catalogue = batch.catalog_list[ii]
            t = target_index(catalogue)
            x, y = float(catalogue["x_peak"][t]), float(catalogue["y_peak"][t])
            image = np.moveaxis(batch.blend_images[ii], 0, -1)
            isolated = np.moveaxis(batch.isolated_images[ii], 1, -1)  # (max_n, H, W, bands)
            target = isolated[t]
            noiseless = isolated.sum(axis=0)
            truth.append(target)
            magnitude.append(float(catalogue["i_ab"][t]))
            blendedness.append(1 - np.sum(target[..., BAND] ** 2) / np.sum(target[..., BAND] * noiseless[..., BAND]))
            n_galaxies.append(len(catalogue))

            def timed(method, produce):
                tic = time.perf_counter()
                estimate = produce()
                seconds[method] += time.perf_counter() - tic
                runs[method] += 1
                image_, flag = estimate if isinstance(estimate, tuple) else (estimate, (False, False))
                estimates[method].append(image_)
                flags[method].append(flag)

            true_positions = np.column_stack([catalogue["x_peak"], catalogue["y_peak"]]).astype(float)
            gaps = np.linalg.norm(true_positions[:, None] - true_positions[None], axis=-1)
            np.fill_diagonal(gaps, np.inf)
            separations += list(gaps.min(axis=1) / fwhm)
            detections = detect(image, sigma, threshold=DETECTION_THRESHOLD)
            found_by["sep"] += list(matched(true_positions, np.column_stack([detections.x, detections.y]),
                                            MATCH_RADIUS)[0])
            timed("none", lambda: image)
            timed("sep", lambda: segmentation_deblend(image, sigma, position=(x, y),
                                                      threshold=DETECTION_THRESHOLD).image)
            def at_truth():
                example = truth_mode.deblend(ii, batch)
                row = example.catalog[t]
                model_blendedness["vae_truth"].append(float(row["blendedness"]))
                return (np.moveaxis(example.deblended_images[t], 0, -1),
                        (bool(row["out_of_range"]), bool(row["likely_merged"])))

            timed("vae_truth", at_truth)

            def nearest(adapter):
                result = adapter.deblend_image(image)
                if adapter is field:
                    kept = np.array([[g.x, g.y] for g in result.galaxies]).reshape(-1, 2)
                    found_by["field"] += list(matched(true_positions, kept, MATCH_RADIUS)[0])
                galaxy = result.nearest(x, y, max_distance=None)
                if galaxy is None:
                    return np.zeros_like(image), (False, False)
                model_blendedness[adapter.name].append(galaxy.blendedness)
                return result.isolated(galaxy), (bool(galaxy.out_of_range), galaxy.likely_merged)

            timed("field", lambda: nearest(field))
            if scene < args.map_scenes:
                timed("field_map", lambda: nearest(field_map))
            else:
                estimates["field_map"].append(np.full(image.shape, np.nan))
                flags["field_map"].append((False, False))
            if scarlet is not None:
                def run_scarlet():
                    example = scarlet.deblend(ii, batch)
                    if len(example.catalog) == 0:  # BTK's Scarlet gives up (LinAlgError) on coincident sources
                        return np.full(image.shape, np.nan)
                    return np.moveaxis(example.deblended_images[t], 0, -1)
                timed("scarlet", run_scarlet)
            scene += 1
            print(f"\rscene {scene}/{args.scenes}", end="", flush=True)
    print()

    truth = np.array(truth)
    magnitude, blendedness = np.array(magnitude), np.array(blendedness)
    true_shapes = adaptive_shapes(truth, BAND, LSST.pixel_scale)
    table, bins, per_target = {}, {}, {}
    for row_name in ROWS:
        method = "field" if row_name == "field_on_map_scenes" else row_name
        if not runs[method] or (row_name == "field_on_map_scenes" and not runs["field_map"]):
            continue
        images = np.array(estimates[method], dtype=np.float64)
        valid = np.all(np.isfinite(images), axis=(1, 2, 3))
        if row_name in ("field_map", "field_on_map_scenes"):
            valid[args.map_scenes:] = False
        de = np.full((len(images), 2), np.nan)
        de[valid] = adaptive_shapes(images[valid], BAND, LSST.pixel_scale) - true_shapes[valid]
        flux = np.full((len(images), truth.shape[-1]), np.nan)
        flux[valid] = flux_errors(images[valid], truth[valid])
        ssim_values = np.full(len(images), np.nan)
        ssim_values[valid] = ssim_scores(images[valid], truth[valid], BAND)
        cosine = np.full(len(images), np.nan)
        cosine[valid] = cosine_similarities(images[valid], truth[valid])
        rows = valid if row_name in ("field_map", "field_on_map_scenes", "scarlet") else slice(None)
        row = summarise(de[rows], flux[rows], ssim_values[rows], cosine[rows], BAND)
        row["median_ssim"] = float(np.nanmedian(ssim_values[rows]))
        row["n_runs"] = runs[method]
        row["n_method_failures"] = (int(runs[method] - np.sum(valid[:runs[method]]))
                                    if row_name not in ("field_map", "field_on_map_scenes") else 0)
        row["seconds_per_scene"] = seconds[method] / runs[method]
        out_of_range, merged = np.array(flags[method][:len(images)], dtype=bool).reshape(-1, 2).T
        failed = valid & (np.abs(flux[:, BAND]) > FAILURE)
        row["flux_failures"] = int(np.sum(failed))
        row["flux_failures_out_of_range"] = int(np.sum(failed & out_of_range))
        row["flux_failures_likely_merged"] = int(np.sum(failed & merged))
        row["flagged_out_of_range"] = int(np.sum(valid & out_of_range))
        if row_name != "field_on_map_scenes":  # its targets are field's, already there
            per_target[method] = {"abs_flux_error": np.where(valid, np.abs(flux[:, BAND]), np.nan).tolist(),
                                  "de1": de[:, 0].tolist(), "out_of_range": out_of_range.tolist(),
                                  "likely_merged": merged.tolist(),
                                  "model_blendedness": list(model_blendedness.get(method, []))}
        table[row_name] = row
        abs_de1, abs_flux = np.abs(de[:, 0]), np.abs(flux[:, BAND])
        keep = valid
        bins[row_name] = {
            "blendedness": {"abs_de1": binned_statistics(blendedness[keep], abs_de1[keep], BLENDEDNESS_EDGES),
                            "abs_flux_error": binned_statistics(blendedness[keep], abs_flux[keep], BLENDEDNESS_EDGES)},
            "magnitude": {"abs_de1": binned_statistics(magnitude[keep], abs_de1[keep], MAG_EDGES),
                          "abs_flux_error": binned_statistics(magnitude[keep], abs_flux[keep], MAG_EDGES)},
        }
    report = {
        "configuration": {"btk": "1.0.9", "catalogue": "lenstronomy_vae.sims.catsim.catsim_catalog",
                          "catalogue_size": args.catalogue_size, "stamp": "45 x 45 LSST, 0.2 arcsec, BTK default PSF",
                          "galaxies_per_scene": [2, 4], "max_shift_arcsec": 0.9, "max_i_mag": 25.3,
                          "seed": args.seed, "deblender": args.deblender, "map_steps": args.map_steps,
                          "reencode": args.reencode},
        "scenes": len(truth), "map_scenes": min(args.map_scenes, len(truth)), "scarlet": have_scarlet,
        "draw_seconds_per_scene": draw_seconds / len(truth),
        "mean_galaxies_per_scene": float(np.mean(n_galaxies)),
        "table": table, "binned": bins,
        "per_target": {"magnitude": magnitude.tolist(), "blendedness": blendedness.tolist(), **per_target},
        "detection": completeness_by_separation(np.array(separations), found_by, fwhm),
    }
    return report


def completeness_by_separation(separations, found_by, fwhm):
    """Fraction of all true galaxies found by each detector, overall and by nearest-neighbour separation [PSF FWHM]."""
    bins = list(zip(SEPARATION_EDGES[:-1], SEPARATION_EDGES[1:]))
    report = {"psf_fwhm_pixels": float(fwhm), "match_radius_pixels": MATCH_RADIUS, "galaxies": len(separations),
              "separation_edges_fwhm": list(SEPARATION_EDGES),
              "galaxies_per_bin": [int(np.sum((separations >= a) & (separations < b))) for a, b in bins]}
    for name, found in found_by.items():
        found = np.array(found, dtype=bool)
        chosen = [(separations >= a) & (separations < b) for a, b in bins]
        report[name] = {"completeness": float(found.mean()),
                        "by_separation": [float(found[c].mean()) if c.any() else None for c in chosen]}
    return report


def print_table(report):
    print(f"{report['scenes']} BTK scenes (MAP on {report['map_scenes']}); target: galaxy nearest the centre; i band")
    header = ("method", "n", "σ(Δe1)", "σ(Δe2)", "1.48MAD(Δe1)", "med|Δf/f|", "mean|Δf/f|", "med SSIM", "HSM fail",
              "s/scene")
    print(" | ".join(header))
    for method, row in report["table"].items():
        print(" | ".join([LABELS[method], str(row["n"]), f"{row['sigma_de1']:.3f}", f"{row['sigma_de2']:.3f}",
                          f"{row['robust_sigma_de1']:.3f}", f"{100 * row['median_abs_flux_error']:.1f} %",
                          f"{100 * row['mean_abs_flux_error']:.1f} %", f"{row['median_ssim']:.2f}",
                          str(row["n_failed"]), f"{row['seconds_per_scene']:.3f}"]))
    print(f"\n|Δf/f| > {100 * FAILURE:.0f} %: failures, of which out_of_range / likely_merged; targets out_of_range")
    for method, row in report["table"].items():
        print(f"  {LABELS[method]:26s} {row['flux_failures']:4d}  {row['flux_failures_out_of_range']:4d} / "
              f"{row['flux_failures_likely_merged']:4d}   {row['flagged_out_of_range']:4d}")
    for key in ("blendedness", "magnitude"):
        print(f"\nmedian |Δe1| by {key} (count)")
        for method, bins in report["binned"].items():
            cells = [f"[{b['low']:g},{b['high']:g}) {b['median']:.3f} ({b['count']})" for b in bins[key]["abs_de1"]]
            print(f"  {LABELS[method]:26s} " + "  ".join(cells))
        print(f"median |Δf/f| by {key}")
        for method, bins in report["binned"].items():
            cells = [f"{b['median']:.3f}" for b in bins[key]["abs_flux_error"]]
            print(f"  {LABELS[method]:26s} " + "  ".join(cells))
    detection = report["detection"]
    edges = detection["separation_edges_fwhm"]
    print(f"\ntrue galaxies found (a detection within {detection['match_radius_pixels']:g} px, one to one), by the "
          f"separation from their nearest neighbour [PSF FWHM = {detection['psf_fwhm_pixels']:.2f} px]")
    print(f"  {'':26s} {'all':>6} " + " ".join(f"{f'{a:g}-{b:g}':>7}" for a, b in zip(edges[:-1], edges[1:])))
    counts = " ".join(f"{n:7d}" for n in detection["galaxies_per_bin"])
    print(f"  {'galaxies':26s} {detection['galaxies']:6d} {counts}")
    for name, label in (("sep", "sep detection"), ("field", "VAE field mode")):
        print(f"  {label:26s} {detection[name]['completeness']:6.3f} " + " ".join(
            f"{c:7.3f}" if c is not None else f"{'-':>7}" for c in detection[name]["by_separation"]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--scenes", type=int, default=60, help="number of BTK scenes")
    parser.add_argument("--map-scenes", type=int, default=20, help="first scenes that also get field + MAP")
    parser.add_argument("--map-steps", type=int, default=100, help="largest number of L-BFGS iterations of MAP")
    parser.add_argument("--seed", type=int, default=0, help="seed of the catalogue, the sampling and the noise")
    parser.add_argument("--reencode", type=int, default=REENCODE,
                        help="times each galaxy is encoded again with its neighbours subtracted")
    parser.add_argument("--batch", type=int, default=20, help="BTK batch size")
    parser.add_argument("--catalogue-size", type=int, default=1000, help="galaxies in the CatSim catalogue")
    parser.add_argument("--deblender", default="lsst45_deblender", help="deblender model name or .keras path")
    parser.add_argument("--no-scarlet", action="store_true", help="leave scarlet out even when it is installed")
    parser.add_argument("--out", default="btk_deblending.json", help="JSON report")
    args = parser.parse_args(argv)
    report = run(args)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print_table(report)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
