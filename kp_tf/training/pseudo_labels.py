"""Pseudo-labels: the trained detector's keypoints on every frame of every clip (paper §3.2).

Any K and any clip length (the original hard-coded 40 keypoints and 663 frames): frames go
through the detector in fixed-size chunks. Output: one TFRecord per split in
`kp_tf.data.tfrecords.serialize_keypoints` format plus `manifest.json`, which records the
detector checkpoint that made them; `is_current` tells when they are stale.
"""

from __future__ import annotations

import glob
import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from kp_tf.data import tfrecords

MANIFEST = "manifest.json"


def detect_clip(detect, frames_uint8, image_size: int, chunk: int = 64) -> np.ndarray:
    """uint8 [T, H, W, 3] → keypoints float32 [T, K, 2]; `detect` maps images in [-1, 1] to
    keypoints (the detector in inference mode)."""
    out = []
    for start in range(0, len(frames_uint8), chunk):
        x = tf.convert_to_tensor(frames_uint8[start:start + chunk])
        x = tf.cast(x, tf.float32)
        if x.shape[1] != image_size or x.shape[2] != image_size:
            x = tf.image.resize(x, [image_size, image_size], antialias=True)
        out.append(np.asarray(detect(x / 127.5 - 1.0)))
    return np.concatenate(out, 0)


def checkpoint_fingerprint(checkpoint: str):
    """sha256 of the checkpoint's .index, which holds a CRC of every saved tensor: a stage
    retrained from scratch to the same step has the same path but another fingerprint.
    None when there is no such file."""
    index = checkpoint + ".index"
    return tfrecords.sha256_file(index) if os.path.isfile(index) else None


def is_current(out_dir: str, checkpoint: str) -> bool:
    path = os.path.join(out_dir, MANIFEST)
    if not os.path.exists(path):
        return False
    with open(path) as f:
        manifest = json.load(f)
    return (manifest.get("detector_checkpoint") == checkpoint
            and manifest.get("detector_fingerprint") == checkpoint_fingerprint(checkpoint))


def make_pseudo_labels(detector, cfg, data_dir: str, out_dir: str, checkpoint: str,
                       splits=("train", "test")) -> dict:
    """Labels every clip of `data_dir` and writes `out_dir/{split}-00000-of-00001.tfrecord`."""
    os.makedirs(out_dir, exist_ok=True)
    summary = {"detector_checkpoint": checkpoint,
               "detector_fingerprint": checkpoint_fingerprint(checkpoint),
               "num_keypoints": cfg.num_keypoints,
               "image_size": cfg.image_size, "splits": {}}
    start = time.perf_counter()
    # One compiled inference function: 1.6x faster than eager calls (measured at 64×64).
    detect = tf.function(lambda x: detector(x, training=False), reduce_retracing=True)
    for split in splits:
        shards = sorted(glob.glob(os.path.join(data_dir, f"{split}-*.tfrecord")))
        if not shards:
            continue
        final = os.path.join(out_dir, f"{split}-00000-of-00001.tfrecord")
        tmp = final + ".tmp"
        clips = frames = 0
        with tf.io.TFRecordWriter(tmp) as writer:
            for record in tf.data.TFRecordDataset(shards):
                clip = tfrecords.parse_clip(record)
                video = tfrecords.decode_frames(clip["frames_png"]).numpy()
                keypoints = detect_clip(detect, video, cfg.image_size)
                writer.write(tfrecords.serialize_keypoints(
                    clip["clip_id"].numpy().decode(), int(clip["label"]), keypoints))
                clips += 1
                frames += len(video)
        os.replace(tmp, final)
        summary["splits"][split] = {"clips": clips, "frames": frames}
        logging.info("pseudo-labels %s: %d clips, %d frames", split, clips, frames)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    tmp = os.path.join(out_dir, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=2)
    os.replace(tmp, os.path.join(out_dir, MANIFEST))
    return summary
