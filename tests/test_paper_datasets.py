"""The paper's datasets through the training command: `python -m kp_tf.train --dataset=NAME
--src=DIR` on a small fake copy in each dataset's raw layout converts it and trains the
preset's own networks (128×128, its K) through to an export; without data the command says
where to get it and what to run, in a few lines and without a traceback.

The fake copies are made here, in the layouts of kp_tf.data.sources: GIFs for mgif, videos for
nemo, frames/ + labels/*.mat + split files for penn. Each run overrides only what makes it
short (one step per stage, batches of one, a few clips of a few frames, random VGG weights),
so the networks are the paper's. Each run still costs about a minute of CPU time (penn more:
its 9 actions make 18 sample videos) and writes a gigabyte of checkpoints, removed at the end,
so nemo (mgif's networks with another K) stops after its conversion.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, command_env
from kp_tf.data import sources
from test_readers import flat_frames, make_penn, write_gif, write_mp4

# (dataset, K, actions) of the presets: what the export must be built with.
PRESETS = {"mgif": (60, 0), "nemo": (15, 0), "penn": (40, 9)}
RESOLUTION = 128
FRAMES = 4  # per fake clip: enough for stage-1 pairs (their gap shrinks) and stage 2


def moving_square(t=FRAMES, size=48, seed=0):
    """uint8 [t, size, size, 3]: a flat square moving right on white, few colours (GIF-exact)."""
    colour = np.random.default_rng(seed).integers(0, 200, 3)
    frames = np.full((t, size, size, 3), 255, np.uint8)
    for i in range(t):
        frames[i, 12:30, 4 + 5 * i:22 + 5 * i] = colour
    return frames


def make_fake_copy(dataset: str, root) -> None:
    """A tiny raw copy of `dataset` in the layout its conversion reads (2 train, 1 test clips)."""
    if dataset == "penn":
        make_penn(root, videos=(("0001", "squat", 7), ("0002", "pullup", 1),
                                ("0003", "golf_swing", 6)), t=FRAMES, h=36, w=48)
        (root / "train_set.txt").write_text("frames/0001 7\nframes/0002 1\n")
        (root / "test_set.txt").write_text("frames/0003 6\n")
        return
    for split, count in (("train", 2), ("test", 1)):
        (root / split).mkdir(parents=True)
        for i in range(count):
            seed = i + 10 * (split == "test")
            if dataset == "mgif":
                write_gif(root / split / f"clip{i}.gif", moving_square(seed=seed))
            else:  # nemo: videos
                write_mp4(root / split / f"smile{i}.mp4",
                          flat_frames([(40 * j, 120, 200 - seed) for j in range(FRAMES)], 48, 64))


def train_command(*args, cwd=REPO, timeout=900) -> subprocess.CompletedProcess:
    """`python -m kp_tf.train ARGS` as a user runs it, in `cwd`, with this checkout's kp_tf."""
    env = command_env(PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "kp_tf.train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


SMALL_RUN = ["--stage1_steps=1", "--stage2_steps=1", "--batch_size=1", "--stage2_batch_size=1",
             "--checkpoint_every=1", "--summary_every=100", "--image_summary_every=100",
             "--vgg_weights=none"]


def test_the_headline_command_without_data_says_where_to_get_it(tmp_path):
    proc = train_command("--dataset=mgif", cwd=tmp_path, timeout=300)  # a fresh clone's state
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    help_lines = sources.help_lines("mgif")
    assert proc.stderr.splitlines() == (
        ["error: no data for --dataset=mgif: data/mgif holds no conversion (no manifest.json) "
         "and no --src was given"]
        + [f"  {line}" for line in help_lines[:-1]]
        + ["  Then run: python -m kp_tf.train --dataset=mgif --src=DIR", f"  {help_lines[-1]}"])
    assert "https://github.com/AliaksandrSiarohin/monkey-net" in proc.stderr
    assert "train/*.gif" in proc.stderr and "test/*.gif" in proc.stderr
    assert os.listdir(tmp_path) == []  # nothing written


def test_a_src_one_level_too_high_is_named_and_the_right_one_offered(tmp_path):
    make_penn(tmp_path / "Penn_Action")
    proc = train_command("--dataset=penn", f"--src={tmp_path}", "--stage=data", cwd=tmp_path,
                         timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == (
        f"error: --src {tmp_path} is not laid out as --dataset=penn is read: expected frames/, "
        f"labels/, train_set.txt, test_set.txt; found no frames/, labels/, train_set.txt, "
        f"test_set.txt; it holds 1 folder (Penn_Action/); {tmp_path / 'Penn_Action'} inside it "
        f"has that layout")
    assert (f"  Then run: python -m kp_tf.train --dataset=penn --stage=data "
            f"--src={tmp_path / 'Penn_Action'}") in lines
    assert "  Get it: Penn_Action.tar.gz from http://dreamdragon.github.io/PennAction/" in (
        proc.stderr)
    assert sorted(os.listdir(tmp_path)) == ["Penn_Action"]  # nothing written


def test_train_with_src_converts_nemo_videos(tmp_path):
    """nemo's networks differ from mgif's only in K (both without actions): its conversion
    through the command is what a run of its own would add."""
    src, data = tmp_path / "download", tmp_path / "data"
    make_fake_copy("nemo", src)
    proc = train_command("--dataset=nemo", f"--src={src}", f"--data_dir={data}",
                         f"--logdir={tmp_path / 'run'}", "--stage=data")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"Converting nemo from {src}" in proc.stdout
    manifest = json.loads((data / "manifest.json").read_text())
    assert (manifest["dataset"], manifest["resolution"]) == ("nemo", RESOLUTION)
    assert [manifest["splits"][s]["clips"] for s in ("train", "test")] == [2, 1]
    assert manifest["splits"]["train"]["frames"] == 2 * FRAMES and not manifest["skipped"]
    assert not list((tmp_path / "run").glob("*"))  # only the data stage ran


@pytest.mark.parametrize("dataset", ["mgif", "penn"])  # without actions and with them
def test_train_with_src_converts_and_runs_to_an_export(dataset, tmp_path):
    src, data, run = tmp_path / "download", tmp_path / "data", tmp_path / "run"
    make_fake_copy(dataset, src)
    try:
        _train_and_check_the_export(dataset, src, data, run)
    finally:
        shutil.rmtree(run, ignore_errors=True)  # a gigabyte of checkpoints at 128×128


def _train_and_check_the_export(dataset, src, data, run):
    import tensorflow as tf

    proc = train_command(f"--dataset={dataset}", f"--src={src}", f"--data_dir={data}",
                         f"--logdir={run}", *SMALL_RUN)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"Converting {dataset} from {src}" in proc.stdout

    manifest = json.loads((data / "manifest.json").read_text())
    assert (manifest["dataset"], manifest["resolution"]) == (dataset, RESOLUTION)
    assert manifest["source"] == str(src.resolve()) and not manifest["skipped"]
    assert [manifest["splits"][s]["clips"] for s in ("train", "test")] == [2, 1]
    assert manifest["splits"]["train"]["frames"] == 2 * FRAMES

    k, actions = PRESETS[dataset]
    exported = json.loads((run / "export" / "assets.extra" / "config.json").read_text())
    assert (exported["image_size"], exported["num_keypoints"], exported["num_actions"]) == (
        RESOLUTION, k, actions)
    model = tf.saved_model.load(str(run / "export"))
    image = tf.zeros([RESOLUTION, RESOLUTION, 3])
    out = model.signatures["predict_video"](image=image, action=tf.constant(actions - 1 if actions else 0),
                                            seed=tf.constant(0, tf.int64), frames=tf.constant(5))
    assert out["video"].shape == (5, RESOLUTION, RESOLUTION, 3)
    assert out["keypoints"].shape == (5, k, 2)
    assert np.all(np.isfinite(out["video"].numpy()))
    assert len(os.listdir(run / "samples")) == 2 * max(actions, 1) + 1  # GIFs + export stamp
