"""The translator T (paper §3.1, eqs. (2)–(3)) and its image encoder: reference appearance plus
keypoints → the target frame.

Two translators share one call: the paper's (`ImageTranslator`: the decoder paints the target
from the reference's features and both keypoint maps, then blends with the reference frame
through a mask) and a keypoint-driven warping one beyond the paper (`WarpTranslator`: a dense
motion field, in the manner of Monkey-Net / FOMM, first moves the reference's features and
pixels to where the target keypoints are, so a moving limb carries its own texture along).
"""

from __future__ import annotations

import keras
from keras import layers

from kp_tf.layers import (CandidateWarps, DenseFlow, GaussianMaps, NearestKeypointPrior,
                          SparseMotion, ResizeFlow, Warp)
from kp_tf.models.blocks import conv_bn_relu, encoder, upsample

TRANSLATORS = ("paper", "warp")
WARP_BLENDS = ("mask", "occlusion")


def _decode(x, filters, momentum, head, mask_bias_init):
    """The paper translator's decoder (4 convs per scale, widths halving from `filters`,
    bilinear ×2, then 2 convs) → (generated image s [B, S, S, 3] linear, mask m [B, S, S, 1])."""
    width = filters
    for i in range(2):
        for j in range(4):
            x = conv_bn_relu(x, width, 3, 1, f"decoder_{i}_{j}", momentum)
        x = upsample(x, f"decoder_{i}_up")
        width //= 2
    for j in range(2):
        x = conv_bn_relu(x, width, 3, 1, f"decoder_2_{j}", momentum)
    # Output heads in floatx (float32) under a mixed policy (the images enter the losses).
    generated = layers.Conv2D(3, 3, padding="same", dtype=head, name="generated")(x)
    mask = layers.Conv2D(1, 3, padding="same", activation="sigmoid", dtype=head, name="mask",
                         bias_initializer=keras.initializers.Constant(mask_bias_init))(x)
    return generated, mask


def _motion_network(x, filters, momentum, num_keypoints, prior_sigma, head):
    """The warp translator's dense-motion hourglass (two stride-2 levels, skips) → the logits of
    the K + 1 candidate masks and the occlusion map o (sigmoid), at the input's resolution."""
    m = momentum
    x0 = conv_bn_relu(x, filters, 3, 1, "motion_0", m)
    x1 = conv_bn_relu(x0, 2 * filters, 3, 2, "motion_1", m)
    x2 = conv_bn_relu(x1, 4 * filters, 3, 2, "motion_2", m)
    x = layers.Concatenate(name="motion_skip_1")([upsample(x2, "motion_2_up"), x1])
    x = conv_bn_relu(x, 2 * filters, 3, 1, "motion_3", m)
    x = layers.Concatenate(name="motion_skip_0")([upsample(x, "motion_3_up"), x0])
    x = conv_bn_relu(x, filters, 3, 1, "motion_4", m)
    # With the prior, the logits start at zero so that the first flows are the prior's.
    masks = layers.Conv2D(num_keypoints + 1, 3, padding="same", dtype=head,
                          kernel_initializer="zeros" if prior_sigma > 0 else "glorot_uniform",
                          name="motion_masks")(x)
    occlusion = layers.Conv2D(1, 3, padding="same", activation="sigmoid", dtype=head,
                              name="occlusion")(x)
    return masks, occlusion


def _mix_motions(logits, candidates, target_keypoints, size, prior_sigma, head):
    """softmax(logits + nearest-keypoint prior) over the candidates → the dense flow."""
    if prior_sigma > 0:
        prior = NearestKeypointPrior(size, prior_sigma, dtype=head,
                                     name="motion_prior")(target_keypoints)
        logits = layers.Add(dtype=head, name="motion_logits")([logits, prior])
    masks = layers.Softmax(dtype=head, name="motion_softmax")(logits)
    return DenseFlow(dtype=head, name="dense_flow")(masks, candidates)


def _blend(copied, mask, generated, head):
    """m ⊙ copied + (1 − m) ⊙ generated (eq. (3)): m = 1 copies the pixel."""
    return layers.Lambda(lambda t: t[0] * t[1] + t[2] * (1.0 - t[1]), dtype=head,
                         name="blend")([copied, mask, generated])


@keras.saving.register_keras_serializable(package="kp_tf")
class ImageEncoder(keras.Model):
    """Appearance encoder of the reference frame (spec §2.4: 'image_encoder').

    The same encoder design as the detector's with its own weights, stopped at 1/4
    resolution: the original computes a 1/8 block too but never uses it, so it gets no
    gradient; we do not build it (0.89 M fewer parameters at the paper's size).

    Input: image [B, S, S, 3]. Output: features [B, S/4, S/4, 4·filters].
    """

    def __init__(self, image_size=128, filters=32, batchnorm_momentum=0.999, **kwargs):
        image = keras.Input((image_size, image_size, 3), name="image")
        features = encoder(image, filters, 3, "", batchnorm_momentum)[-1]
        super().__init__(inputs=image, outputs=features, **kwargs)
        self.image_size = image_size
        self.filters = filters
        self.batchnorm_momentum = batchnorm_momentum

    def get_config(self):
        return {"name": self.name, "image_size": self.image_size, "filters": self.filters,
                "batchnorm_momentum": self.batchnorm_momentum}



@keras.saving.register_keras_serializable(package="kp_tf")
class ImageTranslator(keras.Model):
    """Translator T (paper eq. (3); spec §2.4): reference appearance + keypoints → target frame.

    The reference features are concatenated with the Gaussian maps of the reference and the
    target keypoints at 1/4 resolution, decoded (4 convs per scale, widths halving from
    `filters`, bilinear ×2) to a generated image s (linear) and a mask m (sigmoid); the output
    is m ⊙ v + (1 − m) ⊙ s, where v is the reference frame: m = 1 copies the reference pixel.

    Args:
      num_keypoints: K.
      image_size: output resolution S; features and maps are S/4.
      feature_channels: channels of the image encoder's features.
      filters: width of the first decoder block (paper 256).
      gaussian_inv_std: inverse std of the Gaussian maps (original 14.3).
      batchnorm_momentum: BatchNorm decay.
      mask_bias_init: initial bias of the mask logit (original 0, i.e. m = 0.5). Copying the
        reference is a strong early optimum (m → 1 leaves the generated image no gradient);
        a negative bias makes the translator use the keypoints from the start.

    Inputs: reference image [B, S, S, 3], features [B, S/4, S/4, C], reference keypoints
    [B, K, 2], target keypoints [B, K, 2].
    Outputs: dict output [B, S, S, 3], generated [B, S, S, 3], mask [B, S, S, 1].
    """

    def __init__(self, num_keypoints=40, image_size=128, feature_channels=128, filters=256,
                 gaussian_inv_std=14.3, batchnorm_momentum=0.999, mask_bias_init=0.0, **kwargs):
        m, fs = batchnorm_momentum, image_size // 4
        reference = keras.Input((image_size, image_size, 3), name="reference_image")
        features = keras.Input((fs, fs, feature_channels), name="features")
        ref_kp = keras.Input((num_keypoints, 2), name="reference_keypoints")
        tgt_kp = keras.Input((num_keypoints, 2), name="target_keypoints")
        head = keras.config.floatx()  # maps and output heads in float32 under a mixed policy
        maps = GaussianMaps(fs, gaussian_inv_std, dtype=head, name="gaussian_maps")
        x = layers.Concatenate(name="condition")([features, maps(ref_kp), maps(tgt_kp)])
        generated, mask = _decode(x, filters, m, head, mask_bias_init)
        output = _blend(reference, mask, generated, head)
        super().__init__(inputs=[reference, features, ref_kp, tgt_kp],
                         outputs={"output": output, "generated": generated, "mask": mask},
                         **kwargs)
        self.num_keypoints = num_keypoints
        self.image_size = image_size
        self.feature_channels = feature_channels
        self.filters = filters
        self.gaussian_inv_std = gaussian_inv_std
        self.batchnorm_momentum = batchnorm_momentum
        self.mask_bias_init = mask_bias_init

    def get_config(self):
        return {"name": self.name, "num_keypoints": self.num_keypoints,
                "image_size": self.image_size, "feature_channels": self.feature_channels,
                "filters": self.filters, "gaussian_inv_std": self.gaussian_inv_std,
                "batchnorm_momentum": self.batchnorm_momentum,
                "mask_bias_init": self.mask_bias_init}


@keras.saving.register_keras_serializable(package="kp_tf")
class WarpTranslator(keras.Model):
    """A keypoint-driven warping translator (beyond the paper; `--translator=warp`).

    Same inputs and outputs as `ImageTranslator`, and the same decoder, but what it decodes and
    what it copies are first moved to the target's pose:
      1. dense motion (Monkey-Net, Siarohin et al. 2019, eq. (4); FOMM eq. (6) without
         Jacobians): K + 1 candidate backward warps at S/4 (`SparseMotion`: the identity and one
         translation per keypoint pair), the reference (average-pooled to S/4) warped by each
         (`CandidateWarps`), and a small hourglass on [target − reference Gaussian maps, those
         warped references] predicts soft masks over the candidates (a softmax) and an
         occlusion map o (sigmoid); the flow is Σ_k mask_k · candidate_k (`DenseFlow`); with
         `prior_sigma` > 0 the masks' logits start from `NearestKeypointPrior` (each pixel
         moves with the target keypoints within about 2σ of it, the rest stays);
      2. the reference features are warped by the flow and multiplied by o (FOMM eq. (7)),
         then decoded with both keypoint maps to the generated image s and the mask m;
      3. the reference frame itself is warped by the flow brought to full resolution, and the
         output is m ⊙ warp(v) + (1 − m) ⊙ s (`blend="mask"`: eq. (3) on the warped frame), or
         with the up-sampled occlusion map in place of m (`blend="occlusion"`).

    Args:
      num_keypoints, image_size, feature_channels, filters, gaussian_inv_std,
        batchnorm_momentum, mask_bias_init: as `ImageTranslator`.
      motion_filters: width of the dense-motion hourglass (doubling at each of its two
        stride-2 levels).
      blend: "mask" or "occlusion" (above).
      prior_sigma: σ of the masks' nearest-keypoint prior, normalized units (0: none, FOMM's
        plain network).
      motion_scale: the dense motion runs at S / motion_scale (1, 2 or 4); its flow and
        occlusion are resized to S/4 for the features and to S for the reference frame.

    Inputs: reference image [B, S, S, 3], features [B, S/4, S/4, C], reference keypoints
    [B, K, 2], target keypoints [B, K, 2].
    Outputs: dict output, generated [B, S, S, 3], mask [B, S, S, 1], flow [B, M, M, 2]
    (M = S / motion_scale; where each pixel of the target samples the reference, (x, y) in
    [-1, 1]) and occlusion [B, M, M, 1].
    """

    def __init__(self, num_keypoints=40, image_size=128, feature_channels=128, filters=256,
                 gaussian_inv_std=14.3, batchnorm_momentum=0.999, mask_bias_init=0.0,
                 motion_filters=64, blend="mask", prior_sigma=0.1, motion_scale=4,
                 full_flow=False, decoder_maps=True, **kwargs):
        if blend not in WARP_BLENDS:
            raise ValueError(f"WarpTranslator: blend must be one of {WARP_BLENDS}, got {blend!r}")
        if motion_scale not in (1, 2, 4):
            raise ValueError(f"WarpTranslator: motion_scale must be 1, 2 or 4, got {motion_scale}")
        if image_size % 16:
            raise ValueError(f"WarpTranslator: image_size {image_size} must be a multiple of 16 "
                             f"(features at S/4; the dense motion has two stride-2 levels)")
        m, fs, ms = batchnorm_momentum, image_size // 4, image_size // motion_scale
        reference = keras.Input((image_size, image_size, 3), name="reference_image")
        features = keras.Input((fs, fs, feature_channels), name="features")
        ref_kp = keras.Input((num_keypoints, 2), name="reference_keypoints")
        tgt_kp = keras.Input((num_keypoints, 2), name="target_keypoints")
        head = keras.config.floatx()  # maps, warps and heads in float32 under a mixed policy
        maps = GaussianMaps(fs, gaussian_inv_std, dtype=head, name="gaussian_maps")
        ref_maps, tgt_maps = maps(ref_kp), maps(tgt_kp)

        # The dense motion at S / motion_scale: at S/4 a forearm is a cell or two wide.
        motion_maps = maps if ms == fs else GaussianMaps(ms, gaussian_inv_std, dtype=head,
                                                         name="motion_gaussian_maps")
        candidates = SparseMotion(ms, dtype=head, name="sparse_motion")(ref_kp, tgt_kp)
        small = (layers.AveragePooling2D(motion_scale, dtype=head, name="reference_small")(reference)
                 if motion_scale > 1 else reference)
        moved = CandidateWarps(dtype=head, name="candidate_warps")(small, candidates)
        heat = layers.Subtract(dtype=head, name="heatmap_difference")(
            [motion_maps(tgt_kp), motion_maps(ref_kp)])
        masks, occlusion = _motion_network(layers.Concatenate(name="motion_input")([heat, moved]),
                                           motion_filters, m, num_keypoints, prior_sigma, head)
        # full_flow: the masks' logits are brought to S before the prior and the softmax, so a
        # limb a few pixels wide gets its own motion instead of its cell's average.
        fls = image_size if full_flow else ms
        if full_flow and ms != image_size:
            masks = layers.UpSampling2D(image_size // ms, interpolation="bilinear", dtype=head,
                                        name="motion_masks_full")(masks)
            candidates = SparseMotion(image_size, dtype=head, name="sparse_motion_full")(
                ref_kp, tgt_kp)
        flow = _mix_motions(masks, candidates, tgt_kp, fls, prior_sigma, head)

        feature_flow, feature_occlusion = flow, occlusion
        if fls != fs:
            feature_flow = ResizeFlow(fs, dtype=head, name="feature_flow")(flow)
        if ms != fs:
            feature_occlusion = layers.AveragePooling2D(ms // fs, dtype=head,
                                                        name="feature_occlusion")(occlusion)
        warped = Warp(dtype=head, name="warp_features")(features, feature_flow)
        warped = layers.Multiply(dtype=head, name="occlude_features")([warped,
                                                                      feature_occlusion])
        # Without the keypoint maps (decoder_maps=False, FOMM's generator) the decoder cannot read
        # the keypoints as a code: what they say reaches it only through the motion they make.
        x = (layers.Concatenate(name="condition")([warped, ref_maps, tgt_maps]) if decoder_maps
             else warped)
        generated, mask = _decode(x, filters, m, head, mask_bias_init)
        flow_s = (ResizeFlow(image_size, dtype=head, name="full_flow")(flow)
                  if fls != image_size else flow)
        copied = Warp(dtype=head, name="warp_reference")(reference, flow_s)
        if blend == "occlusion":
            mask = (layers.UpSampling2D(motion_scale, interpolation="bilinear", dtype=head,
                                        name="occlusion_full")(occlusion)
                    if motion_scale > 1 else occlusion)
        output = _blend(copied, mask, generated, head)
        super().__init__(inputs=[reference, features, ref_kp, tgt_kp],
                         outputs={"output": output, "generated": generated, "mask": mask,
                                  "flow": flow, "occlusion": occlusion},
                         **kwargs)
        self.num_keypoints = num_keypoints
        self.image_size = image_size
        self.feature_channels = feature_channels
        self.filters = filters
        self.gaussian_inv_std = gaussian_inv_std
        self.batchnorm_momentum = batchnorm_momentum
        self.mask_bias_init = mask_bias_init
        self.motion_filters = motion_filters
        self.blend = blend
        self.prior_sigma = prior_sigma
        self.motion_scale = motion_scale
        self.full_flow = full_flow
        self.decoder_maps = decoder_maps

    def get_config(self):
        return {"name": self.name, "num_keypoints": self.num_keypoints,
                "image_size": self.image_size, "feature_channels": self.feature_channels,
                "filters": self.filters, "gaussian_inv_std": self.gaussian_inv_std,
                "batchnorm_momentum": self.batchnorm_momentum,
                "mask_bias_init": self.mask_bias_init, "motion_filters": self.motion_filters,
                "blend": self.blend, "prior_sigma": self.prior_sigma,
                "motion_scale": self.motion_scale, "full_flow": self.full_flow,
                "decoder_maps": self.decoder_maps}


def build_translator(cfg):
    """The configured translator (`--translator=paper|warp`) with the image encoder's width."""
    common = dict(num_keypoints=cfg.num_keypoints, image_size=cfg.image_size,
                  feature_channels=cfg.encoder_filters * 4, filters=cfg.translator_filters,
                  gaussian_inv_std=cfg.gaussian_inv_std,
                  batchnorm_momentum=cfg.batchnorm_momentum, mask_bias_init=cfg.mask_bias_init,
                  name="translator")
    if cfg.translator == "paper":
        return ImageTranslator(**common)
    if cfg.translator == "warp":
        return WarpTranslator(motion_filters=cfg.warp_filters, blend=cfg.warp_blend,
                              prior_sigma=cfg.warp_prior_sigma,
                              motion_scale=cfg.warp_motion_scale,
                              full_flow=cfg.warp_full_flow,
                              decoder_maps=cfg.warp_decoder_maps, **common)
    raise ValueError(f"unknown translator {cfg.translator!r}: use one of {TRANSLATORS}")

