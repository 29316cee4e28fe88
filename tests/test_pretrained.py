"""Pretrained files are found by one rule (kp_tf.pretrained), offline included.

Downloads are made to fail by pointing them at a closed loopback port
($KP_TF_DOWNLOAD_ORIGIN), so no test needs or uses the network.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, require_shared

VGG = "weights/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
I3D = "weights/i3d_kinetics400_rgb_scratch.npz"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: connections are refused at once


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Empty framework caches and kp_tf cache, downloads failing; returns a folder to use."""
    for name, sub in (("KERAS_HOME", "keras"), ("TFHUB_CACHE_DIR", "hub"), ("KP_TF_CACHE", "cache")):
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.setenv("KP_TF_DOWNLOAD_ORIGIN", UNREACHABLE)
    monkeypatch.delenv("KP_TF_I3D", raising=False)
    return tmp_path


def _offline_env(tmp_path, shared):
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "keras"), TFHUB_CACHE_DIR=str(tmp_path / "hub"),
               KP_TF_CACHE=str(tmp_path / "cache"), KP_TF_SHARED=str(shared),
               KP_TF_DOWNLOAD_ORIGIN=UNREACHABLE)
    env.pop("KP_TF_I3D", None)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the commands' own default must keep stderr clean
    return env


def _one_line_error(result, *needles):
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _truncated(source: Path, dest: Path, size: int = 1 << 20) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as f:
        dest.write_bytes(f.read(size))
    return dest


# --- VGG19 ------------------------------------------------------------------------------------

def test_stage1_perceptual_loss_reads_the_shared_file_offline(offline, monkeypatch):
    import h5py

    from kp_tf import config
    from kp_tf.training.keypoint_trainer import KeypointTrainer

    shared_file = require_shared(VGG)
    monkeypatch.setenv("KP_TF_SHARED", str(shared_file.parent.parent))
    trainer = KeypointTrainer(config.load_preset("tiny", vgg_weights="imagenet"))
    vgg = trainer.perceptual.features
    with h5py.File(shared_file, "r") as f:
        kernel = np.asarray(f["block1_conv2"]["block1_conv2_W_1:0"])
    np.testing.assert_array_equal(vgg.get_layer("block1_conv2").kernel.numpy(), kernel)
    assert not (offline / "keras" / "models").exists() or not any((offline / "keras" / "models").iterdir())


def test_train_without_the_vgg_file_anywhere_says_so_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "kp_tf.train", "--dataset=tiny", "--stage=all",
         f"--data_dir={tmp_path / 'data'}", f"--logdir={tmp_path / 'run'}"],
        env=_offline_env(tmp_path, tmp_path / "no-shared"), cwd=REPO, capture_output=True,
        text=True, timeout=300)
    line = _one_line_error(result, "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
                           "--vgg_weights", str(tmp_path / "keras" / "models"), UNREACHABLE)
    assert line.startswith("error: ")
    assert not (tmp_path / "data").exists()  # it failed before making the data


def test_truncated_vgg_file_is_named_in_one_line(tmp_path):
    truncated = _truncated(require_shared(VGG), tmp_path / "vgg.h5")
    result = subprocess.run(
        [sys.executable, "-m", "kp_tf.train", "--dataset=tiny", "--stage=keypoints",
         f"--vgg_weights={truncated}", f"--data_dir={tmp_path / 'data'}",
         f"--logdir={tmp_path / 'run'}"],
        env=_offline_env(tmp_path, tmp_path / "no-shared"), cwd=REPO, capture_output=True,
        text=True, timeout=300)
    _one_line_error(result, str(truncated), "1,048,576 bytes where 80,134,624 are expected",
                    "truncated")


def test_truncated_copy_in_the_cache_is_skipped_and_reported(offline, monkeypatch):
    from kp_tf import pretrained

    source = require_shared(VGG)
    cached = _truncated(source, offline / "keras" / "models" / pretrained.VGG19.filename)
    monkeypatch.setenv("KP_TF_SHARED", str(offline / "no-shared"))
    with pytest.raises(pretrained.PretrainedFileError) as e:
        pretrained.vgg19_weights("imagenet")
    assert f"{cached} (1,048,576 bytes where 80,134,624 are expected (truncated))" in str(e.value)
    assert "\n" not in str(e.value)
    monkeypatch.setenv("KP_TF_SHARED", str(source.parent.parent))
    assert pretrained.vgg19_weights("imagenet") == str(source)  # the good copy is next in line


def test_a_file_of_the_right_size_but_other_content_is_rejected(tmp_path):
    from kp_tf import pretrained

    good = tmp_path / "good.bin"
    good.write_bytes(b"kp_tf")
    import hashlib
    known = pretrained.KnownFile("good.bin", 5, hashlib.sha256(b"kp_tf").hexdigest(), "", "--x", "x")
    assert pretrained.check_file(good, known) is None
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"kp_TF")
    assert "sha256 differs" in pretrained.check_file(bad, known)
    assert pretrained.check_file(tmp_path / "none.bin", known) == "no such file"


def test_download_origin_replaces_scheme_and_host(monkeypatch):
    from kp_tf import pretrained

    monkeypatch.delenv("KP_TF_DOWNLOAD_ORIGIN", raising=False)
    assert pretrained.download_url(pretrained.VGG19.url) == pretrained.VGG19.url
    monkeypatch.setenv("KP_TF_DOWNLOAD_ORIGIN", "http://mirror.example:8000/")
    assert pretrained.download_url(pretrained.VGG19.url) == (
        "http://mirror.example:8000/tensorflow/keras-applications/vgg19/" + pretrained.VGG19.filename)


# --- I3D --------------------------------------------------------------------------------------

def test_i3d_is_built_once_from_the_shared_arrays_offline(offline, monkeypatch):
    from kp_tf.evaluation import i3d

    arrays = require_shared(I3D)
    monkeypatch.setenv("KP_TF_SHARED", str(arrays.parent.parent))
    messages = []
    handle = i3d.find_i3d(log=messages.append)
    assert Path(handle).parent == offline / "cache" / "i3d"
    assert (Path(handle) / "saved_model.pb").is_file() and len(messages) == 1
    monkeypatch.setattr(i3d, "_build_i3d", lambda *a: pytest.fail("built twice"))
    assert i3d.find_i3d(log=messages.append) == handle and len(messages) == 1
    monkeypatch.setenv("KP_TF_SHARED", str(offline / "no-shared"))  # the cache alone now
    assert i3d.find_i3d() == handle


def test_fvd_without_the_i3d_anywhere_says_so_in_one_line(tmp_path):
    for side in ("real", "generated"):
        (tmp_path / side).mkdir()
        np.save(tmp_path / side / "v.npy", np.zeros((9, 16, 16, 3), np.uint8))
    result = subprocess.run(
        [sys.executable, "-m", "kp_tf.fvd", str(tmp_path / "real"), str(tmp_path / "generated"),
         "--frames=9"],
        env=_offline_env(tmp_path, tmp_path / "no-shared"), cwd=REPO, capture_output=True,
        text=True, timeout=300)
    _one_line_error(result, "i3d_kinetics400_rgb_scratch.npz", "--i3d", UNREACHABLE,
                    str(tmp_path / "hub"))


def test_truncated_i3d_arrays_are_named_in_one_line(offline, monkeypatch):
    from kp_tf import pretrained
    from kp_tf.evaluation.i3d import find_i3d

    truncated = _truncated(require_shared(I3D), offline / "shared" / I3D)
    with pytest.raises(pretrained.PretrainedFileError) as e:
        find_i3d(str(truncated))
    assert str(e.value) == (f"--i3d={truncated}: 1,048,576 bytes where 50,902,326 are expected "
                            f"(truncated)")
    monkeypatch.setenv("KP_TF_SHARED", str(offline / "shared"))
    with pytest.raises(pretrained.PretrainedFileError, match=f"{truncated} \\(1,048,576 bytes"):
        find_i3d()
