"""Keypoint layers shared by the detector and the translator (paper §3.1, eqs. (1)–(3)).

Coordinates are (x, y) in [-1, 1] on the linspace grid: -1 is the centre of the first
pixel (left/top), +1 the centre of the last, as in the original code (from IMM).
"""

from __future__ import annotations

import keras
from keras import ops


def _grid(n, dtype):
    return ops.cast(ops.linspace(-1.0, 1.0, n), dtype)


@keras.saving.register_keras_serializable(package="kp_tf")
class KeypointExpectation(keras.layers.Layer):
    """Heatmap logits → keypoint coordinates by softmax-expectation (the detector Q's head).

    `mode="axis"` is the original code's `get_coord`: for y, the logits are averaged over the
    width, soft-maxed over the height and the expectation of the row coordinate is taken;
    x likewise with the axes swapped. `mode="spatial"` is the usual 2-D spatial softmax
    (a softmax over all H·W positions, then the expected (x, y)).

    Args:
      mode: "axis" (default, as the original) or "spatial".
      temperature: the logits are divided by it before the softmax (original: 1). Below 1 the
        distributions are sharper, so freshly initialised keypoints already sit on image
        structure instead of all at the centre (FOMM uses 0.1).

    Input: logits [B, H, W, K]. Output: keypoints [B, K, 2], (x, y) in [-1, 1].
    """

    def __init__(self, mode: str = "axis", temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("axis", "spatial"):
            raise ValueError(f"KeypointExpectation: mode must be 'axis' or 'spatial', got {mode!r}")
        self.mode = mode
        self.temperature = float(temperature)

    def call(self, logits):
        if self.temperature != 1.0:
            logits = logits / self.temperature
        h, w = ops.shape(logits)[1], ops.shape(logits)[2]
        ys, xs = _grid(h, logits.dtype), _grid(w, logits.dtype)
        if self.mode == "axis":
            p_y = ops.softmax(ops.mean(logits, axis=2), axis=1)  # [B, H, K]
            p_x = ops.softmax(ops.mean(logits, axis=1), axis=1)  # [B, W, K]
            y = ops.einsum("bhk,h->bk", p_y, ys)
            x = ops.einsum("bwk,w->bk", p_x, xs)
            return ops.stack([x, y], axis=-1)
        # The 2-D softmax written out over axes (1, 2) and normalised after the marginals:
        # a softmax over a flattened H·W axis that is not the last made TensorFlow transpose
        # [B, H·W, K] there and back, a third slower forward and backward (measured at
        # 24×64×64×48). Subtracting the (constant) maximum leaves the softmax unchanged.
        e = ops.exp(logits - ops.stop_gradient(ops.max(logits, axis=(1, 2), keepdims=True)))
        e_y, e_x = ops.sum(e, axis=2), ops.sum(e, axis=1)  # unnormalised marginals [B, H|W, K]
        total = ops.sum(e_y, axis=1)
        y = ops.einsum("bhk,h->bk", e_y, ys) / total
        x = ops.einsum("bwk,w->bk", e_x, xs) / total
        return ops.stack([x, y], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[3], 2)

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "temperature": self.temperature})
        return config


@keras.saving.register_keras_serializable(package="kp_tf")
class GaussianMaps(keras.layers.Layer):
    """Keypoints → one isotropic Gaussian map per keypoint (the translator's keypoint input).

    map_k(y, x) = exp(-((x - μx)² + (y - μy)²) · inv_std²) on the [-1, 1] linspace grid,
    unnormalised, as the original `get_gaussian_maps` ('rot' mode). inv_std = 14.3 gives
    σ ≈ 0.049 in normalised units (≈ 0.8 cells of a 32×32 map).

    Args:
      size: output resolution (square), e.g. 32 for the translator at 128×128.
      inv_std: inverse standard deviation in normalised units (default 14.3).

    Input: keypoints [B, K, 2] (x, y). Output: maps [B, size, size, K].
    """

    def __init__(self, size: int, inv_std: float = 14.3, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)
        self.inv_std = float(inv_std)

    def call(self, keypoints):
        grid = _grid(self.size, keypoints.dtype)
        mu_x = keypoints[:, None, :, 0]  # [B, 1, K]
        mu_y = keypoints[:, None, :, 1]
        d_x = ops.square(grid[None, :, None] - mu_x)  # [B, W, K]
        d_y = ops.square(grid[None, :, None] - mu_y)  # [B, H, K]
        dist = d_y[:, :, None, :] + d_x[:, None, :, :]  # [B, H, W, K]
        return ops.exp(-dist * (self.inv_std ** 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "inv_std": self.inv_std})
        return config
