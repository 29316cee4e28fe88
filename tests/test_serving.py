"""The export under session-based loading, as `saved_model_cli run` and TensorFlow Serving load it.

A fresh interpreter that cannot import kp_tf nor Keras loads the tiny run's export with
`tf.compat.v1.saved_model.loader.load` into a `tf.compat.v1.Session` and runs requests in
TensorFlow Serving's REST JSON forms; this process computes the same outputs eagerly with
`serving.VideoPredictor` over the Keras models restored from the run's checkpoints (the
Python path). The saved_model_cli commands and the request bodies of docs/serving.md are run
as written.
"""

import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from _tiny_run import first_test_clip, first_test_frame, tiny_run  # noqa: F401
from conftest import REPO
from kp_tf import inference, run_folder, serving

# Graph-mode kernels may fuse or reorder float work; 1e-5 is far below a visible change
# (pixels and keypoints live in [-1, 1]). On CPU the outputs have been bit-identical.
ATOL = 1e-5
SEED, OTHER_SEED, ACTION = 7, 8, 2
DOC = REPO / "docs" / "serving.md"

# argv = model dir, requests .json ({name: REST body}), outputs .npz. Decodes each body as
# TensorFlow Serving does (columnar "inputs", or row "instances"; no signature_name:
# serving_default) and feeds the tensors, cast to the signature's dtypes, to a session.
SESSION_RUNNER = r"""
import json, sys
sys.modules["kp_tf"] = None   # a served model needs neither the package ...
sys.modules["keras"] = None   # ... nor Keras
import numpy as np
import tensorflow as tf

model_dir, requests_path, out_path = sys.argv[1:4]
with open(requests_path) as f:
    requests = json.load(f)
out, specs = {}, {}
with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
    meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], model_dir)
    for key, sig in meta.signature_def.items():
        if key.startswith("__"):  # __saved_model_init_op: the loader's, not a signature
            continue
        specs[key] = {"inputs": {k: [tf.dtypes.as_dtype(v.dtype).name,
                                     [d.size for d in v.tensor_shape.dim]]
                                 for k, v in sig.inputs.items()},
                      "outputs": {k: tf.dtypes.as_dtype(v.dtype).name
                                  for k, v in sig.outputs.items()}}
    for name, body in requests.items():
        sig = meta.signature_def[body.get("signature_name", "serving_default")]
        if "inputs" in body:
            values = body["inputs"]
        elif len(sig.inputs) == 1:
            values = {next(iter(sig.inputs)): body["instances"]}
        else:
            values = {k: [row[k] for row in body["instances"]] for k in sig.inputs}
        feed = {sig.inputs[k].name: np.asarray(v, tf.dtypes.as_dtype(sig.inputs[k].dtype)
                                                 .as_numpy_dtype)
                for k, v in values.items()}
        try:
            result = sess.run({k: v.name for k, v in sig.outputs.items()}, feed)
        except tf.errors.InvalidArgumentError as e:
            out[f"{name}/error"] = np.array(e.message)
            continue
        for k, v in result.items():
            out[f"{name}/{k}"] = v
out["specs"] = np.array(json.dumps(specs))
out["modules_kp_tf"] = np.array(sys.modules.get("kp_tf") is None)
np.savez(out_path, **out)
"""


def run_in_session(model_dir, requests: dict, work) -> dict:
    """{"NAME/OUTPUT": array, "NAME/error": message, "specs": json} from SESSION_RUNNER."""
    requests_path, out_path = work / "requests.json", work / "session_outputs.npz"
    with open(requests_path, "w") as f:
        json.dump(requests, f)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", SESSION_RUNNER, str(model_dir),
                           str(requests_path), str(out_path)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return dict(np.load(out_path))


@pytest.fixture(scope="module")
def predictor(tiny_run):  # noqa: F811
    """The Python path: VideoPredictor's methods run eagerly on the restored Keras models."""
    cfg = tiny_run.cfg
    ckpt1 = run_folder.latest_checkpoint(tiny_run.path("keypoints"))
    ckpt2 = run_folder.latest_checkpoint(tiny_run.path("motion"))
    return serving.VideoPredictor(cfg, *serving.restore_models(cfg, ckpt1, ckpt2))


@pytest.fixture(scope="module")
def inputs(tiny_run):  # noqa: F811
    cfg = tiny_run.cfg
    rng = np.random.default_rng(1)
    s, k, lat = cfg.image_size, cfg.num_keypoints, cfg.latent_dim
    images = rng.uniform(-1, 1, (2, s, s, 3)).astype(np.float32)
    images[0] = first_test_frame(tiny_run).astype(np.float32) / 127.5 - 1.0
    return {"images": images,
            "k0": rng.uniform(-0.8, 0.8, (2, k, 2)).astype(np.float32),
            "actions": np.array([0, cfg.num_actions - 1], np.int32),
            "z": rng.standard_normal((2, lat)).astype(np.float32),
            "targets": rng.uniform(-0.8, 0.8, (2, 3, k, 2)).astype(np.float32),
            # a driving video longer than one render chunk: the first test clip's frames
            "driving": first_test_clip(tiny_run, 40).astype(np.float32) / 127.5 - 1.0}


def _video_request(image, seed, frames, signature="predict_video"):
    body = {"inputs": {"image": image.tolist(), "action": ACTION, "seed": seed,
                       "frames": frames}}
    if signature:
        body["signature_name"] = signature
    return body


@pytest.fixture(scope="module")
def session(tiny_run, inputs, tmp_path_factory):  # noqa: F811
    x, length = inputs, tiny_run.cfg.sequence_length
    requests = {
        "detect": {"signature_name": "detect_keypoints", "instances": x["images"].tolist()},
        "motion": {"signature_name": "generate_motion",
                   "inputs": {"k0": x["k0"].tolist(), "action": x["actions"].tolist(),
                              "z": x["z"].tolist()}},
        "translate": {"signature_name": "translate",
                      "inputs": {"image": x["images"].tolist(), "source_kps": x["k0"].tolist(),
                                 "target_kps": x["targets"].tolist()}},
        "video": _video_request(x["images"][0], SEED, length),
        "video_again": _video_request(x["images"][0], SEED, length),
        "video_default": _video_request(x["images"][0], SEED, length, signature=None),
        "video_other": _video_request(x["images"][0], OTHER_SEED, length),
        "video_long": _video_request(x["images"][0], SEED, 2 * length + 3),
        "video_zero": _video_request(x["images"][0], SEED, 0),
        "animate": {"signature_name": "animate",
                    "inputs": {"image": x["images"][1].tolist(),
                               "driving_video": x["driving"].tolist()}},
        "animate_one": {"signature_name": "animate",
                        "inputs": {"image": x["images"][1].tolist(),
                                   "driving_video": x["driving"][:1].tolist()}},
        "interpolate": {"signature_name": "interpolate",
                        "inputs": {"first": x["images"][0].tolist(),
                                   "last": x["images"][1].tolist(), "frames": 5}},
        "interpolate_zero": {"signature_name": "interpolate",
                             "inputs": {"first": x["images"][0].tolist(),
                                        "last": x["images"][1].tolist(), "frames": 0}},
    }
    return run_in_session(tiny_run.export_dir, requests, tmp_path_factory.mktemp("session"))


def _eager_video(predictor, image, seed, frames):
    out = predictor.predict_video(tf.constant(image), tf.constant(ACTION, tf.int32),
                                  tf.constant(seed, tf.int64), tf.constant(frames, tf.int32))
    return {k: np.asarray(v) for k, v in out.items()}


def _max_diff(got, expected):
    expected = np.asarray(expected)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    return float(np.abs(got - expected).max())


def test_session_signatures_are_the_python_specs(session, predictor):
    specs = json.loads(session["specs"].item())
    assert bool(session["modules_kp_tf"])
    assert set(specs) == set(serving.SIGNATURES) | {"serving_default"}
    outputs = {"detect_keypoints": ["keypoints"], "generate_motion": ["keypoints"],
               "translate": ["video"],
               "predict_video": ["first_keypoints", "keypoints", "video"],
               "animate": ["driving_keypoints", "keypoints", "source_keypoints", "video"],
               "interpolate": ["first_keypoints", "keypoints", "last_keypoints", "video"]}
    for name, arg_specs in predictor.input_signatures().items():
        want = {spec.name: [spec.dtype.name, [-1 if d is None else d for d in spec.shape]]
                for spec in arg_specs}
        assert specs[name]["inputs"] == want, name
        assert sorted(specs[name]["outputs"]) == outputs[name], name
        assert set(specs[name]["outputs"].values()) == {"float32"}, name
    assert specs["serving_default"] == specs["predict_video"]


def test_every_signature_in_a_session_matches_the_python_path(session, predictor, inputs,
                                                               tiny_run):  # noqa: F811
    x, length = inputs, tiny_run.cfg.sequence_length
    expected = {
        "detect/keypoints": predictor.detect_keypoints(x["images"])["keypoints"],
        "motion/keypoints": predictor.generate_motion(x["k0"], x["actions"], x["z"])["keypoints"],
        "translate/video": predictor.translate(x["images"], x["k0"], x["targets"])["video"],
    }
    for frames, name in ((length, "video"), (2 * length + 3, "video_long")):
        for k, v in _eager_video(predictor, x["images"][0], SEED, frames).items():
            expected[f"{name}/{k}"] = v
    for k, v in predictor.animate(tf.constant(x["images"][1]),
                                  tf.constant(x["driving"])).items():
        expected[f"animate/{k}"] = v
    for k, v in predictor.interpolate(tf.constant(x["images"][0]), tf.constant(x["images"][1]),
                                      tf.constant(5)).items():
        expected[f"interpolate/{k}"] = v
    diffs = {key: _max_diff(session[key], value) for key, value in expected.items()}
    print("max |session - eager|:", diffs)
    assert max(diffs.values()) <= ATOL, diffs
    assert session["video_long/video"].shape[0] == 2 * length + 3
    # Not a constant model: the detector's keypoints move with the image.
    assert _max_diff(session["detect/keypoints"][0], session["detect/keypoints"][1]) > 1e-4


def test_predict_video_seed_gives_one_video_in_every_loader(session, predictor, inputs,
                                                            tiny_run):  # noqa: F811
    length = tiny_run.cfg.sequence_length
    keys = ("video", "keypoints", "first_keypoints")
    # In the session: the same seed twice, and through serving_default, bit for bit ...
    for k in keys:
        np.testing.assert_array_equal(session[f"video/{k}"], session[f"video_again/{k}"])
        np.testing.assert_array_equal(session[f"video/{k}"], session[f"video_default/{k}"])
    # ... another seed another motion ...
    assert _max_diff(session["video_other/keypoints"], session["video/keypoints"]) > 1e-6
    # ... and the same video eagerly and through tf.saved_model.load in this process.
    image = inputs["images"][0]
    loaded = tf.saved_model.load(tiny_run.export_dir).signatures["predict_video"](
        image=tf.constant(image), action=tf.constant(ACTION, tf.int32),
        seed=tf.constant(SEED, tf.int64), frames=tf.constant(length, tf.int32))
    eager = _eager_video(predictor, image, SEED, length)
    for k in keys:
        assert _max_diff(session[f"video/{k}"], loaded[k].numpy()) <= ATOL, k
        assert _max_diff(session[f"video/{k}"], eager[k]) <= ATOL, k


def test_zero_frames_is_an_invalid_argument_in_a_session(session):
    assert "frames must be" in str(session["video_zero/error"])
    assert "frames must be" in str(session["interpolate_zero/error"])
    assert "at least 2 frames" in str(session["animate_one/error"])


def test_export_holds_each_inference_weight_once_and_no_other_state(tiny_run,
                                                                    predictor):  # noqa: F811
    """The checkpoint holds the variables the signatures read and the two strings: no second
    copy through Keras' variable wrappers, no cVAE encoder, no random-number state."""
    reader = tf.train.load_checkpoint(os.path.join(tiny_run.export_dir, "variables",
                                                   "variables"))
    shapes = {k: v for k, v in reader.get_variable_to_shape_map().items()
              if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    strings = {k for k in shapes if reader.get_variable_to_dtype_map()[k] == tf.string}
    assert strings == {"action_names/.ATTRIBUTES/VARIABLE_VALUE",
                       "config_json/.ATTRIBUTES/VARIABLE_VALUE"}
    weights = (predictor.detector.weights + predictor.image_encoder.weights
               + predictor.translator.weights + predictor.motion_generator.decoder.weights)
    saved = sorted(tuple(shapes[k]) for k in shapes if k not in strings)
    assert saved == sorted(tuple(w.shape) for w in weights)
    # And their values: every saved array is one of the models' weights.
    values = {w.numpy().tobytes() for w in weights}
    assert all(reader.get_tensor(k).tobytes() in values for k in shapes if k not in strings)


# --- docs/serving.md, run as written ---------------------------------------------------------

def _doc_block(language: str, must_contain: str) -> str:
    blocks = [b for b in re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)
              if must_contain in b]
    assert len(blocks) == 1, f"docs/serving.md: expected one ```{language} block with " \
                             f"{must_contain!r}, found {len(blocks)}"
    return blocks[0]


@pytest.fixture(scope="module")
def doc_workdir(tiny_run, tmp_path_factory):  # noqa: F811
    """A folder with frame.png (a test frame) and the environment the doc's commands use:
    MODEL = the tiny export, this interpreter's bin first on PATH (python, saved_model_cli),
    this checkout importable as kp_tf."""
    from PIL import Image

    work = tmp_path_factory.mktemp("doc")
    rgb = first_test_frame(tiny_run)
    assert cv2.imwrite(str(work / "frame.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    frames = [Image.fromarray(f) for f in first_test_clip(tiny_run, 12)[::-1]]
    frames[0].save(work / "driving.gif", save_all=True, append_images=frames[1:], loop=0)
    env = dict(os.environ, MODEL=tiny_run.export_dir, IMAGE=str(work / "frame.png"),
               DRIVING=str(work / "driving.gif"),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
               PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return work, env


def test_doc_saved_model_cli_commands_run_and_match_the_python_path(doc_workdir, predictor,
                                                                    tiny_run):  # noqa: F811
    script = _doc_block("sh", "saved_model_cli run")
    assert all(f"--signature_def {name}" in script for name in serving.SIGNATURES)
    work, env = doc_workdir
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = lambda path: np.load(work / "out" / path)  # noqa: E731
    image = inference.load_image(str(work / "frame.png"), tiny_run.cfg.image_size)
    k0 = np.asarray(predictor.detect_keypoints(image[None])["keypoints"])
    z = np.zeros((1, tiny_run.cfg.latent_dim), np.float32)
    motion = np.asarray(predictor.generate_motion(k0, np.array([0], np.int32), z)["keypoints"])
    video = predictor.predict_video(tf.constant(image), tf.constant(0), tf.constant(7, tf.int64),
                                    tf.constant(16))
    expected = {
        "detect/keypoints.npy": k0,
        "video/video.npy": video["video"], "video/keypoints.npy": video["keypoints"],
        "video/first_keypoints.npy": video["first_keypoints"],
        "motion/keypoints.npy": motion,
        "translate/video.npy": predictor.translate(image[None], k0, motion)["video"],
    }
    driving, last = np.load(work / "driving.npy"), np.load(work / "last.npy")
    assert driving.shape == (12,) + image.shape
    for key, value in predictor.animate(tf.constant(image), tf.constant(driving)).items():
        expected[f"animate/{key}.npy"] = value
    for key, value in predictor.interpolate(tf.constant(image), tf.constant(last),
                                            tf.constant(8)).items():
        expected[f"interpolate/{key}.npy"] = value
    diffs = {path: _max_diff(out(path), value) for path, value in expected.items()}
    print("max |saved_model_cli - eager|:", diffs)
    assert max(diffs.values()) <= ATOL, diffs
    s, k, length = tiny_run.cfg.image_size, tiny_run.cfg.num_keypoints, tiny_run.cfg.sequence_length
    assert out("video/video.npy").shape == (16, s, s, 3)
    assert out("translate/video.npy").shape == (1, length, s, s, 3)


def test_doc_rest_bodies_run_in_a_session_with_the_documented_shapes(doc_workdir, predictor,
                                                                     tiny_run):  # noqa: F811
    work, env = doc_workdir
    client = _doc_block("python", "bodies = {")
    proc = subprocess.run([sys.executable, "-c", client], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    requests = {name: json.loads((work / f"{name}.json").read_text())
                for name in ("predict_video", "detect_keypoints")}
    assert requests["predict_video"]["signature_name"] == "predict_video"
    out = run_in_session(tiny_run.export_dir, requests, work)
    s, k = tiny_run.cfg.image_size, tiny_run.cfg.num_keypoints
    assert out["predict_video/video"].shape == (16, s, s, 3)
    assert out["predict_video/keypoints"].shape == (16, k, 2)
    assert out["predict_video/first_keypoints"].shape == (k, 2)
    assert out["detect_keypoints/keypoints"].shape == (1, k, 2)
    image = inference.load_image(str(work / "frame.png"), s)
    eager = predictor.detect_keypoints(image[None])["keypoints"]
    assert _max_diff(out["detect_keypoints/keypoints"], eager) <= ATOL
