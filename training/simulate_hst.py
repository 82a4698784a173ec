"""Simulate HST/ACS F814W galaxy stamps for training the VAE and save them as HDF5.

    python training/simulate_hst.py --n 20000 --out data/hst64.h5 --processes 2
"""

import argparse
import os
import time

from lenstronomy_vae.simulate import SOURCES, GalaxySimConfig, simulate_galaxies


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, required=True, help="number of galaxies")
    parser.add_argument("--out", required=True, help="HDF5 file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1, help="worker processes")
    parser.add_argument("--source", choices=SOURCES, default="auto",
                        help="morphologies: COSMOS fits (needs fpfs), parametric, or auto")
    return parser.parse_args()


def main():
    args = parse_args()
    config = GalaxySimConfig(survey="hst_acs_f814w", source=args.source)
    start = time.perf_counter()
    galaxies = simulate_galaxies(args.n, config, seed=args.seed, progress=True, processes=args.processes)
    elapsed = time.perf_counter() - start
    galaxies.save_hdf5(args.out)
    print(f"{len(galaxies)} galaxies from source '{galaxies.config.source}' in {elapsed:.1f} s "
          f"({1e3 * elapsed / len(galaxies):.1f} ms each, {args.processes} process(es)); "
          f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
