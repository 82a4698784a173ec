"""The learned latent prior: summarised from latent means, recorded in the manifest, read back, used by MAP."""

import importlib.util
import pathlib

import numpy as np
import pytest

from lenstronomy_vae.deblending.map import map_refine
from lenstronomy_vae.deblending.scene import deblend_scene
from lenstronomy_vae.networks.deblender import Deblender
from lenstronomy_vae.networks.decoding import encode
from lenstronomy_vae.networks.latent_prior import LatentPrior
from lenstronomy_vae.networks.manifest import add_to_manifest, export_model, new_model_file
from lenstronomy_vae.networks.model_files import ModelFileError, load_network, read_manifest, weights_dir
from lenstronomy_vae.training.shipping import latent_prior_of, ship


def test_the_prior_is_the_mean_and_spread_of_the_latents_per_latent():
    latents = np.random.default_rng(0).normal([0.5, -1.0, 0.0], [1.0, 0.2, 2.0], size=(5000, 3))
    prior = LatentPrior.of_latents(latents)
    np.testing.assert_allclose(prior.mean, [0.5, -1.0, 0.0], atol=0.06)
    np.testing.assert_allclose(prior.std, [1.0, 0.2, 2.0], rtol=0.05)
    entry = prior.to_manifest(5000, "test")
    assert entry["stamps"] == 5000 and entry["source"] == "test"
    back = LatentPrior.from_manifest({"latent_prior": entry})
    np.testing.assert_array_equal(back.mean, prior.mean)
    np.testing.assert_array_equal(back.std, prior.std)
    assert LatentPrior.from_manifest({"file": "x.keras"}) is None and LatentPrior.from_manifest(None) is None


@pytest.mark.parametrize("mean, std, match", [
    ([0.0, 0.0], [1.0], "one length"),
    ([[0.0]], [[1.0]], "1-D"),
    ([0.0, np.nan], [1.0, 1.0], "finite"),
    ([0.0, 0.0], [1.0, 0.0], "positive"),
])
def test_a_malformed_prior_is_refused(mean, std, match):
    with pytest.raises(ValueError, match=match):
        LatentPrior(mean, std)


def test_latent_prior_of_encodes_the_stamps(lsst_vae, lsst_scenes):
    entry = latent_prior_of(lsst_vae, lsst_scenes.target_noisy, "the test scenes")
    latents = encode(lsst_vae, lsst_scenes.target_noisy)
    np.testing.assert_allclose(entry["mean"], latents.mean(axis=0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(entry["std"], latents.std(axis=0), rtol=1e-6)
    assert entry["stamps"] == 24 and entry["source"] == "the test scenes"


def test_a_recorded_prior_is_read_back_with_the_network(lsst_vae, user_home):
    deblender = Deblender.from_vae(lsst_vae)
    dim = lsst_vae.config.latent_dim
    entry = LatentPrior(np.full(dim, 0.3), np.full(dim, 0.5)).to_manifest(10, "test")
    ship(deblender, "with_prior", None, {"n": 1}, {}, kind="deblender", latent_prior=entry)
    assert read_manifest(user_home / "models")["models"]["with_prior"]["latent_prior"] == entry
    loaded = load_network("with_prior", Deblender)
    np.testing.assert_array_equal(loaded.latent_prior.mean, entry["mean"])
    ship(deblender, "without", None, {"n": 1}, {}, kind="deblender")
    assert load_network("without", Deblender).latent_prior is None


@pytest.mark.parametrize("recorded, match", [
    ({"mean": [0.0], "std": [1.0]}, r"unusable latent_prior \(the latent prior has 1 latents, the network 4\)"),
    ({"mean": [0.0]}, "unusable latent_prior"),
])
def test_an_unusable_recorded_prior_is_a_model_file_error(lsst_vae, user_home, recorded, match):
    deblender = Deblender.from_vae(lsst_vae)
    directory = user_home / "models"
    model_file = export_model(deblender, new_model_file(directory, "broken_prior"))
    add_to_manifest(directory, "broken_prior", model_file, deblender, {}, {}, kind="deblender", latent_prior=recorded)
    with pytest.raises(ModelFileError, match=match):
        load_network("broken_prior", Deblender)


def test_map_refinement_is_pulled_to_the_prior_mean(lsst_vae, lsst_scenes):
    deblender = Deblender.from_vae(lsst_vae)
    image = lsst_scenes.blend[0].astype(np.float64)
    start = deblend_scene(deblender, image, max_new_sources=0)
    dim = lsst_vae.config.latent_dim
    # A prior far from N(0, 1) and much narrower than the data's pull: MAP lands on its mean.
    prior = LatentPrior(np.full(dim, 1.5), np.full(dim, 1e-3))
    refined = map_refine(deblender, image, start, steps=50, latent_prior=prior)
    np.testing.assert_allclose(np.stack([g.latent for g in refined.galaxies]), 1.5, atol=0.05)
    deblender.latent_prior = prior  # the deblender's own prior is the default
    own = map_refine(deblender, image, start, steps=50)
    np.testing.assert_allclose(np.stack([g.latent for g in own.galaxies]), 1.5, atol=0.05)
    standard = map_refine(Deblender.from_vae(lsst_vae), image, start, steps=50)
    assert np.abs(np.stack([g.latent for g in standard.galaxies]) - 1.5).max() > 0.5
    with pytest.raises(ValueError, match="the latent prior has 2 latents"):
        map_refine(deblender, image, start, latent_prior=LatentPrior([0.0, 0.0], [1.0, 1.0]))
    with pytest.raises(TypeError, match="LatentPrior or None"):
        map_refine(deblender, image, start, latent_prior={"mean": [0.0]})


@pytest.mark.slow
def test_the_shipped_lsst_networks_carry_a_latent_prior():
    manifest = read_manifest(weights_dir())["models"]
    for name in ("lsst45", "lsst45_deblender", "lsst45_wide", "lsst45_wide_deblender"):
        prior = LatentPrior.from_manifest(manifest[name])
        assert prior.latent_dim == manifest[name]["latent_dim"] and manifest[name]["latent_prior"]["stamps"] == 2000
        assert 0.05 < prior.std.min() and prior.std.max() < 3.0  # latent units


def _record_script():
    path = pathlib.Path(__file__).resolve().parents[2] / "training" / "record_latent_prior.py"
    spec = importlib.util.spec_from_file_location("record_latent_prior", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_model_trained_without_a_prior_gets_the_one_training_would_have_recorded(lsst_vae, lsst_scenes, user_home,
                                                                                    tmp_path):
    data = tmp_path / "blends.h5"
    lsst_scenes.save_hdf5(data)
    recorded = {"file": "blends.h5", "held_out": 4, "validation": 4, "train": 16}
    ship(lsst_vae, "parent_vae", None, recorded, {}, kind="vae")
    ship(Deblender.from_vae(lsst_vae), "old_deblender", None, recorded, {}, kind="deblender", parent="parent_vae")
    script = _record_script()
    assert script.main(["old_deblender", str(data)]) == 0
    entry = read_manifest(user_home / "models")["models"]["old_deblender"]["latent_prior"]
    _, rest = lsst_scenes.split(4)
    _, train = rest.split(4)
    assert entry == {**latent_prior_of(lsst_vae, train.target_noisy, ""), "source": entry["source"]}
    assert "parent_vae's encoder" in entry["source"]
    assert load_network("old_deblender", Deblender).latent_prior.latent_dim == lsst_vae.config.latent_dim
    other = tmp_path / "other.h5"
    lsst_scenes.save_hdf5(other)
    with pytest.raises(SystemExit):  # another file than the one it was trained on
        script.main(["parent_vae", str(other)])
