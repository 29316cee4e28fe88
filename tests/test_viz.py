"""Keypoint drawing, grids and GIF/MP4 writing."""

import cv2
import numpy as np
import pytest
from PIL import Image

from kp_tf import conventions, viz


def _moving_square(t=5, h=24, w=32):
    """uint8 [t, h, w, 3]: a red square moving right on grey, so no two frames are equal."""
    frames = np.full((t, h, w, 3), 90, np.uint8)
    for i in range(t):
        frames[i, 8:16, 4 * i:4 * i + 8] = (220, 30, 30)
    return frames


def test_keypoint_colors_are_distinct():
    colors = viz.keypoint_colors(10)
    assert colors.shape == (10, 3) and colors.dtype == np.uint8
    assert len({tuple(c) for c in colors}) == 10
    assert viz.keypoint_colors(1).shape == (1, 3)


def test_draw_keypoints_places_dots_at_the_pixel_centres():
    images = np.zeros((2, 33, 33, 3), np.uint8)
    keypoints = np.array([[[-1, -1], [1, 1], [0, 0]]] * 2, np.float32)
    out = viz.draw_keypoints(images, keypoints, radius=2)
    colors = viz.keypoint_colors(3)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert not images.any()  # the input is left alone
    for frame in out:
        np.testing.assert_array_equal(frame[0, 0], colors[0])
        np.testing.assert_array_equal(frame[32, 32], colors[1])
        np.testing.assert_array_equal(frame[16, 16], colors[2])
        assert not frame[8, 24].any()  # far from every dot


def test_draw_keypoints_on_a_single_image():
    image = np.full((64, 48, 3), 255, np.uint8)
    out = viz.draw_keypoints(image, np.array([[1.0, -1.0]]))  # top-right, default radius
    np.testing.assert_array_equal(out[0, 47], viz.keypoint_colors(1)[0])
    out = viz.draw_keypoints(image, np.array([[1.0, -1.0]]), radius=2)
    assert (out[2, 45] < 128).all()  # the dark rim: 2.8 px from the centre, radius 2 + 1
    with pytest.raises(ValueError):
        viz.draw_keypoints(image, np.zeros((2, 1, 2)))


def test_draw_keypoints_on_enlarged_images_hits_the_source_pixel_centres():
    images = np.zeros((2, 8, 8, 3), np.uint8)
    images[:, 3, 5] = 200  # a source pixel that must become a 4×4 block
    keypoints = np.array([[[-1, -1], [1, 1], [5 / 3.5 - 1, 3 / 3.5 - 1]]] * 2, np.float32)
    out = viz.draw_keypoints(images, keypoints, radius=2, scale=4)
    colors = viz.keypoint_colors(3)
    assert out.shape == (2, 32, 32, 3)
    for frame in out:
        # Source pixel (x, y) → enlarged centre (4x + 1.5, 4y + 1.5): the dots sit on the blocks.
        for (x, y), color in zip([(0, 0), (7, 7), (5, 3)], colors):
            np.testing.assert_array_equal(frame[4 * y + 1:4 * y + 3, 4 * x + 1:4 * x + 3],
                                          np.broadcast_to(color, (2, 2, 3)))
    plain = viz.draw_keypoints(images, keypoints[:, :0], scale=4)  # no keypoints: only enlarged
    np.testing.assert_array_equal(plain, viz.enlarge(images, 4))
    assert (plain[:, 12:16, 20:24] == 200).all() and plain[:, 12:16, 16:20].max() == 0


def test_keypoint_video_enlarges_small_frames_to_128_pixels():
    assert [viz.display_scale(n, n) for n in (32, 48, 64, 128, 256)] == [4, 3, 2, 1, 1]
    assert viz.display_scale(32, 64) == 4 and viz.display_scale(64, 64, min_side=192) == 3
    video = _moving_square(t=3, h=24, w=32)  # shorter side 24 → ×6
    keypoints = np.zeros((3, 2, 2), np.float32)
    out = viz.keypoint_video(video, keypoints)
    assert out.shape == (3, 144, 2 * 192, 3)
    np.testing.assert_array_equal(out[:, :, :192], viz.enlarge(video, 6))
    assert (out[:, :, 192:] != out[:, :, :192]).any()  # the dots
    big = _moving_square(t=2, h=128, w=128)
    assert viz.keypoint_video(big, np.zeros((2, 1, 2))).shape == (2, 128, 256, 3)
    assert viz.keypoint_video(video, keypoints, scale=2).shape == (3, 48, 128, 3)


def test_display_grid_enlarges_image_and_keypoint_rows_alike():
    images = np.linspace(-1, 1, 2 * 32 * 32 * 3).reshape(2, 32, 32, 3)
    keypoints = np.zeros((2, 3, 2))
    grid = viz.display_grid([images, -images], [(images, keypoints)])
    assert grid.shape == (3 * 130 + 2, 2 * 130 + 2, 3)  # 32 → 128 px, 2-pixel gutters
    np.testing.assert_array_equal(grid[2:130, 2:130], viz.enlarge(conventions.to_uint8(images[0]), 4))
    overlay = grid[2 * 130 + 2:3 * 130, 2:130]
    np.testing.assert_array_equal(
        overlay, viz.draw_keypoints(conventions.to_uint8(images[:1]), keypoints[:1], scale=4)[0])
    assert (overlay != grid[2:130, 2:130]).any()  # the dots


def test_to_uint8():
    out = conventions.to_uint8(np.array([-2.0, -1.0, 0.0, 1.0, 3.0]))
    np.testing.assert_array_equal(out, [0, 0, 128, 255, 255])
    assert out.dtype == np.uint8


def test_image_grid_and_side_by_side():
    rows = [np.full((3, 10, 12, 3), i * 50, np.uint8) for i in range(2)]
    grid = viz.image_grid(rows, pad=2)
    assert grid.shape == (2 * 12 + 2, 3 * 14 + 2, 3)
    np.testing.assert_array_equal(grid[14:24, 2:14], rows[1][0])
    assert (grid[0] == 255).all()
    with pytest.raises(ValueError):
        viz.image_grid([rows[0], rows[1][:2]])
    assert viz.side_by_side(rows[0], rows[1]).shape == (3, 10, 24, 3)


def test_gif_round_trip(tmp_path):
    path = tmp_path / "clip.gif"
    frames = _moving_square()
    viz.write_gif(str(path), frames, fps=10, scale=2)
    with Image.open(path) as gif:
        assert gif.n_frames == 5 and gif.size == (64, 48)
        assert gif.info.get("loop") == 0
        gif.seek(2)
        first = np.asarray(gif.convert("RGB"))
    np.testing.assert_allclose(first[20, 20], frames[2, 10, 10], atol=8)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.gif"]  # no temporary left over
    assert path.stat().st_mode & 0o777 == 0o644


def test_gif_round_trip_keeps_still_stretches(tmp_path):
    """write_gif → read_gif gives back every frame in order, still stretches included (Pillow's
    own writer would merge them into fewer, longer frames)."""
    from kp_tf.data import readers

    rng = np.random.default_rng(0)
    distinct = rng.integers(0, 256, (5, 12, 16, 3), dtype=np.uint8)
    order = [0, 0, 0, 1, 2, 2, 3, 3, 3, 3, 4, 0, 0]
    path = tmp_path / "still.gif"
    viz.write_gif(str(path), distinct[order], fps=8)
    with Image.open(path) as gif:
        assert gif.n_frames == len(order) and gif.info.get("loop") == 0
        assert gif.info.get("duration") == 120  # round(100 / 8) hundredths of a second
    clip = readers.read_gif(path)
    assert clip.num_frames == len(order) and clip.meta["gif_expanded_frames"] == 0
    # Median-cut palettes are lossy on noise: each frame must be nearest its own original.
    distance = np.abs(clip.frames[:, None].astype(int) - distinct[None].astype(int)).mean((2, 3, 4))
    assert distance.argmin(axis=1).tolist() == order
    assert distance.min(axis=1).max() < 10 < np.sort(distance, axis=1)[:, 1].min()


def test_mp4_round_trip(tmp_path):
    path = tmp_path / "clip.mp4"
    frames = _moving_square(t=6)
    viz.write_mp4(str(path), frames, fps=10)
    capture = cv2.VideoCapture(str(path))
    read = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        read.append(frame[..., ::-1])
    capture.release()
    assert len(read) == 6 and read[0].shape == (24, 32, 3)
    # RGB order survives: the square is still red.
    np.testing.assert_allclose(read[0][12, 4], frames[0, 12, 4], atol=40)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_mp4_writer_failure_names_the_path(tmp_path, monkeypatch):
    class Closed:
        def __init__(self, *args):
            pass

        def isOpened(self):
            return False

    monkeypatch.setattr(cv2, "VideoWriter", Closed)
    path = tmp_path / "broken.mp4"
    with pytest.raises(IOError, match="broken.mp4"):
        viz.write_mp4(str(path), _moving_square())
    assert not list(tmp_path.iterdir())


def test_video_stream_writes_gif_and_mp4_in_chunks(tmp_path):
    frames = _moving_square(t=7)
    frames[3] = frames[2]  # identical neighbours stay two frames (write_gif merges them)
    paths = [tmp_path / "clip.gif", tmp_path / "clip.mp4"]
    with viz.VideoStream(paths, fps=10) as out:
        for start in range(0, 7, 3):
            out.write(frames[start:start + 3])
    assert out.frames == 7
    with Image.open(paths[0]) as gif:
        assert gif.n_frames == 7 and gif.size == (32, 24) and gif.info.get("loop") == 0
        assert gif.info.get("duration") == 100
        gif.seek(5)
        np.testing.assert_allclose(np.asarray(gif.convert("RGB")), frames[5], atol=8)
    capture = cv2.VideoCapture(str(paths[1]))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 7
    capture.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif", "clip.mp4"]


def test_video_stream_leaves_nothing_behind_on_an_error(tmp_path):
    frames = _moving_square(t=2)
    with pytest.raises(ValueError, match="after frames of"):
        with viz.VideoStream([tmp_path / "a.gif", tmp_path / "a.mp4"]) as out:
            out.write(frames)
            out.write(frames[:, :8])
    with pytest.raises(ValueError, match="no frames"):
        with viz.VideoStream([tmp_path / "b.gif"]):
            pass
    with pytest.raises(ValueError, match="c.avi"):
        viz.VideoStream([tmp_path / "c.avi"])
    assert not list(tmp_path.iterdir())
