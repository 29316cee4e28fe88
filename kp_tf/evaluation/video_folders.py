"""Folders of videos for FVD: every format the project reads, streamed, unreadable files named.

A side of an FVD comparison is either a folder of videos (.gif, .mp4/.avi/.mov/.mkv/.webm,
.png/.jpg strips of square frames side by side, .npy arrays [T, H, W, 3], or sub-folders of
frame images) or a converted data folder (TFRecord shards + manifest.json), of which one split
is read. Files that cannot be read, and videos shorter than the frames scored, are skipped and
recorded with the reason; a reader's failure never ends the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from absl import logging

from kp_tf.data import readers, tfrecords
from kp_tf.progress import plural

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
STRIP_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
GIF_EXTENSIONS = (".gif",)
ARRAY_EXTENSIONS = (".npy",)
SUPPORTED = VIDEO_EXTENSIONS + STRIP_EXTENSIONS + GIF_EXTENSIONS + ARRAY_EXTENSIONS


class UnreadableVideo(Exception):
    """A file that gives no usable video; the message says why."""


# --- readers ----------------------------------------------------------------------------------

def _read_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any failure means "unreadable"
        raise UnreadableVideo(f"cannot load array ({e})") from e
    if array.ndim != 4 or array.shape[-1] != 3:
        raise UnreadableVideo(f"array must be [T, H, W, 3], got shape {array.shape}")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
            raise UnreadableVideo(f"array of {array.dtype} with non-finite values")
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    return array


def read_video(path) -> np.ndarray:
    """Any supported file (or frame folder) → uint8 [T, H, W, 3]; raises UnreadableVideo."""
    path = Path(path)
    if path.suffix.lower() in ARRAY_EXTENSIONS:
        return _read_npy(path)
    try:
        return readers.read_clip(path).frames
    except readers.ClipReadError as e:
        raise UnreadableVideo(e.reason) from e
    except Exception as e:  # noqa: BLE001 - a reader bug must not end the whole run
        raise UnreadableVideo(f"{type(e).__name__}: {e}") from e


class VideoSource:
    """The videos of one side, streamed as uint8 [frames, H, W, 3], with the skips recorded.

    Args:
      path: a folder of videos, or a data folder with manifest.json.
      frames: leading frames kept per video; shorter videos are skipped with a warning.
      split: the split of a data folder (ignored for plain folders).

    Attributes (valid after iteration):
      used: videos yielded; skipped: [(name, reason)].
    """

    def __init__(self, path, frames: int, split: str = "test"):
        self.path = Path(path)
        self.frames = int(frames)
        self.split = split
        self.used = 0
        self.skipped: list[tuple[str, str]] = []
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: not a folder")
        self.is_data_folder = (self.path / "manifest.json").is_file()

    def describe(self) -> str:
        return (f"{self.path} (split {self.split!r})" if self.is_data_folder else str(self.path))

    def _skip(self, name: str, reason: str) -> None:
        self.skipped.append((name, reason))
        logging.warning("skipping %s: %s", name, reason)

    def _take(self, name: str, video: np.ndarray):
        if video.shape[0] < self.frames:
            self._skip(name, f"{plural(video.shape[0], 'frame')}, fewer than "
                             f"--frames={self.frames}")
            return None
        self.used += 1
        return video[:self.frames]

    def __iter__(self) -> Iterator[np.ndarray]:
        self.used, self.skipped = 0, []
        if self.is_data_folder:
            yield from self._iter_records()
        else:
            yield from self._iter_files()

    def _iter_files(self):
        entries = sorted((p for p in self.path.iterdir() if not p.name.startswith(".")),
                         key=lambda p: readers.natural_key(p.name))
        for p in entries:
            if p.is_file() and p.suffix.lower() not in SUPPORTED:
                self._skip(str(p), f"unsupported file type {p.suffix or '(none)'!r}")
                continue
            try:
                video = read_video(p)
            except UnreadableVideo as e:
                self._skip(str(p), f"unreadable ({e})")
                continue
            video = self._take(str(p), video)
            if video is not None:
                yield video

    def _shards(self) -> list[str]:
        return tfrecords.shard_paths(str(self.path), self.split)

    def _iter_records(self):
        import tensorflow as tf

        for shard in self._shards():
            index = 0
            records = iter(tf.data.TFRecordDataset(shard))
            while True:
                name = f"{shard}#{index}"
                try:
                    serialized = next(records)
                except StopIteration:
                    break
                except tf.errors.OpError as e:  # truncated / corrupt shard: the rest is lost
                    self._skip(name, f"unreadable record, rest of the shard skipped ({e.message})")
                    break
                index += 1
                try:
                    clip = tfrecords.parse_clip(serialized)
                    name = f"{shard}#{index - 1} ({clip['clip_id'].numpy().decode()})"
                    pngs = clip["frames_png"]
                    if int(tf.shape(pngs)[0]) < self.frames:
                        self._skip(name, f"{plural(int(tf.shape(pngs)[0]), 'frame')}, fewer "
                                         f"than --frames={self.frames}")
                        continue
                    video = tfrecords.decode_frames(pngs[:self.frames]).numpy()
                except (tf.errors.OpError, ValueError) as e:
                    self._skip(name, f"unreadable clip ({getattr(e, 'message', e)})")
                    continue
                self.used += 1
                yield video
