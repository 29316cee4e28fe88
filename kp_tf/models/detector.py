"""The keypoint detector Q (paper §3.1, eq. (1)): image → K keypoints, learned without labels."""

from __future__ import annotations

import keras
from keras import layers

from kp_tf.layers import KeypointExpectation
from kp_tf.models.blocks import conv_bn_relu, encoder, upsample


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
        f1, f2, f3, f4 = encoder(x, encoder_filters, 4, "encoder_", m)
        x, width = f4, decoder_filters
        for i, skip in enumerate([f3, f2, f1]):
            for j in range(2):  # two blocks of two convs per scale, as conv_{2i+1}_{0,1}, conv_{2i+2}_{0,1}
                x = conv_bn_relu(x, width, 3, 1, f"decoder_{i}_{j}_a", m)
                x = conv_bn_relu(x, width, 3, 1, f"decoder_{i}_{j}_b", m)
            x = upsample(x, f"decoder_{i}_up")
            x = layers.Concatenate(name=f"decoder_{i}_skip")([x, skip])
            width //= 2
        x = conv_bn_relu(x, width, 3, 1, "decoder_3_a", m)
        x = conv_bn_relu(x, width, 3, 1, "decoder_3_b", m)
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



def build_detector(cfg) -> KeypointDetector:
    """The configured detector Q (also used alone for pseudo-labels and evaluation)."""
    return KeypointDetector(cfg.num_keypoints, cfg.image_size, cfg.encoder_filters,
                            cfg.detector_filters, cfg.keypoint_softmax, cfg.batchnorm_momentum,
                            cfg.heatmap_temperature, cfg.detector_downsample, name="detector")

