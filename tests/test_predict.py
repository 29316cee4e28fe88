"""Image + action → videos: `load_image` on odd inputs, `Predictor`, and the CLI end to end."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from _tiny_run import tiny_run  # noqa: F401  (the shared trained run, a fixture)
from conftest import REPO, command_env
from kp_tf import inference
from kp_tf.data import synthetic

S = 32  # the tiny preset's image size

RED_BGR = (0, 0, 255)


def _check(image, size=S):
    assert image.shape == (size, size, 3) and image.dtype == np.float32
    assert image.min() >= -1.0 and image.max() <= 1.0


def _write(path, array):
    assert cv2.imwrite(str(path), array), path
    return str(path)


# --- load_image: whatever the file, [S, S, 3] float32 in [-1, 1], RGB ----------------------

def test_rgba_png_50x70(tmp_path):
    bgra = np.zeros((70, 50, 4), np.uint8)
    bgra[..., :3] = RED_BGR
    bgra[..., 3] = np.linspace(0, 255, 50, dtype=np.uint8)  # alpha is dropped, not blended
    image = inference.load_image(_write(tmp_path / "rgba.png", bgra), S)
    _check(image)
    np.testing.assert_allclose(image, np.broadcast_to([1.0, -1.0, -1.0], image.shape), atol=1e-6)


def test_grey_png(tmp_path):
    grey = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (30, 1))
    image = inference.load_image(_write(tmp_path / "grey.png", grey), S)
    _check(image)
    np.testing.assert_array_equal(image[..., 0], image[..., 1])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    assert image[:, 0].mean() < -0.5 < 0.5 < image[:, -1].mean()  # the ramp survives


@pytest.mark.parametrize("channels", [1, 3])
def test_16bit_png(tmp_path, channels):
    shape = (48, 48) if channels == 1 else (48, 48, 3)
    value = np.zeros(shape, np.uint16)
    if channels == 1:
        value[:, 24:] = 65535
    else:
        value[..., 2] = 65535  # red in BGR order
    path = _write(tmp_path / "deep.png", value)
    assert cv2.imread(path, cv2.IMREAD_UNCHANGED).dtype == np.uint16
    image = inference.load_image(path, S)
    _check(image)
    if channels == 1:
        assert image[:, :S // 2 - 1].max() == -1.0 and image[:, S // 2 + 1:].min() == 1.0
    else:
        np.testing.assert_allclose(image, np.broadcast_to([1.0, -1.0, -1.0], image.shape))


def test_jpg_200x120_is_centre_cropped(tmp_path):
    # 200 wide, 120 high: resized to 53×32, then the centre 32×32 is kept. The outer
    # 30 columns on each side are blue and must be cropped away; the centre is green.
    bgr = np.zeros((120, 200, 3), np.uint8)
    bgr[:] = (0, 255, 0)
    bgr[:, :30] = bgr[:, -30:] = (255, 0, 0)
    image = inference.load_image(_write(tmp_path / "wide.jpg", bgr), S)
    _check(image)
    centre = image[:, 4:-4].reshape(-1, 3).mean(0)
    assert centre[1] > 0.9 and centre[0] < -0.9 and centre[2] < -0.9, centre


def test_tiny_5x7_image(tmp_path):
    rng = np.random.default_rng(0)
    path = _write(tmp_path / "tiny.png", rng.integers(0, 256, (5, 7, 3), dtype=np.uint8))
    _check(inference.load_image(path, S))
    _check(inference.load_image(path, 64), 64)


def test_palette_and_bilevel_pngs(tmp_path):
    Image.new("P", (20, 10), 3).save(tmp_path / "palette.png")
    Image.new("1", (10, 20), 1).save(tmp_path / "bilevel.png")
    Image.new("LA", (12, 12), (200, 40)).save(tmp_path / "grey_alpha.png")
    for name in ("palette", "bilevel", "grey_alpha"):
        _check(inference.load_image(str(tmp_path / f"{name}.png"), S))


def test_missing_empty_and_corrupt_files_name_the_file(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(np.random.default_rng(0).bytes(500))
    truncated = tmp_path / "truncated.png"
    good = _write(tmp_path / "good.png", np.zeros((8, 8, 3), np.uint8))
    truncated.write_bytes(open(good, "rb").read()[:20])
    for path in (tmp_path / "missing.png", empty, corrupt, truncated, tmp_path):
        with pytest.raises(inference.PredictError) as err:
            inference.load_image(str(path), S)
        assert str(path) in str(err.value)


# --- Predictor and the CLI on the tiny run's export ------------------------------------------

@pytest.fixture(scope="module")
def predictor(tiny_run):  # noqa: F811
    return inference.Predictor(tiny_run.export_dir)


def test_predictor_knows_the_models_actions(predictor):
    assert predictor.actions == list(synthetic.ACTIONS)
    assert predictor.image_size == S
    assert predictor.action_index("jack") == synthetic.ACTIONS.index("jack")
    with pytest.raises(inference.PredictError) as err:
        predictor.action_index("moonwalk")
    message = str(err.value)
    assert "'moonwalk'" in message
    assert all(name in message for name in synthetic.ACTIONS), message


def test_predictor_output(predictor):
    image = np.zeros((S, S, 3), np.float32)
    video, keypoints, first = predictor.predict(image, 1, seed=3, frames=5)
    assert video.shape == (5, S, S, 3) and video.dtype == np.uint8
    assert keypoints.shape == (5, 4, 2) and first.shape == (4, 2)


def test_missing_model_and_bad_counts(tmp_path, tiny_run):  # noqa: F811
    with pytest.raises(inference.PredictError, match="no SavedModel"):
        inference.Predictor(str(tmp_path))
    with pytest.raises(inference.PredictError, match="must be"):
        inference.predict_to_files(tiny_run.export_dir, "unused.png", "jack", 0, 12,
                                 str(tmp_path / "out"))


@pytest.fixture(scope="module")
def input_image(tiny_run, tmp_path_factory):  # noqa: F811
    """A frame of a synthetic test clip, upscaled to 64×64 (the CLI resizes it back)."""
    import tensorflow as tf
    from kp_tf.data import tfrecords

    shard = tfrecords.shard_paths(tiny_run.data_dir, "test")[0]
    clip = tfrecords.parse_clip(next(iter(tf.data.TFRecordDataset(shard))))
    frame = tfrecords.decode_frames(clip["frames_png"][:1]).numpy()[0]
    frame = cv2.resize(frame, (64, 64), interpolation=cv2.INTER_LINEAR)
    return _write(tmp_path_factory.mktemp("input") / "frame.png",
                  cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "kp_tf.predict", *args], cwd=cwd, env=command_env(),
                          capture_output=True, text=True, timeout=600)


def test_cli_writes_videos_and_keypoints(tiny_run, input_image, tmp_path):  # noqa: F811
    out = tmp_path / "pred"
    proc = _cli(f"--model={tiny_run.export_dir}", f"--image={input_image}", "--action=jack",
                "--samples=2", "--frames=12", f"--out={out}", cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    k, frames = tiny_run.cfg.num_keypoints, 12
    assert frames > tiny_run.cfg.sequence_length  # rolled forward past the training length
    keypoints = []
    for s in range(2):
        for suffix in (".gif", ".mp4", "_keypoints.gif", "_keypoints.npy"):
            path = out / f"sample_{s}{suffix}"
            assert path.is_file() and path.stat().st_size > 0, path
        kp = np.load(out / f"sample_{s}_keypoints.npy")
        assert kp.shape == (frames, k, 2) and np.all(np.isfinite(kp)) and np.abs(kp).max() <= 1
        keypoints.append(kp)
    with Image.open(out / "sample_0.gif") as gif:
        assert gif.size == (S, S) and gif.n_frames == frames  # every frame, still or not
    with Image.open(out / "sample_0_keypoints.gif") as gif:
        s = -(-128 // S)  # enlarged to at least 128 px
        assert gif.size == (2 * s * S, s * S)  # video | keypoints side by side
    capture = cv2.VideoCapture(str(out / "sample_0.mp4"))
    try:
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
        assert (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (S, S)
    finally:
        capture.release()
    with open(out / "keypoints.json") as f:
        record = json.load(f)
    assert record["action"] == "jack" and record["frames"] == frames
    assert [s["seed"] for s in record["samples"]] == [0, 1]
    for s, sample in enumerate(record["samples"]):
        np.testing.assert_allclose(sample["keypoints"], keypoints[s], atol=1e-6)
    # Same image, so the same first keypoints; different z, so different motion.
    np.testing.assert_allclose(record["samples"][0]["first_keypoints"],
                               record["samples"][1]["first_keypoints"])
    diversity = np.abs(keypoints[0] - keypoints[1]).mean()
    assert diversity > 0, diversity
    assert "Wrote 2 videos of 12 frames" in proc.stdout


def test_cli_bad_action_fails_listing_the_actions(tiny_run, input_image, tmp_path):  # noqa: F811
    out = tmp_path / "pred"
    proc = _cli(f"--model={tiny_run.export_dir}", f"--image={input_image}", "--action=moonwalk",
                "--samples=2", "--frames=12", f"--out={out}", cwd=REPO)
    assert proc.returncode != 0
    assert "unknown action 'moonwalk'" in proc.stderr
    assert all(name in proc.stderr for name in synthetic.ACTIONS), proc.stderr[-2000:]
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1  # one line
    assert not out.exists()
