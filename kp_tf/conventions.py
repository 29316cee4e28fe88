"""The project's pixel and coordinate conventions, written once.

Pixels: uint8 0..255 in files, datasets and written videos; float32 in [-1, 1] inside the
networks (the original's x / 255 · 2 − 1); float32 in [0, 1] for image metrics.

Keypoints and joints: (x, y) with x along the width, normalized to [-1, 1] on the linspace
grid: −1 is the centre of the first pixel (left or top), +1 the centre of the last, as the
original code (from IMM). A pixel position p (pixel centres at integers) is 2p / (n − 1) − 1.

Every function takes NumPy arrays; `to_model` also takes TensorFlow tensors (the tf.data
pipelines), and `keypoints_to_pixels` works on either, with plain arithmetic.
"""

from __future__ import annotations

import numpy as np

# The most frames one request may make (predict_video, interpolate, a driving video of animate)
# and the most the commands accept: the export's outputs hold every frame at once, 4096 float32
# frames at 128 × 128 being 0.8 GB.
MAX_FRAMES = 4096


def to_model(pixels):
    """uint8 (or float) 0..255 → float32 in [-1, 1]: what the networks see."""
    if isinstance(pixels, (np.ndarray, np.generic, list, tuple, int, float)):
        return np.asarray(pixels, np.float32) / 127.5 - 1.0
    import tensorflow as tf

    return tf.cast(pixels, tf.float32) / 127.5 - 1.0


def to_uint8(images) -> np.ndarray:
    """Float images in [-1, 1] (clipped, rounded to nearest) → uint8 0..255."""
    return np.clip((np.asarray(images, np.float32) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def to_unit(images) -> np.ndarray:
    """uint8 0..255 → float32 [0, 1]; float input is taken to be in [0, 1] already."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32)


def model_to_unit(images) -> np.ndarray:
    """Float images in [-1, 1] (clipped) → float32 [0, 1] (metrics of network outputs)."""
    return (np.clip(np.asarray(images, np.float32), -1.0, 1.0) + 1.0) / 2.0


def pixels_to_normalized(xy, height: int, width: int) -> np.ndarray:
    """(x, y) pixel positions → normalized coordinates (see the module docstring)."""
    scale = np.array([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], np.float32)
    return np.asarray(xy, np.float32) * scale - 1.0


def normalized_to_pixels(xy, height: int, width: int) -> np.ndarray:
    """Normalized (x, y) → pixel positions (pixel centres at integers)."""
    scale = np.array([(width - 1) / 2.0, (height - 1) / 2.0], np.float32)
    return (np.asarray(xy, np.float32) + 1.0) * scale


def keypoints_to_pixels(xy, size):
    """Normalized coordinates → pixel positions in a square frame of `size` pixels (NumPy
    arrays or tensors; the keypoints' own dtype)."""
    return (xy + 1.0) * 0.5 * (size - 1.0)
