"""tf.data input pipelines: stage-1 frame pairs, stage-2 keypoint sequences, whole clips.

Record formats are those of `kp_tf.data.tfrecords` (clips: `parse_clip`; pseudo-labels:
`parse_keypoints`). What the original code did is summarised in
shared/reference/original-implementation.md §4.2 and §4.4; the differences are listed in the
docstrings below.

Determinism. Every random choice is a stateless op fed with a per-element seed,
`fold_in(fold_in(base, epoch), position in the epoch's record stream)`, where
base = (seed, stream). Epoch `e` reads the shards in an order drawn from its own seed, and
the one tf.data shuffle (after the records are reduced to what an element needs) has a fixed
seed and `reshuffle_each_iteration=False`. So a pipeline built twice with the same seed, or
one Dataset iterated twice, gives identical batches, while successive epochs still differ.
Parallel maps use `deterministic=True`.

Memory. The shuffle buffer holds reduced elements (stage 1: the two PNG strings of a pair,
stage 2: the sampled keypoints), never whole clips.
"""

from __future__ import annotations

import glob
import math
import os
from typing import Callable, NamedTuple, Optional, Union

import numpy as np
import tensorflow as tf

from kp_tf import conventions
from kp_tf.config import Config
from kp_tf.data import augment, tfrecords

AUTOTUNE = tf.data.AUTOTUNE
SHUFFLE_BUFFER = 1024
TEST_PAIR_OFFSET = 10  # original test pairs: frames 1 and 11 (indices 0 and 10)
MAX_PARALLEL_SHARDS = 4  # shards read at once in training, so the shuffle mixes them

# Seed streams, so stage 1 and stage 2 with the same seed draw unrelated numbers.
_STAGE1_STREAM = 1
_STAGE2_STREAM = 2


# --- files -------------------------------------------------------------------------------

def pseudo_label_paths(pseudo_label_dir, split: str) -> list[str]:
    """The split's pseudo-label files `{split}-*.tfrecord`, sorted (no manifest there)."""
    paths = sorted(glob.glob(os.path.join(str(pseudo_label_dir), f"{split}-*.tfrecord")))
    if not paths:
        raise FileNotFoundError(
            f"no {split}-*.tfrecord pseudo-label files in {pseudo_label_dir!r}; make them with "
            f"the stage-1 detector first")
    return paths


# --- seeded record streams ---------------------------------------------------------------

def _seeded_records(paths: list[str], select: Callable, *, seed: int, stream: int,
                    training: bool, repeat: bool) -> tf.data.Dataset:
    """select(serialized, seed [2]) for every record; shuffled and epoch-seeded in training.

    `select` reduces a record to what one element needs; it runs before the shuffle so the
    buffer stays small. Its seed is unique per (epoch, record position) and only depends on
    (seed, stream), so the stream of elements is reproducible.
    """
    fold_in = tf.random.experimental.stateless_fold_in
    base_seed = tf.constant([seed, stream], tf.int64)
    if not training:
        # Files in name order, records in file order: fixed evaluation order.
        records = tf.data.TFRecordDataset(paths).enumerate()
        ds = records.map(lambda i, r: select(r, fold_in(base_seed, i)),
                         num_parallel_calls=AUTOTUNE, deterministic=True)
        return ds.repeat() if repeat else ds

    files = tf.constant(sorted(paths))

    def epoch(index):
        epoch_seed = fold_in(base_seed, index)
        order = tf.random.experimental.stateless_shuffle(files, epoch_seed)
        records = tf.data.Dataset.from_tensor_slices(order).interleave(
            tf.data.TFRecordDataset, cycle_length=min(len(paths), MAX_PARALLEL_SHARDS),
            num_parallel_calls=AUTOTUNE, deterministic=True)
        return records.enumerate().map(lambda i, r: select(r, fold_in(epoch_seed, i)),
                                       num_parallel_calls=AUTOTUNE, deterministic=True)

    epochs = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
    # One buffer over the endless stream (no refill stall at epoch boundaries); epochs
    # already differ through their seeds, so no reshuffling per iterator is needed.
    return epochs.flat_map(epoch).shuffle(SHUFFLE_BUFFER, seed=seed,
                                          reshuffle_each_iteration=False)


def _finish(ds: tf.data.Dataset, batch_size: int, training: bool) -> tf.data.Dataset:
    # drop_remainder in training: static batch shapes, which tf.distribute needs to split
    # the global batch evenly; evaluation keeps the last partial batch.
    return ds.batch(batch_size, drop_remainder=training).prefetch(AUTOTUNE)


# --- frames ------------------------------------------------------------------------------

def _decode_resized(frames_png, size: int):
    """[N] PNG strings → float32 [N, size, size, 3] in [0, 255].

    Resized (bilinear, antialiased) only when the stored frames are not size×size; frames are
    assumed square (non-square ones would be stretched). Normalized joints need no change.
    """
    frames = tf.cast(tfrecords.decode_frames(frames_png), tf.float32)
    shape = tf.shape(frames)
    same = tf.logical_and(tf.equal(shape[1], size), tf.equal(shape[2], size))
    frames = tf.cond(same, lambda: frames,
                     lambda: tf.image.resize(frames, [size, size], antialias=True))
    return tf.ensure_shape(frames, [None, size, size, 3])


def _inside(joints):
    """1 where a normalized joint lies within the frame ([..., 2] → [...] float32)."""
    return tf.cast(tf.reduce_all(tf.abs(joints) <= 1.0, axis=-1), tf.float32)


# --- stage 1 -----------------------------------------------------------------------------

def pair_indices(num_frames, gap_min: int, gap_max: int, seed=None):
    """Frame indices (i, j) of a stage-1 pair, int32 scalars.

    Training (seed given): gap ~ U{gap_min..gap_max}, shortened to num_frames − 1 when the
    clip is too short, i ~ U{0..num_frames − 1 − gap}, j = i + gap. Unlike the original there
    is no wrap-around past the end of the clip. A one-frame clip gives (0, 0).
    Test (seed None): (0, min(10, num_frames − 1)), the original's fixed test pair.
    """
    n = tf.cast(num_frames, tf.int32)
    if seed is None:
        return tf.constant(0, tf.int32), tf.minimum(TEST_PAIR_OFFSET, n - 1)
    gap_seed, start_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    gap = tf.random.stateless_uniform([], gap_seed, gap_min, gap_max + 1, dtype=tf.int32)
    gap = tf.minimum(gap, n - 1)
    i = tf.random.stateless_uniform([], start_seed, 0, n - gap, dtype=tf.int32)
    return i, i + gap


def stage1_pairs(cfg: Config, split: str = "train", *, training: bool = True,
                 seed: Optional[int] = None, batch_size: Optional[int] = None,
                 repeat: Optional[bool] = None, with_joints: bool = False,
                 data_dir: Optional[str] = None, skip: int = 0) -> tf.data.Dataset:
    """Batches of (reference, target) frame pairs from the clips of `split`.

    Training: clips in random order (shards shuffled per epoch, records shuffled), a pair per
    clip visit as `pair_indices`, and, when cfg.augment, `augment.augment_frames` with the same
    random parameters for both frames, then `augment.jitter_target` when cfg.target_shift,
    target_rotation or target_scale is set, and a warped copy of the reference for the
    equivariance loss when cfg.lambda_equivariance is set. Test (training=False): frames 0
    and min(10, T − 1) of every clip in file order, no augmentation, the last partial batch
    kept.

    Args:
      cfg: image_size, pair_gap_min/max, augment, batch_size, seed, resolved_data_dir.
      split: shard prefix ('train', 'test', ...).
      training: random pairs and augmentation vs the fixed test pairs.
      seed: overrides cfg.seed.
      batch_size: overrides cfg.batch_size (the global batch under tf.distribute).
      repeat: loop forever; default True in training, False otherwise.
      with_joints: also return the ground-truth joints of both frames, moved by the same
        geometric augmentation as the images (training too).
      data_dir: overrides cfg.resolved_data_dir.
      skip: pairs of the stream to leave out, before they are decoded: a run resumed at step
        s skips s · batch size, and continues with the batches it would have seen.

    Returns:
      Dataset of dicts:
        reference, target: float32 [B, S, S, 3] in [-1, 1], S = cfg.image_size;
        label: int32 [B] (-1 for datasets without classes);
        training with cfg.lambda_equivariance > 0: warped_reference [B, S, S, 3], the
          reference moved by a random similarity u → warp_matrix [B, 2, 2] @ u + warp_shift [B, 2];
        with_joints: reference_joints, target_joints float32 [B, J, 2] normalized (x, y),
          reference_visibility, target_visibility float32 [B, J], 0 for joints marked
          invisible or outside the (augmented) frame. J = 0 when the data has no joints.
    """
    repeat = training if repeat is None else repeat
    paths = tfrecords.shard_paths(data_dir or cfg.resolved_data_dir, split)
    ds = _seeded_records(paths, _pair_selector(cfg, training, with_joints),
                         seed=cfg.seed if seed is None else int(seed),
                         stream=_STAGE1_STREAM, training=training, repeat=repeat).skip(skip)
    ds = ds.map(_pair_loader(cfg, training, with_joints), num_parallel_calls=AUTOTUNE,
                deterministic=True)
    return _finish(ds, batch_size or cfg.batch_size, training)


def _pair_selector(cfg: Config, training: bool, with_joints: bool):
    """record → the two PNG strings of a pair (and their joints), its label and its seed."""

    def select(serialized, element_seed):
        clip = tfrecords.parse_clip(serialized)
        pair_seed, augment_seed = tf.unstack(
            tf.random.experimental.stateless_split(element_seed, 2))
        i, j = pair_indices(clip["num_frames"], cfg.pair_gap_min, cfg.pair_gap_max,
                            pair_seed if training else None)
        pair = tf.stack([i, j])
        out = {"frames_png": tf.gather(clip["frames_png"], pair),  # decode only these two
               "label": clip["label"], "seed": augment_seed}
        if with_joints:
            out["joints"] = tf.gather(clip["joints"], pair)
            out["visibility"] = tf.gather(clip["visibility"], pair)
        return out

    return select


def _pair_loader(cfg: Config, training: bool, with_joints: bool):
    """A selected pair → decoded, augmented, jittered frames (+ the equivariance warp)."""
    size = cfg.image_size
    do_augment = training and cfg.augment
    do_jitter = training and max(cfg.target_shift, cfg.target_rotation, cfg.target_scale) > 0
    do_equivariance = training and cfg.lambda_equivariance > 0

    def load(element):
        frames = _decode_resized(element["frames_png"], size)  # [2, S, S, 3]
        joints = element.get("joints")
        if do_augment:
            frames, joints = augment.augment_frames(frames, element["seed"], joints)
        if do_jitter:
            frames, joints = augment.jitter_target(
                frames, tf.random.experimental.stateless_fold_in(element["seed"], 1), joints,
                max_shift=cfg.target_shift, max_rotation=cfg.target_rotation,
                max_scale=cfg.target_scale)
        out = {"label": element["label"]}
        if do_equivariance:
            matrix, shift = augment.random_similarity(
                tf.random.experimental.stateless_fold_in(element["seed"], 2),
                cfg.equivariance_shift, cfg.equivariance_rotation, cfg.equivariance_scale)
            warped = augment.warp_images(frames[:1], matrix, shift, fill_mode="NEAREST")
            out.update(warped_reference=conventions.to_model(warped[0]), warp_matrix=matrix,
                       warp_shift=shift)
        frames = conventions.to_model(frames)
        out.update(reference=frames[0], target=frames[1])
        if with_joints:
            visibility = element["visibility"] * _inside(joints)
            out.update(reference_joints=joints[0], target_joints=joints[1],
                       reference_visibility=visibility[0], target_visibility=visibility[1])
        return out

    return load


# --- stage 2 -----------------------------------------------------------------------------

class TimeSamples(NamedTuple):
    """Where the L + 1 steps of a stage-2 sample fall in a clip (each field [L + 1]).

    Step t is frame `lower[t]` blended towards `upper[t]` by `weight[t]` (0 → lower). With
    gap ≥ 1 the steps are real frames (lower == upper, weight 0).
    """

    lower: tf.Tensor   # int32
    upper: tf.Tensor   # int32
    weight: tf.Tensor  # float32 in [0, 1)

    def nearest(self):
        """int32 [L + 1]: the real frame closest to each step (e.g. to load matching images)."""
        return tf.where(self.weight < 0.5, self.lower, self.upper)

    def interpolate(self, values):
        """values [T, ...] float (e.g. keypoints [T, K, 2]) → [L + 1, ...] at the steps."""
        low = tf.gather(values, self.lower)
        high = tf.gather(values, self.upper)
        w = tf.reshape(self.weight, [-1] + [1] * (len(values.shape) - 1))
        return low + tf.cast(w, values.dtype) * (high - low)


def sample_indices(num_frames, length: int, seed=None) -> TimeSamples:
    """Stage-2 temporal sampling of 1 + `length` steps from a clip of `num_frames` frames.

    As the original (§4.4): gap = floor(T / (L + 1)); if gap ≥ 1 the steps are frames
    s, s + gap, …, s + L·gap with s ~ U{0 … T − (L + 1)·gap} (seed given, training) or s = 0
    (seed None, test), so a sample spans (almost) the whole clip whatever its length.
    Short clips (T < L + 1) differ from the original (17 consecutive frames with midpoints
    inserted, which also breaks below 17 frames): the L + 1 steps are spread evenly over the
    whole clip, t·(T − 1)/L, and keypoints are interpolated linearly in time. This keeps the
    "whole clip" rule of the long-clip case and works down to one frame (all steps frame 0).

    Args:
      num_frames: int scalar (Python or tensor), T ≥ 1.
      length: L, the number of future steps (cfg.sequence_length).
      seed: optional int [2] stateless seed for the start frame.
    Returns: TimeSamples with fields of shape [L + 1].
    """
    n = tf.cast(num_frames, tf.int32)
    steps = tf.range(length + 1, dtype=tf.int32)
    gap = n // (length + 1)
    if seed is None:
        start = tf.constant(0, tf.int32)
    else:
        # Unused when gap = 0 (short clips always start at 0); the range is valid anyway.
        start = tf.random.stateless_uniform([], seed, 0, n - (length + 1) * gap + 1,
                                            dtype=tf.int32)
    strided = start + gap * steps
    position = tf.cast(steps, tf.float32) * (tf.cast(n - 1, tf.float32) / max(length, 1))
    lower = tf.minimum(tf.cast(tf.floor(position), tf.int32), n - 1)
    upper = tf.minimum(lower + 1, n - 1)
    weight = position - tf.cast(lower, tf.float32)
    long_clip = gap >= 1
    return TimeSamples(lower=tf.where(long_clip, strided, lower),
                       upper=tf.where(long_clip, strided, upper),
                       weight=tf.where(long_clip, tf.zeros_like(weight), weight))


def action_one_hot(label, num_actions: int):
    """int label(s) → float32 [..., A] one-hot; all zeros for label −1; [..., 0] when A = 0."""
    return tf.one_hot(label, num_actions, dtype=tf.float32)


def smooth_in_time(keypoints, sigma: float):
    """[T, K, 2] keypoints → the same, each coordinate convolved over time with a Gaussian of
    σ = `sigma` frames, truncated at 3σ, the clip continued past its ends by point reflection
    (x_{−s} = 2·x_0 − x_s, likewise at the last frame).

    Why the point reflection: a static keypoint stays put, a linear motion keeps its slope up
    to the ends, and the first frame keeps its detected value. Renormalising the kernel at the
    ends instead (as before) averaged k_0 with the next 3σ frames, so the conditioning frame
    was already part-way into the motion and every displacement k_t − k_0 shrank (the
    synthetic training class means: march 0.038 → 0.018, jack 0.076 → 0.060); the motion
    generator learned that damped motion, while at test time k_0 is the raw detection.
    """
    if sigma <= 0:
        return keypoints
    keypoints = tf.convert_to_tensor(keypoints)
    radius = max(int(math.ceil(3.0 * sigma)), 1)
    n = tf.shape(keypoints)[0]
    # Reflecting about frame 0 and then about frame m = n − 1 shifts by 2m frames and adds
    # 2·(x_m − x_0), so index j is r = j mod 2m of the once-reflected clip plus that many
    # shifts; clips shorter than the kernel are continued too (a one-frame clip stays put).
    m = tf.maximum(n - 1, 1)
    j = tf.range(-radius, n + radius)
    periods, r = tf.math.floordiv(j, 2 * m), tf.math.floormod(j, 2 * m)
    first, last = keypoints[:1], keypoints[-1:]
    inside = tf.gather(keypoints, tf.minimum(r, n - 1))
    mirrored = 2.0 * last - tf.gather(keypoints, tf.clip_by_value(2 * m - r, 0, n - 1))
    padded = tf.where((r <= n - 1)[:, None, None], inside, mirrored)
    padded += tf.cast(2 * periods, keypoints.dtype)[:, None, None] * (last - first)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * np.square(offsets / sigma))
    weights /= weights.sum()
    return tf.add_n([float(w) * padded[i:i + n] for i, w in enumerate(weights)])


def stage2_sequences(cfg: Config, pseudo_label_dir, split: str = "train", *,
                     training: bool = True, seed: Optional[int] = None,
                     batch_size: Optional[int] = None,
                     repeat: Optional[bool] = None, skip: int = 0) -> tf.data.Dataset:
    """Batches of keypoint sequences from pseudo-label TFRecords (`parse_keypoints` records).

    The clip's pseudo-labels are first smoothed over time with σ = cfg.pseudo_label_smoothing
    frames (0: as detected, the original). Temporal sampling: `sample_indices` (random start
    in training unless cfg.stage2_random_start is false, 0 at test). Training
    augmentation when cfg.augment: `augment.augment_keypoints`, one transform for the first
    frame and the sequence together (rotation U{-15..15}° about (0, 0), x → −x with p = 0.5,
    scale U[0.7, 1.2]; no flip when cfg.keypoint_flip is false); keypoint identities are not
    permuted by the flip, as in the original.

    Args:
      cfg: sequence_length, num_keypoints, num_actions, augment, stage2_batch_size, seed.
      pseudo_label_dir: folder with `{split}-*.tfrecord` pseudo-label files.
      split, training, seed, batch_size (default cfg.stage2_batch_size), repeat, skip: as
        `stage1_pairs`.

    Returns:
      Dataset of dicts: first float32 [B, K, 2] (conditioning frame), sequence float32
      [B, L, K, 2] (the L = cfg.sequence_length following steps), action float32 [B, A]
      one-hot (A = cfg.num_actions, [B, 0] when 0), label int32 [B].
    """
    length, k = cfg.sequence_length, cfg.num_keypoints
    repeat = training if repeat is None else repeat
    do_augment = training and cfg.augment

    def select(serialized, element_seed):
        record = tfrecords.parse_keypoints(serialized)
        time_seed, augment_seed = tf.unstack(
            tf.random.experimental.stateless_split(element_seed, 2))
        random_start = training and cfg.stage2_random_start
        samples = sample_indices(record["num_frames"], length, time_seed if random_start else None)
        keypoints = smooth_in_time(record["keypoints"], cfg.pseudo_label_smoothing)
        points = samples.interpolate(keypoints)  # [L + 1, K, 2]
        if do_augment:
            points = augment.augment_keypoints(points, augment_seed, cfg.keypoint_flip)
        # Static K: pseudo-labels made with another num_keypoints fail here, not in the model.
        points = tf.ensure_shape(points, [length + 1, k, 2])
        return {"first": points[0], "sequence": points[1:],
                "action": action_one_hot(record["label"], cfg.num_actions),
                "label": record["label"]}

    ds = _seeded_records(pseudo_label_paths(pseudo_label_dir, split), select,
                         seed=cfg.seed if seed is None else int(seed), stream=_STAGE2_STREAM,
                         training=training, repeat=repeat).skip(skip)
    return _finish(ds, batch_size or cfg.stage2_batch_size, training)


# --- whole clips -------------------------------------------------------------------------

FrameSelection = Union[None, int, Callable]


def clip_sequences(cfg: Config, data_dir: Optional[str] = None, split: str = "test", *,
                   frames: FrameSelection = None) -> tf.data.Dataset:
    """Whole decoded clips, one element per clip, in file order (not batched, not shuffled).

    For pseudo-labelling and evaluation. Only the selected frames are decoded.

    Args:
      cfg: image_size (frames are resized to it if stored at another size).
      data_dir: defaults to cfg.resolved_data_dir.
      split: shard prefix.
      frames: None: every frame; an int n: the first min(n, T) frames; a callable
        num_frames (int32 scalar tensor) → int32 [N] frame indices, e.g.
        `lambda t: sample_indices(t, cfg.sequence_length).nearest()` for the real frames
        matching a stage-2 test sample.

    Returns:
      Dataset of dicts: frames uint8 [N, S, S, 3], frame_indices int32 [N], num_frames int32
      (T of the clip), label int32, clip_id string, joints float32 [N, J, 2] normalized,
      visibility float32 [N, J].
    """
    size = cfg.image_size

    def load(serialized):
        clip = tfrecords.parse_clip(serialized)
        n = clip["num_frames"]
        if frames is None:
            indices = tf.range(n)
        elif callable(frames):
            indices = tf.cast(frames(n), tf.int32)
        else:
            indices = tf.range(tf.minimum(n, int(frames)))
        decoded = _decode_resized(tf.gather(clip["frames_png"], indices), size)
        return {
            "frames": tf.cast(tf.clip_by_value(tf.round(decoded), 0.0, 255.0), tf.uint8),
            "frame_indices": indices,
            "num_frames": n,
            "label": clip["label"],
            "clip_id": clip["clip_id"],
            "joints": tf.gather(clip["joints"], indices),
            "visibility": tf.gather(clip["visibility"], indices),
        }

    paths = tfrecords.shard_paths(data_dir or cfg.resolved_data_dir, split)
    return (tf.data.TFRecordDataset(paths)
            .map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
            .prefetch(AUTOTUNE))
