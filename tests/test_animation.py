"""Motion transfer and keypoint interpolation: the keypoint rules on hand-made keypoints, the
Python path and the commands (`python -m kp_tf.animate`, `python -m kp_tf.interpolate`) on the
tiny run's export, and the export's `animate` and `interpolate` signatures against the Python
path."""

import json
import subprocess
import sys
import tracemalloc

import cv2
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from _tiny_run import tiny_run  # noqa: F401  (the shared trained run, a fixture)
from conftest import REPO, command_env
from kp_tf import animation, conventions, inference

ATOL = 1e-5  # signature against Python path: the same float work in another order


# --- the keypoint rules -------------------------------------------------------------------------

def test_transfer_keypoints_relative_absolute_and_adapted_scale():
    source = np.array([[[0.0, 0.0], [0.2, 0.0]]], np.float32)  # spread 0.1
    first = np.array([[[0.5, 0.5], [0.9, 0.5]]], np.float32)  # spread 0.2
    driving = first[:, None] + np.array([0.0, 0.1, 0.3], np.float32)[None, :, None, None]
    relative = np.asarray(animation.transfer_keypoints(source, driving, first, True, False))
    np.testing.assert_allclose(relative, source[:, None] + driving - first[:, None], atol=1e-6)
    adapted = np.asarray(animation.transfer_keypoints(source, driving, first, True, True))
    np.testing.assert_allclose(adapted, source[:, None] + 0.5 * (driving - first[:, None]),
                               atol=1e-6)
    for scale in (False, True, tf.constant(True)):
        absolute = animation.transfer_keypoints(source, driving, first, tf.constant(False), scale)
        np.testing.assert_array_equal(np.asarray(absolute), driving)
    # The source is the driving video's first frame: relative is the driving keypoints.
    same = animation.transfer_keypoints(first, driving, first, True, True)
    np.testing.assert_allclose(np.asarray(same), driving, atol=1e-7)
    np.testing.assert_allclose(np.asarray(animation.keypoint_spread(first)), [0.2], rtol=1e-6)


def test_interpolation_weights_keypoints_and_blend():
    np.testing.assert_allclose(np.asarray(animation.interpolation_weights(3)), [0.25, 0.5, 0.75])
    np.testing.assert_allclose(np.asarray(animation.interpolation_weights(tf.constant(1))), [0.5])
    first = np.zeros((1, 2, 2), np.float32)
    last = np.array([[[0.4, -0.8], [1.0, 1.0]]], np.float32)
    k = np.asarray(animation.interpolate_keypoints(first, last, [0.25, 0.5]))
    assert k.shape == (1, 2, 2, 2)
    np.testing.assert_allclose(k[0, 1], 0.5 * last[0], atol=1e-7)
    a, b = np.zeros((2, 4, 4, 3), np.float32), np.ones((2, 4, 4, 3), np.float32)
    np.testing.assert_allclose(np.asarray(animation.blend(a, b, [0.25, 1.0]))[:, 0, 0, 0],
                               [0.25, 1.0])


def test_motion_path_takes_the_candidate_nearest_the_end_and_ends_there():
    """A hand-made generator: action a moves every keypoint by (a + 1)·0.01·t along x, z
    adds z_0·0.001·t along y. From (0, 0) to (0.3, 0) in N = 9 frames (step 10), the
    nearest candidate is action 2 with the z whose first value is nearest 0; the path then
    ends exactly on the last keypoints."""
    length, k = 4, 3

    def decode(start, action, z):
        t = tf.range(1, length + 1, dtype=tf.float32)[None, :, None]
        dx = tf.cast(action + 1, tf.float32)[:, None, None] * 0.01 * t
        dy = z[:, :1, None] * 0.001 * t
        return start[:, None] + tf.stack([dx + 0 * dy, dy + 0 * dx], -1)

    first, last = np.zeros((k, 2), np.float32), np.tile([[0.3, 0.0]], (k, 1)).astype(np.float32)
    path = np.asarray(animation.motion_path(decode, first, last, 9, length, 5, 2))
    assert path.shape == (9, k, 2)
    z = tf.random.stateless_normal([animation.PATH_DRAWS, 2], animation.PATH_SEED).numpy()
    z0 = z[np.abs(z[:, 0]).argmin(), 0]
    t = np.arange(1, 10, dtype=np.float32)[:, None]
    w = t / 10  # the miss at step 10, (0, 0.01·z0), spread over the path
    np.testing.assert_allclose(path[:, 0, 0], 0.03 * t[:, 0], atol=1e-6)
    np.testing.assert_allclose(path[:, 0, 1], (0.001 * z0 * t - w * 0.01 * z0)[:, 0], atol=1e-6)


def test_combine_renders():
    a, b = np.full((2, 4, 4, 3), -0.5, np.float32), np.full((2, 4, 4, 3), 0.5, np.float32)
    w = [0.25, 0.75]
    np.testing.assert_array_equal(np.asarray(animation.combine_renders("first", w, a, b)), a)
    np.testing.assert_allclose(np.asarray(animation.combine_renders("blend", w, a, b))[:, 0, 0, 0],
                               [-0.25, 0.25])
    residuals = (np.full((4, 4, 3), 0.1, np.float32), np.full((4, 4, 3), 0.9, np.float32))
    out = animation.combine_renders("residual", [0.25, 1.0], a, b, residuals)
    # (−0.5 + 0.1, 0.5 + 0.9) blended; the second, 1.4, clipped to 1
    np.testing.assert_allclose(np.asarray(out)[:, 0, 0, 0], [0.75 * -0.4 + 0.25 * 1.4, 1.0],
                               atol=1e-6)


# --- the Python path on the tiny export ------------------------------------------------------------

@pytest.fixture(scope="module")
def predictor(tiny_run):  # noqa: F811
    return inference.Predictor(tiny_run.export_dir)


@pytest.fixture(scope="module")
def clip(tiny_run):  # noqa: F811
    """The frames of the first and second test clips, uint8 [40, 32, 32, 3] each."""
    from kp_tf.data import tfrecords

    shard = tfrecords.shard_paths(tiny_run.data_dir, "test")[0]
    clips = [tfrecords.decode_frames(tfrecords.parse_clip(s)["frames_png"]).numpy()
             for s in tf.data.TFRecordDataset(shard).take(2)]
    return clips


def test_animate_reconstructs_keypoints_and_is_deterministic(predictor, clip):
    frames = clip[0][:10]
    image = conventions.to_model(frames[0])
    out = animation.animate(predictor, image, frames)
    s, k = predictor.image_size, predictor.config["num_keypoints"]
    assert out["video"].shape == (10, s, s, 3) and out["keypoints"].shape == (10, k, 2)
    assert out["driving_keypoints"].shape == (10, k, 2) and out["source_keypoints"].shape == (k, 2)
    assert out["video"].min() >= -1 and out["video"].max() <= 1
    # Driven by its own clip, the source's keypoints follow the driving ones exactly.
    np.testing.assert_allclose(out["keypoints"], out["driving_keypoints"], atol=1e-6)
    np.testing.assert_allclose(out["keypoints"][0], out["source_keypoints"], atol=1e-6)
    again = animation.animate(predictor, image, frames, chunk=3)  # other chunks, same result
    for key, value in out.items():
        np.testing.assert_allclose(again[key], value, atol=ATOL)
    other = animation.animate(predictor, conventions.to_model(clip[1][0]), frames)
    assert np.abs(other["video"] - out["video"]).max() > 1e-2  # another source, another video
    with pytest.raises(inference.PredictError, match="at least 2"):
        animation.animate(predictor, image, frames[:1])


def test_interpolate_renders_the_frames_between(predictor, clip):
    first, last = (conventions.to_model(clip[0][i]) for i in (0, 9))
    s, k = predictor.image_size, predictor.config["num_keypoints"]
    out = animation.interpolate(predictor, first, last, 8, render="first", path="linear")
    assert out["video"].shape == (8, s, s, 3) and out["keypoints"].shape == (8, k, 2)
    w = np.arange(1, 9, dtype=np.float32)[:, None, None] / 9
    np.testing.assert_allclose(out["keypoints"], out["first_keypoints"] + w * (
        out["last_keypoints"] - out["first_keypoints"]), atol=1e-6)
    np.testing.assert_allclose(out["video"], predictor.translate(first, out["first_keypoints"],
                                                                 out["keypoints"]))
    blended = animation.interpolate(predictor, first, last, 8, render="blend", path="linear")
    np.testing.assert_allclose(blended["keypoints"], out["keypoints"])
    assert np.abs(blended["video"] - out["video"]).max() > 1e-3
    # The residual rendering of a still pair (the same image twice, the same keypoints all
    # along) is that image: the translator's error is added back.
    still = animation.interpolate(predictor, first, first, 3, render="residual", path="linear")
    np.testing.assert_allclose(still["video"], np.repeat(first[None], 3, 0), atol=1e-5)
    # The motion path: the generator's candidate nearest the last keypoints at step 9 (two
    # chunks of L = 8, the second from the first's last keypoints), its miss spread linearly.
    default = animation.interpolate(predictor, first, last, 8, path="motion")
    actions, draws = predictor.config["num_actions"], animation.PATH_DRAWS
    z = tf.tile(tf.random.stateless_normal([draws, predictor.config["latent_dim"]],
                                           animation.PATH_SEED), [actions, 1])
    action = tf.repeat(tf.range(actions, dtype=tf.int32), draws)
    start = np.repeat(out["first_keypoints"][None], actions * draws, 0)
    chunk = predictor.model.generate_motion(start, action, z)["keypoints"].numpy()
    after = predictor.model.generate_motion(chunk[:, -1], action, z)["keypoints"].numpy()
    paths = np.concatenate([chunk, after], 1)[:, :9]
    best = paths[np.abs(paths[:, 8] - out["last_keypoints"]).mean((1, 2)).argmin()]
    np.testing.assert_allclose(default["keypoints"],
                               best[:8] + w * (out["last_keypoints"] - best[8]), atol=1e-6)
    for bad in ({"frames": 0}, {"frames": 2, "render": "paint"}, {"frames": 2, "path": "zigzag"}):
        with pytest.raises(inference.PredictError):
            animation.interpolate(predictor, first, last, **bad)


# --- the signatures equal the Python path -----------------------------------------------------------

@pytest.mark.parametrize("frames", [2, 70])  # 70: three render chunks of 32
def test_animate_signature_equals_the_python_path(predictor, clip, frames):
    driving = np.concatenate([clip[0], clip[1]])[:frames]
    image = conventions.to_model(clip[1][0])
    got = predictor.model.signatures["animate"](image=tf.constant(image),
                                                driving_video=tf.constant(
                                                    conventions.to_model(driving)))
    expected = animation.animate(predictor, image, driving)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key].shape == value.shape, key
        np.testing.assert_allclose(got[key].numpy(), value, atol=ATOL, err_msg=key)


def test_animate_signature_rejects_one_frame(predictor, clip):
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 2 frames"):
        predictor.model.signatures["animate"](
            image=tf.constant(conventions.to_model(clip[0][0])),
            driving_video=tf.constant(conventions.to_model(clip[0][:1])))


@pytest.mark.parametrize("frames", [1, 8, 40])
def test_interpolate_signature_equals_the_python_path(predictor, clip, frames):
    """The signature is the Python path with its defaults (INTERPOLATION_PATH and _RENDER)."""
    first, last = (conventions.to_model(clip[0][i]) for i in (0, 20))
    got = predictor.model.signatures["interpolate"](first=tf.constant(first),
                                                    last=tf.constant(last),
                                                    frames=tf.constant(frames))
    expected = animation.interpolate(predictor, first, last, frames)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key].shape == value.shape, key
        np.testing.assert_allclose(got[key].numpy(), value, atol=ATOL, err_msg=key)


# --- the commands ---------------------------------------------------------------------------------

def _cli(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=command_env(),
                          capture_output=True, text=True, timeout=600)


def _write_png(path, rgb):
    assert cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    return str(path)


def _write_mp4(path, frames, fps=10):
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return str(path)


@pytest.fixture(scope="module")
def inputs(clip, tmp_path_factory):
    """A source image of the wrong size (50×70: resized and cropped as predict does) and a
    driving video of 12 frames at 48×64 (fitted to 32×32 the same way)."""
    work = tmp_path_factory.mktemp("animate_inputs")
    source = cv2.resize(clip[1][0], (50, 70), interpolation=cv2.INTER_LINEAR)
    driving = np.stack([cv2.resize(f, (64, 48), interpolation=cv2.INTER_LINEAR)
                        for f in clip[0][:12]])
    return {"source": _write_png(work / "source.png", source),
            "driving": _write_mp4(work / "driving.mp4", driving), "work": work}


def test_animate_cli_writes_the_side_by_side_video(tiny_run, inputs, tmp_path):  # noqa: F811
    s, k = tiny_run.cfg.image_size, tiny_run.cfg.num_keypoints
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        proc = _cli("kp_tf.animate", f"--model={tiny_run.export_dir}",
                    f"--source={inputs['source']}", f"--driving={inputs['driving']}",
                    f"--out={out}", "--draw_keypoints", "--chunk=5")
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert "Wrote 12 frames (relative motion)" in proc.stdout
        runs.append(dict(np.load(out / "keypoints.npz")))
    out = tmp_path / "a"
    scale = -(-128 // s)
    with Image.open(out / "animation.gif") as gif:
        assert gif.n_frames == 12 and gif.size == (3 * scale * s, scale * s)
    capture = cv2.VideoCapture(str(out / "result.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    assert int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == s
    capture.release()
    assert runs[0]["keypoints"].shape == runs[0]["driving_keypoints"].shape == (12, k, 2)
    assert runs[0]["source_keypoints"].shape == (k, 2)
    for key in runs[0]:  # deterministic
        np.testing.assert_array_equal(runs[0][key], runs[1][key])
    record = json.loads((out / "animation.json").read_text())
    assert record["mode"] == "relative" and record["adapt_scale"] and record["frames"] == 12
    # The same numbers as the Python path on the frames fitted as the command fits them.
    predictor = inference.Predictor(tiny_run.export_dir)
    source = inference.load_image(inputs["source"], s)
    driving = inference.fit_frames(np.stack(
        [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in _read_mp4(inputs["driving"])]), s)
    expected = animation.animate(predictor, source, driving)
    np.testing.assert_allclose(runs[0]["keypoints"], expected["keypoints"], atol=ATOL)
    absolute = tmp_path / "absolute"
    proc = _cli("kp_tf.animate", f"--model={tiny_run.export_dir}", f"--source={inputs['source']}",
                f"--driving={inputs['driving']}", f"--out={absolute}", "--mode=absolute")
    assert proc.returncode == 0, proc.stderr[-4000:]
    kps = np.load(absolute / "keypoints.npz")
    np.testing.assert_allclose(kps["keypoints"], kps["driving_keypoints"], atol=1e-6)


def _read_mp4(path):
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def test_animate_cli_errors_are_one_line_naming_the_file(tiny_run, inputs, clip,
                                                         tmp_path):  # noqa: F811
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(3000))
    single = tmp_path / "single.gif"
    Image.fromarray(clip[0][0]).save(single)
    cases = {str(corrupt): "corrupt.mp4: ", str(single): "1 frame",
             str(tmp_path / "missing.avi"): "missing.avi: file not found"}
    for driving, message in cases.items():
        out = tmp_path / "out"
        proc = _cli("kp_tf.animate", f"--model={tiny_run.export_dir}",
                    f"--source={inputs['source']}", f"--driving={driving}", f"--out={out}")
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
        assert message in proc.stderr and driving in proc.stderr
        assert not out.exists()
    proc = _cli("kp_tf.animate", f"--model={tiny_run.export_dir}",
                f"--source={tmp_path / 'nope.png'}", f"--driving={inputs['driving']}",
                f"--out={tmp_path / 'out'}")
    assert proc.returncode == 2 and "nope.png: no such file" in proc.stderr


def test_animate_streams_a_long_driving_video_in_bounded_memory(tiny_run, clip,
                                                                tmp_path):  # noqa: F811
    """1,000 driving frames of 160×160 (77 MB decoded) take hardly more memory than 100: the
    video is read, rendered and written in chunks. The peaks of traced memory (NumPy's
    arrays included) are compared, as both include loading the model."""
    frames = np.concatenate([clip[0], clip[1]])
    frames = np.stack([cv2.resize(f, (160, 160), interpolation=cv2.INTER_NEAREST)
                       for f in frames])
    source = _write_png(tmp_path / "source.png", clip[1][0])
    peaks = {}
    for count in (100, 1000):
        driving = _write_mp4(tmp_path / f"driving_{count}.mp4",
                             frames[np.arange(count) % len(frames)])
        out = tmp_path / f"out_{count}"
        tracemalloc.start()
        try:
            record = animation.animate_to_files(tiny_run.export_dir, source, driving, str(out),
                                                chunk=16)
            peaks[count] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert record["frames"] == count
        assert np.load(out / "keypoints.npz")["keypoints"].shape[0] == count
        with Image.open(out / "animation.gif") as gif:
            assert gif.n_frames == count
    grown = peaks[1000] - peaks[100]
    print("traced memory peaks (bytes):", peaks)
    assert grown < 5e6, f"the peak grew by {grown / 1e6:.1f} MB for 900 more frames ({peaks})"


def test_interpolate_cli(tiny_run, clip, tmp_path):  # noqa: F811
    s, k = tiny_run.cfg.image_size, tiny_run.cfg.num_keypoints
    first = _write_png(tmp_path / "first.png", cv2.resize(clip[0][0], (64, 48)))  # resized
    last = _write_png(tmp_path / "last.png", clip[0][9])
    keypoints = []
    for name in ("a", "b"):
        out = tmp_path / name
        proc = _cli("kp_tf.interpolate", f"--model={tiny_run.export_dir}", f"--first={first}",
                    f"--last={last}", "--frames=8", f"--out={out}", "--draw_keypoints",
                    "--path=motion")
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert "Wrote 8 frames between the two images" in proc.stdout
        keypoints.append(np.load(out / "keypoints.npy"))
    assert keypoints[0].shape == (8, k, 2)
    np.testing.assert_array_equal(keypoints[0], keypoints[1])
    scale = -(-128 // s)
    with Image.open(tmp_path / "a" / "interpolation.gif") as gif:
        assert gif.n_frames == 10 and gif.size == (2 * scale * s, scale * s)
    record = json.loads((tmp_path / "a" / "interpolation.json").read_text())
    assert record["frames"] == 8 and record["written_frames"] == 10
    assert record["path"] == "motion" and record["render"] == animation.INTERPOLATION_RENDER
    predictor = inference.Predictor(tiny_run.export_dir)
    expected = animation.interpolate(predictor, inference.load_image(first, s),
                                     inference.load_image(last, s), 8, path="motion")
    np.testing.assert_allclose(keypoints[0], expected["keypoints"], atol=ATOL)
    proc = _cli("kp_tf.interpolate", f"--model={tiny_run.export_dir}", f"--first={first}",
                f"--last={tmp_path / 'gone.png'}", f"--out={tmp_path / 'c'}")
    assert proc.returncode == 2 and "gone.png: no such file" in proc.stderr
