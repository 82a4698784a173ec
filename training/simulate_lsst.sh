#!/usr/bin/env bash
# Simulate the LSST-like (ugrizy, 45×45 px at 0.2″/px, 10-year depth) sets of the multi-band VAE,
# the deblender, the regressor and the shear-bias measurement. PROCESSES defaults to 2.
# Training sets span i = 17–26 with a flatter magnitude distribution than the sky's (dN/dm ∝ 10^(0.35 m): 0.7 %
# of the galaxies brighter than i = 20, against 0.05 %), and 30 % of the neighbours lie within ±0.9″ of the
# target (compact groups like BlendingToolKit's, pairs inside a PSF FWHM); the test and sheared sets
# follow the COSMOS counts (dN/dm ∝ 10^(0.55 m)) over the same range.
# On 2 CPU cores this takes about 30 minutes without seed 15 (SHEAR_SEEDS="13 14"), 40 with it;
# on a 16-core machine pass PROCESSES=16 and raise N.
set -euo pipefail
P=${PROCESSES:-2}
N=${N:-12000}
mkdir -p data
run() { lenstronomy-vae simulate-blends --processes "$P" --quiet "$@"; }
TRAINING=(--mag-range 17 26 --counts-slope 0.35 --close-fraction 0.3)
run --n "$N" --objects 1 1 --seed 10 "${TRAINING[@]}" --out data/lsst_isolated.h5  # VAE: isolated galaxies
run --n "$N" --seed 11 "${TRAINING[@]}" --out data/lsst_blends.h5                  # deblender and regressor
run --n 1000 --seed 12 --out data/lsst_blends_test.h5                              # the side-by-side report
# Shear bias: the same galaxies and noise seeds with shear ±(0.05, 0.05), each also turned by 90°;
# seed 14 calibrates the regressor's shear response; seeds 13 and 15 (4 × 4,000 scenes) measure its bias.
for seed in ${SHEAR_SEEDS:-13 14 15}; do
    n=$([ $seed = 15 ] && echo 4000 || echo 1000)
    for sign in "" "-"; do
        tag=$([ -z "$sign" ] && echo pp || echo mm)
        run --n $n --seed $seed --shear ${sign}0.05 ${sign}0.05 --out data/lsst_shear_${seed}_${tag}.h5
        run --n $n --seed $seed --shear ${sign}0.05 ${sign}0.05 --quarter-turn --out data/lsst_shear_${seed}_${tag}_turned.h5
    done
done
