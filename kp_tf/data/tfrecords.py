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

from kp_tf.data.clip import Clip


def pixels_to_normalized(xy: np.ndarray, height: int, width: int) -> np.ndarray:
    """(x, y) pixel coordinates → [-1, 1] with -1/+1 at the first/last pixel centre."""
    scale = np.array([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], np.float32)
    return np.asarray(xy, np.float32) * scale - 1.0


def normalized_to_pixels(xy: np.ndarray, height: int, width: int) -> np.ndarray:
    scale = np.array([(width - 1) / 2.0, (height - 1) / 2.0], np.float32)
    return (np.asarray(xy, np.float32) + 1.0) * scale


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
