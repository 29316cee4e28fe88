"""Pseudo-labels: the trained detector's keypoints on every frame of every clip (paper §3.2).

Any K and any clip length (the original hard-coded 40 keypoints and 663 frames): frames of
consecutive clips go through the detector together in batches of about 256. Output: one
TFRecord per split in `kp_tf.data.tfrecords.serialize_keypoints` format plus `manifest.json`,
which records the detector checkpoint that made them; `is_current` tells when they are stale.
"""

from __future__ import annotations

import glob
import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from kp_tf import conventions, progress, run_folder
from kp_tf.data import pipeline, tfrecords

MANIFEST = "manifest.json"


def detect_clips(detect, clips, frames_per_batch: int = 256):
    """Yields (clip_id, label, keypoints float32 [T, K, 2]) for `pipeline.clip_sequences`
    elements, in order; frames of consecutive clips share detector calls of about
    `frames_per_batch` (measured: 15 % faster per frame than one call per 48-frame clip)."""
    pending, count = [], 0

    def flush():
        frames = tf.concat([x for _, _, x in pending], 0)
        keypoints = np.asarray(detect(conventions.to_model(frames)))
        splits = np.cumsum([len(x) for _, _, x in pending])[:-1]
        for (clip_id, label, _), k in zip(pending, np.split(keypoints, splits)):
            yield clip_id.numpy().decode(), int(label), k

    for clip in clips:
        x = clip["frames"]
        pending.append((clip["clip_id"], clip["label"], x))
        count += int(x.shape[0])
        if count >= frames_per_batch:
            yield from flush()
            pending, count = [], 0
    if pending:
        yield from flush()


def is_current(out_dir: str, checkpoint: str, precision: str = "float32") -> bool:
    """Whether `out_dir` holds the labels of `checkpoint`'s detector in `precision` (labels
    written before the precision was recorded were float32)."""
    path = os.path.join(out_dir, MANIFEST)
    if not os.path.exists(path):
        return False
    with open(path) as f:
        manifest = json.load(f)
    return (manifest.get("detector_checkpoint") == checkpoint
            and manifest.get("precision", "float32") == precision
            and manifest.get("detector_fingerprint") == run_folder.checkpoint_fingerprint(checkpoint))


def _clip_count(data_dir: str, split: str):
    """The clips of `split` by the data folder's manifest; None without one (no ETA then)."""
    try:
        return tfrecords.load_manifest(data_dir)["splits"][split]["clips"]
    except (FileNotFoundError, ValueError, KeyError):
        return None


def make_pseudo_labels(detector, cfg, data_dir: str, out_dir: str, checkpoint: str,
                       splits=("train", "test"), verbose: bool = False) -> dict:
    """Labels every clip of `data_dir` and writes `out_dir/{split}-00000-of-00001.tfrecord`.

    With `verbose`, each split's progress goes to stdout (kp_tf.progress: a bar with an ETA
    on a terminal, a line every 100 clips or 30 s in a log)."""
    os.makedirs(out_dir, exist_ok=True)
    summary = {"detector_checkpoint": checkpoint,
               "detector_fingerprint": run_folder.checkpoint_fingerprint(checkpoint),
               "num_keypoints": cfg.num_keypoints,
               "image_size": cfg.image_size, "precision": detector.dtype_policy.name,
               "splits": {}}
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
        bar = progress.Progress(_clip_count(data_dir, split), "clip",
                                label=f"pseudo-labels {split}", every=100, seconds=30.0,
                                enabled=verbose)
        with tf.io.TFRecordWriter(tmp) as writer:
            # clip_sequences decodes the PNGs in a parallel map (graph mode), overlapping the
            # detector; eager decoding had taken a third of the time.
            for clip_id, label, keypoints in detect_clips(
                    detect, pipeline.clip_sequences(cfg, data_dir, split)):
                writer.write(tfrecords.serialize_keypoints(clip_id, label, keypoints))
                clips += 1
                frames += len(keypoints)
                bar.update(clips)
        bar.close()
        os.replace(tmp, final)
        summary["splits"][split] = {"clips": clips, "frames": frames}
        logging.info("pseudo-labels %s: %d clips, %d frames", split, clips, frames)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    tmp = os.path.join(out_dir, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=2)
    os.replace(tmp, os.path.join(out_dir, MANIFEST))
    return summary
