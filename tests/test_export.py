"""The exported SavedModel: loads with TensorFlow alone and computes what the Keras models do.

A subprocess whose Python cannot import kp_tf (nor Keras) loads the export of the shared tiny
run (`_tiny_run`), calls the four serving signatures and saves everything to an .npz; this
process restores the Keras models from the same checkpoints and recomputes each output.
"""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from _tiny_run import first_test_frame, tiny_run  # noqa: F401  (tiny_run: a fixture)
from kp_tf import run_folder, serving
from kp_tf.data import synthetic
from kp_tf.models.motion_generator import rollout

ATOL = 1e-5
SEED, OTHER_SEED, ACTION = 7, 8, 2

# Runs in a fresh interpreter: argv = model dir, inputs .npz, outputs .npz.
LOADER = r"""
import sys
sys.modules["kp_tf"] = None   # the package must not be needed to load or run the export
sys.modules["keras"] = None   # nor Keras: TensorFlow alone
import json
import numpy as np
import tensorflow as tf

model_dir, inputs_path, out_path = sys.argv[1:4]
x = dict(np.load(inputs_path))
m = tf.saved_model.load(model_dir)
sig = m.signatures
out = {"signature_names": np.array(sorted(sig.keys())),
       "action_names": np.array([a.decode() for a in m.action_names.numpy()]),
       "config_json": np.array(m.config_json.numpy().decode())}
for name in ("serving_default", "predict_video"):
    out[f"{name}_inputs"] = np.array(sorted(sig[name].structured_input_signature[1]))
    out[f"{name}_outputs"] = np.array(sorted(sig[name].structured_outputs))
out["detect"] = sig["detect_keypoints"](image=tf.constant(x["images"]))["keypoints"].numpy()
out["motion"] = sig["generate_motion"](k0=tf.constant(x["k0"]), action=tf.constant(x["actions"]),
                                       z=tf.constant(x["z"]))["keypoints"].numpy()
out["translate"] = sig["translate"](image=tf.constant(x["images"]),
                                    source_kps=tf.constant(x["k0"]),
                                    target_kps=tf.constant(x["targets"]))["video"].numpy()

def predict(seed, frames):
    r = sig["predict_video"](image=tf.constant(x["images"][0]),
                             action=tf.constant(int(x["action"]), tf.int32),
                             seed=tf.constant(seed, tf.int64),
                             frames=tf.constant(frames, tf.int32))
    return {k: v.numpy() for k, v in r.items()}

L, seed, other = int(x["length"]), int(x["seed"]), int(x["other_seed"])
for name, (s, frames) in {"short": (seed, L), "again": (seed, L), "other": (other, L),
                          "long": (seed, 2 * L + 3), "one": (seed, 1)}.items():
    for k, v in predict(s, frames).items():
        out[f"predict_{name}_{k}"] = v
try:
    predict(seed, 0)
    out["zero_frames_error"] = np.array("")
except tf.errors.InvalidArgumentError as e:
    out["zero_frames_error"] = np.array(e.message)

def refusal(call):  # the error that `call` raises as "Type: message", "" when it runs
    try:
        call()
        return ""
    except (tf.errors.InvalidArgumentError, TypeError, ValueError) as e:
        return f"{type(e).__name__}: {getattr(e, 'message', e)}"

image, a = x["images"][0], int(x["action"])
k0, z = tf.constant(x["k0"]), tf.constant(x["z"])
refused = {
    "frames_above_cap": lambda: predict(seed, 4097),
    "frames_negative": lambda: predict(seed, -3),
    "action_above": lambda: sig["predict_video"](
        image=tf.constant(image), action=tf.constant(int(x["num_actions"]), tf.int32),
        seed=tf.constant(1, tf.int64), frames=tf.constant(2, tf.int32)),
    "action_negative": lambda: sig["generate_motion"](
        k0=k0, action=tf.constant([0, -1], tf.int32), z=z),
    "image_float64": lambda: sig["predict_video"](
        image=tf.constant(image, tf.float64), action=tf.constant(a, tf.int32),
        seed=tf.constant(1, tf.int64), frames=tf.constant(2, tf.int32)),
    "image_shape": lambda: sig["detect_keypoints"](image=tf.constant(x["images"][:, :-1])),
    "action_int64": lambda: sig["generate_motion"](
        k0=k0, action=tf.constant([0, 1], tf.int64), z=z),
    "interpolate_frames": lambda: sig["interpolate"](
        first=tf.constant(image), last=tf.constant(image), frames=tf.constant(0, tf.int32)),
    "animate_one_frame": lambda: sig["animate"](
        image=tf.constant(image), driving_video=tf.constant(x["images"][:1])),
}
for name, call in refused.items():
    out[f"refused_{name}"] = np.array(refusal(call))
out["modules_kp_tf"] = np.array(sys.modules.get("kp_tf") is None)
np.savez(out_path, **out)
"""


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):  # noqa: F811
    """(inputs, outputs of the SavedModel in a TensorFlow-only subprocess)."""
    cfg = tiny_run.cfg
    rng = np.random.default_rng(0)
    s, k, lat, length = cfg.image_size, cfg.num_keypoints, cfg.latent_dim, cfg.sequence_length
    inputs = {
        "images": rng.uniform(-1, 1, (2, s, s, 3)).astype(np.float32),
        "k0": rng.uniform(-0.8, 0.8, (2, k, 2)).astype(np.float32),
        "actions": np.array([0, cfg.num_actions - 1], np.int32),
        "z": rng.standard_normal((2, lat)).astype(np.float32),
        "targets": rng.uniform(-0.8, 0.8, (2, 3, k, 2)).astype(np.float32),
        "action": np.array(ACTION), "seed": np.array(SEED), "other_seed": np.array(OTHER_SEED),
        "length": np.array(length), "num_actions": np.array(cfg.num_actions),
    }
    # A real frame for predict_video, so that the detector sees a figure.
    frame = first_test_frame(tiny_run).astype(np.float32) / 127.5 - 1.0
    inputs["images"][0] = frame
    work = tmp_path_factory.mktemp("export_io")
    inputs_path, out_path = work / "inputs.npz", work / "outputs.npz"
    np.savez(inputs_path, **inputs)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", LOADER, tiny_run.export_dir, str(inputs_path),
                           str(out_path)], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return inputs, dict(np.load(out_path))


@pytest.fixture(scope="module")
def keras_models(tiny_run):  # noqa: F811
    cfg = tiny_run.cfg
    ckpt1 = run_folder.latest_checkpoint(tiny_run.path("keypoints"))
    ckpt2 = run_folder.latest_checkpoint(tiny_run.path("motion"))
    detector, encoder, translator, generator = serving.restore_models(cfg, ckpt1, ckpt2)
    return cfg, detector, encoder, translator, generator


def _render(keras_models, image, source, targets):
    """Keras reference of `translate` for one image: one translator call per target frame."""
    cfg, _, encoder, translator, _ = keras_models
    image, source = tf.constant(image[None]), tf.constant(source[None])
    features = encoder(image, training=False)
    frames = []
    for target in targets:
        out = translator([image, features, source, tf.constant(target[None])], training=False)
        frames.append(np.clip(np.asarray(out["output"])[0], -1.0, 1.0))
    return np.stack(frames)


def _one_hot(cfg, actions):
    return tf.one_hot(actions, cfg.num_actions)


def test_restore_models_restores_every_trained_weight(tiny_run, keras_models):  # noqa: F811
    """Every weight the trainers saved comes back, the LSTMs of the motion generator included.

    The trainers' g_optimizer holds each stage's trainable variables in order, so the
    checkpoint's `g_optimizer/_trainable_variables/i` is the i-th trained weight.
    """
    cfg, detector, encoder, translator, generator = keras_models
    per_stage = {"keypoints": detector.trainable_variables + encoder.trainable_variables
                 + translator.trainable_variables,
                 "motion": generator.trainable_variables}
    for stage, variables in per_stage.items():
        reader = tf.train.load_checkpoint(run_folder.latest_checkpoint(tiny_run.path(stage)))
        for i, variable in enumerate(variables):
            key = f"g_optimizer/_trainable_variables/{i}/.ATTRIBUTES/VARIABLE_VALUE"
            np.testing.assert_array_equal(variable.numpy(), reader.get_tensor(key),
                                          err_msg=f"{stage}: {variable.path}")
    # BatchNorm statistics are not trainable: restored, they have left their initial 0 / 1.
    for model in (detector, encoder, translator):
        for variable in model.non_trainable_variables:
            init = 1.0 if "variance" in variable.path else 0.0
            assert np.any(variable.numpy() != init), variable.path


def test_loads_without_package_and_has_its_signatures(exported):
    _, out = exported
    assert bool(out["modules_kp_tf"])
    # The six, and serving_default: predict_video under the name servers call by default.
    assert sorted(out["signature_names"].tolist()) == sorted(
        ["detect_keypoints", "generate_motion", "translate", "predict_video", "animate",
         "interpolate", "serving_default"])
    assert out["serving_default_inputs"].tolist() == ["action", "frames", "image", "seed"]
    assert out["serving_default_outputs"].tolist() == ["first_keypoints", "keypoints", "video"]
    assert out["predict_video_inputs"].tolist() == out["serving_default_inputs"].tolist()


def test_detect_keypoints_matches_keras(exported, keras_models):
    inputs, out = exported
    _, detector, *_ = keras_models
    expected = np.asarray(detector(inputs["images"], training=False))
    assert out["detect"].shape == expected.shape == (2, keras_models[0].num_keypoints, 2)
    np.testing.assert_allclose(out["detect"], expected, atol=ATOL)


def test_generate_motion_matches_keras(exported, keras_models):
    inputs, out = exported
    cfg, *_, generator = keras_models
    expected = np.asarray(generator.decode(inputs["z"], inputs["k0"],
                                           _one_hot(cfg, inputs["actions"])))
    assert out["motion"].shape == (2, cfg.sequence_length, cfg.num_keypoints, 2)
    np.testing.assert_allclose(out["motion"], expected, atol=ATOL)
    # The action is an input that matters: the two rows differ in action (and z).
    assert not np.allclose(out["motion"][0], out["motion"][1])


def test_translate_matches_keras(exported, keras_models):
    inputs, out = exported
    cfg = keras_models[0]
    assert out["translate"].shape == (2, 3, cfg.image_size, cfg.image_size, 3)
    for b in range(2):
        expected = _render(keras_models, inputs["images"][b], inputs["k0"][b], inputs["targets"][b])
        np.testing.assert_allclose(out["translate"][b], expected, atol=ATOL)


@pytest.mark.parametrize("name", ["short", "long"])
def test_predict_video_matches_keras(exported, keras_models, name):
    inputs, out = exported
    cfg, detector, _, _, generator = keras_models
    image = inputs["images"][0]
    frames = cfg.sequence_length if name == "short" else 2 * cfg.sequence_length + 3
    k0 = detector(image[None], training=False)
    z = tf.random.stateless_normal([1, cfg.latent_dim], tf.constant([SEED, SEED + 1], tf.int64))

    def redetect(last):  # past L: the keypoints detected on the frame rendered with the last
        return detector(_render(keras_models, image, np.asarray(k0)[0], np.asarray(last)),
                        training=False)

    one_hot = _one_hot(cfg, [ACTION])
    keypoints = np.asarray(rollout(lambda start: generator.decode(z, start, one_hot), k0, frames,
                                   cfg.sequence_length, restart=redetect))[0]
    if name == "short":  # one chunk: the generator's own sampling path
        np.testing.assert_allclose(keypoints, np.asarray(generator.sample(
            k0, one_hot, z=z, frames=frames))[0], atol=ATOL)
    video = _render(keras_models, image, np.asarray(k0)[0], keypoints)
    got = {k: out[f"predict_{name}_{k}"] for k in ("video", "keypoints", "first_keypoints")}
    assert got["video"].shape == (frames, cfg.image_size, cfg.image_size, 3)
    assert got["keypoints"].shape == (frames, cfg.num_keypoints, 2)
    np.testing.assert_allclose(got["first_keypoints"], np.asarray(k0)[0], atol=ATOL)
    np.testing.assert_allclose(got["keypoints"], keypoints, atol=ATOL)
    np.testing.assert_allclose(got["video"], video, atol=ATOL)
    assert got["video"].min() >= -1.0 and got["video"].max() <= 1.0


def test_predict_video_rolls_forward_past_sequence_length(exported, keras_models):
    inputs, out = exported
    cfg = keras_models[0]
    length = cfg.sequence_length
    long_kp, short_kp = out["predict_long_keypoints"], out["predict_short_keypoints"]
    assert long_kp.shape[0] == 2 * length + 3
    # The first L frames of the rollout are the L-frame prediction (same seed, same z) ...
    np.testing.assert_allclose(long_kp[:length], short_kp, atol=ATOL)
    np.testing.assert_allclose(out["predict_long_video"][:length], out["predict_short_video"],
                               atol=ATOL)
    # ... and frames=1 is its first frame.
    np.testing.assert_allclose(out["predict_one_keypoints"], short_kp[:1], atol=ATOL)
    # Each later chunk is an L-frame decode with the same z, started from the keypoints
    # detected on the frame rendered with the previous chunk's last keypoints.
    _, detector, _, _, generator = keras_models
    z = tf.random.stateless_normal([1, cfg.latent_dim], tf.constant([SEED, SEED + 1], tf.int64))
    image, k0 = inputs["images"][0], out["predict_long_first_keypoints"]
    for start in (length, 2 * length):
        frame = _render(keras_models, image, k0, long_kp[start - 1][None])
        chunk = generator.decode(z, detector(frame, training=False), _one_hot(cfg, [ACTION]))
        end = min(start + length, len(long_kp))
        np.testing.assert_allclose(long_kp[start:end], np.asarray(chunk)[0, :end - start],
                                   atol=ATOL)
    assert np.all(np.isfinite(long_kp)) and np.abs(long_kp).max() <= 1.0


def test_predict_video_seeds(exported):
    _, out = exported
    # The same seed gives the same video, bit for bit ...
    for k in ("video", "keypoints", "first_keypoints"):
        np.testing.assert_array_equal(out[f"predict_short_{k}"], out[f"predict_again_{k}"])
    # ... another seed another motion (from the same first keypoints).
    np.testing.assert_array_equal(out["predict_short_first_keypoints"],
                                  out["predict_other_first_keypoints"])
    diff = np.abs(out["predict_short_keypoints"] - out["predict_other_keypoints"]).max()
    assert diff > 1e-6, diff


def test_predict_video_rejects_zero_frames(exported):
    _, out = exported
    assert "frames must be" in str(out["zero_frames_error"])


@pytest.mark.parametrize("case, error, words", [
    ("frames_above_cap", "InvalidArgumentError", "frames must be in 1..4096"),
    ("frames_negative", "InvalidArgumentError", "frames must be in 1..4096"),
    ("interpolate_frames", "InvalidArgumentError", "frames must be in 1..4096"),
    ("action_above", "InvalidArgumentError", "action must be in 0..{last}"),
    ("action_negative", "InvalidArgumentError", "action must be in 0..{last}"),
    ("animate_one_frame", "InvalidArgumentError", "the driving video needs at least 2 frames"),
    ("image_shape", "InvalidArgumentError", "Shape of tensor image [2,31,32,3] is not "
                                            "compatible with expected shape [?,32,32,3]"),
    # The dtypes the loaded signatures check themselves, naming the input by its position.
    ("image_float64", "InvalidArgumentError", "expected to be a float tensor but is a double "
                                              "tensor"),
    ("action_int64", "InvalidArgumentError", "expected to be a int32 tensor but is a int64"),
])
def test_signatures_refuse_bad_inputs_with_the_limit(exported, tiny_run, case, error,  # noqa: F811
                                                     words):
    _, out = exported
    message = str(out[f"refused_{case}"])
    assert message.startswith(error) and words.format(last=tiny_run.cfg.num_actions - 1) \
        in message, message


def test_action_names_and_config_travel_with_the_model(exported, tiny_run):  # noqa: F811
    _, out = exported
    cfg = tiny_run.cfg
    names = out["action_names"].tolist()
    assert names == list(synthetic.ACTIONS) and len(names) == cfg.num_actions
    assert json.loads(out["config_json"].item()) == dataclasses.asdict(cfg)
    extra = os.path.join(tiny_run.export_dir, "assets.extra")
    with open(os.path.join(extra, "actions.txt")) as f:
        assert f.read().splitlines() == names
    with open(os.path.join(extra, "config.json")) as f:
        assert json.load(f) == dataclasses.asdict(cfg)
    with open(os.path.join(tiny_run.export_dir, run_folder.EXPORT_INFO)) as f:
        info = json.load(f)
    ckpt1 = run_folder.latest_checkpoint(tiny_run.path("keypoints"))
    ckpt2 = run_folder.latest_checkpoint(tiny_run.path("motion"))
    assert info == {"stage1_checkpoint": ckpt1, "stage2_checkpoint": ckpt2,
                    "stage1_fingerprint": run_folder.checkpoint_fingerprint(ckpt1),
                    "stage2_fingerprint": run_folder.checkpoint_fingerprint(ckpt2),
                    "precision": "float32"}


def test_a_bfloat16_export_renders_what_the_float32_one_does(tiny_run, tmp_path):  # noqa: F811
    """inference_precision=mixed_bfloat16 (export --precision): the same signatures with
    float32 outputs, the video within 0.005 mean and 0.05 max absolute error of the float32
    export's (pixels in [-1, 1]) and its keypoints within 0.05 px mean and 0.25 px max (at
    32×32). Measured on 2026-12-07: video 2e-8 mean, 1e-6 max; keypoints 1e-4 px mean,
    4e-4 px max (the tiny run's two steps leave a translator that mostly copies)."""
    cfg = tiny_run.cfg.replace(inference_precision="mixed_bfloat16")
    out = serving.export_run(cfg, str(tmp_path / "bf16"))
    assert run_folder.read_export_info(out)["precision"] == "mixed_bfloat16"
    mixed = tf.saved_model.load(out)
    image = tf.constant(first_test_frame(tiny_run) / 127.5 - 1.0, tf.float32)
    args = (image, tf.constant(ACTION), tf.constant(SEED, tf.int64), tf.constant(12))
    reference = tf.saved_model.load(tiny_run.export_dir)  # kept: its functions use its variables
    got, want = mixed.predict_video(*args), reference.predict_video(*args)
    assert all(v.dtype == tf.float32 for v in got.values())
    motion = mixed.generate_motion(got["first_keypoints"][None], tf.constant([ACTION]),
                                   tf.zeros([1, cfg.latent_dim]))["keypoints"]
    assert motion.dtype == tf.float32
    video = np.abs(got["video"].numpy() - want["video"].numpy())
    pixels = np.abs(got["keypoints"].numpy() - want["keypoints"].numpy()) * cfg.image_size / 2
    print(f"video mean {video.mean():.2e} max {video.max():.2e}; keypoints mean "
          f"{pixels.mean():.2e} px max {pixels.max():.2e} px")
    assert video.max() > 0 or pixels.max() > 0  # bfloat16 did run
    assert video.mean() < 0.005 and video.max() < 0.05, (video.mean(), video.max())
    assert pixels.mean() < 0.05 and pixels.max() < 0.25, (pixels.mean(), pixels.max())
