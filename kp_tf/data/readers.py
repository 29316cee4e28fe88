"""Readers from raw video formats to `kp_tf.data.clip.Clip`.

Formats:
  * animated GIF (Moving GIF / MGIF as published by Siarohin et al.): `read_gif`;
  * videos (.mp4, .avi, .mov) through OpenCV: `read_video`;
  * folders of frame images, naturally sorted by name: `read_frame_folder`;
  * horizontal strips of square frames (the Monkey-Net / FOMM format used for UvA-NEMO and
    Weizmann): `read_strip`;
  * `read_clip` picks one of the above from the path; `iter_clip_frames` gives the same frames
    in chunks, decoding as it goes (long driving videos in `kp_tf.animate`);
  * Penn Action (frames + .mat labels + 9-class split files): `read_penn_clip`, `read_penn_split`;
  * the Weizmann 64×64 copy (strips + labels.csv): `read_weizmann_labels`, `read_weizmann_clip`.

Every reader raises `ClipReadError` for a missing, empty, corrupt, truncated or otherwise
unreadable file, never a bare OpenCV / Pillow / SciPy exception and never an empty clip, so a
converter can report the file and go on with the next one.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import sys
from pathlib import Path
from typing import Iterable, Iterator, Optional

import cv2
import numpy as np
from PIL import Image, ImageSequence

from kp_tf.data.clip import Clip
from kp_tf.progress import plural

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov")
GIF_EXTENSIONS = (".gif",)
CLIP_EXTENSIONS = GIF_EXTENSIONS + VIDEO_EXTENSIONS + IMAGE_EXTENSIONS

# Penn Action, the 9-class subset of Villegas et al. (2017) used by the paper, in index order.
PENN_CLASSES = (
    "tennis_serve", "pullup", "clean_and_jerk", "tennis_forehand", "baseball_pitch",
    "jumping_jacks", "golf_swing", "squat", "baseball_swing",
)
PENN_JOINTS = (
    "head", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist",
    "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
)
# Weizmann 64×64 copy in ../shared/data/weizmann64 (see its README); fixed order = label index.
WEIZMANN_CLASSES = ("wave1", "wave2", "jack", "bend")

# cv2.VideoCapture reports the container's frame count; decoders can legitimately deliver a
# frame or two fewer, but a file cut in half delivers far fewer. Below this fraction of the
# announced count the file is treated as truncated.
_MIN_DECODED_FRACTION = 0.9


class ClipReadError(ValueError):
    """A clip file that cannot be turned into a Clip; the message names the file and the problem.

    Attributes:
      path: the offending file or folder, as a string.
      reason: what is wrong with it.
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = str(reason)
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self):
        # Keep the two-argument constructor picklable (multiprocessing, pytest-xdist).
        return (type(self), (self.path, self.reason))


def natural_key(name: str) -> list:
    """Sort key that orders 'frame2' before 'frame10' (digit runs compare as numbers)."""
    # re.split with a capture group alternates text, number, text, ...; so the same positions
    # always hold the same type and the lists compare without TypeError.
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(name))]


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ClipReadError(path, "file not found")
    if not path.is_file():
        raise ClipReadError(path, "not a regular file")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ClipReadError(path, f"cannot stat: {e}") from e
    if size == 0:
        raise ClipReadError(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise ClipReadError(path, "file is not readable (permission denied)")


def _make_clip(path: Path, frames: np.ndarray, clip_id: Optional[str], **kwargs) -> Clip:
    meta = {"source": str(path)}
    meta.update(kwargs.pop("meta", {}))
    try:
        return Clip(clip_id=clip_id or path.stem, frames=frames, meta=meta, **kwargs)
    except ValueError as e:  # Clip's own shape checks
        raise ClipReadError(path, str(e)) from e


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode → uint8 [H, W, 3]; palette transparency and alpha are dropped."""
    if image.mode == "RGB":
        return np.asarray(image, np.uint8)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / float greyscale: Pillow's convert("RGB") clips instead of scaling.
        a = np.asarray(image, np.float64)
        hi = 65535.0 if image.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        g = np.clip(np.round(a * (255.0 / hi)), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=-1)
    # Through RGBA so that palette images with a transparency entry convert without Pillow's
    # warning; the alpha channel itself is discarded (the colour under it is kept).
    return np.asarray(image.convert("RGBA"), np.uint8)[..., :3].copy()


def load_image(path) -> np.ndarray:
    """One still image → uint8 [H, W, 3] RGB.

    Raises:
      ClipReadError: missing, empty, corrupt or truncated file.
    """
    path = Path(path)
    _check_file(path)
    try:
        with Image.open(path) as image:
            image.load()  # decodes now, so a truncated file fails here and not later
            return _pil_to_rgb(image)
    except ClipReadError:
        raise
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ...
        raise ClipReadError(path, f"cannot decode image: {e}") from e


def gif_frame_repeats(durations) -> np.ndarray:
    """How many video frames each stored GIF frame stands for: int [N], from the delays in ms.

    A GIF writer may store a still stretch as one frame shown k times as long (Pillow merges
    consecutive identical frames so), so a frame shown k times as long as the shortest
    stands for k frames (k rounded to the nearest integer, at least 1). Frames without a
    delay (none given, or 0) count once, and so does every frame when none has a delay.
    """
    d = np.array([float(x) if x else 0.0 for x in durations], np.float64)
    positive = d[d > 0]
    if positive.size == 0:
        return np.ones(len(d), np.int64)
    return np.where(d > 0, np.maximum(1, np.rint(d / positive.min())), 1).astype(np.int64)


def _last_nonzero_byte(f, block: int = 4096) -> bytes:
    """The last byte of an open file that is not a padding zero (b"" if there is none),
    read backwards a block at a time."""
    end = f.seek(0, os.SEEK_END)
    while end > 0:
        start = max(0, end - block)
        f.seek(start)
        data = f.read(end - start).rstrip(b"\x00")
        if data:
            return data[-1:]
        end = start
    return b""


def _gif_stored_frames(path: Path) -> Iterator[tuple]:
    """(frame uint8 [H, W, 3], its delay in ms or None) for each frame stored in a GIF."""
    _check_file(path)
    try:
        with open(path, "rb") as f:
            signature = f.read(6)
            last = _last_nonzero_byte(f)
    except OSError as e:
        raise ClipReadError(path, f"cannot read: {e}") from e
    if signature not in (b"GIF87a", b"GIF89a"):
        raise ClipReadError(path, "not a GIF file (bad signature)")
    # Pillow stops quietly at end of data when a file is cut between two frames; the GIF
    # trailer byte ';' is what tells a complete file from one cut at a frame boundary.
    if last != b";":
        raise ClipReadError(path, "truncated GIF (no trailer)")
    count = 0
    try:
        with Image.open(path) as image:
            for frame in ImageSequence.Iterator(image):
                count += 1
                # Pillow keeps a frame's own delay in info and drops it for a frame without one.
                yield _pil_to_rgb(frame), frame.info.get("duration")
    except ClipReadError:
        raise
    except Exception as e:
        raise ClipReadError(path, f"cannot decode GIF: {e}") from e
    if not count:
        raise ClipReadError(path, "GIF has no frames")


def _gif_frames(path: Path) -> Iterator[np.ndarray]:
    """The frames of a GIF one at a time, uint8 [H, W, 3], each repeated as its delay says
    (`gif_frame_repeats`); a first pass reads the delays, so memory stays one frame."""
    delays = [d for _, d in _gif_stored_frames(path)]
    for (frame, _), repeat in zip(_gif_stored_frames(path), gif_frame_repeats(delays)):
        for _ in range(int(repeat)):
            yield frame


def read_gif(path, *, clip_id: Optional[str] = None, by_duration: bool = True) -> Clip:
    """All frames of an animated GIF, RGB (palette resolved, alpha dropped), in time order.

    With `by_duration`, a frame shown k times as long as the shortest is repeated k times
    (`gif_frame_repeats`), so that a clip whose writer merged identical frames keeps its
    length and timing. The clip's meta records `gif_frames` (frames stored in the file),
    `gif_expanded_frames` (frames added by the repeats) and `gif_frame_ms` (the shortest
    delay, None when the file gives none).

    Args:
      path: the .gif file.
      clip_id: defaults to the file stem.

    Raises:
      ClipReadError: missing, empty, corrupt or truncated file.
    """
    path = Path(path)
    stored = list(_gif_stored_frames(path))
    frames = np.stack([f for f, _ in stored])
    durations = [d for _, d in stored]
    repeats = gif_frame_repeats(durations) if by_duration else np.ones(len(frames), np.int64)
    positive = [d for d in durations if d]
    meta = {"gif_frames": len(frames), "gif_expanded_frames": int(repeats.sum()) - len(frames),
            "gif_frame_ms": min(positive) if positive else None}
    return _make_clip(path, np.repeat(frames, repeats, axis=0), clip_id, meta=meta)


@contextlib.contextmanager
def _stderr_silenced():
    """File descriptor 2 to /dev/null for the block: FFmpeg prints from C, past Python's
    sys.stderr."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def _video_frames(path: Path) -> Iterator[np.ndarray]:
    """The frames of a video one at a time, uint8 [H, W, 3] RGB (see `read_video`); the
    truncation check comes after the last frame, when the decoded count is known."""
    _check_file(path)
    with _stderr_silenced():  # FFmpeg's own line for a broken file; ClipReadError says it
        cap = cv2.VideoCapture(str(path))
    count, shape = 0, None
    try:
        if not cap.isOpened():
            raise ClipReadError(path, "cannot open video (corrupt, truncated or unsupported codec)")
        announced = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        while True:
            try:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                code = cv2.COLOR_GRAY2RGB if frame.ndim == 2 else cv2.COLOR_BGR2RGB
                frame = cv2.cvtColor(frame, code)
            except Exception as e:
                raise ClipReadError(path, f"cannot decode video: {e}") from e
            if shape is not None and frame.shape != shape:
                raise ClipReadError(path, f"frame {count} has shape {frame.shape}, frame 0 {shape}")
            shape = frame.shape
            count += 1
            yield frame
    finally:
        cap.release()
    if not count:
        raise ClipReadError(path, "no frames could be decoded")
    if announced > 0 and count < _MIN_DECODED_FRACTION * announced:
        raise ClipReadError(
            path, f"truncated video: decoded {count} of {int(announced)} announced frames")


def read_video(path, *, clip_id: Optional[str] = None) -> Clip:
    """All frames of a video file (.mp4/.avi/.mov) through cv2.VideoCapture, RGB.

    Raises:
      ClipReadError: missing, empty, corrupt or truncated file, or no frame decoded.
    """
    path = Path(path)
    return _make_clip(path, np.stack(list(_video_frames(path))), clip_id)


def _frame_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and not p.name.startswith(".")),
                  key=lambda p: natural_key(p.name))


def _folder_frames(path: Path) -> Iterator[np.ndarray]:
    """The frame images of a folder one at a time, in natural name order (see
    `read_frame_folder`)."""
    if not path.is_dir():
        raise ClipReadError(path, "not a folder")
    try:
        files = _frame_files(path)
    except OSError as e:
        raise ClipReadError(path, f"cannot list folder: {e}") from e
    if not files:
        raise ClipReadError(path, f"no frame images ({', '.join(IMAGE_EXTENSIONS)}) in folder")
    first = None
    for f in files:
        frame = load_image(f)  # its ClipReadError names the frame file itself
        if first is not None and frame.shape != first:
            raise ClipReadError(f, f"frame size {frame.shape[:2]} differs from "
                                   f"{files[0].name}'s {first[:2]}")
        first = frame.shape
        yield frame


def read_frame_folder(path, *, clip_id: Optional[str] = None) -> Clip:
    """A folder of frame images (png/jpg/jpeg/bmp), in natural name order.

    Raises:
      ClipReadError: missing folder, no frame images, an unreadable frame, or frames of
        different sizes (the message names the bad frame file).
    """
    path = Path(path)
    return _make_clip(path, np.stack(list(_folder_frames(path))), clip_id or path.name)


def read_strip(path, frame_width: Optional[int] = None, *, clip_id: Optional[str] = None) -> Clip:
    """A strip of frames stacked horizontally in one .png/.jpg (Monkey-Net / FOMM format).

    Args:
      path: the image.
      frame_width: width of one frame; by default the image height (square frames).
      clip_id: defaults to the file stem.

    Raises:
      ClipReadError: unreadable image, or width not a multiple of the frame width.
    """
    path = Path(path)
    image = load_image(path)
    h, w = image.shape[:2]
    fw = int(frame_width) if frame_width else h
    if fw <= 0:
        raise ClipReadError(path, f"frame width must be positive, got {fw}")
    if w % fw:
        raise ClipReadError(path, f"strip width {w} is not a multiple of the frame width {fw}")
    frames = image.reshape(h, w // fw, fw, 3).transpose(1, 0, 2, 3)
    return _make_clip(path, np.ascontiguousarray(frames), clip_id)


def _check_clip_path(path: Path) -> str:
    """The reader `read_clip` uses for `path`: "folder", "gif", "video" or "strip"."""
    if path.is_dir():
        return "folder"
    ext = path.suffix.lower()
    if ext in GIF_EXTENSIONS:
        return "gif"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if ext in IMAGE_EXTENSIONS:
        return "strip"
    if not path.exists():
        raise ClipReadError(path, "file not found")
    raise ClipReadError(path, f"unsupported format {ext or '(no extension)'!r}; expected a folder "
                              f"or one of {', '.join(CLIP_EXTENSIONS)}")


def read_clip(path, *, clip_id: Optional[str] = None) -> Clip:
    """Any supported clip: a frame folder, a .gif, a video, or a strip image.

    Raises:
      ClipReadError: unsupported extension, or the specific reader's error.
    """
    path = Path(path)
    reader = {"folder": read_frame_folder, "gif": read_gif, "video": read_video,
              "strip": read_strip}[_check_clip_path(path)]
    return reader(path, clip_id=clip_id)


def iter_clip_frames(path, chunk_size: int = 64) -> Iterator[np.ndarray]:
    """The frames of any clip `read_clip` reads, `chunk_size` at a time: uint8
    [≤ chunk_size, H, W, 3] RGB, only the last chunk shorter. GIFs, videos and frame folders
    are decoded as the chunks are asked for, so a long video never sits in memory whole
    (a strip is one image, and is read at once).

    Raises (possibly after some chunks were given, e.g. a truncated video):
      ClipReadError: as `read_clip`; also for a chunk_size < 1.
    """
    path = Path(path)
    if chunk_size < 1:
        raise ClipReadError(path, f"chunk size must be ≥ 1, got {chunk_size}")
    kind = _check_clip_path(path)
    if kind == "strip":
        frames = iter(read_strip(path).frames)
    else:
        frames = {"folder": _folder_frames, "gif": _gif_frames, "video": _video_frames}[kind](path)
    chunk = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == chunk_size:
            yield np.stack(chunk)
            chunk = []
    if chunk:
        yield np.stack(chunk)


# --- Penn Action ----------------------------------------------------------------------------

def penn_video_id(video_id) -> str:
    """1, '1', '0001' or 'frames/0001' → '0001'."""
    text = str(video_id).strip().rstrip("/").split("/")[-1]
    return f"{int(text):04d}" if text.isdigit() else text


def read_penn_split(root, split: str) -> list[tuple[str, int]]:
    """`root/{split}_set.txt` lines 'frames/NNNN <class_idx>' → [(video_id, class_idx)].

    Raises:
      FileNotFoundError: the split file is missing (names it).
      ValueError: a malformed line (names file and line).
    """
    path = Path(root) / f"{split}_set.txt"
    if not path.is_file():
        raise FileNotFoundError(f"Penn Action split file {path} not found (expected lines "
                                f"'frames/NNNN <class_idx>')")
    entries = []
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1]):
            raise ValueError(f"{path}:{lineno}: expected 'frames/NNNN <class_idx>', got {raw!r}")
        idx = int(parts[1])
        if not 0 <= idx < len(PENN_CLASSES):
            raise ValueError(f"{path}:{lineno}: class index {idx} outside 0..{len(PENN_CLASSES) - 1}")
        entries.append((penn_video_id(parts[0]), idx))
    return entries


def _mat_string(value) -> str:
    arr = np.asarray(value).ravel()
    return str(arr[0]).strip() if arr.size else ""


def read_penn_clip(root, video_id, label: Optional[int] = None) -> Clip:
    """One Penn Action video: `root/frames/NNNN/*.jpg` and `root/labels/NNNN.mat`.

    Args:
      root: the Penn_Action folder.
      video_id: 'NNNN' (or an int, or 'frames/NNNN').
      label: class index from a split file; checked against the .mat's `action`. Default:
        the index of that action in `PENN_CLASSES`, -1 for the 6 actions outside the subset.

    Returns:
      A Clip with joints [T, 13, 2] in pixels (order `PENN_JOINTS`) and their visibility.

    Raises:
      ClipReadError: missing/unreadable frames or labels, or labels that disagree with the
        frames (frame count) or with the split file (class).
    """
    import scipy.io  # only Penn needs SciPy; keep it off the import path of everything else

    vid = penn_video_id(video_id)
    root = Path(root)
    clip = read_frame_folder(root / "frames" / vid, clip_id=vid)
    mat_path = root / "labels" / f"{vid}.mat"
    _check_file(mat_path)
    try:
        mat = scipy.io.loadmat(str(mat_path))
    except Exception as e:
        raise ClipReadError(mat_path, f"cannot load .mat labels: {e}") from e
    missing = [k for k in ("x", "y", "visibility", "action") if k not in mat]
    if missing:
        raise ClipReadError(mat_path, f"labels lack field(s) {missing}")
    x = np.asarray(mat["x"], np.float32)
    y = np.asarray(mat["y"], np.float32)
    vis = np.asarray(mat["visibility"], np.float32)
    nj = len(PENN_JOINTS)
    for name, a in (("x", x), ("y", y), ("visibility", vis)):
        if a.ndim != 2 or a.shape[1] != nj:
            raise ClipReadError(mat_path, f"field {name!r} has shape {a.shape}, expected [T, {nj}]")
    if not x.shape[0] == y.shape[0] == vis.shape[0] == clip.num_frames:
        raise ClipReadError(mat_path, f"labels cover {plural(x.shape[0], 'frame')} but "
                                      f"{root / 'frames' / vid} holds {clip.num_frames}")
    action = _mat_string(mat["action"])
    action_idx = PENN_CLASSES.index(action) if action in PENN_CLASSES else -1
    if label is None:
        label = action_idx
    elif action in PENN_CLASSES and label != action_idx:
        raise ClipReadError(mat_path, f"action {action!r} is class {action_idx}, "
                                      f"but the split file says {label}")
    clip.label = int(label)
    clip.joints = np.stack([x, y], axis=-1)
    clip.visibility = (vis > 0).astype(np.float32)
    clip.meta.update(action=action, labels=str(mat_path))
    return clip


# --- Weizmann (64×64 Monkey-Net copy) -------------------------------------------------------

def read_weizmann_labels(root) -> list[dict]:
    """`root/labels.csv` (file,frames,action,actor,split) → list of row dicts.

    Raises:
      FileNotFoundError: no labels.csv (names it).
      ValueError: missing columns.
    """
    path = Path(root) / "labels.csv"
    if not path.is_file():
        raise FileNotFoundError(f"Weizmann labels {path} not found")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"file", "frames", "action", "actor", "split"}
        if not need.issubset(reader.fieldnames or ()):
            raise ValueError(f"{path}: columns {reader.fieldnames}, expected {sorted(need)}")
        # The line of each row, for the message of a malformed one.
        return [dict(row, line=reader.line_num) for row in reader]


def read_weizmann_clip(root, row: dict) -> Clip:
    """One labels.csv row → Clip with label = index in `WEIZMANN_CLASSES`, meta actor/action.

    Raises:
      ClipReadError: unreadable strip, unknown action, or a frame count that disagrees with
        labels.csv.
    """
    labels = f"{Path(root) / 'labels.csv'}:{row.get('line', '?')}"
    missing = [k for k in ("file", "action", "actor") if not str(row.get(k) or "").strip()]
    if missing:
        raise ClipReadError(labels, f"row lacks {', '.join(missing)}")
    path = Path(root) / "clips" / row["file"]
    frames = str(row.get("frames") or "").strip()
    if frames and not frames.isdigit():
        raise ClipReadError(labels, f"frames column {frames!r} is not a count")
    if row["action"] not in WEIZMANN_CLASSES:
        raise ClipReadError(path, f"unknown action {row['action']!r}; expected one of "
                                  f"{WEIZMANN_CLASSES}")
    clip = read_strip(path)
    if frames and int(frames) != clip.num_frames:
        raise ClipReadError(path, f"strip holds {plural(clip.num_frames, 'frame')}, labels.csv "
                                  f"says {row['frames']}")
    clip.label = WEIZMANN_CLASSES.index(row["action"])
    clip.meta.update(action=row["action"], actor=row["actor"])
    return clip


def folder_entries(folder) -> list[Path]:
    """The entries `iter_folder` yields, naturally sorted: everything but hidden ones."""
    return sorted((p for p in Path(folder).iterdir() if not p.name.startswith(".")),
                  key=lambda p: natural_key(p.name))


def iter_folder(folder, extensions: Iterable[str] = CLIP_EXTENSIONS, allow_dirs: bool = True):
    """Clip candidates in a folder, naturally sorted: (path, Clip | ClipReadError).

    Hidden entries are ignored; anything else that is not a supported clip is yielded as a
    ClipReadError, so that stray files are reported rather than silently dropped.
    """
    extensions = tuple(e.lower() for e in extensions)
    for p in folder_entries(folder):
        if p.is_dir():
            if not allow_dirs:
                yield str(p), ClipReadError(p, "a folder, but this dataset takes only "
                                               f"{', '.join(extensions)} files")
                continue
            reader = read_frame_folder
        elif p.suffix.lower() not in extensions:
            yield str(p), ClipReadError(p, f"unsupported file type {p.suffix or '(none)'!r}; "
                                           f"this dataset takes {', '.join(extensions)}")
            continue
        else:
            reader = read_clip
        try:
            yield str(p), reader(p)
        except ClipReadError as e:
            yield str(p), e
