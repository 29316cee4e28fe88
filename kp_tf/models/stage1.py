"""Stage-1 networks (paper §3.1): keypoint detector Q, image encoder, translator T, image D.

Layer for layer as the authors' code (`../shared/reference/original-implementation.md` §2.1–2.5):
3×3 convs + BatchNorm(ε 1e-5, decay `batchnorm_momentum`) + ReLU, bilinear ×2 upsampling,
glorot-uniform kernels. Widths scale with the config so the same builders make the paper's
128×128 networks and the small CPU presets.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from kp_tf.layers import GaussianMaps, KeypointExpectation


def _conv_bn_relu(x, filters, kernel, stride, name, momentum):
    x = layers.Conv2D(filters, kernel, stride, padding="same", name=f"{name}")(x)
    # synchronized=True: under MirroredStrategy the batch statistics are those of the global
    # batch, so N replicas compute the same update as one device on the same batch.
    x = layers.BatchNormalization(momentum=momentum, epsilon=1e-5, synchronized=True,
                                  name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _encoder(x, filters, num_scales, prefix, momentum):
    """The shared 8-conv encoder (spec §2.1); returns the feature of each scale, finest first."""
    features = []
    x = _conv_bn_relu(x, filters, 7, 1, f"{prefix}conv_1", momentum)
    x = _conv_bn_relu(x, filters, 3, 1, f"{prefix}conv_2", momentum)
    features.append(x)
    for s in range(1, num_scales):
        width = filters * 2 ** s
        x = _conv_bn_relu(x, width, 3, 2, f"{prefix}conv_{2 * s + 1}", momentum)
        x = _conv_bn_relu(x, width, 3, 1, f"{prefix}conv_{2 * s + 2}", momentum)
        features.append(x)
    return features


def _upsample(x, name):
    return layers.UpSampling2D(2, interpolation="bilinear", name=name)(x)


@keras.saving.register_keras_serializable(package="kp_tf")
class KeypointDetector(keras.Model):
    """Keypoint detector Q: image → K keypoints (paper eq. (1); spec §2.2, 'pose_encoder').

    Encoder to 1/8 resolution, then a skip decoder back to full resolution (2 convs per
    block, 2 blocks per scale, widths halving from `decoder_filters`), a linear 1×1 conv to K
    heatmap logits and softmax-expectation (`KeypointExpectation`). With `downsample` d > 1
    the image is first average-pooled by d and the hourglass runs at S/d (FOMM's
    `scale_factor`, there 1/4 at 256×256): its convolutions do about d² times less work (at
    64×64, d = 2, its forward pass took a third of the time but the stage-1 step only about
    10 % less), and the keypoints, a softmax expectation, stay continuous.

    Args:
      num_keypoints: K.
      image_size: input resolution S.
      encoder_filters: encoder base width (paper 32).
      decoder_filters: width of the first decoder block (paper 128).
      softmax: "axis" (original) or "spatial".
      batchnorm_momentum: BatchNorm moving-average decay (original 0.999).
      temperature: heatmap softmax temperature (original 1).
      downsample: average-pool factor d applied to the input (original 1); S/d must be
        divisible by 8.

    Input: image [B, S, S, 3] in [-1, 1]. Output: keypoints [B, K, 2], (x, y) in [-1, 1].
    """

    def __init__(self, num_keypoints=40, image_size=128, encoder_filters=32, decoder_filters=128,
                 softmax="axis", batchnorm_momentum=0.999, temperature=1.0, downsample=1,
                 **kwargs):
        if downsample < 1 or image_size % (8 * downsample):
            raise ValueError(f"detector: image_size {image_size} / downsample {downsample} must "
                             f"be a whole multiple of 8 (the hourglass has three stride-2 levels)")
        m = batchnorm_momentum
        image = keras.Input((image_size, image_size, 3), name="image")
        x = layers.AveragePooling2D(downsample, name="downsample")(image) if downsample > 1 else image
        f1, f2, f3, f4 = _encoder(x, encoder_filters, 4, "encoder_", m)
        x, width = f4, decoder_filters
        for i, skip in enumerate([f3, f2, f1]):
            for j in range(2):  # two blocks of two convs per scale, as conv_{2i+1}_{0,1}, conv_{2i+2}_{0,1}
                x = _conv_bn_relu(x, width, 3, 1, f"decoder_{i}_{j}_a", m)
                x = _conv_bn_relu(x, width, 3, 1, f"decoder_{i}_{j}_b", m)
            x = _upsample(x, f"decoder_{i}_up")
            x = layers.Concatenate(name=f"decoder_{i}_skip")([x, skip])
            width //= 2
        x = _conv_bn_relu(x, width, 3, 1, "decoder_3_a", m)
        x = _conv_bn_relu(x, width, 3, 1, "decoder_3_b", m)
        # The heads run in floatx (float32) under a mixed policy: the softmax divides the logits
        # by the temperature (0.1 in the CPU presets), which would magnify bfloat16's rounding.
        head = keras.config.floatx()
        logits = layers.Conv2D(num_keypoints, 1, dtype=head, name="heatmap_logits")(x)
        keypoints = KeypointExpectation(softmax, temperature, dtype=head,
                                        name="keypoints")(logits)
        super().__init__(inputs=image, outputs=keypoints, **kwargs)
        self.num_keypoints = num_keypoints
        self.image_size = image_size
        self.encoder_filters = encoder_filters
        self.decoder_filters = decoder_filters
        self.softmax = softmax
        self.batchnorm_momentum = batchnorm_momentum
        self.temperature = temperature
        self.downsample = downsample

    def get_config(self):
        return {"name": self.name, "num_keypoints": self.num_keypoints,
                "image_size": self.image_size, "encoder_filters": self.encoder_filters,
                "decoder_filters": self.decoder_filters, "softmax": self.softmax,
                "batchnorm_momentum": self.batchnorm_momentum, "temperature": self.temperature,
                "downsample": self.downsample}


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
        features = _encoder(image, filters, 3, "", batchnorm_momentum)[-1]
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
        width = filters
        for i in range(2):
            for j in range(4):
                x = _conv_bn_relu(x, width, 3, 1, f"decoder_{i}_{j}", m)
            x = _upsample(x, f"decoder_{i}_up")
            width //= 2
        for j in range(2):
            x = _conv_bn_relu(x, width, 3, 1, f"decoder_2_{j}", m)
        # Output heads in floatx (float32) under a mixed policy (the images enter the losses).
        generated = layers.Conv2D(3, 3, padding="same", dtype=head, name="generated")(x)
        mask = layers.Conv2D(1, 3, padding="same", activation="sigmoid", dtype=head,
                             name="mask",
                             bias_initializer=keras.initializers.Constant(mask_bias_init))(x)
        output = layers.Lambda(lambda t: t[0] * t[1] + t[2] * (1.0 - t[1]), dtype=head,
                               name="blend")([reference, mask, generated])
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
class ImageDiscriminator(keras.Model):
    """Unconditional patch discriminator D_im (spec §2.5, StarGAN-like).

    `num_layers` × [zero-pad 1, 4×4 stride-2 conv (widths doubling from `filters`),
    LeakyReLU(0.01)], then zero-pad 1 and a 3×3 conv to one logit per patch, no bias.
    At 128×128 with 6 layers the logit map is 6×6, as the original.

    Input: image [B, S, S, 3]. Output: logits [B, h, w, 1].
    """

    def __init__(self, image_size=128, filters=64, num_layers=6, **kwargs):
        image = keras.Input((image_size, image_size, 3), name="image")
        x = image
        for i in range(num_layers):
            x = layers.ZeroPadding2D(1, name=f"conv_{i}_pad")(x)
            x = layers.Conv2D(filters * 2 ** i, 4, 2, padding="same", name=f"conv_{i}")(x)
            x = layers.LeakyReLU(0.01, name=f"conv_{i}_lrelu")(x)
        x = layers.ZeroPadding2D(1, name="logit_pad")(x)
        head = keras.config.floatx()  # the logit in float32 under a mixed policy
        logits = layers.Conv2D(1, 3, padding="same", use_bias=False, dtype=head,
                               name="logit")(x)
        super().__init__(inputs=image, outputs=logits, **kwargs)
        self.image_size = image_size
        self.filters = filters
        self.num_layers = num_layers

    def get_config(self):
        return {"name": self.name, "image_size": self.image_size, "filters": self.filters,
                "num_layers": self.num_layers}


def build_detector(cfg) -> KeypointDetector:
    """The configured detector Q (also used alone for pseudo-labels and evaluation)."""
    return KeypointDetector(cfg.num_keypoints, cfg.image_size, cfg.encoder_filters,
                            cfg.detector_filters, cfg.keypoint_softmax, cfg.batchnorm_momentum,
                            cfg.heatmap_temperature, cfg.detector_downsample, name="detector")


class Stage1Networks:
    """The four stage-1 networks built for one config, and the paired forward pass.

    `translate(reference, target)` is the training forward pass of eq. (3): detect keypoints
    on both frames, encode the reference, render the target.
    """

    def __init__(self, cfg):
        m = cfg.batchnorm_momentum
        self.detector = build_detector(cfg)
        self.image_encoder = ImageEncoder(cfg.image_size, cfg.encoder_filters, m,
                                          name="image_encoder")
        self.translator = ImageTranslator(
            cfg.num_keypoints, cfg.image_size, cfg.encoder_filters * 4, cfg.translator_filters,
            cfg.gaussian_inv_std, m, cfg.mask_bias_init, name="translator")
        self.discriminator = ImageDiscriminator(
            cfg.image_size, cfg.discriminator_filters, cfg.discriminator_layers,
            name="image_discriminator")

    @property
    def generator_variables(self):
        return self.detector.trainable_variables + self.renderer_variables

    @property
    def renderer_variables(self):
        """The image encoder's and translator's: what a step with a frozen detector trains."""
        return self.image_encoder.trainable_variables + self.translator.trainable_variables

    def translate(self, reference, target, training=False, detector_training=None):
        """→ dict reference_keypoints, target_keypoints, output, generated, mask.

        `detector_training=False` with `training=True` trains the encoder and translator on
        the keypoints of a frozen detector: inference-mode BatchNorm and no gradient into it.
        """
        reference, target = ops.convert_to_tensor(reference), ops.convert_to_tensor(target)
        detector_training = training if detector_training is None else detector_training
        both = self.detector(ops.concatenate([reference, target], axis=0),
                             training=detector_training)
        if not detector_training:
            both = ops.stop_gradient(both)
        batch = ops.shape(reference)[0]
        ref_kp, tgt_kp = both[:batch], both[batch:]
        features = self.image_encoder(reference, training=training)
        out = self.translator([reference, features, ref_kp, tgt_kp], training=training)
        return {"reference_keypoints": ref_kp, "target_keypoints": tgt_kp, **out}
