"""Training augmentation in pure TF: stage-1 frame pairs and stage-2 keypoint sequences.

Every random draw is stateless (`tf.random.stateless_*` from an explicit `[2]` int seed), so a
pipeline that derives one seed per element gets the same augmentation on every run.

Geometry lives in the normalized coordinates of `kp_tf.data.tfrecords` ((x, y) in [-1, 1],
-1/+1 at the first/last pixel centre, 0 at the image centre). A transform is the affine map
`u_out = A @ u_in + b`, applied to points by `transform_points` and to images (through its
inverse) by `warp_images`, so ground-truth joints follow the image exactly.

Stage 1 (original `data/image_pair_dataloader.py`): rotation about the centre, random crop,
horizontal flip, then one of ten equiprobable photometric filters modelled on the PIL ones the
original draws from (`utils/data.py::apply_random_filter`). Our frames are already square, so
the random crop becomes "zoom in by z ~ U[1, 1.15], crop S×S at a uniform offset".
Stage 2 (original `data/sequence_dataloader.py`): rotation about (0, 0), x-flip and scaling of
all keypoints of a sample.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

# --- stage-1 ranges (original code in brackets)
MAX_ROTATION_DEG = 10.0   # [integer U{-10..10}°]
MAX_ZOOM = 1.15           # crop = zoom in by U[1, MAX_ZOOM] then crop at a uniform offset
# --- stage-2 ranges
KEYPOINT_MAX_ROTATION_DEG = 15  # integer degrees, as the original
KEYPOINT_SCALE_RANGE = (0.70, 1.20)


# --- geometry ------------------------------------------------------------------------------

def geometry_matrix(angle_deg, scale, flip):
    """A = scale · F · R(angle): rotate about the origin, mirror x if `flip`, then scale.

    Args: scalar float angle in degrees, scalar float scale, scalar bool flip.
    Returns: float32 [2, 2], acting on column vectors (x, y).
    """
    theta = tf.cast(angle_deg, tf.float32) * (math.pi / 180.0)
    c, s = tf.cos(theta), tf.sin(theta)
    rotation = tf.stack([tf.stack([c, -s]), tf.stack([s, c])])
    mirror = tf.linalg.diag(tf.stack([tf.where(flip, -1.0, 1.0), 1.0]))
    return tf.cast(scale, tf.float32) * tf.matmul(mirror, rotation)


def transform_points(points, matrix, offset=None):
    """u_out = matrix @ u + offset for every point.

    Args:
      points: float32 [..., 2] (x, y) normalized coordinates.
      matrix: float32 [2, 2]; offset: optional float32 [2].
    Returns: float32 [..., 2].
    """
    # One [N, 2] x [2, 2] product. tf.linalg.matvec broadcast the matrix to every point and
    # ran N tiny batched products: it made keypoint augmentation 2/3 of the stage-2 input
    # pipeline's time (1,300-1,500 vs 4,600 sequences/s without augmentation, 2 cores).
    out = tf.tensordot(points, matrix, axes=[[-1], [1]])
    return out if offset is None else out + offset


def warp_images(images, matrix, offset, fill_mode="CONSTANT"):
    """Resamples images so that content at u moves to matrix @ u + offset (bilinear).

    The original rotates with PIL nearest-neighbour; bilinear avoids its jagged edges. Outside
    the source image the fill is black, as in the original, or the nearest border pixel with
    `fill_mode="NEAREST"`.

    Args:
      images: float32 [N, S, S, C] (square, same size in and out).
      matrix: float32 [2, 2]; offset: float32 [2]; both in normalized coordinates.
      fill_mode: "CONSTANT" (black) or "NEAREST".
    Returns: float32 [N, S, S, C].
    """
    size = tf.shape(images)[1]
    # ImageProjectiveTransformV3 wants output pixel → input pixel. Normalized ↔ pixel:
    # u = alpha·p − 1 with alpha = 2 / (S − 1) (integer pixel coordinates are pixel centres).
    inverse = tf.linalg.inv(matrix)
    alpha = 2.0 / tf.maximum(tf.cast(size, tf.float32) - 1.0, 1.0)
    # p_in = (inverse @ (alpha·p_out − 1 − offset) + 1) / alpha
    #      = inverse @ p_out + (1 − inverse @ (1 + offset)) / alpha
    shift = (1.0 - tf.linalg.matvec(inverse, 1.0 + offset)) / alpha
    transform = tf.stack([inverse[0, 0], inverse[0, 1], shift[0],
                          inverse[1, 0], inverse[1, 1], shift[1], 0.0, 0.0])
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transform[tf.newaxis],
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode=fill_mode,
    )


# --- photometric filters (PIL look-alikes) -------------------------------------------------

# Constants stay NumPy until used: creating tensors at import time would initialise the TF
# runtime and forbid later device configuration (logical devices, memory growth).

def _kernel(rows, divisor):
    """A PIL `ImageFilter.Kernel` as a NumPy array, zero-padded to 5×5 (one code path)."""
    k = np.asarray(rows, np.float32) / divisor
    pad = (5 - k.shape[0]) // 2
    return np.pad(k, pad)


# PIL's built-in kernels (ImageFilter.py); each sums to 1, so flat regions stay unchanged.
_DETAIL = _kernel([[0, -1, 0], [-1, 10, -1], [0, -1, 0]], 6.0)
_EDGE_ENHANCE = _kernel([[-1, -1, -1], [-1, 10, -1], [-1, -1, -1]], 2.0)
_EDGE_ENHANCE_MORE = _kernel([[-1, -1, -1], [-1, 9, -1], [-1, -1, -1]], 1.0)
_SMOOTH = _kernel([[1, 1, 1], [1, 5, 1], [1, 1, 1]], 13.0)
_SMOOTH_MORE = _kernel([[1, 1, 1, 1, 1], [1, 5, 5, 5, 1], [1, 5, 44, 5, 1],
                        [1, 5, 5, 5, 1], [1, 1, 1, 1, 1]], 100.0)
_BLUR = _kernel([[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1],
                 [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]], 16.0)

# Every filter is written as PIL's ImageEnhance blend `degenerate + factor · (x − degenerate)`:
# a kernel filter is the blend with factor 0 (output = its degenerate image). Factor ranges
# follow the original's discrete draws (e.g. U{7..20}·0.1 → U[0.7, 2.0]).
FILTERS = (
    # name,              degenerate image,     factor range
    ("detail",            _DETAIL,              (0.0, 0.0)),
    ("edge_enhance",      _EDGE_ENHANCE,        (0.0, 0.0)),
    ("smooth",            _SMOOTH,              (0.0, 0.0)),
    ("smooth_more",       _SMOOTH_MORE,         (0.0, 0.0)),
    ("edge_enhance_more", _EDGE_ENHANCE_MORE,   (0.0, 0.0)),
    ("blur",              _BLUR,                (0.0, 0.0)),
    ("sharpness",         _SMOOTH,              (0.0, 5.0)),  # PIL blends with SMOOTH
    ("brightness",        "black",              (0.7, 2.0)),
    ("color",             "grey",               (0.0, 5.0)),  # saturation
    ("contrast",          "mean_grey",          (0.7, 3.0)),
)
_FACTOR_RANGES = np.asarray([r for _, _, r in FILTERS], np.float32)  # [NUM_FILTERS, 2]
NUM_FILTERS = len(FILTERS)


def _convolve(images, kernel):
    """Per-channel 5×5 filtering with edge-mirroring padding ([N, H, W, C] float32).

    Written as a weighted sum of shifted views, one per non-zero tap of the NumPy `kernel`
    (9 for the 3×3 kernels): on CPU this beats `depthwise_conv2d` (3 channels), a
    block-diagonal `conv2d` and a kernel looked up at run time, at the price of one graph
    branch per kernel. PIL copies the border pixels unchanged; SYMMETRIC padding is the
    closest conv-friendly choice and, unlike zero padding, does not darken or ring at the
    frame edge. PIL's kernels are symmetric, so correlation and convolution agree.
    """
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    padded = tf.pad(images, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="SYMMETRIC")
    out = 0.0
    for (dy, dx), weight in np.ndenumerate(kernel):
        if weight != 0.0:
            out += float(weight) * padded[:, dy:dy + height, dx:dx + width, :]
    return out


def _grey(images):
    """ITU-R 601-2 luma, PIL's "L" conversion: [N, H, W, 3] → [N, H, W, 1]."""
    return tf.reduce_sum(images * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)


def _degenerate(images, index):
    """The image that filter `index` blends towards (see FILTERS), [N, H, W, 3]."""
    def branch(spec):
        if not isinstance(spec, str):  # a kernel
            return lambda: _convolve(images, spec)
        if spec == "black":
            return lambda: tf.zeros_like(images)
        if spec == "grey":
            return lambda: tf.broadcast_to(_grey(images), tf.shape(images))
        if spec == "mean_grey":  # PIL: the mean of the greyscale histogram, one per image
            return lambda: tf.broadcast_to(
                tf.reduce_mean(_grey(images), axis=[1, 2, 3], keepdims=True), tf.shape(images))
        raise ValueError(f"unknown degenerate image {spec!r}")

    return tf.switch_case(index, [branch(spec) for _, spec, _ in FILTERS])


def apply_filter(images, index, factor):
    """One photometric filter with one factor applied to every image of the batch.

    Args:
      images: float32 [N, H, W, 3] in [0, 255].
      index: int32 scalar in [0, NUM_FILTERS); factor: float32 scalar (ignored by kernels,
        whose factor range is [0, 0]).
    Returns: float32 [N, H, W, 3] clipped to [0, 255], as PIL's uint8 output would be.
    """
    degenerate = _degenerate(images, tf.convert_to_tensor(index, tf.int32))
    out = degenerate + factor * (images - degenerate)
    return tf.clip_by_value(out, 0.0, 255.0)


# --- stage 1 -------------------------------------------------------------------------------

def sample_frame_augmentation(seed):
    """Random stage-1 augmentation parameters from a stateless seed.

    Args: seed: int [2].
    Returns: dict with matrix [2, 2] and offset [2] (normalized coordinates, see
      `transform_points`), filter_index int32 scalar, filter_factor float32 scalar.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=6)
    angle = tf.random.stateless_uniform([], seeds[0], -MAX_ROTATION_DEG, MAX_ROTATION_DEG)
    zoom = tf.random.stateless_uniform([], seeds[1], 1.0, MAX_ZOOM)
    # Crop offset: the zoomed image spans [-zoom, zoom]; a window of half-width 1 fits at
    # centres within ±(zoom − 1), uniformly.
    centre = (zoom - 1.0) * tf.random.stateless_uniform([2], seeds[2], -1.0, 1.0)
    flip = tf.random.stateless_uniform([], seeds[3]) < 0.5
    index = tf.random.stateless_uniform([], seeds[4], 0, NUM_FILTERS, dtype=tf.int32)
    low, high = tf.unstack(tf.gather(tf.constant(_FACTOR_RANGES), index))
    factor = low + (high - low) * tf.random.stateless_uniform([], seeds[5])
    # u_out = F·(zoom·R·u − centre): rotate about the centre, zoom, shift the crop window
    # to the origin, then mirror.
    mirror = geometry_matrix(0.0, 1.0, flip)
    return {"matrix": geometry_matrix(angle, zoom, flip),
            "offset": -transform_points(centre, mirror),
            "filter_index": index, "filter_factor": factor}


def augment_frames(frames, seed, points=None):
    """Stage-1 augmentation with one set of random parameters for all frames (and points).

    Args:
      frames: float32 [N, S, S, 3] in [0, 255] (the reference and target frame of a pair).
      seed: int [2], stateless seed.
      points: optional float32 [N, J, 2] normalized joints, moved with the geometry.
    Returns: (frames float32 [N, S, S, 3] in [0, 255], points or None).
    """
    p = sample_frame_augmentation(seed)
    frames = warp_images(frames, p["matrix"], p["offset"])
    frames = apply_filter(frames, p["filter_index"], p["filter_factor"])
    if points is not None:
        points = transform_points(points, p["matrix"], p["offset"])
    return frames, points


def random_similarity(seed, max_shift, max_rotation, max_scale):
    """A random similarity u → matrix @ u + shift: rotation U[±max_rotation]°, scale
    1 + U[±max_scale], shift U[±max_shift] per axis (normalized units).

    Args: seed: int [2]. Returns: (float32 [2, 2] matrix, float32 [2] shift).
    """
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    angle = tf.random.stateless_uniform([], seeds[0], -max_rotation, max_rotation)
    scale = 1.0 + tf.random.stateless_uniform([], seeds[1], -max_scale, max_scale)
    shift = tf.random.stateless_uniform([2], seeds[2], -max_shift, max_shift)
    return geometry_matrix(angle, scale, tf.constant(False)), shift


def jitter_target(frames, seed, points=None, *, max_shift=0.0, max_rotation=0.0, max_scale=0.0):
    """Moves the second frame of a pair (the target) alone by a random similarity transform.

    Not in the paper: Jakab et al. (2018) train the same kind of keypoint bottleneck on
    synthetic warps of one image. With a static camera most of a target frame equals the
    reference, and a translator that copies the reference (mask 1) is an optimum that the
    keypoints cannot leave in a short run; a target moved as a whole can only be rendered by
    following its keypoints. The border is filled with the nearest pixel, so a plain
    background stays plain.

    Args:
      frames: float32 [2, S, S, 3] (reference, target); seed: int [2].
      points: optional float32 [2, J, 2] joints; the target's move with it.
      max_shift: translation bound per axis, normalized units; max_rotation: degrees;
        max_scale: the scale is 1 + U[-max_scale, max_scale].
    Returns: (frames, points or None).
    """
    matrix, shift = random_similarity(seed, max_shift, max_rotation, max_scale)
    target = warp_images(frames[1:], matrix, shift, fill_mode="NEAREST")
    frames = tf.concat([frames[:1], target], axis=0)
    if points is not None:
        points = tf.concat([points[:1], transform_points(points[1:], matrix, shift)], axis=0)
    return frames, points


# --- stage 2 -------------------------------------------------------------------------------

def sample_keypoint_augmentation(seed, flip: bool = True):
    """Stage-2 transform: rotation U{-15..15}° about (0, 0), x-flip p=0.5, scale U[0.7, 1.2].

    Args: seed: int [2]; flip: whether to draw the x-flip (false: never mirror).
    Returns: float32 [2, 2] matrix (no offset: everything is about the
    centre, as in the original, where (0, 0) is the crop centre).
    """
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    angle = tf.random.stateless_uniform(
        [], seeds[0], -KEYPOINT_MAX_ROTATION_DEG, KEYPOINT_MAX_ROTATION_DEG + 1, dtype=tf.int32)
    mirror = tf.logical_and(flip, tf.random.stateless_uniform([], seeds[1]) < 0.5)
    scale = tf.random.stateless_uniform([], seeds[2], *KEYPOINT_SCALE_RANGE)
    return geometry_matrix(angle, scale, mirror)


def augment_keypoints(points, seed, flip: bool = True):
    """Applies one random stage-2 transform to all keypoints of a sample.

    Args: points: float32 [..., 2] (e.g. [L + 1, K, 2]: first frame and sequence together, so
      they stay consistent); seed: int [2]; flip: allow the x-flip.
    Returns: float32 [..., 2]. Not clamped to [-1, 1] (nor is the original).
    """
    return transform_points(points, sample_keypoint_augmentation(seed, flip))
