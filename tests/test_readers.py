"""Readers: every raw format to a Clip, and every broken file to a ClipReadError naming it.

The small file makers here are also imported by test_make_tfrecords.py.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from kp_tf.data import readers
from kp_tf.data.readers import ClipReadError

# A few flat colours: GIF palettes hold them exactly, so GIF and PNG round trips are exact.
PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 200, 0], [10, 20, 250], [255, 255, 255],
                    [128, 64, 32]], np.uint8)


def random_frames(t=5, h=16, w=20, seed=0):
    rng = np.random.default_rng(seed)
    return PALETTE[rng.integers(0, len(PALETTE), (t, h, w))]


def write_gif(path, frames):
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=40, loop=0)
    return Path(path)


def write_mp4(path, frames, fps=10):
    t, h, w = frames.shape[:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return Path(path)


def flat_frames(colors, h=24, w=32):
    """Frames each of one colour: survive lossy video coding to within a few levels."""
    return np.stack([np.full((h, w, 3), c, np.uint8) for c in colors])


def write_strip(path, frames, mode="RGB"):
    strip = np.concatenate(list(frames), axis=1)
    image = Image.fromarray(strip)
    if mode == "RGBA":
        image = image.convert("RGBA")
    image.save(path)
    return Path(path)


def write_frame_folder(path, frames, ext=".png", pattern="frame{}"):
    path = Path(path)
    path.mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(path / f"{pattern.format(i)}{ext}")
    return path


def corrupt(path):
    """Random bytes with the file's extension."""
    Path(path).write_bytes(np.random.default_rng(1).integers(0, 256, 2000, np.uint8).tobytes())
    return Path(path)


def truncate(path):
    """Keeps the first half of a valid file."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:len(data) // 2])
    return Path(path)


def empty(path):
    Path(path).write_bytes(b"")
    return Path(path)


def test_natural_key_orders_numbers_numerically():
    names = ["frame10.png", "frame2.png", "Frame1.png", "frame002b.png", "a.png"]
    assert sorted(names, key=readers.natural_key) == [
        "a.png", "Frame1.png", "frame2.png", "frame002b.png", "frame10.png"]


def test_read_gif_exact_frames(tmp_path):
    frames = random_frames()
    clip = readers.read_gif(write_gif(tmp_path / "walk.gif", frames))
    assert clip.clip_id == "walk"
    assert clip.frames.dtype == np.uint8 and clip.frames.shape == (5, 16, 20, 3)
    np.testing.assert_array_equal(clip.frames, frames)
    assert clip.label == -1 and clip.joints is None
    assert clip.meta["source"].endswith("walk.gif")


def test_gif_frame_repeats_follow_the_delays():
    np.testing.assert_array_equal(readers.gif_frame_repeats([40, 80, 120, None, 0, 70]),
                                  [1, 2, 3, 1, 1, 2])  # 70 / 40 = 1.75 rounds to 2
    np.testing.assert_array_equal(readers.gif_frame_repeats([None, None]), [1, 1])
    np.testing.assert_array_equal(readers.gif_frame_repeats([100, 100, 100]), [1, 1, 1])


def test_read_gif_expands_frames_shown_longer(tmp_path):
    """A GIF whose writer stored still stretches as longer frames reads back at full length."""
    distinct = random_frames(t=4, seed=3)
    video = distinct[[0, 0, 0, 1, 2, 2, 3, 3, 3, 3]]
    path = write_gif(tmp_path / "still.gif", video)  # Pillow merges the repeated frames
    with Image.open(path) as gif:
        assert gif.n_frames == 4
    clip = readers.read_gif(path)
    np.testing.assert_array_equal(clip.frames, video)
    assert clip.meta["gif_frames"] == 4 and clip.meta["gif_expanded_frames"] == 6
    assert clip.meta["gif_frame_ms"] == 40
    stored = readers.read_gif(path, by_duration=False)
    np.testing.assert_array_equal(stored.frames, distinct)
    assert stored.meta["gif_expanded_frames"] == 0


def test_read_gif_palette_with_transparency_drops_alpha(tmp_path):
    frames = random_frames(t=3)
    images = []
    for f in frames:
        im = Image.fromarray(f).quantize(colors=8)
        im.info["transparency"] = 0
        images.append(im)
    path = tmp_path / "alpha.gif"
    images[0].save(path, save_all=True, append_images=images[1:], transparency=0, disposal=2)
    clip = readers.read_gif(path)
    assert clip.frames.shape == (3, 16, 20, 3) and clip.frames.dtype == np.uint8


def test_read_video_mp4(tmp_path):
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 200, 200)] * 2
    clip = readers.read_video(write_mp4(tmp_path / "v.mp4", flat_frames(colors)))
    assert clip.frames.shape == (8, 24, 32, 3)
    # mp4v is lossy: compare each frame's mean colour; channel order must be RGB, not BGR.
    means = clip.frames.reshape(8, -1, 3).mean(axis=1)
    np.testing.assert_allclose(means, np.array(colors, np.float64), atol=12)


def test_read_frame_folder_natural_order(tmp_path):
    frames = random_frames(t=12)
    folder = write_frame_folder(tmp_path / "clip7", frames)  # frame0 … frame11
    clip = readers.read_frame_folder(folder)
    assert clip.clip_id == "clip7"
    np.testing.assert_array_equal(clip.frames, frames)  # frame10 after frame9, not after frame1


def test_read_frame_folder_size_mismatch(tmp_path):
    folder = write_frame_folder(tmp_path / "c", random_frames(t=2))
    Image.fromarray(random_frames(t=1, h=8)[0]).save(folder / "frame2.png")
    with pytest.raises(ClipReadError, match="frame2.png"):
        readers.read_frame_folder(folder)


def test_read_frame_folder_without_images(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("x")
    with pytest.raises(ClipReadError, match="no frame images"):
        readers.read_frame_folder(tmp_path / "c")


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_read_strip_exact(tmp_path, mode):
    frames = random_frames(t=4, h=16, w=16)
    clip = readers.read_strip(write_strip(tmp_path / "s.png", frames, mode))
    np.testing.assert_array_equal(clip.frames, frames)


def test_read_strip_frame_width_and_bad_width(tmp_path):
    frames = random_frames(t=3, h=16, w=10)
    path = write_strip(tmp_path / "s.png", frames)
    np.testing.assert_array_equal(readers.read_strip(path, frame_width=10).frames, frames)
    with pytest.raises(ClipReadError, match=r"s\.png.*not a multiple"):
        readers.read_strip(path)  # 30 wide, frames assumed 16 wide


def test_read_clip_dispatch(tmp_path):
    frames = random_frames(t=3, h=16, w=16)
    assert readers.read_clip(write_gif(tmp_path / "a.gif", frames)).num_frames == 3
    assert readers.read_clip(write_strip(tmp_path / "b.png", frames)).num_frames == 3
    assert readers.read_clip(write_frame_folder(tmp_path / "c", frames)).num_frames == 3
    assert readers.read_clip(write_mp4(tmp_path / "d.mp4", flat_frames([(9, 9, 9)] * 3))).num_frames == 3
    (tmp_path / "e.txt").write_text("hello")
    with pytest.raises(ClipReadError, match=r"e\.txt.*unsupported"):
        readers.read_clip(tmp_path / "e.txt")
    with pytest.raises(ClipReadError, match="not found"):
        readers.read_clip(tmp_path / "missing.gif")


def _valid(kind, path):
    frames = random_frames(t=6, h=16, w=16)
    if kind == "gif":
        return write_gif(path, frames)
    if kind == "mp4":
        return write_mp4(path, flat_frames([(c, c, c) for c in range(0, 240, 10)]))
    if kind == "png":
        return write_strip(path, frames)
    if kind == "jpg":
        strip = np.concatenate(list(frames), axis=1)
        Image.fromarray(strip).save(path, quality=95)
        return Path(path)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["gif", "mp4", "png", "jpg"])
@pytest.mark.parametrize("damage", [corrupt, truncate, empty])
def test_broken_files_raise_clip_read_error(tmp_path, kind, damage):
    path = damage(_valid(kind, tmp_path / f"bad.{kind}"))
    with pytest.raises(ClipReadError) as info:
        readers.read_clip(path)
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert isinstance(info.value, ValueError)


def test_broken_frame_in_folder_names_the_frame(tmp_path):
    folder = write_frame_folder(tmp_path / "c", random_frames(t=3), ext=".jpg")
    truncate(folder / "frame1.jpg")
    with pytest.raises(ClipReadError, match="frame1.jpg"):
        readers.read_frame_folder(folder)


@pytest.mark.parametrize("kind", ["gif", "mp4", "png", "folder"])
@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_iter_clip_frames_gives_read_clip_frames_in_chunks(tmp_path, kind, chunk):
    frames = random_frames(t=9, h=16, w=16)
    path = {"gif": lambda: write_gif(tmp_path / "a.gif", frames),
            "mp4": lambda: write_mp4(tmp_path / "a.mp4", flat_frames([(c, 9, 9) for c in
                                                                      range(0, 180, 20)], 16, 16)),
            "png": lambda: write_strip(tmp_path / "a.png", frames),
            "folder": lambda: write_frame_folder(tmp_path / "a", frames)}[kind]()
    chunks = list(readers.iter_clip_frames(path, chunk))
    assert [len(c) for c in chunks[:-1]] == [chunk] * (len(chunks) - 1)
    assert 1 <= len(chunks[-1]) <= chunk
    assert all(c.dtype == np.uint8 and c.shape[1:] == (16, 16, 3) for c in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), readers.read_clip(path).frames)


def test_iter_clip_frames_decodes_as_it_goes(tmp_path):
    """A video's first chunk comes before the rest is decoded: a reader that held the whole
    clip could not give it after its file is gone."""
    path = write_mp4(tmp_path / "long.mp4", flat_frames([(c % 250, 9, 9) for c in range(300)]))
    frames = readers.iter_clip_frames(path, 10)
    first = next(frames)
    assert first.shape == (10, 24, 32, 3)
    assert sum(len(c) for c in frames) == 290


@pytest.mark.parametrize("damage", [corrupt, truncate, empty])
def test_iter_clip_frames_errors_name_the_file(tmp_path, damage):
    path = damage(_valid("gif", tmp_path / "bad.gif"))
    with pytest.raises(ClipReadError) as info:
        list(readers.iter_clip_frames(path, 4))
    assert info.value.path == str(path)
    with pytest.raises(ClipReadError, match="not found"):
        list(readers.iter_clip_frames(tmp_path / "missing.mp4"))
    with pytest.raises(ClipReadError, match="chunk size"):
        list(readers.iter_clip_frames(tmp_path / "missing.mp4", 0))


def test_gif_padded_with_zeros_after_the_trailer_reads(tmp_path):
    frames = random_frames(t=3, h=16, w=16)
    path = write_gif(tmp_path / "padded.gif", frames)
    path.write_bytes(path.read_bytes() + bytes(10000))  # longer than one backward block
    np.testing.assert_array_equal(readers.read_gif(path).frames, frames)


# --- Penn Action --------------------------------------------------------------------------

def make_penn(root, videos=(("0001", "squat", 7), ("0002", "pullup", 1)), t=4, h=24, w=32):
    """A tiny Penn_Action tree: frames/NNNN/*.jpg, labels/NNNN.mat, train/test split files."""
    import scipy.io

    root = Path(root)
    rng = np.random.default_rng(0)
    truth = {}
    for vid, action, _ in videos:
        write_frame_folder(root / "frames" / vid, flat_frames([(40 * i, 100, 200) for i in range(t)], h, w),
                           ext=".jpg", pattern="{:06d}")
        x = rng.uniform(0, w - 1, (t, 13))
        y = rng.uniform(0, h - 1, (t, 13))
        vis = (rng.random((t, 13)) > 0.2).astype(np.float64)
        (root / "labels").mkdir(exist_ok=True)
        scipy.io.savemat(root / "labels" / f"{vid}.mat",
                         {"x": x, "y": y, "visibility": vis, "action": action, "nframes": t,
                          "dimensions": np.array([h, w, t])})
        truth[vid] = (x, y, vis)
    (root / "train_set.txt").write_text(f"frames/{videos[0][0]} {videos[0][2]}\n")
    (root / "test_set.txt").write_text("".join(f"frames/{v} {c}\n" for v, _, c in videos[1:]))
    return truth


def test_read_penn_clip(tmp_path):
    truth = make_penn(tmp_path)
    clip = readers.read_penn_clip(tmp_path, "0001")
    x, y, vis = truth["0001"]
    assert clip.clip_id == "0001" and clip.frames.shape == (4, 24, 32, 3)
    assert clip.label == readers.PENN_CLASSES.index("squat") == 7
    np.testing.assert_allclose(clip.joints, np.stack([x, y], -1), rtol=0, atol=1e-4)
    np.testing.assert_array_equal(clip.visibility, vis)
    assert clip.meta["action"] == "squat"
    assert readers.read_penn_clip(tmp_path, 2).label == 1  # int ids work too
    assert readers.read_penn_split(tmp_path, "train") == [("0001", 7)]
    assert readers.read_penn_split(tmp_path, "test") == [("0002", 1)]
    assert len(readers.PENN_JOINTS) == 13 and len(readers.PENN_CLASSES) == 9


def test_read_penn_errors(tmp_path):
    make_penn(tmp_path)
    with pytest.raises(ClipReadError, match="split file says 3"):
        readers.read_penn_clip(tmp_path, "0001", label=3)
    corrupt(tmp_path / "labels" / "0002.mat")
    with pytest.raises(ClipReadError, match="0002.mat"):
        readers.read_penn_clip(tmp_path, "0002")
    (tmp_path / "frames" / "0001" / "000003.jpg").unlink()
    with pytest.raises(ClipReadError, match="labels cover 4 frames"):
        readers.read_penn_clip(tmp_path, "0001")
    with pytest.raises(ClipReadError, match="0009"):
        readers.read_penn_clip(tmp_path, "0009")
    (tmp_path / "train_set.txt").write_text("frames/0001 12\n")
    with pytest.raises(ValueError, match="train_set.txt:1"):
        readers.read_penn_split(tmp_path, "train")


# --- Weizmann ------------------------------------------------------------------------------

def make_weizmann(root, rows=(("00000000.png", "wave2", "a", "train"),
                               ("00000001.png", "jack", "h", "test"))):
    root = Path(root)
    (root / "clips").mkdir(parents=True)
    lines = ["file,frames,action,actor,split"]
    for i, (name, action, actor, split) in enumerate(rows):
        frames = random_frames(t=3 + i, h=8, w=8, seed=i)
        write_strip(root / "clips" / name, frames, "RGBA")
        lines.append(f"{name},{3 + i},{action},{actor},{split}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")


def test_read_weizmann(tmp_path):
    make_weizmann(tmp_path)
    rows = readers.read_weizmann_labels(tmp_path)
    clip = readers.read_weizmann_clip(tmp_path, rows[1])
    assert clip.label == readers.WEIZMANN_CLASSES.index("jack") == 2
    assert clip.meta["actor"] == "h" and clip.num_frames == 4
    bad = dict(rows[0], frames="9")
    with pytest.raises(ClipReadError, match="labels.csv says 9"):
        readers.read_weizmann_clip(tmp_path, bad)
