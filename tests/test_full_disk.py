"""A full disk while a shard or a checkpoint is written: one `error:` line naming the file,
exit status 2, and what was complete before is still there and readable.

The disk fills by a file-size limit (RLIMIT_FSIZE) in the command's process, with SIGXFSZ
ignored so that a write past it fails with EFBIG as a write to a full disk fails with ENOSPC.
"""

import hashlib
import resource
import signal
import subprocess
import sys
from pathlib import Path

import tensorflow as tf

from _tiny_run import copy_run, tiny_run  # noqa: F401  (tiny_run: a fixture)
from conftest import REPO, command_env
from kp_tf import run_folder
from kp_tf.data import tfrecords


def run_limited(command, limit_bytes: int):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(command, cwd=REPO, env=command_env(), capture_output=True, text=True,
                          timeout=600, preexec_fn=limit)


def digests(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


def convert_command(out, num_train):
    return [sys.executable, "-m", "kp_tf.make_tfrecords", "--dataset=synthetic", f"--out={out}",
            "--resolution=32", f"--num_train={num_train}", "--num_test=2", "--num_frames=20",
            "--print_manifest=false"]


def test_full_disk_during_conversion_keeps_the_earlier_one(tmp_path):
    out = tmp_path / "data"
    first = subprocess.run(convert_command(out, 2), cwd=REPO, env=command_env(),
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    before = digests(out)
    result = run_limited(convert_command(out, 40), 200_000)  # 40 clips' shard: ~1 MB
    assert result.returncode == 2, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: cannot write ") and "File too large" in line, result.stderr
    assert ".tfrecord" in line, line  # names the shard
    assert digests(out) == before  # the earlier conversion, byte for byte
    assert tfrecords.load_manifest(str(out))["splits"]["train"]["clips"] == 2


def test_full_disk_during_a_checkpoint_keeps_the_last_one(tiny_run, tmp_path):  # noqa: F811
    run = copy_run(tiny_run, tmp_path)
    motion = Path(run.logdir) / "motion"
    last = run_folder.latest_checkpoint(str(motion))
    size = Path(last + ".data-00000-of-00001").stat().st_size
    result = run_limited([sys.executable, "-m", "kp_tf.train", "--dataset=tiny",
                          f"--data_dir={run.data_dir}", f"--logdir={run.logdir}",
                          "--stage=motion", "--stage2_steps=4", "--checkpoint_every=1",
                          "--vgg_weights=none", "--strategy=default"], size // 2)
    assert result.returncode == 2, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: cannot write ") and "File too large" in line, result.stderr
    assert "ckpt-" in line, line
    # The newest complete checkpoint is still the one before, and it restores.
    assert run_folder.latest_checkpoint(str(motion)) == last
    assert run_folder.checkpoint_step(last) == run.cfg.stage2_steps
    reader = tf.train.load_checkpoint(last)
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == run.cfg.stage2_steps
