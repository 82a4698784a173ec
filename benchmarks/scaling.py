"""Scaling of ``deblend`` with image size and workers, and of ``fit-many`` with workers, measured in one run.

For each field size (square, LSST-like, ``simulate_field`` at ``--density`` galaxies per arcmin²) the
``lenstronomy-vae deblend`` command runs in a child process, as a user runs it: wall time, galaxies
per second, the child's peak memory (its largest resident set, ``ru_maxrss``), and against the truth:
the fraction of galaxies found within 2 px (completeness, by brightness, near tile edges and away
from them), true galaxies found twice (by two tiles: a tile-edge duplicate) and pairs of detections
closer than 1.5 px, told apart into one true galaxy found twice and a real close pair. Galaxies per second leave out the
start-up (Python, TensorFlow, the model), measured on an empty field. Then the same deblend of one size with
1 and 2 local Dask workers, and ``fit-many`` on simulated lenses with 1 and 2 workers. Ratios are
within this run; the machine's other load counts in all of them alike.

    python benchmarks/scaling.py --sizes 256 512 1024 --speedup-size 512 --lenses 6 --out scaling.json
    python benchmarks/scaling.py --sizes 4096 --speedup-size 0 --lenses 0   # the 4096² field alone
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
from astropy.io import fits
from astropy.table import Table
from scipy.spatial import cKDTree

from lenstronomy_vae.lensing.cutouts import write_simulated_lenses
from lenstronomy_vae.sims.field import simulate_field
from lenstronomy_vae.sims.surveys import LSST

MATCH = 2.0  # pixels
DUPLICATE = 1.5  # pixels
EDGE = 3.0  # pixels from a boundary between tile cores: "near an edge"
BRIGHT_I = 24.0  # AB; completeness is also given for galaxies brighter than this


def run_command(arguments):
    """(seconds, peak resident memory of the child [GB], its CPU seconds) of ``lenstronomy-vae`` with ``arguments``.

    The CPU seconds (user + system, of the command's own process, not of Dask workers) measure its work
    whatever else the machine runs; the wall seconds do not.
    """
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    tic = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "lenstronomy_vae.cli", *arguments], env=environment,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - tic
    out, err = child.stdout.read(), child.stderr.read()
    if status != 0:
        raise RuntimeError(f"lenstronomy-vae {' '.join(arguments)} failed:\n{out}\n{err}")
    return seconds, usage.ru_maxrss / 1024**2, usage.ru_utime + usage.ru_stime  # ru_maxrss in kB on Linux


def tile_of(x, y, tile_size, width):
    """Index of the tile whose core owns pixel position (x, y), as ``deblending.tiling.tiles`` numbers them."""
    columns = -(-width // tile_size)
    return (np.floor(np.asarray(y) + 0.5) // tile_size).astype(int) * columns + (
        np.floor(np.asarray(x) + 0.5) // tile_size).astype(int)


def edge_distance(x, y, tile_size, width):
    """Distance of (x, y) from the nearest boundary between two tile cores of a square field [pixels]."""
    inner = max(-(-width // tile_size) - 1, 1)  # boundaries 1 … inner, in tile sizes from the field's corner
    return np.minimum(*(np.abs((np.asarray(v) + 0.5) - tile_size * np.clip(np.round((np.asarray(v) + 0.5) / tile_size),
                                                                            1, inner)) for v in (x, y)))


def truth_scores(field_path, out_dir, tile_size):
    """Against the field's truth: completeness (all, i < BRIGHT_I, near and away from tile edges) and duplicates.

    Each detection is matched to its nearest true galaxy within MATCH; a true galaxy matched by two
    detections is *duplicated*, counted apart when the two come from different tiles (a tile-edge
    duplicate). Pairs of detections closer than DUPLICATE are split into those two detections of one
    true galaxy and those of two true galaxies (a real close pair). Near an edge: within EDGE pixels
    of a boundary between tile cores.
    """
    truth = Table.read(field_path, hdu="TRUTH")
    found = Table.read(pathlib.Path(out_dir) / "galaxies.ecsv")
    width = fits.getheader(field_path, 0)["NAXIS1"]
    true_positions = np.column_stack([truth["x"], truth["y"]])
    positions = np.column_stack([found["x"], found["y"]])
    distance, _ = cKDTree(positions).query(true_positions)
    to_truth, match = cKDTree(true_positions).query(positions)
    match = np.where(to_truth < MATCH, match, -1)
    magnitude = np.array([LSST.flux_to_mag(flux, "i") for flux in truth["flux"][:, 3]])
    bright = magnitude < BRIGHT_I
    near = edge_distance(truth["x"], truth["y"], tile_size, width) < EDGE
    tile = tile_of(found["x"], found["y"], tile_size, width)
    matched, counts = np.unique(match[match >= 0], return_counts=True)
    duplicated = matched[counts > 1]
    across_tiles = sum(len(set(tile[match == k])) > 1 for k in duplicated)
    pairs = np.array(sorted(cKDTree(positions).query_pairs(DUPLICATE)), dtype=int).reshape(-1, 2)
    one_truth = int(np.sum((match[pairs[:, 0]] == match[pairs[:, 1]]) & (match[pairs[:, 0]] >= 0)))
    true_close = len(cKDTree(true_positions).query_pairs(DUPLICATE))
    return {"true": len(truth), "found": len(found), "completeness": float(np.mean(distance < MATCH)),
            "completeness_bright": float(np.mean(distance[bright] < MATCH)),
            "completeness_near_edges": float(np.mean(distance[near] < MATCH)) if near.any() else None,
            "completeness_away_from_edges": float(np.mean(distance[~near] < MATCH)),
            "bright_near_edges": int(np.sum(bright & near)),
            "bright_near_edges_lost": int(np.sum(bright & near & (distance >= MATCH))),
            "duplicated_galaxies": len(duplicated), "duplicated_across_tiles": int(across_tiles),
            "close_detection_pairs": len(pairs), "close_pairs_of_one_true_galaxy": one_truth,
            "close_true_pairs": true_close}


def start_up_seconds(work):
    """Seconds of ``deblend`` on an empty 45² field: starting Python, TensorFlow and the model."""
    path = work / "empty.fits"
    simulate_field((45, 45), 0.0, seed=0).save_fits(path)
    seconds, _, cpu_seconds = run_command(["deblend", str(path), "--out", str(work / "empty"), "--quiet"])
    return seconds, cpu_seconds


def deblend_scaling(sizes, density, tile_size, work):
    start_up, start_up_cpu = start_up_seconds(work)
    print(f"start-up (an empty field): {start_up:.1f} s ({start_up_cpu:.1f} CPU s); galaxies/s and CPU ms per galaxy "
          "below exclude it", flush=True)
    rows = []
    for size in sizes:
        path = work / f"field_{size}.fits"
        simulate_field((size, size), density, seed=size).save_fits(path)
        out = work / f"deblend_{size}"
        seconds, memory, cpu_seconds = run_command(["deblend", str(path), "--out", str(out), "--quiet", "--tile-size",
                                                    str(tile_size)])
        row = {"size": size, "seconds": seconds, "cpu_seconds": cpu_seconds, "start_up_seconds": start_up,
               "peak_memory_gb": memory, **truth_scores(path, out, tile_size)}
        row["galaxies_per_second"] = row["found"] / max(seconds - start_up, 1e-9)
        row["cpu_ms_per_galaxy"] = 1000 * (cpu_seconds - start_up_cpu) / max(row["found"], 1)
        rows.append(row)
        print(f"{size:5d}² px: {row['true']:6d} true, {row['found']:6d} found, {seconds:7.1f} s, "
              f"{row['galaxies_per_second']:.2f} galaxies/s, {row['cpu_ms_per_galaxy']:.0f} CPU ms/galaxy, "
              f"peak {memory:.2f} GB, completeness "
              f"{row['completeness']:.3f} (i < {BRIGHT_I}: {row['completeness_bright']:.3f}; within {EDGE:g} px of a "
              f"tile edge {row['completeness_near_edges'] or float('nan'):.3f}, "
              f"away {row['completeness_away_from_edges']:.3f}; "
              f"i < {BRIGHT_I} near edges lost {row['bright_near_edges_lost']} of {row['bright_near_edges']})\n"
              f"        true galaxies found twice: {row['duplicated_galaxies']} "
              f"({row['duplicated_across_tiles']} by two tiles); detection pairs < {DUPLICATE} px: "
              f"{row['close_detection_pairs']} "
              f"({row['close_pairs_of_one_true_galaxy']} of one true galaxy; true pairs that close: "
              f"{row['close_true_pairs']})", flush=True)
    return rows


def deblend_speedup(size, density, tile_size, work):
    path = work / f"field_{size}.fits"
    if not path.exists():
        simulate_field((size, size), density, seed=size).save_fits(path)
    seconds = {}
    for workers in (1, 2):
        seconds[workers], _, _ = run_command(["deblend", str(path), "--out", str(work / f"speedup_{workers}"),
                                           "--quiet", "--tile-size", str(tile_size), "--workers", str(workers)])
    same = (Table.read(work / "speedup_1" / "galaxies.ecsv")["x"].tolist()
            == Table.read(work / "speedup_2" / "galaxies.ecsv")["x"].tolist())
    print(f"deblend {size}² px: 1 worker {seconds[1]:.1f} s, 2 workers {seconds[2]:.1f} s: speed-up "
          f"{seconds[1] / seconds[2]:.2f}× (same galaxies: {same})", flush=True)
    return {"size": size, "seconds_1": seconds[1], "seconds_2": seconds[2], "speedup": seconds[1] / seconds[2],
            "same_galaxies": same}


def fit_many_speedup(n, work, budget):
    table = write_simulated_lenses(n, work / "lenses", seed=1)
    seconds = {}
    for workers in (1, 2):
        seconds[workers], _, _ = run_command(["fit-many", str(table), "--out", str(work / f"fits_{workers}"), "--quiet",
                                           "--workers", str(workers), *budget])
    same = np.allclose(Table.read(work / "fits_1" / "results.ecsv")["theta_E"],
                       Table.read(work / "fits_2" / "results.ecsv")["theta_E"], rtol=1e-9)
    per_minute = {workers: 60 * n / seconds[workers] for workers in seconds}
    print(f"fit-many {n} lenses: 1 worker {per_minute[1]:.2f} lenses/min, 2 workers {per_minute[2]:.2f} lenses/min: "
          f"speed-up {seconds[1] / seconds[2]:.2f}× (same results: {same})", flush=True)
    return {"lenses": n, "seconds_1": seconds[1], "seconds_2": seconds[2], "lenses_per_minute_1": per_minute[1],
            "lenses_per_minute_2": per_minute[2], "speedup": seconds[1] / seconds[2], "same_results": bool(same)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="field sides [pixels]")
    parser.add_argument("--density", type=float, default=54.0,
                        help="galaxies per arcmin² (54: 10⁴ galaxies on a 4096² field)")
    parser.add_argument("--tile-size", type=int, default=192, help="deblend's --tile-size")
    parser.add_argument("--speedup-size", type=int, default=512, help="field side of the 1 → 2 workers run (0: none)")
    parser.add_argument("--lenses", type=int, default=6, help="lenses of the fit-many run (0: none)")
    parser.add_argument("--budget", nargs="*", default=["--pso-particles", "20", "--pso-iterations", "20",
                                                        "--lm-iterations", "20", "--mcmc-burn", "20",
                                                        "--mcmc-run", "20"], help="fit-many's budget options")
    parser.add_argument("--out", default="scaling.json", help="JSON report")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        work = pathlib.Path(directory)
        report = {"density": args.density, "tile_size": args.tile_size,
                  "deblend": deblend_scaling(args.sizes, args.density, args.tile_size, work)}
        rates = [row["galaxies_per_second"] for row in report["deblend"]]
        costs = [row["cpu_ms_per_galaxy"] for row in report["deblend"]]
        if len(rates) > 1:
            print(f"largest over smallest field: galaxies/s {rates[-1] / rates[0]:.2f}, CPU ms per galaxy "
                  f"{costs[-1] / costs[0]:.2f} (1 = cost linear in galaxies)")
        if args.speedup_size:
            report["deblend_speedup"] = deblend_speedup(args.speedup_size, args.density, args.tile_size, work)
        if args.lenses:
            report["fit_many"] = fit_many_speedup(args.lenses, work, args.budget)
    pathlib.Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
