"""Keypoint layers shared by the detector and the translator (paper §3.1, eqs. (1)–(3)).

Coordinates are (x, y) in [-1, 1] on the linspace grid: -1 is the centre of the first
pixel (left/top), +1 the centre of the last, as in the original code (from IMM).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from kp_tf.conventions import keypoints_to_pixels


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


def bilinear_sample(images, coordinates):
    """images [B, H, W, C] sampled at (x, y) `coordinates` [B, h, w, 2] on the [-1, 1] grid.

    Bilinear, with coordinates outside the frame clamped to its border (the edge pixels
    repeat, so a part moved in from outside the frame shows background, not black). The
    gradient flows to the images and to the coordinates (through the bilinear weights).
    Returns [B, h, w, C].
    """
    shape = ops.shape(images)
    b, height, width, channels = shape[0], images.shape[1], images.shape[2], images.shape[3]
    x = ops.clip(keypoints_to_pixels(coordinates[..., 0], width), 0.0, width - 1.0)
    y = ops.clip(keypoints_to_pixels(coordinates[..., 1], height), 0.0, height - 1.0)
    x0, y0 = ops.floor(x), ops.floor(y)
    wx, wy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = ops.cast(x0, "int32"), ops.cast(y0, "int32")
    x1, y1 = ops.minimum(x0 + 1, width - 1), ops.minimum(y0 + 1, height - 1)
    flat = ops.reshape(images, (-1, channels))  # [B·H·W, C]: one gather for all corners
    base = (ops.arange(b, dtype="int32") * (height * width))[:, None, None]

    def corner(yi, xi):
        return ops.take(flat, base + yi * width + xi, axis=0)  # [B, h, w, C]

    top = corner(y0, x0) * (1.0 - wx) + corner(y0, x1) * wx
    bottom = corner(y1, x0) * (1.0 - wx) + corner(y1, x1) * wx
    return top * (1.0 - wy) + bottom * wy


@keras.saving.register_keras_serializable(package="kp_tf")
class SparseMotion(keras.layers.Layer):
    """Keypoint pairs → K + 1 candidate backward warps (Monkey-Net's sparse motions, zeroth order).

    For an output pixel z of the target frame, candidate k samples the reference at
    z − t_k + r_k (the translation that carries reference keypoint r_k onto target keypoint
    t_k); candidate 0 is the identity (background). A dense-motion network later mixes them
    with soft masks (Siarohin et al. 2019, Monkey-Net eq. (4); FOMM eq. (6) without Jacobians).

    Args:
      size: the warp's resolution (square), e.g. S/4.

    Inputs: reference keypoints [B, K, 2], target keypoints [B, K, 2] ((x, y) in [-1, 1]).
    Output: sampling coordinates [B, size, size, K + 1, 2] in the reference, (x, y) in [-1, 1].
    """

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def call(self, reference_keypoints, target_keypoints):
        grid = _grid(self.size, reference_keypoints.dtype)
        xs, ys = ops.meshgrid(grid, grid)  # [size, size] each, x along the width
        identity = ops.stack([xs, ys], axis=-1)[None, :, :, None, :]  # [1, s, s, 1, 2]
        shift = (reference_keypoints - target_keypoints)[:, None, None, :, :]  # [B, 1, 1, K, 2]
        moved = identity + shift
        batch = ops.shape(reference_keypoints)[0]
        background = ops.broadcast_to(identity, (batch, self.size, self.size, 1, 2))
        return ops.concatenate([background, moved], axis=3)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[1] + 1, 2)

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size})
        return config


@keras.saving.register_keras_serializable(package="kp_tf")
class Warp(keras.layers.Layer):
    """Backward warp: `bilinear_sample(images, coordinates)` as a layer (no weights).

    Inputs: images [B, H, W, C], coordinates [B, h, w, 2] ((x, y) in [-1, 1], where each output
    pixel samples the images). Output: [B, h, w, C].
    """

    def call(self, images, coordinates):
        return bilinear_sample(images, coordinates)

    def compute_output_shape(self, images_shape, coordinates_shape):
        return tuple(coordinates_shape[:3]) + (images_shape[3],)


@keras.saving.register_keras_serializable(package="kp_tf")
class FrameDifference(keras.layers.Layer):
    """Each frame minus the first: the motion of a clip without its appearance (no weights).

    The motion-only action classifier (`kp_tf.evaluation.action`) reads this, so that a
    generated video is judged by how it moves, not by how the first frame looks.

    Input: video [B, T, H, W, C]. Output: [B, T, H, W, C], x_t − x_0 for every t.
    """

    def call(self, video):
        return video - video[:, :1]

    def compute_output_shape(self, video_shape):
        return tuple(video_shape)


@keras.saving.register_keras_serializable(package="kp_tf")
class CandidateWarps(keras.layers.Layer):
    """An image warped by each of the K + 1 candidate motions of `SparseMotion` (no weights).

    Inputs: images [B, h, w, C] (at the warp's resolution), candidates [B, h, w, K + 1, 2].
    Output: [B, h, w, (K + 1)·C], candidate-major: what the reference would look like if the
    whole frame moved with each keypoint (Monkey-Net's deformed sources).
    """

    def call(self, images, candidates):
        shape = ops.shape(candidates)
        b, h, w, n = shape[0], candidates.shape[1], candidates.shape[2], candidates.shape[3]
        c = images.shape[3]
        coordinates = ops.reshape(ops.transpose(candidates, (0, 3, 1, 2, 4)), (-1, h, w, 2))
        warped = bilinear_sample(ops.repeat(images, n, axis=0), coordinates)  # [B·n, h, w, C]
        warped = ops.transpose(ops.reshape(warped, (b, n, h, w, c)), (0, 2, 3, 1, 4))
        return ops.reshape(warped, (b, h, w, n * c))

    def compute_output_shape(self, images_shape, candidates_shape):
        return tuple(candidates_shape[:3]) + (candidates_shape[3] * images_shape[3],)


@keras.saving.register_keras_serializable(package="kp_tf")
class DenseFlow(keras.layers.Layer):
    """Soft masks over the K + 1 candidate motions → one dense backward flow (Monkey-Net eq. (4)).

    Inputs: masks [B, h, w, K + 1] (a softmax over the last axis), candidates
    [B, h, w, K + 1, 2]. Output: coordinates [B, h, w, 2] = Σ_k mask_k · candidate_k.
    """

    def call(self, masks, candidates):
        return ops.sum(masks[..., None] * candidates, axis=3)

    def compute_output_shape(self, masks_shape, candidates_shape):
        return tuple(candidates_shape[:3]) + (2,)


def antialias_matrix(size_in: int, size_out: int) -> np.ndarray:
    """The weights [size_out, size_in] of shrinking one axis bilinearly with antialiasing, as
    tf.image.resize(antialias=True) does (size_out < size_in): output i, centred at input
    position c = (i + ½)·f with f = size_in / size_out, averages the inputs j with the
    triangle weights max(0, 1 − |j + ½ − c| / f), renormalised to sum 1 where the triangle
    reaches past the border."""
    scale = size_in / size_out
    centres = (np.arange(size_out) + 0.5) * scale
    distance = np.abs(np.arange(size_in)[None, :] + 0.5 - centres[:, None]) / scale
    weights = np.maximum(0.0, 1.0 - distance)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


@keras.saving.register_keras_serializable(package="kp_tf")
class ResizeFlow(keras.layers.Layer):
    """A backward flow → the same flow at another resolution: its displacement from the
    identity is resized bilinearly (with antialiasing when it shrinks) and added to the
    identity grid of the new size (resizing the coordinates themselves would pull the border
    inwards).

    Shrinking is `antialias_matrix` applied along each axis, which is what
    tf.image.resize(antialias=True) computes (its ScaleAndTranslate kernel), written as two
    small matrix products because TFLite has no ScaleAndTranslate: with it the warp
    translator at motion_scale 1 or 2 would need Flex ops (kp_tf.tflite_export).

    Args:
      size: the output resolution S.

    Input: coordinates [B, h, w, 2]. Output: coordinates [B, size, size, 2].
    """

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def call(self, coordinates):
        h = coordinates.shape[1]
        small = _grid(h, coordinates.dtype)
        xs, ys = ops.meshgrid(small, small)
        displacement = coordinates - ops.stack([xs, ys], axis=-1)[None]
        if self.size < h:
            weights = ops.cast(antialias_matrix(h, self.size), displacement.dtype)
            displacement = ops.einsum("ih,bhwc->biwc", weights, displacement)
            displacement = ops.einsum("jw,biwc->bijc", weights, displacement)
        else:
            displacement = ops.image.resize(displacement, (self.size, self.size),
                                            interpolation="bilinear")
        big = _grid(self.size, coordinates.dtype)
        xs, ys = ops.meshgrid(big, big)
        return displacement + ops.stack([xs, ys], axis=-1)[None]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, 2)

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size})
        return config


@keras.saving.register_keras_serializable(package="kp_tf")
class NearestKeypointPrior(keras.layers.Layer):
    """Log-prior of the dense motion's masks: each pixel moves with the target keypoints near it.

    logit_k(z) = −‖z − t_k‖² / (2σ²) for keypoint k, and `background_logit` (−2: a keypoint 2σ
    away) for the background (candidate 0, the identity), so a pixel further than about 2σ from
    every target keypoint stays where it is. Added to the mask network's logits (whose kernel starts at
    zero), it makes the first flows follow the keypoints; the network learns the corrections.
    Without it the flow of a freshly initialised network is the mean of all candidates, and in
    a run of a few thousand steps the network settled on the identity everywhere.

    Args:
      size: the masks' resolution (square).
      sigma: σ in normalized units (2 = the width).
      background_logit: the identity's logit (−4: a keypoint about 2.8σ away still moves it).

    Input: target keypoints [B, K, 2]. Output: logits [B, size, size, K + 1].
    """

    def __init__(self, size: int, sigma: float, background_logit: float = -2.0, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)
        self.sigma = float(sigma)
        self.background_logit = float(background_logit)

    def call(self, keypoints):
        grid = _grid(self.size, keypoints.dtype)
        d_x = ops.square(grid[None, :, None] - keypoints[:, None, :, 0])  # [B, W, K]
        d_y = ops.square(grid[None, :, None] - keypoints[:, None, :, 1])  # [B, H, K]
        logits = -(d_y[:, :, None, :] + d_x[:, None, :, :]) / (2.0 * self.sigma ** 2)
        background = ops.full_like(logits[..., :1], self.background_logit)
        return ops.concatenate([background, logits], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[1] + 1)

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "sigma": self.sigma,
                       "background_logit": self.background_logit})
        return config


def prior_warp(reference, reference_keypoints, target_keypoints, sigma: float,
               background_logit: float = -2.0):
    """The reference moved by the network-free nearest-keypoint motion (no trainable weights).

    The warp translator's motion without its mask network: the K + 1 candidates of
    `SparseMotion`, mixed by the softmax of `NearestKeypointPrior` at the images' own
    resolution, then a bilinear warp. Differentiable in the keypoints (through the shifts and
    the masks), so a loss on its output tells each keypoint to follow what moves near it.

    Args:
      reference: [B, S, S, C]; reference_keypoints, target_keypoints: [B, K, 2] in [-1, 1].
      sigma, background_logit: as `NearestKeypointPrior`.
    Returns: [B, S, S, C].
    """
    size = reference.shape[1]
    prior = NearestKeypointPrior(size, sigma, background_logit=background_logit)
    masks = ops.softmax(prior(target_keypoints), axis=-1)
    flow = DenseFlow()(masks, SparseMotion(size)(reference_keypoints, target_keypoints))
    return bilinear_sample(reference, flow)


def _lstm_recurrence(zx, h0, c0, recurrent_kernel):
    """The recurrent half of an LSTM (Keras' gate order i, f, c, o; sigmoid gates, tanh), from
    the input projections `zx` [T, B, 4H] (time-major, bias included) and the initial state.
    Returns every step's h and c, [T, B, H] each.

    Written out with its gradient because TensorFlow's automatic one, through a while loop,
    adds each step's [H, 4H] recurrent-kernel gradient to an accumulator: at batch 16 that is
    an outer product of inner size 16 and a full [H, 4H] read and write per step, memory-bound.
    Here the backward loop keeps each step's pre-activation gradient, and the kernel's gradient
    is one matmul over all steps (as oneDNN's and cuDNN's LSTMs do)."""
    import tensorflow as tf

    @tf.custom_gradient
    def recur(zx, h0, c0, u):
        steps = tf.shape(zx)[0]

        def forward(t, h, c, hs, cs, gates):
            i, f, g, o = tf.split(zx[t] + tf.matmul(h, u), 4, axis=-1)
            i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
            c = f * c + i * g
            h = o * tf.tanh(c)
            return (t + 1, h, c, hs.write(t, h), cs.write(t, c),
                    gates.write(t, tf.concat([i, f, g, o], axis=-1)))

        # static element shapes, so that the outputs keep a static batch size (a caller's
        # own loop, such as the export's roll-out, needs its loop variables' shapes fixed)
        arrays = [tf.TensorArray(zx.dtype, size=steps, element_shape=shape)
                  for shape in (h0.shape, c0.shape, zx.shape[1:])]
        _, _, _, hs, cs, gates = tf.while_loop(
            lambda t, *_: t < steps, forward, [tf.constant(0), h0, c0] + arrays)
        hs, cs, gates = hs.stack(), cs.stack(), gates.stack()
        for stacked in (hs, cs, gates):  # the number of steps too, where it is static
            stacked.set_shape(zx.shape[:1].concatenate(stacked.shape[1:]))

        def backward(d_hs, d_cs):
            d_hs = tf.zeros_like(hs) if d_hs is None else d_hs
            d_cs = tf.zeros_like(cs) if d_cs is None else d_cs
            c_prev = tf.concat([c0[None], cs[:-1]], axis=0)
            # transposed once: MatMul(transpose_b=True) in the loop would transpose every step
            u_t = tf.transpose(u)

            def step(t, dh, dc, d_zs):
                i, f, g, o = tf.split(gates[t], 4, axis=-1)
                dh = dh + d_hs[t]
                tanh_c = tf.tanh(cs[t])
                dc = dc + d_cs[t] + dh * o * (1.0 - tanh_c * tanh_c)
                dz = tf.concat([dc * g * i * (1.0 - i), dc * c_prev[t] * f * (1.0 - f),
                                dc * i * (1.0 - g * g), dh * tanh_c * o * (1.0 - o)], axis=-1)
                return (t - 1, tf.matmul(dz, u_t), dc * f,
                        d_zs.write(t, dz))

            _, dh0, dc0, d_zs = tf.while_loop(
                lambda t, *_: t >= 0, step,
                [steps - 1, tf.zeros_like(h0), tf.zeros_like(c0),
                 tf.TensorArray(zx.dtype, size=steps, element_shape=zx.shape[1:])])
            d_zs = d_zs.stack()
            h_prev = tf.concat([h0[None], hs[:-1]], axis=0)
            units = tf.shape(h0)[-1]
            du = tf.matmul(tf.reshape(h_prev, [-1, units]),
                           tf.reshape(d_zs, [-1, 4 * units]), transpose_a=True)
            return d_zs, dh0, dc0, du

        return (hs, cs), backward

    return recur(zx, h0, c0, recurrent_kernel)


@keras.saving.register_keras_serializable(package="kp_tf")
class FastLSTM(keras.layers.LSTM):
    """`keras.layers.LSTM` (same arguments, weights and results) with a faster path on
    TensorFlow without cuDNN, used by the motion generator and the sequence discriminator
    (paper §3.2, eq. (5): their LSTM stacks).

    Keras' generic path multiplies every step's input by the kernel inside the loop and lets
    TensorFlow differentiate the loop. Here the input projection of all steps is one matmul
    before the loop, and the recurrence has its gradient written out (`_lstm_recurrence`), so
    both weight gradients are one matmul each over all steps. Other cases (masks, dropout,
    other activations, `go_backwards`, `unroll`, other backends, cuDNN) take Keras' path.

    Input: sequences [B, T, D]. Output: [B, T, units] with `return_sequences`, else
    [B, units]; the states with `return_state`, as `keras.layers.LSTM`.
    """

    def _fast_path(self, mask, training) -> bool:
        cell = self.cell
        return (keras.backend.backend() == "tensorflow" and mask is None
                and not (training and cell.dropout) and not cell.recurrent_dropout
                and not self.go_backwards and not self.unroll and cell.use_bias
                and cell.activation is keras.activations.tanh
                and cell.recurrent_activation is keras.activations.sigmoid
                and not self._uses_cudnn())

    @staticmethod
    def _uses_cudnn() -> bool:
        import tensorflow as tf
        return bool(tf.config.list_logical_devices("GPU"))

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not self._fast_path(mask, training):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        dtype = self.compute_dtype
        kernel = ops.cast(self.cell.kernel, dtype)
        recurrent_kernel = ops.cast(self.cell.recurrent_kernel, dtype)
        bias = ops.cast(self.cell.bias, dtype)
        zx = ops.matmul(ops.transpose(sequences, (1, 0, 2)), kernel) + bias
        hs, cs = _lstm_recurrence(zx, initial_state[0], initial_state[1], recurrent_kernel)
        last_h, last_c = hs[-1], cs[-1]
        outputs = ops.transpose(hs, (1, 0, 2)) if self.return_sequences else last_h[:, None]
        return last_h, outputs, [last_h, last_c]


@keras.saving.register_keras_serializable(package="kp_tf")
class FusedBatchNorm(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` (same arguments, weights and results) that runs
    TensorFlow's fused kernel where it can: the conv units of stage 1 (reference §2.1–2.5).

    Keras 3 normalises with separate ops (with `synchronized`, the moments as sums of x, of
    x² and of a tensor of ones, then the normalisation, each in float32 with casts around it
    under a mixed policy): most of the third of a stage-1 step's op time at the paper's size
    that is not convolution went to them. `FusedBatchNormV3` does the same in one kernel each way (oneDNN's on x86), in
    float32 inside for bfloat16 input as Keras. Its batch variance carries Bessel's correction;
    the moving variance is updated with the biased one, as Keras does. With `synchronized` and
    several replicas (the moments of the global batch), with a mask, `renorm`, input other than
    4-D channels-last, a dtype the kernel lacks (float64), or on another backend, Keras' own
    path runs.

    Input: [B, H, W, C]. Output: the same shape, in the layer's compute dtype.
    """

    def _fused(self, inputs, mask) -> bool:
        if keras.backend.backend() != "tensorflow" or mask is not None or self.renorm:
            return False
        if self.compute_dtype not in ("float32", "bfloat16", "float16"):  # the kernel's types
            return False
        if len(inputs.shape) != 4 or self.axis not in (-1, 3) or not (self.scale and self.center):
            return False
        if self.synchronized:
            import tensorflow as tf
            return tf.distribute.get_strategy().num_replicas_in_sync == 1
        return True

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = ops.cast(inputs, self.compute_dtype)
        gamma, beta = ops.cast(self.gamma, "float32"), ops.cast(self.beta, "float32")
        if training and self.trainable:
            out = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=tf.zeros([0]), variance=tf.zeros([0]),
                epsilon=self.epsilon, is_training=True)
            n = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)  # any dim may be dynamic
            biased_variance = out.batch_variance * (n - 1.0) / n
            self.moving_mean.assign(self.moving_mean * self.momentum
                                    + out.batch_mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum
                                        + biased_variance * (1.0 - self.momentum))
            return out.y
        return tf.raw_ops.FusedBatchNormV3(
            x=x, scale=gamma, offset=beta, mean=ops.cast(self.moving_mean, "float32"),
            variance=ops.cast(self.moving_variance, "float32"), epsilon=self.epsilon,
            is_training=False).y
