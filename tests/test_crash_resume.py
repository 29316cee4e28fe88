"""SIGKILL in the middle of each stage, then the same command again: it completes, and what the
killed command left half-written is never taken for a finished output.

  * conversion: `make_tfrecords` killed while it writes a shard;
  * pseudo-labels, stage 2, export, samples: one `train` killed in each in turn (the chain
    below), rerun after each kill; stage 1 has its own test in test_training.py;
  * evaluate: killed while it generates, over an earlier report.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow as tf

from _tiny_run import copy_run, tiny_run  # noqa: F401  (tiny_run: a fixture)
from conftest import REPO, command_env
from kp_tf import run_folder
from kp_tf.data import tfrecords

ENV = command_env(TF_CPP_MIN_LOG_LEVEL="2")


def kill_when(command, ready, log: Path, timeout: float = 300) -> None:
    """Runs `command` until `ready()` is true, then SIGKILLs it; fails if it ends before."""
    with open(log, "w") as f:
        proc = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=f, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, (f"{command[2]} ended (status {proc.returncode}) before "
                                         f"the moment to kill it:\n" + log.read_text()[-3000:])
            assert time.monotonic() < deadline, f"not ready in {timeout} s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def rerun(command) -> str:
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def hidden(folder: Path, suffix: str) -> list:
    return sorted(folder.glob(f".*{suffix}")) if folder.is_dir() else []


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A synthetic conversion killed while writing its training shards, then rerun: (folder,
    what the kill left). 24 clips, so that later stages take long enough to be caught."""
    out = tmp_path_factory.mktemp("killed_conversion") / "data"
    command = [sys.executable, "-m", "kp_tf.make_tfrecords", "--dataset=synthetic",
               f"--out={out}", "--resolution=32", "--num_train=24", "--num_test=4",
               "--num_frames=40", "--clips_per_shard=8", "--print_manifest=false"]
    kill_when(command, lambda: hidden(out, ".tfrecord.tmp"), out.parent / "kill.log")
    left = {"manifest": (out / "manifest.json").exists(),
            "shards": sorted(p.name for p in out.glob("*.tfrecord")),
            "temporary": [p.name for p in hidden(out, ".tfrecord.tmp")]}
    rerun(command)
    return out, left


def test_conversion_killed_mid_shard_is_redone(converted):
    out, left = converted
    # Killed: temporary shards only, no shard under its final name and no manifest ...
    assert left["temporary"] and not left["shards"] and not left["manifest"], left
    # ... and the rerun converted everything, its shards complete, nothing temporary left.
    manifest = tfrecords.load_manifest(str(out))
    assert manifest["splits"]["train"]["clips"] == 24 and not hidden(out, ".tfrecord.tmp")
    count = sum(1 for _ in tf.data.TFRecordDataset(tfrecords.shard_paths(str(out), "train")))
    assert count == 24


def test_train_killed_in_each_later_stage_resumes(tiny_run, converted, tmp_path):  # noqa: F811
    """One `train` over pseudo-labels, stage 2, export and samples, killed in each of them."""
    data_dir, _ = converted
    run = copy_run(tiny_run, tmp_path)
    logdir = Path(run.logdir)
    for step in ("pseudo_labels", "motion", "export", "samples"):
        shutil.rmtree(logdir / step)
    command = [sys.executable, "-m", "kp_tf.train", "--dataset=tiny", f"--data_dir={data_dir}",
               f"--logdir={logdir}", "--vgg_weights=none", "--strategy=default",
               "--stage2_steps=12", "--checkpoint_every=2", "--summary_every=1000",
               "--image_summary_every=1000"]
    labels, motion = logdir / "pseudo_labels", logdir / "motion" / "checkpoints"

    kill_when(command, lambda: list(labels.glob("*.tfrecord.tmp")), tmp_path / "1.log")
    assert not (labels / "manifest.json").exists() and not list(labels.glob("*.tfrecord"))

    def motion_mid():
        latest = tf.train.latest_checkpoint(str(motion))
        return latest is not None and run_folder.checkpoint_step(latest) >= 4

    kill_when(command, motion_mid, tmp_path / "2.log")
    assert (labels / "manifest.json").exists()  # the rerun labelled everything first
    killed_at = run_folder.checkpoint_step(tf.train.latest_checkpoint(str(motion)))
    assert 4 <= killed_at < 12

    kill_when(command, lambda: list(logdir.glob(".export-*")), tmp_path / "3.log")
    assert "Resumed from" in (tmp_path / "3.log").read_text()
    assert run_folder.read_export_info(str(logdir / "export")) is None  # no export yet

    samples = logdir / "samples"
    kill_when(command, lambda: list(samples.glob("*.gif")), tmp_path / "4.log")
    assert run_folder.read_export_info(str(samples)) is None  # not finished: redone

    out = rerun(command)
    info = run_folder.read_export_info(str(logdir / "export"))
    assert info == dict(run_folder.newest_checkpoints_info(run.cfg.replace(data_dir=str(data_dir))),
                        precision="float32")
    assert run_folder.checkpoint_step(info["stage2_checkpoint"]) == 12
    assert run_folder.read_export_info(str(samples)) == info and "Sample videos" in out
    # The killed export's temporary folder was never taken for the export, and the next
    # export removed it.
    assert (logdir / "export" / "saved_model.pb").exists()
    assert not list(logdir.glob(".export-*"))


def test_evaluate_killed_keeps_the_earlier_report(tiny_run, tmp_path):  # noqa: F811
    out = tmp_path / "report"
    out.mkdir()
    earlier = json.dumps({"earlier": True})
    (out / "report.json").write_text(earlier)
    command = [sys.executable, "-m", "kp_tf.evaluate", f"--model={tiny_run.export_dir}",
               f"--data_dir={tiny_run.data_dir}", "--metrics=diversity,classes", "--samples=2",
               "--frames=8", "--max_videos=2", f"--out={out}"]
    log = tmp_path / "evaluate.log"
    kill_when(command, lambda: "generation: 1/2" in log.read_text(), log)
    assert (out / "report.json").read_text() == earlier
    assert not (out / "report.md").exists()
    rerun(command)
    report = json.loads((out / "report.json").read_text())
    assert "earlier" not in report and (out / "report.md").exists()
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
