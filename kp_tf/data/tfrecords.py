"""The on-disk clip format: one `tf.train.Example` per clip, frames PNG-encoded.

Features of an example:
  clip_id      bytes
  frames       bytes list, one PNG per frame (RGB, uint8)
  num_frames, height, width   int64
  label        int64 (-1 when the dataset has no classes)
  num_joints   int64 (0 when no ground truth is known)
  joints       float list [num_frames * num_joints * 2], (x, y) in [-1, 1]
  visibility   float list [num_frames * num_joints]

Coordinates follow the paper's code (linspace convention): -1 is the centre of the first
pixel, +1 the centre of the last, so they survive any resize of the frames unchanged.
Frames are decoded lazily: pipelines that need two frames of a clip decode two PNGs.
"""

from __future__ import annotations

import cv2
import numpy as np
import tensorflow as tf

from kp_tf.conventions import normalized_to_pixels, pixels_to_normalized
from kp_tf.data.clip import Clip


def encode_png(frame: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def serialize_clip(clip: Clip) -> bytes:
    """Clip → serialized tf.train.Example (frames as PNG, joints normalized)."""
    t, h, w = clip.num_frames, clip.size[0], clip.size[1]
    if clip.joints is not None:
        joints = pixels_to_normalized(clip.joints, h, w)
        visibility = np.asarray(clip.visibility, np.float32)
        num_joints = joints.shape[1]
    else:
        joints = visibility = np.zeros([0], np.float32)
        num_joints = 0
    feature = {
        "clip_id": _bytes([clip.clip_id.encode()]),
        "frames": _bytes([encode_png(f) for f in clip.frames]),
        "num_frames": _ints([t]),
        "height": _ints([h]),
        "width": _ints([w]),
        "label": _ints([int(clip.label)]),
        "num_joints": _ints([num_joints]),
        "joints": _floats(joints.reshape(-1).tolist()),
        "visibility": _floats(visibility.reshape(-1).tolist()),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


_FEATURES = {
    "clip_id": tf.io.FixedLenFeature([], tf.string),
    "frames": tf.io.VarLenFeature(tf.string),
    "num_frames": tf.io.FixedLenFeature([], tf.int64),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "num_joints": tf.io.FixedLenFeature([], tf.int64),
    "joints": tf.io.VarLenFeature(tf.float32),
    "visibility": tf.io.VarLenFeature(tf.float32),
}


def parse_clip(serialized):
    """Serialized example → dict of tensors; `frames_png` stays encoded ([T] strings).

    Returns keys: clip_id, frames_png [T], num_frames, height, width, label,
    joints [T, J, 2] float32 in [-1, 1] (J may be 0), visibility [T, J].
    """
    ex = tf.io.parse_single_example(serialized, _FEATURES)
    t = tf.cast(ex["num_frames"], tf.int32)
    j = tf.cast(ex["num_joints"], tf.int32)
    return {
        "clip_id": ex["clip_id"],
        "frames_png": tf.sparse.to_dense(ex["frames"], default_value=b""),
        "num_frames": t,
        "height": tf.cast(ex["height"], tf.int32),
        "width": tf.cast(ex["width"], tf.int32),
        "label": tf.cast(ex["label"], tf.int32),
        "joints": tf.reshape(tf.sparse.to_dense(ex["joints"]), [t, j, 2]),
        "visibility": tf.reshape(tf.sparse.to_dense(ex["visibility"]), [t, j]),
    }


def decode_frames(frames_png, channels: int = 3):
    """[N] PNG strings → uint8 [N, H, W, channels]."""
    return tf.map_fn(
        lambda s: tf.io.decode_png(s, channels=channels),
        frames_png,
        fn_output_signature=tf.TensorSpec([None, None, channels], tf.uint8),
    )


def clip_from_features(features) -> Clip:
    """Eager inverse of `serialize_clip`, for tests and tools."""
    frames = decode_frames(features["frames_png"]).numpy()
    h, w = frames.shape[1:3]
    joints = vis = None
    if int(features["joints"].shape[1]) > 0:
        joints = normalized_to_pixels(features["joints"].numpy(), h, w)
        vis = features["visibility"].numpy()
    return Clip(
        clip_id=features["clip_id"].numpy().decode(),
        frames=frames,
        label=int(features["label"]),
        joints=joints,
        visibility=vis,
    )


# --- pseudo-labels: the detector's keypoints for every frame of a clip (stage 2's input) ---

def serialize_keypoints(clip_id: str, label: int, keypoints: np.ndarray) -> bytes:
    """keypoints: float32 [T, K, 2], (x, y) in [-1, 1], as detected on every frame."""
    keypoints = np.asarray(keypoints, np.float32)
    t, k = keypoints.shape[:2]
    feature = {
        "clip_id": _bytes([clip_id.encode()]),
        "label": _ints([int(label)]),
        "num_frames": _ints([t]),
        "num_keypoints": _ints([k]),
        "keypoints": _floats(keypoints.reshape(-1).tolist()),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


_KEYPOINT_FEATURES = {
    "clip_id": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "num_frames": tf.io.FixedLenFeature([], tf.int64),
    "num_keypoints": tf.io.FixedLenFeature([], tf.int64),
    "keypoints": tf.io.VarLenFeature(tf.float32),
}


def parse_keypoints(serialized):
    """→ {clip_id, label, num_frames, keypoints [T, K, 2] float32}."""
    ex = tf.io.parse_single_example(serialized, _KEYPOINT_FEATURES)
    t = tf.cast(ex["num_frames"], tf.int32)
    k = tf.cast(ex["num_keypoints"], tf.int32)
    return {
        "clip_id": ex["clip_id"],
        "label": tf.cast(ex["label"], tf.int32),
        "num_frames": t,
        "keypoints": tf.reshape(tf.sparse.to_dense(ex["keypoints"]), [t, k, 2]),
    }


# --- sharded clip files and their manifest ---------------------------------------------------
#
# A converted dataset is a folder holding `{split}-{i:05d}-of-{n:05d}.tfrecord` shards and a
# `manifest.json` that lists every shard with its clip count and sha256. Shards are written under
# hidden temporary names (`.{split}-{i:05d}.tfrecord.tmp`) and renamed only once the whole split
# is written, because n is known only then and because a reader globbing `*.tfrecord` must never
# pick up a half-written file.

# Imported here rather than at the top so that this section reads as one unit appended to
# the format definitions above.
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402

MANIFEST_NAME = "manifest.json"
_SHARD_RE = r"{split}-\d{{5}}-of-\d{{5}}\.tfrecord"


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def sha256_file(path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def serialize_clip_deterministic(clip: Clip) -> bytes:
    """`serialize_clip` with a canonical byte order.

    The Example's feature map is serialized in hash-table order, which changes from process to
    process; re-serializing with `deterministic=True` (same message, sorted map keys) makes the
    same clip give the same bytes, so re-running a conversion reproduces the shard checksums.
    """
    return tf.train.Example.FromString(serialize_clip(clip)).SerializeToString(deterministic=True)


class ShardWriter:
    """Writes one split's clips into shards of `clips_per_shard`, committed all at once.

    Usage:
      writer = ShardWriter(out_dir, "train", clips_per_shard=64)
      for clip in clips: writer.write(clip)
      shards = writer.commit()   # or writer.abort()

    Until `commit`, everything lives in hidden `.tmp` files; `commit` renames them to their final
    `{split}-{i:05d}-of-{n:05d}.tfrecord` names (atomic `os.replace` each) and then deletes this
    split's shards left over from an earlier run that the new set does not overwrite, so a re-run
    never leaves duplicates or stale extra shards. Also usable as a context manager, which
    aborts on an exception.
    """

    def __init__(self, out_dir, split: str, clips_per_shard: int = 64):
        if clips_per_shard < 1:
            raise ValueError(f"clips_per_shard must be >= 1, got {clips_per_shard}")
        if not split or "/" in split or split.startswith("."):
            raise ValueError(f"bad split name {split!r}")
        self.out_dir = str(out_dir)
        self.split = split
        self.clips_per_shard = int(clips_per_shard)
        os.makedirs(self.out_dir, exist_ok=True)
        # Temporary files of a run that crashed before committing this split.
        for name in os.listdir(self.out_dir):
            if name.startswith(f".{split}-") and name.endswith(".tfrecord.tmp"):
                os.remove(os.path.join(self.out_dir, name))
        self._temps: list[str] = []
        self._counts: list[int] = []
        self._writer = None
        self.num_clips = 0
        self.num_frames = 0
        self.min_frames: int | None = None
        self.max_frames: int | None = None

    def _temp_path(self, index: int) -> str:
        return os.path.join(self.out_dir, f".{self.split}-{index:05d}.tfrecord.tmp")

    def write(self, clip: Clip) -> None:
        """Appends one clip, opening a new shard every `clips_per_shard` clips."""
        record = serialize_clip_deterministic(clip)  # before opening: a bad clip opens no shard
        if self._writer is None or self._counts[-1] >= self.clips_per_shard:
            self._close_current()
            path = self._temp_path(len(self._temps))
            self._writer = tf.io.TFRecordWriter(path)
            self._temps.append(path)
            self._counts.append(0)
        self._writer.write(record)
        self._counts[-1] += 1
        t = clip.num_frames
        self.num_clips += 1
        self.num_frames += t
        self.min_frames = t if self.min_frames is None else min(self.min_frames, t)
        self.max_frames = t if self.max_frames is None else max(self.max_frames, t)

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def commit(self) -> list[dict]:
        """Renames the shards into place; returns [{file, clips, bytes, sha256}] in order."""
        self._close_current()
        n = len(self._temps)
        shards, final_names = [], set()
        for i, (tmp, count) in enumerate(zip(self._temps, self._counts)):
            name = shard_name(self.split, i, n)
            shards.append({"file": name, "clips": count, "bytes": os.path.getsize(tmp),
                           "sha256": sha256_file(tmp)})
            os.replace(tmp, os.path.join(self.out_dir, name))
            final_names.add(name)
        pattern = re.compile(_SHARD_RE.format(split=re.escape(self.split)))
        for name in os.listdir(self.out_dir):
            if pattern.fullmatch(name) and name not in final_names:
                os.remove(os.path.join(self.out_dir, name))
        self._temps, self._counts = [], []
        return shards

    def abort(self) -> None:
        """Deletes this writer's temporary files; committed shards of earlier runs stay."""
        self._close_current()
        for tmp in self._temps:
            if os.path.exists(tmp):
                os.remove(tmp)
        self._temps, self._counts = [], []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        return False


def write_manifest(data_dir, manifest: dict) -> str:
    """Writes `data_dir/manifest.json` atomically (temp file + os.replace); returns its path."""
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, MANIFEST_NAME)
    tmp = os.path.join(data_dir, f".{MANIFEST_NAME}.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_manifest(data_dir) -> dict:
    """Reads `data_dir/manifest.json`.

    Raises:
      FileNotFoundError: no manifest there (the message names the folder and how to make it).
      ValueError: the manifest is not valid JSON.
    """
    path = os.path.join(str(data_dir), MANIFEST_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no {MANIFEST_NAME} in data folder {data_dir!r}: convert the dataset first, e.g. "
            f"`python -m kp_tf.train --dataset=NAME --src=DIR --data_dir={data_dir} "
            f"--stage=data` (docs/datasets.md)")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e


def shard_paths(data_dir, split: str, verify: bool = False) -> list[str]:
    """The split's shard files as listed by the manifest, checked to exist (and match).

    Args:
      data_dir: the converted dataset folder.
      split: 'train', 'test', ...
      verify: also compare each shard's sha256 with the manifest (reads every byte).

    Raises:
      FileNotFoundError: no manifest, or a listed shard is missing (both name the folder).
      ValueError: the split is not in the manifest, has no shards, or a checksum differs.
    """
    manifest = load_manifest(data_dir)
    splits = manifest.get("splits", {})
    if split not in splits:
        raise ValueError(f"data folder {data_dir!r} has no split {split!r}; its manifest lists "
                         f"{sorted(splits)}")
    shards = splits[split].get("shards", [])
    if not shards:
        raise ValueError(f"data folder {data_dir!r}: split {split!r} has no clips")
    paths = []
    for shard in shards:
        path = os.path.join(str(data_dir), shard["file"])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"data folder {data_dir!r}: shard {shard['file']} listed in "
                                    f"{MANIFEST_NAME} is missing; re-run the conversion")
        if verify and sha256_file(path) != shard["sha256"]:
            raise ValueError(f"data folder {data_dir!r}: shard {shard['file']} does not match the "
                             f"sha256 in {MANIFEST_NAME}; re-run the conversion")
        paths.append(path)
    return paths
