#!/usr/bin/env bash
# Train and ship the LSST-like networks in order — the 6-band VAE, its deblender, the latent
# regressor, calibrated on its own sheared sets — then write the side-by-side report.
# Needs the sets of training/simulate_lsst.sh.
# Each step checkpoints every epoch under runs/<name>: run the script again to resume.
# On a CPU (2 cores) it takes about an hour; on GPUs raise EPOCHS and BATCH (several GPUs are
# used through tf.distribute.MirroredStrategy automatically).
set -euo pipefail
EPOCHS=${EPOCHS:-40}
BATCH=${BATCH:-64}
lenstronomy-vae train --data data/lsst_isolated.h5 --name lsst45 --epochs "$EPOCHS" --batch-size "$BATCH" \
    --latent-dim 32 --encoder-filters 16 32 64 128 --decoder-filters 64 32 16 --dense-units 256
lenstronomy-vae train-deblender --data data/lsst_blends.h5 --vae lsst45 --name lsst45_deblender \
    --epochs "$((EPOCHS / 2))" --batch-size "$BATCH" --latent-weight 0.1
lenstronomy-vae train-regressor --data data/lsst_blends.h5 --encoder lsst45_deblender --name lsst45_regressor \
    --epochs "$((EPOCHS / 2))" --batch-size "$BATCH"
lenstronomy-vae calibrate-regressor --regressor lsst45_regressor \
    --sets data/lsst_shear_14_pp.h5 data/lsst_shear_14_mm.h5 data/lsst_shear_14_pp_turned.h5 data/lsst_shear_14_mm_turned.h5
lenstronomy-vae report --data data/lsst_blends_test.h5 --deblender lsst45_deblender --regressor lsst45_regressor \
    --shear-sets data/lsst_shear_13_pp.h5 data/lsst_shear_13_mm.h5 data/lsst_shear_13_pp_turned.h5 \
    data/lsst_shear_13_mm_turned.h5 --map-scenes "${MAP_SCENES:-200}" --out runs/report
