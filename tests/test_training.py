"""Stage-1 training: end to end, the paper presets, resume after SIGKILL, non-finite stop,
MirroredStrategy equivalence and the learning-rate schedule.

Everything runs on generated data with the `tiny` preset except the preset test, which builds
the 128×128 networks and takes one step on a random batch.
"""

import glob
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, require_shared
from kp_tf import config
from kp_tf.training import loop

VGG = "weights/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
LOSSES = ("g_loss", "perceptual", "g_adversarial", "d_loss")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A small synthetic TFRecord set at 32×32 shared by the tests of this file."""
    from kp_tf.data import datasets

    out = tmp_path_factory.mktemp("synthetic32")
    datasets.convert("synthetic", out=str(out), resolution=32, num_train=8, num_test=4,
                     num_frames=40, log=None)
    return str(out)


def read_events(folder):
    """{tag: [(step, value)]} for scalars, {tag: [(step, (width, height, png))]} for images."""
    scalars, images = {}, {}
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                if plugin == "scalars":
                    scalars.setdefault(value.tag, []).append(
                        (event.step, float(tf.make_ndarray(value.tensor))))
                elif plugin == "images":
                    width, height, png = tf.make_ndarray(value.tensor)[:3]
                    images.setdefault(value.tag, []).append(
                        (event.step, (int(width), int(height), png)))
    return scalars, images


def checkpoint_steps(folder):
    return sorted(int(m.group(1)) for p in glob.glob(os.path.join(folder, "ckpt-*.index"))
                  if (m := re.search(r"ckpt-(\d+)\.index$", p)))


def latest_step(folder):
    """The step of the newest complete checkpoint in `folder`, -1 when there is none."""
    latest = tf.train.latest_checkpoint(str(folder))
    return int(latest.rsplit("-", 1)[1]) if latest else -1


def checkpoint_step_value(prefix):
    return int(tf.train.load_checkpoint(prefix).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))


# --- 1. one step end to end ---------------------------------------------------------------

def test_one_step_end_to_end(data_dir, tmp_path):
    from kp_tf import run_folder, stages

    require_shared(VGG)  # found by the project's rule (kp_tf.pretrained), as the command does
    cfg = config.load_preset("tiny", data_dir=data_dir, logdir=str(tmp_path / "run"),
                             stage1_steps=1, vgg_weights="imagenet")
    stages.run(cfg, "keypoints", tf.distribute.get_strategy())

    stage_dir = Path(run_folder.paths(cfg)["keypoints"])
    assert (stage_dir / "config.json").exists()
    ckpts = stage_dir / "checkpoints"
    assert checkpoint_steps(ckpts) == [1]
    assert run_folder.latest_checkpoint(str(stage_dir)).endswith("ckpt-1")
    assert checkpoint_step_value(str(ckpts / "ckpt-1")) == 1

    scalars, images = read_events(stage_dir / "train")
    for tag in (*LOSSES, "learning_rate", "step_seconds", "keypoint_spread",
                "keypoints_on_background", "d_real", "d_fake"):
        assert [s for s, _ in scalars[tag]] == [1], tag
        assert math.isfinite(scalars[tag][0][1]), (tag, scalars[tag])
    values = {k: v[0][1] for k, v in scalars.items()}
    assert values["learning_rate"] == pytest.approx(1e-4 * 0.95 ** (1 / 20000), rel=1e-6)
    assert values["g_loss"] == pytest.approx(values["perceptual"] + values["g_adversarial"],
                                             rel=1e-5)
    # The losses of an untrained GAN: BCE ≈ log 2 per term; the perceptual loss of real
    # VGG features of random reconstructions is positive and not tiny.
    assert 0.3 < values["g_adversarial"] < 1.5 and 0.7 < values["d_loss"] < 2.5
    assert values["perceptual"] > 1.0
    assert 0 < values["d_real"] < 1 and 0 < values["d_fake"] < 1
    assert 0 <= values["keypoints_on_background"] <= 1

    assert len(images) == 1
    [(step, (width, height, png))] = next(iter(images.values()))
    assert step == 1
    decoded = tf.io.decode_png(png).numpy()
    # 7 rows (reference, target, output, generated, mask, two keypoint overlays) of
    # batch_size=2 images of 32×32, enlarged 4× to 128 px for display, with 2-pixel gutters.
    assert decoded.shape == (height, width, 3) == (7 * 130 + 2, 2 * 130 + 2, 3)


@pytest.mark.parametrize("train_detector", [False, True])
def test_plain_pairs_after_jittered_ones(data_dir, tmp_path, monkeypatch, train_detector):
    """With target jitter and plain_pair_steps, stage 1 trains on jittered pairs up to
    stage1_steps − plain_pair_steps, then on plain pairs, resuming the same checkpoint; the
    detector trains in the plain-pair steps only with plain_pair_detector (the default)."""
    from kp_tf.data import pipeline
    from kp_tf import run_folder, stages

    calls = []
    real_pairs = pipeline.stage1_pairs

    def recording(cfg, *args, **kwargs):
        calls.append((cfg.target_shift, cfg.target_rotation, cfg.target_scale))
        return real_pairs(cfg, *args, **kwargs)

    monkeypatch.setattr(pipeline, "stage1_pairs", recording)
    cfg = config.load_preset("tiny", data_dir=data_dir, logdir=str(tmp_path / "run"),
                             stage1_steps=3, plain_pair_steps=1, target_shift=0.1,
                             target_rotation=5.0, target_scale=0.05, vgg_weights="none",
                             checkpoint_every=100, plain_pair_detector=train_detector)
    stages.run(cfg, "keypoints", tf.distribute.get_strategy())
    assert calls == [(0.1, 5.0, 0.05), (0.0, 0.0, 0.0)]
    ckpts = Path(run_folder.paths(cfg)["keypoints"]) / "checkpoints"
    assert checkpoint_steps(ckpts) == [2, 3]  # the end of each phase
    # A frozen detector (plain_pair_detector=False) has the same weights in both
    # checkpoints; the renderer's change either way.
    def changed(name):
        before, after = (run_folder.restore_stage1(cfg, str(ckpts / f"ckpt-{step}")) for step in (2, 3))
        return any(not np.array_equal(a.numpy(), b.numpy())
                   for a, b in zip(getattr(before, name).trainable_variables,
                                   getattr(after, name).trainable_variables))
    assert changed("detector") == train_detector
    assert changed("translator")
    calls.clear()
    stages.run(cfg, "keypoints", tf.distribute.get_strategy())  # finished: nothing retrains
    assert checkpoint_steps(ckpts) == [2, 3]


def test_equivariance_loss_joins_the_generator_loss(data_dir, tmp_path):
    from kp_tf import run_folder, stages

    cfg = config.load_preset("tiny", data_dir=data_dir, logdir=str(tmp_path / "run"),
                             stage1_steps=1, vgg_weights="none", lambda_equivariance=2.0)
    stages.run(cfg, "keypoints", tf.distribute.get_strategy())
    scalars, _ = read_events(Path(run_folder.paths(cfg)["keypoints"]) / "train")
    values = {k: v[0][1] for k, v in scalars.items()}
    # Untrained keypoints do not follow a random warp, and the term is weighted into G's loss.
    assert 0 < values["equivariance"] < 2
    assert values["g_loss"] == pytest.approx(
        values["perceptual"] + values["g_adversarial"] + 2.0 * values["equivariance"], rel=1e-5)


def test_mixed_bfloat16_stage1_restores_into_float32_detector(data_dir, tmp_path):
    """precision=mixed_bfloat16: stage 1 trains with finite losses and float32 variables,
    the global dtype policy is float32 again afterwards, and the checkpoint restores into the
    float32 detector that pseudo-labels and exports use, whose keypoints agree with the
    bfloat16 detector's up to its rounding."""
    import keras
    from kp_tf import run_folder, stages
    from kp_tf.training.keypoint_trainer import KeypointTrainer

    cfg = config.load_preset("tiny", data_dir=data_dir, logdir=str(tmp_path / "run"),
                             stage1_steps=2, vgg_weights="none", lambda_equivariance=2.0,
                             lambda_keypoint_motion=10.0, lambda_keypoint_coverage=10.0,
                             precision="mixed_bfloat16")
    stages.run(cfg, "keypoints", tf.distribute.get_strategy())
    assert keras.config.dtype_policy().name == "float32"
    scalars, _ = read_events(Path(run_folder.paths(cfg)["keypoints"]) / "train")
    for tag in (*LOSSES, "equivariance", "keypoint_motion", "keypoint_coverage"):
        assert all(math.isfinite(v) for _, v in scalars[tag]), (tag, scalars[tag])

    checkpoint = run_folder.latest_checkpoint(run_folder.paths(cfg)["keypoints"])
    trainer = KeypointTrainer(cfg)
    tf.train.Checkpoint(detector=trainer.nets.detector).restore(checkpoint).expect_partial()
    mixed = trainer.nets.detector
    plain = run_folder.restore_detector(cfg, checkpoint)
    assert mixed.get_layer("encoder_conv_1").compute_dtype == "bfloat16"
    assert plain.get_layer("encoder_conv_1").compute_dtype == "float32"
    assert all(v.dtype == "float32" for v in mixed.weights)
    images = tf.random.stateless_uniform([4, cfg.image_size, cfg.image_size, 3], [1, 2], -1, 1)
    a, b = mixed(images, training=False), plain(images, training=False)
    assert a.dtype == b.dtype == tf.float32
    difference = float(tf.reduce_max(tf.abs(a - b)))
    assert 0 < difference < 0.01, difference  # bfloat16 really ran, and the weights are shared


def test_precision_auto_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(loop, "_cpu_has_native_bfloat16", lambda: True)
    assert loop.resolve_precision("auto") == "mixed_bfloat16"  # no GPU on the test machines
    monkeypatch.setattr(loop, "_cpu_has_native_bfloat16", lambda: False)
    assert loop.resolve_precision("auto") == "float32"
    assert loop.resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        loop.resolve_precision("half")


@pytest.mark.skipif(__import__("platform").machine().lower() not in ("x86_64", "amd64"),
                    reason="oneDNN is turned on by kp_tf on x86 CPUs only")
def test_import_turns_on_onednn_unless_the_user_set_it():
    """TensorFlow leaves oneDNN off on x86 CPUs without AVX512-VNNI/BF16 (about twice as slow
    here); importing kp_tf first turns it on, and an explicit setting wins."""
    code = ("import os, kp_tf, tensorflow as tf; "
            "from tensorflow.python.util import _pywrap_util_port as port; "
            "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], port.IsMklEnabled())")
    for setting, expected in ((None, "1 True"), ("0", "0 False")):
        env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
        if setting is not None:
            env["TF_ENABLE_ONEDNN_OPTS"] = setting
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True,
                             capture_output=True, text=True).stdout
        assert out.strip().splitlines()[-1] == expected


def test_separation_keypoint_motion_and_coverage_losses_join_the_generator_loss(data_dir, tmp_path):
    from kp_tf import run_folder, stages

    cfg = config.load_preset("tiny", data_dir=data_dir, logdir=str(tmp_path / "run"),
                             stage1_steps=1, vgg_weights="none", lambda_separation=3.0,
                             separation_sigma=0.2, lambda_keypoint_motion=50.0,
                             lambda_keypoint_coverage=7.0)
    stages.run(cfg, "keypoints", tf.distribute.get_strategy())
    scalars, _ = read_events(Path(run_folder.paths(cfg)["keypoints"]) / "train")
    values = {k: v[0][1] for k, v in scalars.items()}
    # Untrained keypoints start near each other (spread ~0.02 ≪ σ): the term is close to 1.
    assert 0.5 < values["separation"] <= 1.0
    # A mean absolute error of [-1, 1] images where the figures move: above 0, well below 2.
    assert 0.0 < values["keypoint_motion"] < 0.5
    # A squared distance in normalized units: above 0, below the image's diagonal squared (8).
    assert 0.0 < values["keypoint_coverage"] < 8.0
    assert values["g_loss"] == pytest.approx(
        values["perceptual"] + values["g_adversarial"] + 3.0 * values["separation"]
        + 50.0 * values["keypoint_motion"] + 7.0 * values["keypoint_coverage"], rel=1e-5)


# --- 2. the paper's 128×128 presets -------------------------------------------------------

@pytest.mark.parametrize("preset, keypoints", [("mgif", 60), ("nemo", 15), ("penn", 40)])
def test_paper_preset_builds_and_trains_one_step(preset, keypoints):
    from kp_tf.training.keypoint_trainer import KeypointTrainer

    cfg = config.load_preset(preset, batch_size=2, vgg_weights="none")
    assert (cfg.image_size, cfg.num_keypoints) == (128, keypoints)
    trainer = KeypointTrainer(cfg)
    rng = np.random.default_rng(0)
    batch = {k: tf.constant(rng.uniform(-1, 1, (2, 128, 128, 3)), tf.float32)
             for k in ("reference", "target")}
    before = [v.numpy() for v in trainer.nets.detector.trainable_variables[:1]]
    losses = {k: float(v) for k, v in tf.function(trainer.train_step)(batch).items()}
    for k in LOSSES:
        assert math.isfinite(losses[k]), (preset, losses)
    assert int(trainer.g_optimizer.iterations) == int(trainer.d_optimizer.iterations) == 1
    assert not np.array_equal(before[0], trainer.nets.detector.trainable_variables[0].numpy())
    out = trainer.nets.translate(batch["reference"], batch["target"])
    assert out["target_keypoints"].shape == (2, keypoints, 2)
    assert out["output"].shape == (2, 128, 128, 3)


# --- 3. resume after SIGKILL --------------------------------------------------------------

def _train_command(data_dir, logdir, steps, every):
    return [sys.executable, "-m", "kp_tf.train", "--dataset=tiny", "--stage=keypoints",
            f"--data_dir={data_dir}", f"--logdir={logdir}", f"--stage1_steps={steps}",
            f"--checkpoint_every={every}", "--summary_every=100000",
            "--image_summary_every=100000", "--vgg_weights=none", "--strategy=default"]


def test_resume_after_sigkill(data_dir, tmp_path):
    steps, every, kill_after = 40, 5, 10
    logdir = tmp_path / "run"
    ckpts = logdir / "keypoints" / "checkpoints"
    command = _train_command(data_dir, logdir, steps, every)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}

    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        try:
            # The manager's state file, not the .index files: it names a checkpoint only once
            # it is complete, so it is what a resumed run restores from.
            while latest_step(ckpts) <= kill_after:
                assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no checkpoint beyond step 10 in 300 s"
                time.sleep(0.05)
            first.send_signal(signal.SIGKILL)
        finally:
            first.kill()
            first.wait()
    assert first.returncode == -signal.SIGKILL
    last = latest_step(ckpts)
    assert kill_after < last < steps and last % every == 0, last
    assert last in checkpoint_steps(ckpts)

    second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    resumed = re.findall(r"Resumed from (\S+) at step (\d+)", second.stdout)
    assert resumed == [(str(ckpts / f"ckpt-{last}"), str(last))], second.stdout[-2000:]
    final = tf.train.latest_checkpoint(str(ckpts))
    assert final.endswith(f"ckpt-{steps}")
    assert checkpoint_step_value(final) == steps
    # max_to_keep=3: the newest three periodic/final checkpoints remain.
    assert checkpoint_steps(ckpts) == [steps - 2 * every, steps - every, steps]


# --- 4. non-finite loss -------------------------------------------------------------------

def test_non_finite_loss_stops_without_saving(tmp_path):
    from kp_tf.training.keypoint_trainer import KeypointTrainer

    cfg = config.load_preset("tiny", vgg_weights="none")
    rng = np.random.default_rng(0)
    good = {k: tf.constant(rng.uniform(-1, 1, (2, 32, 32, 3)), tf.float32)
            for k in ("reference", "target")}
    poisoned = {**good, "target": good["target"] * np.nan}  # a corrupt batch at step 2
    trainer = KeypointTrainer(cfg)
    logdir = str(tmp_path / "run")
    ckpts = os.path.join(logdir, "checkpoints")

    def make_dataset(start):
        return tf.data.Dataset.from_tensors(good).concatenate(
            tf.data.Dataset.from_tensors(poisoned)).repeat()

    with pytest.raises(loop.NonFiniteLossError) as error:
        loop.fit(trainer, make_dataset, steps=5, logdir=logdir,
                 strategy=tf.distribute.get_strategy(), checkpoint_every=1, summary_every=1,
                 image_summary_every=100, verbose=False)
    message = str(error.value)
    good_ckpt = os.path.join(ckpts, "ckpt-1")
    # D's loss is NaN (it sees the NaN target); which other terms are depends on the kernels
    # (oneDNN's ReLU can map NaN to 0 inside the untrained VGG, its fused BatchNorm can leave
    # G's loss finite), but every term named is non-finite.
    assert "d_loss=nan" in message
    named = message[message.index("(") + 1:message.index(")")].split(", ")
    assert all(term.endswith("=nan") or term.endswith("=inf") for term in named), named
    assert "at step 2" in message
    assert good_ckpt in message
    assert checkpoint_steps(ckpts) == [1]
    assert tf.train.latest_checkpoint(ckpts) == good_ckpt
    # The good checkpoint holds finite weights (the NaN update never reached the disk).
    reader = tf.train.load_checkpoint(good_ckpt)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.isfinite(value).all(), name
    # Only step 1's summaries were written.
    scalars, _ = read_events(os.path.join(logdir, "train"))
    assert [s for s, _ in scalars["g_loss"]] == [1] and math.isfinite(scalars["g_loss"][0][1])


def test_non_finite_error_without_any_checkpoint(tmp_path):
    """A NaN at the very first step says that nothing was saved."""

    class Exploding:
        def __init__(self):
            self.w = tf.Variable(1.0)

        def checkpoint_objects(self):
            return {"w": self.w}

        def learning_rate(self, step):
            return 1e-4

        def train_step(self, batch):
            return {"loss": batch / 0.0 * 0.0}

    logdir = str(tmp_path / "run")
    with pytest.raises(loop.NonFiniteLossError,
                       match=r"loss=nan\) at step 1.*none \(nothing saved"):
        loop.fit(Exploding(), lambda start: tf.data.Dataset.from_tensors(1.0).repeat(), steps=3,
                 logdir=logdir, strategy=tf.distribute.get_strategy(), checkpoint_every=1,
                 summary_every=1, image_summary_every=1, verbose=False)
    assert checkpoint_steps(os.path.join(logdir, "checkpoints")) == []


def test_progress_in_a_log_is_plain_lines(tmp_path, capsys):
    """With stdout not a terminal (pytest's capture, as a redirected log), fit prints a line at
    the first step, every `summary_every` steps and at the end; no carriage-return bar."""

    class Counting:
        def __init__(self):
            self.w = tf.Variable(0.0)

        def checkpoint_objects(self):
            return {"w": self.w}

        def learning_rate(self, step):
            return 1e-4

        def train_step(self, batch):
            self.w.assign_add(batch)
            return {"loss": self.w * 1.0, "_hidden": self.w * 0.0}

    loop.fit(Counting(), lambda start: tf.data.Dataset.from_tensors(1.0).repeat(), steps=7,
             logdir=str(tmp_path / "motion"), strategy=tf.distribute.get_strategy(),
             checkpoint_every=100, summary_every=3, image_summary_every=100)
    out = capsys.readouterr().out
    assert "\r" not in out and "\x08" not in out
    lines = out.splitlines()
    # Step s has loss s; each line shows the mean since the previous one.
    timing = r"(, [0-9.]+ (steps/s|s/step))?(, ETA \d+ s|, took \d+ s)?$"
    assert [re.sub(timing, "", line) for line in lines] == [
        "motion: 1/7 steps (14%), loss 1", "motion: 4/7 steps (57%), loss 3",
        "motion: 7/7 steps (100%), loss 6"], out
    assert re.search(r", ETA \d+ s$", lines[1]) and re.search(r", took \d+ s$", lines[2])


# --- 5. MirroredStrategy over two CPUs == one device --------------------------------------

_MIRRORED = textwrap.dedent(r"""
    import os, sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    # float64: the comparison is of the arithmetic of the distributed step, not of float32
    # rounding (in float32 even permuting the batch on one device moves the detector's
    # gradients by a few percent: they are small differences of large terms).
    keras.config.set_floatx("float64")
    from kp_tf import config
    from kp_tf.training import loop
    from kp_tf.training.keypoint_trainer import KeypointTrainer

    logdir = sys.argv[1]
    cfg = config.load_preset("tiny", vgg_weights="none", batch_size=4)
    rng = np.random.default_rng(0)
    batch = {k: rng.uniform(-1, 1, (4, 32, 32, 3)) for k in ("reference", "target")}

    def models(trainer):
        n = trainer.nets
        return [n.detector, n.image_encoder, n.translator, n.discriminator,
                trainer.perceptual.features]

    def train(strategy, name, init):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            trainer = KeypointTrainer(cfg)
        if init:  # the second build starts from the first one's initial weights
            for model, weights in zip(models(trainer), init):
                model.set_weights(weights)
        else:
            init.extend(m.get_weights() for m in models(trainer))
        loop.fit(trainer, lambda start: tf.data.Dataset.from_tensors(batch).repeat(), steps=1,
                 logdir=os.path.join(logdir, name), strategy=strategy, checkpoint_every=1,
                 summary_every=1, image_summary_every=100, verbose=False)
        return trainer

    single = tf.distribute.get_strategy()
    init = []
    one = train(single, "one", init)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    two = train(mirrored, "two", init)

    out = {}
    for tag, trainer in (("one", one), ("two", two)):
        for i, model in enumerate(models(trainer)):
            for j, v in enumerate(model.weights):  # trainable and BN moving statistics
                out[f"{tag}/model{i}/{j}/{v.path}"] = v.numpy()
        for name in ("g_optimizer", "d_optimizer"):
            for j, v in enumerate(getattr(trainer, name).variables):
                # (by position: the optimizers' names differ between the two builds)
                out[f"{tag}/{name}/{j}/{v.path.split('/')[-1]}"] = v.numpy()
    for i, weights in enumerate(init):
        for j, w in enumerate(weights):
            out[f"init/{i}/{j}"] = w
    np.savez(os.path.join(logdir, "weights.npz"), **out)
    print("OK")
""")


def test_mirrored_two_cpus_matches_one_device(tmp_path):
    """One loop.fit step of the tiny KeypointTrainer under MirroredStrategy over two logical
    CPUs equals the same step on one device: losses, weights, BN statistics, Adam moments.

    Run in float64 (same code, `keras.config.set_floatx`): the two agree to ~1e-11 there.
    In float32 the losses agree to ~1e-6 but the detector's gradients differ by a few percent,
    no more than permuting the batch on one device changes them: float32 rounding in small
    differences of large terms, not the distribution.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run([sys.executable, "-c", _MIRRORED, str(tmp_path)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "OK" in result.stdout, (
        result.stdout[-3000:] + result.stderr[-5000:])
    _compare_mirrored(tmp_path)


def _compare_mirrored(tmp_path):
    # The losses of the step, from each run's TensorBoard scalars.
    losses = {}
    for name in ("one", "two"):
        scalars, _ = read_events(tmp_path / name / "train")
        losses[name] = {k: v[0][1] for k, v in scalars.items() if k != "step_seconds"}
    assert losses["one"].keys() == losses["two"].keys() and set(LOSSES) <= losses["one"].keys()
    for k in losses["one"]:
        assert losses["two"][k] == pytest.approx(losses["one"][k], rel=1e-9, abs=1e-12), k

    data = np.load(tmp_path / "weights.npz")
    one = {k[len("one/"):]: data[k] for k in data.files if k.startswith("one/")}
    two = {k[len("two/"):]: data[k] for k in data.files if k.startswith("two/")}
    assert one.keys() == two.keys() and len(one) > 100
    lr = 1e-4
    # Scale of the Adam moments: the largest |m| (|v|) of each optimizer. Biases in front of a
    # BatchNorm have a zero gradient, so theirs are rounding noise and compared to this scale.
    scales = {}
    for key, a in one.items():
        if not key.startswith("model") and not key.endswith("iteration"):
            kind = (key.split("/")[0], key.rsplit("_", 1)[-1])
            scales[kind] = max(scales.get(kind, 0.0), float(np.max(np.abs(a))))
    assert len(scales) == 4 and min(scales.values()) > 0, scales
    moved = 0
    for key, a in one.items():
        b = two[key]
        assert a.shape == b.shape, key
        if key.startswith("model"):
            parts = key.split("/")
            i, j = int(parts[0][len("model"):]), int(parts[1])
            start = data[f"init/{i}/{j}"]
            moved += int(not np.array_equal(a, start))
            # Updated weights agree to 1e-4 of an Adam step (lr) and 1e-9 relative.
            np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-4 * lr, err_msg=key)
        elif key.endswith("iteration"):
            assert int(a) == int(b) == 1, key
        else:
            # Adam moments: m = (1 − β1)·g and v = (1 − β2)·g², g the global-batch gradient.
            # (Adam's first step is ±lr whatever the gradient's scale, so it is these that
            # catch a wrong per-replica loss scaling, not the weights.)
            scale = scales[(key.split("/")[0], key.rsplit("_", 1)[-1])]
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-9 * scale, err_msg=key)
    assert moved > 50


# --- 6. learning-rate schedule ------------------------------------------------------------

def test_learning_rate_schedule_penn():
    cfg = config.load_preset("penn")
    assert (cfg.learning_rate, cfg.lr_decay, cfg.lr_decay_steps) == (1e-4, 0.95, 20000)
    schedule = loop.exponential_decay(cfg)
    optimizer = loop.adam(cfg)
    for step, expected in ((0, 1e-4), (10000, 1e-4 * 0.95 ** 0.5), (20000, 0.95e-4),
                           (30000, 1e-4 * 0.95 ** 1.5), (200000, 1e-4 * 0.95 ** 10)):
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-6), step
        optimizer.iterations.assign(step)
        assert float(optimizer.learning_rate) == pytest.approx(expected, rel=1e-6), step
    # Smooth, not a staircase: strictly decreasing between the decay boundaries.
    values = [float(schedule(s)) for s in (0, 1, 5000, 19999, 20000, 20001)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert (optimizer.beta_1, optimizer.beta_2) == (0.5, 0.999)


def test_flag_settings_parse_typed_and_fail_naming_the_file_and_line(tmp_path):
    from kp_tf import config
    assert config.parse_setting("num_keypoints=5") == ("num_keypoints", 5)
    assert config.parse_setting("augment=no") == ("augment", False)
    for text, message in [("num_keypoints", "expected --name=value"),
                          ("nope=1", "unknown setting --nope"),
                          ("augment=maybe", "--augment: expected true/false")]:
        with pytest.raises(ValueError, match=message):
            config.parse_setting(text)
    bad = tmp_path / "bad.flags"
    bad.write_text("# a comment\n--num_keypoints=abc\n")
    with pytest.raises(ValueError, match=r"bad.flags:2: --num_keypoints: invalid literal"):
        config.read_flagfile(bad)
