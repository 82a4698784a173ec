"""The training range: measured on a training set, recorded in the manifest, read back with the network, checked."""

import numpy as np
import pytest

from lenstronomy_vae.networks.deblender import Deblender
from lenstronomy_vae.networks.manifest import add_to_manifest, export_model, new_model_file
from lenstronomy_vae.networks.model_files import ModelFileError, load_network, read_manifest, weights_dir
from lenstronomy_vae.networks.training_range import TrainingRange, summarise_training_range
from lenstronomy_vae.sims.galaxies import GalaxySimConfig, simulate_galaxies
from lenstronomy_vae.training.deblender import train_and_ship_deblender
from lenstronomy_vae.training.shipping import latent_prior_of, ship, training_range_of
from lenstronomy_vae.training.vae import train_and_ship

BANDS = ("g", "r", "i")


def simple_range():
    """A 3-band range measured on 1,000 stamps: peak ≤ 0.9, stamp flux 0–100, flux 10–50, size 0.2–0.8″."""
    rng = np.random.default_rng(0)
    n = 1000
    return TrainingRange(summarise_training_range(
        peaks=rng.uniform(0.1, 0.9, (n, 3)), stamp_fluxes=rng.uniform(0, 100, (n, 3)),
        fluxes=rng.uniform(10, 50, (n, 3)), sizes=np.append(rng.uniform(0.2, 0.8, n - 1), np.nan),
        bands=BANDS, size_band="i", unit="e-", source="test"))


def test_the_range_records_percentiles_min_and_max_per_band():
    entry = simple_range().entry
    assert entry["stamps"] == 1000 and entry["bands"] == list(BANDS) and entry["size"]["failed"] == 1
    for key in ("p0.1", "p99.9", "min", "max"):
        assert len(entry["flux"][key]) == 3 and len(entry["peak"][key]) == 3
    assert 10 <= entry["flux"]["min"][0] <= entry["flux"]["p0.1"][0] < 10.2
    assert 49.8 < entry["flux"]["p99.9"][2] <= entry["flux"]["max"][2] <= 50
    assert 0.79 < entry["size"]["p99.9"] <= 0.8 and entry["size"]["unit"] == "arcsec"


def test_reasons_name_the_quantity_the_band_and_by_how_much():
    training_range = simple_range()
    inside = dict(peak=[0.5] * 3, stamp_flux=[50.0] * 3, flux=[30.0] * 3, size=0.5)
    assert training_range.reasons(**inside) == ()
    assert training_range.reasons() == ()  # nothing measured, nothing flagged
    reasons = training_range.reasons(**{**inside, "peak": [0.5, 0.95, 0.5], "flux": [30.0, 30.0, 150.0]})
    assert len(reasons) == 2
    assert reasons[0].startswith("peak_r 0.9500 > 0.89")
    assert reasons[1].startswith("flux_i 150 > 5") and reasons[1].endswith("(3x)")
    assert training_range.reasons(**{**inside, "stamp_flux": [150.0, 400.0, 50.0]})[0].startswith("stamp_flux_r 400 >")
    assert training_range.reasons(**{**inside, "stamp_flux": [150.0, 400.0, 50.0]})[0].endswith("(4x; also g)")
    assert training_range.reasons(**{**inside, "peak": [0.99, 0.95, 0.5]})[0].startswith("peak_g 0.9900 > 0.89")
    assert training_range.reasons(**{**inside, "peak": [0.99, 0.95, 0.5]})[0].endswith(" (also r)")
    assert training_range.reasons(**{**inside, "flux": [30.0, 30.0, 2.0]}) == ("flux_i 2 < 5.11 (0.39x)",)
    assert training_range.reasons(**{**inside, "flux": [30.0, 30.0, 6.0]}) == ()  # within the noise margin
    assert training_range.reasons(**{**inside, "flux": [0.0, -1.0, 30.0]}) == ()  # faint only in g, r: red, not faint
    assert training_range.reasons(**{**inside, "stamp_flux": [-5.0] * 3}) == ()  # a faint stamp is not flagged
    assert training_range.reasons(**{**inside, "size": 1.6})[0].startswith("size 1.60 > 1.00 arcsec (1.6x)")
    assert training_range.reasons(**{**inside, "size": 0.9}) == ()  # within the margin for neighbours' residuals
    assert training_range.reasons(**{**inside, "size": 0.01}) == ()  # smaller than the PSF is fine
    assert training_range.reasons(**{**inside, "size": float("nan")}) == ()  # HSM failed: not measured


def test_a_malformed_range_is_refused():
    entry = simple_range().entry
    with pytest.raises(ValueError, match="needs"):
        TrainingRange({k: v for k, v in entry.items() if k != "size"})
    with pytest.raises(ValueError, match="one value per band"):
        TrainingRange({**entry, "bands": ["g", "r"]})
    assert TrainingRange.from_manifest({"file": "x.keras"}) is None and TrainingRange.from_manifest(None) is None


def test_training_range_of_a_blend_set_measures_the_encoder_input_and_the_targets(lsst_vae, lsst_scenes):
    deblender = Deblender.from_vae(lsst_vae)
    entry = training_range_of(lsst_scenes, deblender, encoder_input=lsst_scenes.blend)
    assert entry["stamps"] == 24 and entry["bands"] == list(lsst_scenes.bands) and entry["size"]["band"] == "i"
    target_flux = lsst_scenes.target_intrinsic.sum(axis=(1, 2), dtype=np.float64)
    np.testing.assert_allclose(entry["flux"]["max"], target_flux.max(axis=0), rtol=1e-6)
    np.testing.assert_allclose(entry["stamp_flux"]["max"], lsst_scenes.blend.sum(axis=(1, 2), dtype=np.float64)
                               .max(axis=0), rtol=1e-6)
    peaks = lsst_vae.normalization.normalize(lsst_scenes.blend.astype(np.float64)).max(axis=(1, 2))
    np.testing.assert_allclose(entry["peak"]["max"], peaks.max(axis=0), rtol=1e-6)
    assert 0.1 < entry["size"]["min"] < entry["size"]["max"] < 2.0  # arcsec
    own = training_range_of(lsst_scenes, lsst_vae)  # a VAE reads the isolated noisy target
    assert own["stamp_flux"]["max"] != entry["stamp_flux"]["max"] and own["flux"] == entry["flux"]


def test_a_shipped_range_is_read_back_with_the_network_and_a_model_without_one_has_none(lsst_vae, lsst_scenes,
                                                                                      user_home):
    deblender = Deblender.from_vae(lsst_vae)
    entry = training_range_of(lsst_scenes, deblender, encoder_input=lsst_scenes.blend)
    ship(deblender, "ranged", None, {"n": 24}, {}, kind="deblender", training_range=entry)
    assert read_manifest(user_home / "models")["models"]["ranged"]["training_range"] == entry
    loaded = load_network("ranged", Deblender)
    assert isinstance(loaded.training_range, TrainingRange) and loaded.training_range.entry == entry

    ship(deblender, "old", None, {"n": 24}, {}, kind="deblender")
    assert "training_range" not in read_manifest(user_home / "models")["models"]["old"]
    assert load_network("old", Deblender).training_range is None
    path = export_model(deblender, new_model_file(user_home / "elsewhere", "by_path"))
    assert load_network(str(path), Deblender).training_range is None


def test_an_unusable_recorded_range_is_a_model_file_error(lsst_vae, user_home):
    deblender = Deblender.from_vae(lsst_vae)
    directory = user_home / "models"
    model_file = export_model(deblender, new_model_file(directory, "broken"))
    add_to_manifest(directory, "broken", model_file, deblender, {}, {}, kind="deblender",
                    training_range={"bands": ["u"]})
    with pytest.raises(ModelFileError, match="unusable training_range"):
        load_network("broken", Deblender)


def test_training_records_the_range_of_its_training_set(lsst_vae, lsst_scenes, tmp_path):
    blends, vae_path, weights = tmp_path / "blends.h5", tmp_path / "vae.keras", tmp_path / "weights"
    lsst_scenes.save_hdf5(blends)
    lsst_vae.save(vae_path)
    train_and_ship_deblender(blends, str(vae_path), "tiny_deblender", weights, tmp_path / "run_d", epochs=1,
                             held_out=4, validation=4, batch_size=8)
    entry = read_manifest(weights)["models"]["tiny_deblender"]["training_range"]
    _, rest = lsst_scenes.split(4)
    _, train = rest.split(4)
    assert entry["stamps"] == 16 and "the 16 training scenes of blends.h5" in entry["source"]
    assert entry == {**training_range_of(train, lsst_vae, encoder_input=train.blend), "source": entry["source"]}
    prior = read_manifest(weights)["models"]["tiny_deblender"]["latent_prior"]  # MAP's, from the targets
    assert prior == {**latent_prior_of(lsst_vae, train.target_noisy, ""), "source": prior["source"]}
    assert "blends.h5" in prior["source"]
    assert load_network(str(weights / "tiny_deblender.keras"), Deblender).training_range is None  # by path

    galaxies = tmp_path / "galaxies.h5"
    simulate_galaxies(12, GalaxySimConfig(source="parametric"), seed=3).save_hdf5(galaxies)
    train_and_ship(galaxies, "tiny_vae", weights, tmp_path / "run_v", epochs=1, held_out=3, validation=3,
                   batch_size=3, config_options=dict(latent_dim=2, encoder_filters=(4, 4, 4, 4),
                                                     decoder_filters=(4, 4, 4, 4), dense_units=8))
    entry = read_manifest(weights)["models"]["tiny_vae"]["training_range"]
    assert entry["stamps"] == 6 and entry["bands"] == ["F814W"] and entry["size"]["band"] == "F814W"
    prior = read_manifest(weights)["models"]["tiny_vae"]["latent_prior"]  # MAP's prior, from the training stamps
    assert prior["stamps"] == 6 and len(prior["mean"]) == len(prior["std"]) == 2


@pytest.mark.slow
def test_the_shipped_lsst_networks_carry_their_training_range():
    manifest = read_manifest(weights_dir())["models"]
    for name in ("lsst45", "lsst45_deblender"):
        training_range = TrainingRange.from_manifest(manifest[name])
        assert training_range.bands == ("u", "g", "r", "i", "z", "y") and training_range.entry["stamps"] >= 2000
        # the training galaxies are i = 20–25.3: i-band target fluxes from 5.6e4 to 7.3e6 electrons (the stamp
        # holds >= 90 % of each)
        assert 4e4 < training_range.low("flux")[3] < 2e5 and 2e6 < training_range.high("flux")[3] < 7.4e6
        assert 0.95 < training_range.high("peak").min() < 1.0
    assert load_network("lsst45_deblender", Deblender).training_range.entry == manifest["lsst45_deblender"][
        "training_range"]
