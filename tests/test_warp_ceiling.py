"""tools/warp_ceiling.py: the network-free nearest-keypoint warp (kp_tf.layers.prior_warp,
tested in test_warp_translator), driven by the true joints and by a run's keypoints, scored
where things move."""

import os
import subprocess
import sys

from _tiny_run import tiny_run  # noqa: F401  (the shared trained run, a fixture)
from conftest import REPO, command_env


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
