"""The TFLite export: `python -m kp_tf.export --format=tflite` on the shared tiny run, each
file against the Keras models (float32 to float rounding, float16 and int8 within the stated
bounds), builtin operators only, both translators, and docs/tflite.md's interpreter-only
example run as written.
"""

import json
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from _tiny_run import first_test_frame, tiny_run  # noqa: F401  (tiny_run: a fixture)
from conftest import REPO, command_env
from kp_tf import config, conventions, run_folder, serving, tflite_export
from kp_tf.data import synthetic
from kp_tf.models.motion_generator import rollout
from kp_tf.models.networks import Stage1Networks, build_motion_models

DOC = REPO / "docs" / "tflite.md"
# float32 TFLite against Keras: the kernels (XNNPack) sum in another order, nothing more.
# Pixels of keypoints, mean L1 of [0, 1] frames, normalised motion (tflite_export.UNITS).
FLOAT32_BOUNDS = {"detector": 1e-3, "translator": 1e-5, "motion_generator": 1e-5}


def _restored(tiny):
    info = run_folder.newest_checkpoints_info(tiny.cfg)
    models = serving.restore_models(tiny.cfg, info["stage1_checkpoint"],
                                    info["stage2_checkpoint"])
    return tflite_export.LitePredictor(tiny.cfg, *models)


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):  # noqa: F811
    """(folder written by the command as a user runs it, its stdout, the Keras predictor)."""
    out = tmp_path_factory.mktemp("tflite") / "tflite"
    proc = subprocess.run([sys.executable, "-m", "kp_tf.export", f"--logdir={tiny_run.logdir}",
                           "--format=tflite", f"--out={out}"], cwd=REPO, env=command_env(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stderr == "", proc.stderr[-4000:]  # quiet: no converter or runtime notices
    return out, proc.stdout, _restored(tiny_run)


def _read(folder, name):
    with open(folder / name, "rb") as f:
        return f.read()


def test_the_command_writes_three_models_their_variants_and_a_report(exported, tiny_run):  # noqa: F811
    out, stdout, _ = exported
    report = json.loads((out / tflite_export.REPORT).read_text())
    assert report["bounds"] == tflite_export.BOUNDS
    assert "test clips" in report["measured_on"]
    for stem, signatures in tflite_export.FILES.items():
        variants = report["files"][stem]
        assert set(variants) == set(tflite_export.QUANTIZATIONS)
        assert variants["float32"]["written"]
        for q, entry in variants.items():
            assert entry["written"] == (q == "float32" or entry["error"] <= tflite_export.BOUNDS[stem])
            assert (out / entry["file"]).is_file() == entry["written"], entry
            assert f"{stem}: " in stdout
            if not entry["written"]:
                continue
            content = _read(out, entry["file"])
            assert len(content) == entry["bytes"]
            # Builtin operators only: no Flex delegate or custom kernel needed.
            assert not [op for op in entry["ops"] if op.startswith("CUSTOM")], entry["ops"]
            assert entry["ops"] == tflite_export.op_names(content)
            lite = tflite_export.interpreter(content)
            assert sorted(lite.get_signature_list()) == sorted(signatures)
    assert "WHILE" in report["files"]["motion_generator"]["float32"]["ops"]  # the LSTMs
    assert (out / "actions.txt").read_text().split() == list(synthetic.ACTIONS)
    written = run_folder.read_config(str(out))
    for field in ("image_size", "num_keypoints", "num_actions", "latent_dim", "sequence_length"):
        assert getattr(written, field) == getattr(tiny_run.cfg, field)
    assert run_folder.read_export_info(str(out)) == run_folder.newest_checkpoints_info(
        tiny_run.cfg)


def test_signatures_have_the_documented_shapes(exported, tiny_run):  # noqa: F811
    out, _, _ = exported
    c = tiny_run.cfg
    s, k, f = c.image_size, c.num_keypoints, c.image_size // 4
    expected = {
        ("detector", "detect_keypoints"): ({"image": [1, s, s, 3]}, {"keypoints": [1, k, 2]}),
        ("translator", "encode_image"): ({"image": [1, s, s, 3]},
                                         {"features": [1, f, f, 4 * c.encoder_filters]}),
        ("translator", "render_frame"): ({"image": [1, s, s, 3],
                                          "features": [1, f, f, 4 * c.encoder_filters],
                                          "source_keypoints": [1, k, 2],
                                          "target_keypoints": [1, k, 2]},
                                         {"frame": [1, s, s, 3]}),
        ("motion_generator", "generate_motion"): ({"k0": [1, k, 2], "action": [1],
                                                   "z": [1, c.latent_dim]},
                                                  {"keypoints": [1, c.sequence_length, k, 2]}),
    }
    for (stem, name), (inputs, outputs) in expected.items():
        runner = tflite_export.interpreter(_read(out, f"{stem}.tflite")).get_signature_runner(name)
        assert {key: d["shape"].tolist() for key, d in runner.get_input_details().items()} == inputs
        assert {key: d["shape"].tolist()
                for key, d in runner.get_output_details().items()} == outputs
    generate = tflite_export.interpreter(_read(out, "motion_generator.tflite"))
    assert generate.get_signature_runner("generate_motion").get_input_details()["action"][
        "dtype"] == np.int32


def test_every_file_computes_what_the_keras_models_do(exported, tiny_run):  # noqa: F811
    """On inputs other than the export's own (noise images and a test frame): float32 to
    float rounding, the written quantised variants within the bounds."""
    out, _, predictor = exported
    s = tiny_run.cfg.image_size
    images = np.concatenate([
        np.random.default_rng(1).uniform(-1, 1, (2, s, s, 3)).astype(np.float32),
        conventions.to_model(first_test_frame(tiny_run))[None]])
    ref = tflite_export.reference(predictor, images, seed=5)
    report = json.loads((out / tflite_export.REPORT).read_text())
    errors = {}
    for stem in tflite_export.FILES:
        for q, entry in report["files"][stem].items():
            if entry["written"]:
                lite = tflite_export.run_lite(stem, _read(out, entry["file"]), ref)
                errors[stem, q] = tflite_export.error(stem, lite, ref, s)
    print("TFLite vs Keras:", {f"{a}/{b}": f"{e:.3g}" for (a, b), e in errors.items()})
    for (stem, q), value in errors.items():
        bound = FLOAT32_BOUNDS[stem] if q == "float32" else tflite_export.BOUNDS[stem]
        assert value <= bound, (stem, q, value)
    # The keypoints move and the frames change: the comparison is not between constants.
    assert np.abs(ref["motion"][:, -1] - ref["keypoints"]).max() > 1e-3
    assert np.abs(ref["frames"][:, 0] - ref["images"]).mean() > 1e-3


def test_the_report_states_the_errors_of_the_files_written(exported, tiny_run):  # noqa: F811
    """Measuring the written files again on the report's inputs gives its numbers."""
    out, _, predictor = exported
    images, _ = tflite_export.measurement_images(tiny_run.cfg)
    ref = tflite_export.reference(predictor, images)
    report = json.loads((out / tflite_export.REPORT).read_text())
    for stem in tflite_export.FILES:
        entry = report["files"][stem]["float32"]
        lite = tflite_export.run_lite(stem, _read(out, entry["file"]), ref)
        assert tflite_export.error(stem, lite, ref, tiny_run.cfg.image_size) == pytest.approx(
            entry["error"], rel=1e-3, abs=1e-9)


@pytest.mark.parametrize("motion_scale", [4, 2])
def test_the_warp_translator_converts_with_builtin_ops(motion_scale):
    """The warp translator (random weights): its bilinear sampling converts to GATHER, its
    flow resizing to builtins at every motion scale, and the file computes what Keras does."""
    cfg = config.load_preset("tiny", vgg_weights="none", translator="warp",
                             warp_motion_scale=motion_scale)
    nets = Stage1Networks(cfg)
    generator, _ = build_motion_models(cfg)
    predictor = tflite_export.LitePredictor(cfg, nets.detector, nets.image_encoder,
                                            nets.translator, generator)
    quantizations = ("float32", "int8") if motion_scale == 4 else ("float32",)
    blobs = tflite_export.convert_all(predictor, quantizations, stems=("translator",))
    images = np.stack([conventions.to_model(synthetic.generate_clip(
        i, split="test", size=cfg.image_size, num_frames=1).frames[0]) for i in range(2)])
    measured = tflite_export.measure(predictor, blobs, images)["translator"]
    print("warp translator vs Keras:", measured)
    assert measured["float32"]["error"] <= FLOAT32_BOUNDS["translator"]
    assert all(v["within_bound"] for v in measured.values())
    ops = tflite_export.op_names(blobs["translator", "float32"])
    assert "GATHER" in ops and not [op for op in ops if op.startswith("CUSTOM")], ops


def test_a_model_without_classes_has_no_action_input():
    cfg = config.load_preset("tiny", vgg_weights="none", num_actions=0)
    generator, _ = build_motion_models(cfg)
    nets = Stage1Networks(cfg)
    predictor = tflite_export.LitePredictor(cfg, nets.detector, nets.image_encoder,
                                            nets.translator, generator)
    content = tflite_export.convert_all(predictor, ("float32",),
                                        stems=("motion_generator",))["motion_generator", "float32"]
    runner = tflite_export.interpreter(content).get_signature_runner("generate_motion")
    assert sorted(runner.get_input_details()) == ["k0", "z"]
    k0 = np.zeros((1, cfg.num_keypoints, 2), np.float32)
    z = np.ones((1, cfg.latent_dim), np.float32)
    np.testing.assert_allclose(runner(k0=k0, z=z)["keypoints"],
                               predictor.generate_motion(k0, None, z)["keypoints"], atol=1e-6)


# --- docs/tflite.md, run as written ----------------------------------------------------------

def _doc_example() -> str:
    blocks = [b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
              if "tf.lite.Interpreter" in b]
    assert len(blocks) == 1, f"docs/tflite.md: expected one python block, found {len(blocks)}"
    return blocks[0]


def test_the_doc_example_predicts_a_video_with_the_interpreter_alone(exported, tiny_run,
                                                                    tmp_path):  # noqa: F811
    """The doc's script in an interpreter that cannot import kp_tf or Keras, two and a bit
    chunks long, against the Keras models on the same image, action and z."""
    out, _, predictor = exported
    cfg = tiny_run.cfg
    frames, seed, action = 2 * cfg.sequence_length + 3, 3, "jack"
    rgb = first_test_frame(tiny_run)
    assert cv2.imwrite(str(tmp_path / "frame.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    script = ('import sys\nsys.modules["kp_tf"] = None\nsys.modules["keras"] = None\n'
              + _doc_example())
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600,
                          env=dict(command_env(), TFLITE=str(out), IMAGE=str(tmp_path / "frame.png"),
                                   ACTION=action, FRAMES=str(frames), SEED=str(seed)))
    assert proc.returncode == 0, proc.stderr[-4000:]
    video, keypoints = np.load(tmp_path / "video.npy"), np.load(tmp_path / "keypoints.npy")
    assert video.shape == (frames, cfg.image_size, cfg.image_size, 3) and video.dtype == np.uint8
    assert len(list((tmp_path / "frames").glob("*.png"))) == frames

    image = conventions.to_model(rgb)[None]
    k0 = predictor.detect_keypoints(tf.constant(image))["keypoints"]
    z = np.random.default_rng(seed).standard_normal((1, cfg.latent_dim), dtype=np.float32)
    one_hot = tf.one_hot([synthetic.ACTIONS.index(action)], cfg.num_actions)
    expected_kps = rollout(lambda start: predictor.motion_generator.decode(z, start, one_hot),
                           k0, frames, cfg.sequence_length)
    expected = conventions.to_uint8(predictor.translate(tf.constant(image), k0,
                                                        expected_kps)["video"][0])
    kp_error = np.abs(keypoints - expected_kps[0].numpy()).max() * (cfg.image_size - 1) / 2
    grey_levels = np.abs(video.astype(int) - expected.astype(int))
    print(f"doc example vs Keras: keypoints {kp_error:.3g} px, frames max {grey_levels.max()} "
          f"grey levels")
    assert kp_error <= FLOAT32_BOUNDS["detector"]
    assert grey_levels.max() <= 1  # rounding to uint8 may split a value at .5
