"""Simulate HST/ACS F814W galaxy stamps for training: ``lenstronomy-vae simulate`` (same arguments).

    python training/simulate_hst.py --n 30000 --seed 2026 --out data/hst64.h5 --processes 2
"""

import sys

from lenstronomy_vae.cli import main

if __name__ == "__main__":
    sys.exit(main(["simulate", "--survey", "hst_acs_f814w", *sys.argv[1:]]))
