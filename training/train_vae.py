"""Train the single-band HST-like VAE and ship it: ``lenstronomy-vae train`` (same arguments).

Small, on a CPU (about 20 minutes on 2 cores):
    python training/simulate_hst.py --n 30000 --seed 2026 --out data/hst64.h5 --processes 2
    python training/train_vae.py --data data/hst64.h5 --epochs 40 --name hst64 --default
Large, on one or several GPUs (MirroredStrategy is used automatically with more than one GPU):
    python training/simulate_hst.py --n 200000 --out data/hst64.h5 --processes 16
    python training/train_vae.py --data data/hst64.h5 --epochs 100 --batch-size 256 --name hst64
An interrupted run resumes from ``--checkpoint-dir`` (default runs/<name>) when started again.
"""

import sys

from lenstronomy_vae.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
