"""tools/warp_ceiling.py: the network-free nearest-keypoint warp, driven by the true joints
and by a run's keypoints, scored where things move."""

import os
import subprocess
import sys

import numpy as np
import pytest

from _tiny_run import tiny_run  # noqa: F401  (the shared trained run, a fixture)
from conftest import REPO, command_env

sys.path.insert(0, os.path.join(REPO, "tools"))
import warp_ceiling  # noqa: E402


def test_prior_warp_moves_a_square_with_its_keypoint():
    s = 32
    step = 2.0 / (s - 1)
    reference = -np.ones((1, s, s, 3), np.float32)
    reference[0, 10:14, 10:14] = 1.0
    centre = (11.5 * step - 1.0)
    ref_kp = np.array([[[centre, centre], [0.8, -0.8]]], np.float32)
    tgt_kp = ref_kp + np.array([[[6 * step, 0.0], [0.0, 0.0]]], np.float32)  # 6 px right
    # A wide prior and an identity logit far below: the square's pixels follow keypoint 0.
    out = warp_ceiling.prior_warp(reference, ref_kp, tgt_kp, sigma=0.15, background_logit=-20)
    assert out[0, 10:14, 16:20].min() > 0.9  # the square, moved
    assert out[0, 0, 0].max() < -0.99  # far corners keep the background


def test_the_joints_warp_beats_copying_and_the_run_rows(tiny_run, tmp_path):
    out = tmp_path / "ceiling.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "warp_ceiling.py"),
         f"--data_dir={tiny_run.data_dir}", f"--logdir={tiny_run.logdir}", "--max_clips=4",
         "--sigmas=0.1", "--background_logits=-4", f"--out={out}"],
        capture_output=True, text=True, env=command_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    result = json.loads(out.read_text())
    rows = result["moving_l1"]
    assert set(rows) == {"copy the reference", "translator (detected keypoints)",
                         "warp by joints, σ 0.1, background -4",
                         "warp by detected keypoints, σ 0.1, background -4"}
    assert all(0 < v < 1 for v in rows.values()) and result["pairs"] > 0
    # The synthetic figures' joints carry their limbs: warping by them beats copying.
    assert rows["warp by joints, σ 0.1, background -4"] < 0.9 * rows["copy the reference"]
    assert "Moving-region L1" in proc.stdout


def test_a_folder_without_a_converted_dataset_is_refused(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "warp_ceiling.py"),
         f"--data_dir={tmp_path}"], capture_output=True, text=True, env=command_env(),
        timeout=300)
    assert proc.returncode == 2 and "no manifest.json in data folder" in proc.stderr
