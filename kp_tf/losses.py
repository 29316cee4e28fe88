"""Losses of both stages (paper eqs. (2), (4), (5)), written with keras.ops.

GAN losses are the non-saturating BCE-with-logits of the original code, averaged over the
batch and, for the patch discriminator, over all logit positions.
"""

from __future__ import annotations

import keras
from keras import ops

from kp_tf import layers


def _bce_with_logits(logits, target: float):
    # floatx: a mixed-precision discriminator's logits are bfloat16
    logits = ops.cast(logits, keras.config.floatx())
    labels = ops.full_like(logits, target)
    return ops.mean(ops.binary_crossentropy(labels, logits, from_logits=True))


def discriminator_loss(real_logits, fake_logits):
    """BCE(D(real), 1) + BCE(D(fake), 0), each averaged over batch and positions."""
    return _bce_with_logits(real_logits, 1.0) + _bce_with_logits(fake_logits, 0.0)


def generator_adversarial_loss(fake_logits):
    """Non-saturating generator loss BCE(D(fake), 1)."""
    return _bce_with_logits(fake_logits, 1.0)


def keypoint_equivariance(keypoints, warped_keypoints, matrix, shift):
    """Equivariance loss (not in the paper; FOMM's and Thewlis et al.'s): mean |Q(W(x)) − W(Q(x))|.

    The keypoints of a warped image should be the image's keypoints moved by the same warp
    u → matrix @ u + shift, so each keypoint lands on the same part of the object.

    Args:
      keypoints: Q(x) [B, K, 2]; warped_keypoints: Q(W(x)) [B, K, 2] (normalized).
      matrix: [B, 2, 2]; shift: [B, 2].
    Returns: scalar, mean over batch, keypoints and both coordinates.
    """
    moved = ops.einsum("bij,bkj->bki", matrix, keypoints) + shift[:, None, :]
    return ops.mean(ops.abs(warped_keypoints - moved))


def keypoint_separation(keypoints, sigma: float):
    """Separation loss (not in the paper; Zhang et al. 2018, "Unsupervised Discovery of Object
    Landmarks as Structural Representations", eq. (4)): mean over ordered pairs i ≠ j of
    exp(−‖k_i − k_j‖² / (2σ²)).

    Keypoints that sit on top of each other carry the same information; the term pushes
    pairs closer than a few σ apart, so the K keypoints cover more of the object.

    Args:
      keypoints: [B, K, 2] (normalized units, 2 = the width); sigma: in the same units.
    Returns: scalar in [0, 1]: 1 when all keypoints coincide, → 0 when they are far apart.
    """
    diff = keypoints[:, :, None, :] - keypoints[:, None, :, :]
    closeness = ops.exp(-ops.sum(ops.square(diff), axis=-1) / (2.0 * sigma ** 2))  # [B, K, K]
    k = ops.shape(keypoints)[1]
    pairs = ops.cast(k * (k - 1), closeness.dtype)
    # the diagonal (i = j) contributes exactly 1 per keypoint
    per_image = (ops.sum(closeness, axis=(1, 2)) - ops.cast(k, closeness.dtype)) / pairs
    return ops.mean(per_image)


def keypoint_warp_errors(reference, target, reference_keypoints, target_keypoints,
                         sigma: float, background_logit: float = -4.0, scales=(1, 2, 4)):
    """|T − warp(R)| per pixel at each level of an image pyramid, where warp moves the
    reference R by the nearest-keypoint motion of the detected keypoints
    (`layers.prior_warp`) and T is the target; the levels are average-pooled by `scales`.
    The keypoint motion and coverage losses both read these maps, so a step warps once.

    Args:
      reference, target: [B, S, S, C]; reference_keypoints, target_keypoints: [B, K, 2] in
      [-1, 1]. sigma, background_logit: of the nearest-keypoint prior.
    Returns: {factor: [B, S / factor, S / factor, C]}.
    """
    errors = {}
    for factor in scales:
        r, t = reference, target
        if factor > 1:
            r = ops.average_pool(r, factor, factor, padding="valid")
            t = ops.average_pool(t, factor, factor, padding="valid")
        moved = layers.prior_warp(r, reference_keypoints, target_keypoints, sigma,
                                  background_logit)
        errors[factor] = ops.abs(moved - t)
    return errors


def keypoint_motion(errors):
    """Motion loss of the keypoints (not in the paper; the self-supervision of Monkey-Net and
    FOMM without their networks): the mean of the per-level mean absolute errors of
    `keypoint_warp_errors`.

    The perceptual loss only asks the keypoints to carry enough for the translator; this term
    pays a keypoint for sitting where a translation of its neighbourhood explains the change
    from R to T, so keypoints move onto the parts that move and follow them. Its
    gradient reaches the keypoints through edges only; the coarser levels widen them.

    Args:
      errors: {factor: [B, s, s, C]}, as `keypoint_warp_errors` returns.
    Returns: scalar.
    """
    return ops.mean(ops.stack([ops.mean(error) for error in errors.values()]))


def keypoint_coverage(error, reference_keypoints, target_keypoints):
    """Coverage loss of the keypoints (not in the paper): each pixel whose change the
    network-free warp leaves unexplained pulls its nearest keypoint towards it,
    Σ_z e(z) min_k ‖z − p_k‖² / Σ_z e(z), with e the warp's error (no gradient) averaged over
    channels, for the reference and the target keypoints alike.

    The motion loss only moves keypoints that already sit within a few σ of a moving part;
    a raised arm with none near it stays unexplained. This term reaches across the image
    (k-means on the unexplained error), so the nearest keypoint walks onto the arm, and the
    motion loss then makes it follow it.

    Args:
      error: [B, s, s, C], one level of `keypoint_warp_errors` (the trainer's: 1/2 size).
      reference_keypoints, target_keypoints: [B, K, 2] in [-1, 1].
    Returns: scalar, a squared distance in normalized units (2 = the width).
    """
    error = ops.stop_gradient(ops.mean(error, axis=-1))  # [B, s, s]
    size = error.shape[1]
    line = ops.cast(ops.linspace(-1.0, 1.0, size), error.dtype)
    xs, ys = ops.meshgrid(line, line)  # "xy" indexing: xs varies along the width
    pixels = ops.reshape(ops.stack([xs, ys], axis=-1), (1, size * size, 1, 2))
    weights = ops.reshape(error, (-1, size * size))
    weights = weights / (ops.sum(weights, axis=1, keepdims=True) + 1e-6)

    def pull(keypoints):
        nearest = ops.min(ops.sum(ops.square(pixels - keypoints[:, None]), axis=-1), axis=-1)
        return ops.sum(weights * nearest, axis=1)  # [B]

    return ops.mean(pull(reference_keypoints) + pull(target_keypoints)) / 2.0


def kl_divergence(mu, log_var, free_bits: float = 0.0):
    """KL(N(mu, exp(log_var)) ‖ N(0, I)), summed over latent dims, averaged over the batch.

    The paper's eq. (5) KL term. The original code parameterised σ directly through a ReLU
    (so σ ≥ 0 and μ ≥ 0); we use the standard log-variance head instead (README, differences).
    With `free_bits` > 0 (nats per latent dimension; Kingma et al. 2016), each dimension's
    batch-mean KL counts as at least that much, so the loss stops pushing a dimension below it
    and z is not driven to carry nothing (posterior collapse). 0 is the plain KL.
    """
    per_dim = 0.5 * ops.mean(ops.square(mu) + ops.exp(log_var) - log_var - 1.0, axis=0)
    if free_bits > 0:
        per_dim = ops.maximum(per_dim, free_bits)
    return ops.sum(per_dim)


def keypoint_l1(predicted, target):
    """Mean absolute coordinate error over batch × time × 2K (λ2 multiplies it)."""
    return ops.mean(ops.abs(predicted - target))


# Caffe preprocessing of keras.applications.vgg19: BGR order, ImageNet means, no std.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="kp_tf")
class PerceptualLoss(keras.layers.Layer):
    """VGG19 perceptual loss of eq. (4): mean over layers of the L1 feature distance.

    Images in [-1, 1] are mapped to [0, 255], RGB→BGR, minus the Caffe means (exactly
    `keras.applications.vgg19.preprocess_input`), then compared at each of `layers` (post-ReLU
    activations) by mean absolute difference; the layer losses are averaged with equal weight,
    as in the original code. With `scales` beyond (1,), the same distance is also taken on both
    images average-pooled by each factor and the scales are averaged (FOMM's pyramid, Siarohin
    et al. 2019, §3.4), so that a part that moved further than the shallow layers' receptive
    field still pulls the prediction towards it. VGG19 is frozen. Its ImageNet weights are
    found by the project's rule for pretrained files (kp_tf.pretrained.vgg19_weights: flag,
    Keras' cache, the shared folder, the download) and checked before use.

    Args:
      layers: VGG19 layer names, e.g. ["block1_conv2", ..., "block5_conv4"].
      weights: "imagenet", a path to the h5 file, or None / "none" (random; for tests only).
      scales: average-pooling factors of the pyramid, e.g. (1, 2, 4); (1,) is eq. (4).

    Call: `loss(prediction, target)`, both [B, H, W, 3] in [-1, 1] → scalar.
    """

    def __init__(self, layers, weights="imagenet", scales=(1,), **kwargs):
        # Always frozen. Its config carries trainable=False (Layer.get_config), which comes back
        # here through from_config: set, not passed twice.
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.layer_names = list(layers)
        self.weights_source = weights
        self.scales = tuple(int(f) for f in scales)
        if not self.scales or min(self.scales) < 1:
            raise ValueError(f"PerceptualLoss: scales must be pooling factors ≥ 1, got {scales}")
        from kp_tf import pretrained

        vgg = keras.applications.VGG19(include_top=False,
                                       weights=pretrained.vgg19_weights(weights))
        vgg.trainable = False
        self.features = keras.Model(
            vgg.input, [vgg.get_layer(n).output for n in self.layer_names], name="vgg19_features")
        self.features.trainable = False

    def _preprocess(self, images):
        rgb = (images + 1.0) * 127.5
        bgr = ops.flip(rgb, axis=-1)
        return bgr - ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=bgr.dtype)

    def call(self, prediction, target):
        return ops.mean(self.distances(prediction, target))

    def distances(self, prediction, target):
        """The loss of each image pair: [B] (mean over layers of the mean |Δ feature|)."""
        # Two passes, not one over the concatenated batch: the target needs no gradient, and
        # the backward pass of a joint pass would run VGG's input gradient over both halves
        # (plus the slices' gradients) only to drop the target's.
        target = ops.stop_gradient(target)
        per_scale = []
        for factor in self.scales:
            p, t = prediction, target
            if factor > 1:
                p = ops.average_pool(p, factor, factor)
                t = ops.average_pool(t, factor, factor)
            per_layer = [ops.mean(ops.abs(a - b), axis=(1, 2, 3))
                         for a, b in zip(self._features(p), self._features(t))]
            per_scale.append(ops.mean(ops.stack(per_layer, axis=1), axis=1))
        return ops.mean(ops.stack(per_scale, axis=1), axis=1)

    def _features(self, images):
        features = self.features(self._preprocess(images))
        if not isinstance(features, (list, tuple)):
            features = [features]
        # floatx (float32) before the difference: under a mixed policy the features are bfloat16
        return [ops.cast(f, keras.config.floatx()) for f in features]

    def get_config(self):
        config = super().get_config()
        config.update({"layers": self.layer_names, "weights": self.weights_source,
                       "scales": list(self.scales)})
        return config


def motion_generator_losses(cfg, reconstruction, target, mu, log_var, fake_logits=None):
    """Generator loss L_M of eq. (5): λ_kl·KL + λ2·L1 + λ3·adversarial.

    Args:
      cfg: Config (lambda_kl, lambda_l1, lambda_sequence_adv).
      reconstruction, target: [B, L, K, 2] decoded and pseudo-label sequences.
      mu, log_var: [B, latent_dim] posterior statistics.
      fake_logits: D_seq(reconstruction) [B, 1]; None drops the adversarial term (a cVAE
        trained without D_seq), reported as 0.

    Returns:
      {"kl", "l1", "adversarial", "total"} scalars; "l1" is unweighted (mean absolute
      coordinate error), "kl" the plain KL, "total" the weighted sum to minimise (its KL
      term floored per dimension at cfg.kl_free_bits when that is > 0).
    """
    # floatx terms under a mixed policy too: the L1 is weighted by 1000, beyond bfloat16's
    # 8-bit mantissa for the small errors late in training.
    reconstruction, mu, log_var = (ops.cast(x, keras.config.floatx())
                                   for x in (reconstruction, mu, log_var))
    kl = kl_divergence(mu, log_var)
    kl_loss = kl_divergence(mu, log_var, cfg.kl_free_bits) if cfg.kl_free_bits else kl
    l1 = keypoint_l1(reconstruction, target)
    if fake_logits is None:
        adversarial = ops.zeros((), dtype=kl.dtype)
    else:
        adversarial = generator_adversarial_loss(fake_logits)
    total = cfg.lambda_kl * kl_loss + cfg.lambda_l1 * l1 + cfg.lambda_sequence_adv * adversarial
    return {"kl": kl, "l1": l1, "adversarial": adversarial, "total": total}

