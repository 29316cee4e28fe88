"""The translator T (paper §3.1, eqs. (2)–(3)) and its image encoder: reference appearance plus
keypoints → the target frame."""

from __future__ import annotations

import keras
from keras import layers

from kp_tf.layers import GaussianMaps
from kp_tf.models.blocks import conv_bn_relu, encoder, upsample


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
        width = filters
        for i in range(2):
            for j in range(4):
                x = conv_bn_relu(x, width, 3, 1, f"decoder_{i}_{j}", m)
            x = upsample(x, f"decoder_{i}_up")
            width //= 2
        for j in range(2):
            x = conv_bn_relu(x, width, 3, 1, f"decoder_2_{j}", m)
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

