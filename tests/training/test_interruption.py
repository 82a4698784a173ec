"""Interrupted work: a killed training resumes, an emcee backend resumes, outputs are written atomically."""

import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time

import emcee
import keras
import numpy as np
import pytest

from lenstronomy_vae.sims.galaxies import GalaxySimConfig, simulate_galaxies
from lenstronomy_vae.training.loop import CHECKPOINT_PATTERN, STATE_NAME, checkpoint_path, read_state
from lenstronomy_vae.utils import files
from lenstronomy_vae.utils.files import atomic_path, write_json

HERE = pathlib.Path(__file__).resolve().parents[1] / "scripts"  # fit_script.py, train_script.py
REPO = pathlib.Path(__file__).resolve().parents[2]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import fit_script  # noqa: E402  (tests/scripts/fit_script.py)
import train_script  # noqa: E402  (tests/scripts/train_script.py)

BACKEND_NAME = "lenstronomy_mcmc_emcee"  # the HDF5 group lenstronomy's emcee backend writes
EPOCHS = 3


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def temporaries(directory):
    """Files that atomic_path is still writing, or that a killed writer left behind."""
    return sorted(p.name for p in pathlib.Path(directory).iterdir() if p.name.startswith("."))


def wait_for(condition, process, timeout, what):
    """Poll ``condition()`` every 10 ms; fail if ``process`` exits first or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"process exited ({process.returncode}) before {what}:\n{out[-2000:]}\n{err[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def kill(process):
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL


def state_epochs(directory):
    try:
        return read_state(directory).get("epochs_done", 0)
    except (OSError, ValueError):  # never expected: state.json is replaced atomically
        raise AssertionError(f"unreadable {STATE_NAME} while training runs") from None


@pytest.fixture(scope="module")
def galaxies_file(tmp_path_factory):
    """96 small parametric galaxies (16 validate, 80 train) saved for the training process."""
    path = tmp_path_factory.mktemp("galaxies") / "galaxies.h5"
    simulate_galaxies(96, GalaxySimConfig(source="parametric"), seed=5).save_hdf5(path)
    return path


def steps_per_epoch():
    return math.ceil((96 - train_script.VALIDATION) / train_script.BATCH_SIZE)


# ---------------------------------------------------------------------------------------------
# Training


@pytest.mark.slow
def test_training_killed_mid_epoch_resumes_from_its_last_checkpoint(galaxies_file, tmp_path):
    checkpoint_dir = tmp_path / "run"
    command = [sys.executable, str(HERE / "train_script.py"), str(galaxies_file), str(checkpoint_dir), str(EPOCHS)]
    process = subprocess.Popen(command, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: state_epochs(checkpoint_dir) >= 1, process, timeout=300, what="the first checkpoint")
    time.sleep(0.05)  # a few steps into the next epoch (~0.5 s here), far from its end-of-epoch checkpoint
    kill(process)
    done_at_kill = state_epochs(checkpoint_dir)
    assert done_at_kill == 1, f"killed after epoch {done_at_kill}, not during epoch 2: make epochs longer"
    left_by_kill = temporaries(checkpoint_dir)
    history_at_kill = read_state(checkpoint_dir)["history"]
    killed = keras.saving.load_model(checkpoint_path(checkpoint_dir), safe_mode=True)  # loadable...
    assert int(killed.optimizer.iterations) == steps_per_epoch()  # ...and it is the epoch-1 checkpoint

    # Run again with the same arguments (in this process: the same code, without a second TF start-up).
    vae, state = train_script.train(galaxies_file, checkpoint_dir, EPOCHS)

    assert read_state(checkpoint_dir)["epochs_done"] == state["epochs_done"] == EPOCHS
    assert len(state["history"]) == EPOCHS
    assert state["history"][:1] == history_at_kill  # resumed from the checkpoint, not restarted
    assert all(np.isfinite(entry["loss"]) and np.isfinite(entry["val_loss"]) for entry in state["history"])
    reloaded = keras.saving.load_model(checkpoint_path(checkpoint_dir), safe_mode=True)
    for saved, trained in zip(reloaded.get_weights(), vae.get_weights()):
        np.testing.assert_array_equal(saved, trained)
    # The checkpoint holds exactly the planned epochs of optimizer steps: the killed epoch was redone
    # from the last checkpoint, not continued or counted twice.
    assert int(reloaded.optimizer.iterations) == EPOCHS * steps_per_epoch()
    assert temporaries(checkpoint_dir) == [], f"temporary files remain (after the kill: {left_by_kill})"


@pytest.mark.slow
def test_training_resume_removes_the_temporary_file_of_a_checkpoint_killed_while_saving(galaxies_file, tmp_path):
    """What a SIGKILL inside ``atomic_path`` leaves: a partial temporary beside the complete checkpoint."""
    train_script.train(galaxies_file, tmp_path, 1)
    partial = checkpoint_path(tmp_path).read_bytes()[:1000]
    (tmp_path / ".epoch_0002.k1ll3d00.keras").write_bytes(partial)  # atomic_path's name: .{stem}.{random}{suffix}
    (tmp_path / ".state.k1ll3d00.json").write_text('{"epochs_do')
    _, state = train_script.train(galaxies_file, tmp_path, 2)
    assert state["epochs_done"] == 2 and len(state["history"]) == 2
    assert temporaries(tmp_path) == []


@pytest.mark.slow
def test_training_killed_between_checkpoint_and_state_does_not_train_an_epoch_twice(galaxies_file, tmp_path):
    _, state = train_script.train(galaxies_file, tmp_path, 1)
    # What a SIGKILL after saving the epoch-2 model and before state.json names it leaves: an
    # epoch_0002.keras that the state (still at epoch 1) does not name.
    (tmp_path / CHECKPOINT_PATTERN.format(2)).write_bytes(checkpoint_path(tmp_path).read_bytes())
    vae, state = train_script.train(galaxies_file, tmp_path, 2)
    assert state["epochs_done"] == 2 and len(state["history"]) == 2
    assert int(vae.optimizer.iterations) == 2 * steps_per_epoch()
    assert sorted(p.name for p in tmp_path.glob("*.keras")) == [CHECKPOINT_PATTERN.format(2)]


# ---------------------------------------------------------------------------------------------
# emcee with lenstronomy's HDF5 backend


def read_backend(path):
    return emcee.backends.HDFBackend(str(path), name=BACKEND_NAME, read_only=True)


def test_emcee_backend_resumes_where_the_first_run_stopped(galaxy_model_path, tmp_path, monkeypatch):
    path = tmp_path / "chain.h5"
    first = fit_script.run_mcmc(galaxy_model_path, path, n_run=4)
    backend = read_backend(path)
    assert backend.iteration == 4
    chain_first, log_prob_first = backend.get_chain(), backend.get_log_prob()
    n_walkers, num_param = backend.shape
    assert np.asarray(first["samples"]).shape == (4 * n_walkers, num_param)

    starts = []
    original_sample = emcee.EnsembleSampler.sample

    def spy(self, initial_state, *args, **kwargs):
        starts.append(emcee.State(initial_state, copy=True))
        return original_sample(self, initial_state, *args, **kwargs)

    monkeypatch.setattr(emcee.EnsembleSampler, "sample", spy)
    second = fit_script.run_mcmc(galaxy_model_path, path, resume=True, n_run=3, seed=99)
    monkeypatch.undo()

    backend = read_backend(path)
    assert backend.iteration == 4 + 3  # both runs' iterations
    np.testing.assert_array_equal(backend.get_chain()[:4], chain_first)  # the first run is kept as it was
    np.testing.assert_array_equal(backend.get_log_prob()[:4], log_prob_first)
    # The second run started from the first run's last walker positions (and their log-probabilities),
    # not from a new ball around the initial parameters (seed=99 would have drawn a different one).
    assert len(starts) == 1
    np.testing.assert_array_equal(starts[0].coords, chain_first[-1])
    np.testing.assert_array_equal(starts[0].log_prob, log_prob_first[-1])
    # lenstronomy returns the whole backend (n_burn=0): 7 iterations of samples.
    np.testing.assert_array_equal(np.asarray(second["samples"]), backend.get_chain(flat=True))
    # emcee restores its generator from the backend too, so 4 + 3 steps are exactly 7 uninterrupted steps.
    fit_script.run_mcmc(galaxy_model_path, tmp_path / "straight.h5", n_run=7)
    np.testing.assert_array_equal(read_backend(tmp_path / "straight.h5").get_chain(), backend.get_chain())


@pytest.mark.slow
def test_killed_emcee_run_leaves_a_readable_backend_that_resumes(galaxy_model_path, tmp_path):
    """SIGKILL during a likelihood evaluation of step 3 (emcee writes the backend after each step).

    The helper script makes one evaluation hang and signal it, so the kill lands at a known
    point. A kill while emcee writes the HDF5 file (a few ms per step) can corrupt it: HDF5 is
    not crash-safe, which this test does not (and cannot reliably) cover.
    """
    path, marker = tmp_path / "chain.h5", tmp_path / "stalled"
    fitting = fit_script.fitting_sequence(galaxy_model_path)
    num_param = fitting.param_class.num_param()[0]
    n_walkers = 2 * num_param
    # emcee evaluates the initial walkers, then n_walkers per step: hang inside step 3.
    stall = n_walkers + 2 * n_walkers + n_walkers // 2
    command = [sys.executable, str(HERE / "fit_script.py"), galaxy_model_path, str(tmp_path / "out.json"), "mcmc",
               "--backend", str(path), "--n-run", "10", "--stall-after-calls", str(stall), "--marker", str(marker)]
    process = subprocess.Popen(command, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(marker.exists, process, timeout=300, what="the stalled likelihood evaluation")
    kill(process)
    assert not (tmp_path / "out.json").exists()

    backend = read_backend(path)
    assert backend.shape == (n_walkers, num_param)
    assert backend.iteration == 2  # the two completed steps, nothing of the third
    killed_chain = backend.get_chain()
    assert killed_chain.shape == (2, n_walkers, num_param) and np.all(np.isfinite(killed_chain))
    assert np.all(np.isfinite(backend.get_log_prob()))

    resumed = fit_script.run_mcmc(galaxy_model_path, path, resume=True, n_run=3)
    backend = read_backend(path)
    assert backend.iteration == 2 + 3
    np.testing.assert_array_equal(backend.get_chain()[:2], killed_chain)
    assert np.asarray(resumed["samples"]).shape == (5 * n_walkers, num_param)
    # Same seed, same state: the interrupted-and-resumed chain is the uninterrupted one.
    fit_script.run_mcmc(galaxy_model_path, tmp_path / "straight.h5", n_run=5)
    np.testing.assert_array_equal(read_backend(tmp_path / "straight.h5").get_chain(), backend.get_chain())


# ---------------------------------------------------------------------------------------------
# Atomic output files


def test_atomic_path_keeps_the_previous_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "results.json"
    write_json(target, {"version": 1})
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as temporary:
            assert temporary.parent == tmp_path and temporary.name.startswith(".results.")
            assert temporary.suffix == ".json"  # Keras checks the suffix of .keras files
            temporary.write_text('{"version": 2, "trunc')
            raise RuntimeError("disk full")
    assert json.loads(target.read_text()) == {"version": 1}
    assert temporaries(tmp_path) == []


def test_atomic_path_creates_a_missing_file_only_on_success(tmp_path):
    target = tmp_path / "sub" / "model.keras"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"partial")
            raise KeyboardInterrupt
    assert not target.exists() and temporaries(target.parent) == []
    with atomic_path(target) as temporary:
        temporary.write_bytes(b"complete")
        assert not target.exists()  # nothing at the final name until the block succeeds
    assert target.read_bytes() == b"complete" and temporaries(target.parent) == []
    assert (target.stat().st_mode & 0o777) == 0o644


def test_write_json_replaces_the_whole_file(tmp_path):
    target = tmp_path / "state.json"
    write_json(target, {"history": list(range(100))})
    write_json(target, {"history": [1]})
    assert json.loads(target.read_text()) == {"history": [1]}
    assert temporaries(tmp_path) == []


def atomic_io_file():
    return pathlib.Path(files.__file__)


@pytest.mark.slow
def test_a_killed_atomic_writer_leaves_the_previous_file(tmp_path):
    """SIGKILL inside the block: the old file stays complete (only a '.' temporary is left)."""
    target = tmp_path / "out.json"
    write_json(target, {"version": 1})
    code = (  # files.py alone (standard library only), without importing the package and TensorFlow
        "import importlib.util, os, signal\n"
        f"spec = importlib.util.spec_from_file_location('io_module', {str(atomic_io_file())!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "atomic_path = module.atomic_path\n"
        f"with atomic_path({str(target)!r}) as temporary:\n"
        "    temporary.write_text('{\"version\": 2, \"trun')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    process = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=60)
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert json.loads(target.read_text()) == {"version": 1}
    left = temporaries(tmp_path)
    assert len(left) == 1 and left[0].startswith(".out.") and left[0].endswith(".json")
