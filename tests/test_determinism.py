"""`--seed` seeds everything random in a run, and `--deterministic` makes repeats bit-for-bit.

Every run here is the train command in its own process (op determinism cannot be turned off
again inside one), on one tiny converted dataset: stage 1 in two phases (jittered targets, then
plain pairs), then stage 2 alone, as a user would run them.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, command_env

STAGE1_STEPS, PLAIN_STEPS, STAGE2_STEPS = 6, 2, 4


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from kp_tf.data import datasets

    out = tmp_path_factory.mktemp("determinism") / "data"
    datasets.convert("synthetic", out=str(out), resolution=32, num_train=8, num_test=2,
                     num_frames=24, log=None)
    return str(out)


def _train(data_dir, logdir, stage, seed=0, deterministic=True):
    command = [sys.executable, "-m", "kp_tf.train", "--dataset=tiny", f"--data_dir={data_dir}",
               f"--logdir={logdir}", "--vgg_weights=none", f"--seed={seed}",
               f"--stage1_steps={STAGE1_STEPS}", f"--plain_pair_steps={PLAIN_STEPS}",
               "--target_shift=0.1", f"--stage2_steps={STAGE2_STEPS}", f"--stage={stage}",
               "--deterministic" if deterministic else "--nodeterministic"]
    result = subprocess.run(command, cwd=REPO, env=command_env(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _tensors(logdir, stage, step):
    reader = tf.train.load_checkpoint(os.path.join(logdir, stage, "checkpoints", f"ckpt-{step}"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    different = [name for name in a if not np.array_equal(a[name], b[name])]
    assert not different, different[:5]


def _rewind(logdir, stage, step):
    """Leaves the stage as a run killed right after saving ckpt-`step` would."""
    directory = os.path.join(logdir, stage, "checkpoints")
    kept = sorted(int(n.split("-")[1].split(".")[0]) for n in os.listdir(directory)
                  if n.startswith("ckpt-") and n.endswith(".index"))
    for later in [s for s in kept if s > step]:
        for name in os.listdir(directory):
            if name.startswith(f"ckpt-{later}."):
                os.remove(os.path.join(directory, name))
    tf.compat.v1.train.update_checkpoint_state(
        directory, os.path.join(directory, f"ckpt-{step}"),
        all_model_checkpoint_paths=[os.path.join(directory, f"ckpt-{s}")
                                    for s in kept if s <= step])


@pytest.fixture(scope="module")
def reference_run(data_dir, tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("determinism") / "a")
    _train(data_dir, logdir, "keypoints")
    _train(data_dir, logdir, "motion")
    return logdir


def test_same_seed_gives_the_same_weights_in_both_stages(data_dir, reference_run, tmp_path):
    again = str(tmp_path / "b")
    _train(data_dir, again, "keypoints")
    _train(data_dir, again, "motion")
    # Every saved tensor: weights, BatchNorm statistics, both optimizers' slots, the sampler.
    _assert_identical(_tensors(reference_run, "keypoints", STAGE1_STEPS),
                      _tensors(again, "keypoints", STAGE1_STEPS))
    _assert_identical(_tensors(reference_run, "motion", STAGE2_STEPS),
                      _tensors(again, "motion", STAGE2_STEPS))


def test_another_seed_gives_other_weights(data_dir, reference_run, tmp_path):
    other = str(tmp_path / "c")
    _train(data_dir, other, "keypoints", seed=1)
    a = _tensors(reference_run, "keypoints", STAGE1_STEPS)
    b = _tensors(other, "keypoints", STAGE1_STEPS)
    weights = [n for n in a if n.startswith(("detector/", "translator/")) and "OPTIMIZER" not in n
               and a[n].size > 1]
    assert weights and all(not np.array_equal(a[n], b[n]) for n in weights)


@pytest.mark.parametrize("stage,resume_from", [("keypoints", STAGE1_STEPS - 1),
                                               ("motion", STAGE2_STEPS // 2)])
def test_a_resumed_stage_ends_as_an_uninterrupted_one(data_dir, reference_run, tmp_path, stage,
                                                      resume_from):
    """Resumed mid-way (stage 1: inside its plain-pair phase), the stage sees the batches and
    draws the noise an uninterrupted run would, and ends with the same weights."""
    copy = str(tmp_path / "resumed")
    shutil.copytree(reference_run, copy)
    final = STAGE1_STEPS if stage == "keypoints" else STAGE2_STEPS
    _rewind(copy, stage, resume_from)
    if stage == "keypoints":  # the later steps would otherwise be skipped as finished
        shutil.rmtree(os.path.join(copy, "motion"))
    out = _train(data_dir, copy, stage)
    assert f"Resumed from {os.path.join(copy, stage, 'checkpoints', f'ckpt-{resume_from}')}" in out
    _assert_identical(_tensors(reference_run, stage, final), _tensors(copy, stage, final))
