"""Fréchet Video Distance between two folders of videos, like pytorch-fid's command line.

    python -m kp_tf.fvd REAL GENERATED [--i3d=HANDLE] [--frames=16] [--batch_size=8] [--split=test]

REAL and GENERATED are each either
  * a folder of videos: .gif, .mp4/.avi/.mov, .png/.jpg strips of square frames side by side,
    .npy arrays [T, H, W, 3] uint8, or sub-folders of frame images; or
  * a converted data folder (TFRecord shards + manifest.json, see kp_tf/data/tfrecords.py), of
    which the clips of `--split` are used.
The first `--frames` frames of every video are scored (reference protocol: frames at native
resolution, resized by the FVD code itself; see kp_tf/evaluation/fvd.py). Videos shorter than
that, and files that cannot be read, are reported by name and skipped. Prints the FVD and the
number of videos used on each side.

The I3D network comes from --i3d, else $KP_TF_I3D, else the TF-Hub module (network access);
offline, build it once with `python tools/export_i3d.py --weights=NPZ --out=DIR`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

logger = logging.getLogger("kp_tf.fvd")

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
STRIP_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
GIF_EXTENSIONS = (".gif",)
ARRAY_EXTENSIONS = (".npy",)
SUPPORTED = VIDEO_EXTENSIONS + STRIP_EXTENSIONS + GIF_EXTENSIONS + ARRAY_EXTENSIONS


class UnreadableVideo(Exception):
    """A file that gives no usable video; the message says why."""


# --- readers ----------------------------------------------------------------------------------
# kp_tf.data.readers (read_clip → Clip, ClipReadError) is the project's reader; the small
# readers below are only a fallback for an installation without it, and for .npy arrays.

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


def _read_fallback(path: Path) -> np.ndarray:
    import cv2
    from PIL import Image, ImageSequence

    ext = path.suffix.lower()
    if ext in GIF_EXTENSIONS:
        try:
            with Image.open(path) as image:
                frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(image)]
        except Exception as e:  # noqa: BLE001
            raise UnreadableVideo(f"cannot decode GIF ({e})") from e
    elif ext in VIDEO_EXTENSIONS:
        cap = cv2.VideoCapture(str(path))
        frames = []
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        finally:
            cap.release()
    else:  # strip of square frames
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise UnreadableVideo("cannot decode image")
        h, w = image.shape[:2]
        if w % h:
            raise UnreadableVideo(f"strip width {w} is not a multiple of its height {h}")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        frames = list(image.reshape(h, w // h, h, 3).transpose(1, 0, 2, 3))
    if not frames:
        raise UnreadableVideo("no frames")
    return np.stack(frames).astype(np.uint8)


def read_video(path) -> np.ndarray:
    """Any supported file (or frame folder) → uint8 [T, H, W, 3]; raises UnreadableVideo."""
    path = Path(path)
    if path.suffix.lower() in ARRAY_EXTENSIONS:
        return _read_npy(path)
    try:
        from kp_tf.data import readers
    except ImportError:
        readers = None
    if readers is not None:
        try:
            return readers.read_clip(path).frames
        except readers.ClipReadError as e:
            raise UnreadableVideo(e.reason) from e
        except Exception as e:  # noqa: BLE001 - a reader bug must not end the whole run
            raise UnreadableVideo(f"{type(e).__name__}: {e}") from e
    if path.is_dir():
        raise UnreadableVideo("frame folders need kp_tf.data.readers")
    try:
        return _read_fallback(path)
    except UnreadableVideo:
        raise
    except Exception as e:  # noqa: BLE001
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
        logger.warning("skipping %s: %s", name, reason)

    def _take(self, name: str, video: np.ndarray):
        if video.shape[0] < self.frames:
            self._skip(name, f"{video.shape[0]} frames, fewer than --frames={self.frames}")
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
        try:
            from kp_tf.data.readers import natural_key
        except ImportError:
            def natural_key(name):
                return name
        entries = sorted((p for p in self.path.iterdir() if not p.name.startswith(".")),
                         key=lambda p: natural_key(p.name))
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
        from kp_tf.data import tfrecords

        if hasattr(tfrecords, "shard_paths"):
            return tfrecords.shard_paths(str(self.path), self.split)
        import json

        manifest = json.loads((self.path / "manifest.json").read_text())
        splits = manifest.get("splits", {})
        if self.split not in splits:
            raise ValueError(f"{self.path}: no split {self.split!r} in manifest.json "
                             f"(has {sorted(splits)})")
        return [str(self.path / s["file"]) for s in splits[self.split].get("shards", [])]

    def _iter_records(self):
        import tensorflow as tf
        from kp_tf.data.tfrecords import decode_frames, parse_clip

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
                    clip = parse_clip(serialized)
                    name = f"{shard}#{index - 1} ({clip['clip_id'].numpy().decode()})"
                    pngs = clip["frames_png"]
                    if int(tf.shape(pngs)[0]) < self.frames:
                        self._skip(name, f"{int(tf.shape(pngs)[0])} frames, fewer than "
                                         f"--frames={self.frames}")
                        continue
                    video = decode_frames(pngs[:self.frames]).numpy()
                except (tf.errors.OpError, ValueError) as e:
                    self._skip(name, f"unreadable clip ({getattr(e, 'message', e)})")
                    continue
                self.used += 1
                yield video


# --- command line -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kp_tf.fvd", description=__doc__.split("\n\n")[0],
        epilog="Reference protocol and golden value: see kp_tf/evaluation/fvd.py.")
    parser.add_argument("real", help="folder of real videos, or data folder with manifest.json")
    parser.add_argument("generated", help="folder of generated videos, or data folder")
    parser.add_argument("--i3d", default=None,
                        help="I3D handle: TF-Hub URL or local SavedModel folder "
                             "(default $KP_TF_I3D, else the TF-Hub module)")
    parser.add_argument("--frames", type=int, default=16, help="leading frames scored per video")
    parser.add_argument("--batch_size", type=int, default=8, help="videos per I3D call")
    parser.add_argument("--split", default="test", help="split of a manifest data folder")
    parser.add_argument("--max_videos", type=int, default=None, help="use at most N videos per side")
    parser.add_argument("--real_cache", default=None, metavar="NAME",
                        help="cache the real statistics as NAME.npz in $KP_TF_CACHE "
                             "(default ~/.cache/kp_tf/fvd); NAME must identify dataset, split, "
                             "frames and resolution")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    if args.frames < 9:
        print(f"error: --frames must be at least 9 (I3D's temporal receptive field), "
              f"got {args.frames}", file=sys.stderr)
        return 2
    from kp_tf.evaluation import fvd as fvd_lib

    try:
        real = VideoSource(args.real, args.frames, args.split)
        generated = VideoSource(args.generated, args.frames, args.split)
        result = fvd_lib.fvd(real, generated, i3d=args.i3d, batch_size=args.batch_size,
                             real_cache_name=args.real_cache, max_videos=args.max_videos)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"FVD: {result.fvd:.4f}")
    print(f"videos: real {result.num_real}, generated {result.num_generated} "
          f"({args.frames} frames each; skipped: real {len(real.skipped)}, "
          f"generated {len(generated.skipped)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
