"""The discriminators of both stages: the image patch discriminator D_im (stage 1) and the
keypoint-sequence discriminator D_seq (stage 2, eq. (5))."""

from __future__ import annotations

import keras
from keras import layers

from kp_tf.models.blocks import (build_lstm_stack, flatten_frames, lstm_stack, run_lstm_stack,
                                 track_lstm_stack)


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



@keras.saving.register_keras_serializable(package="kp_tf")
class SequenceDiscriminator(keras.layers.Layer):
    """Keypoint-sequence discriminator D_seq of the paper's eq. (5) (L_Dseq).

    Unconditional, as in the original code: it sees the future frames k_1..k_L only, no k_0,
    no action. Stacked LSTMs from a zero state, then a linear Dense(1) on the last step's
    output. (The original applied Dense(1) to every step and kept the last one, which is the
    same number; it also ReLU'd it, so its logits were ≥ 0 and D(x) ≥ 0.5. Ours is linear.)

    Args:
      num_keypoints: K.
      lstm_units: units of every LSTM layer (original: hard-coded 1024).
      lstm_layers: number of stacked LSTM layers (original: 2).

    Call: `discriminator(sequence)` with sequence [B, L, K, 2] (any L) → logits [B, 1].
    """

    def __init__(self, num_keypoints, lstm_units, lstm_layers, **kwargs):
        super().__init__(**kwargs)
        self.num_keypoints = num_keypoints
        self.lstm_units = lstm_units
        self.lstm_layers = lstm_layers
        track_lstm_stack(self, lstm_stack(lstm_units, lstm_layers, last_returns_sequence=False,
                                            prefix="lstm"))
        self.logit = keras.layers.Dense(1, name="logit")

    def build(self, input_shape=None):
        build_lstm_stack(self.lstms, 2 * self.num_keypoints)
        self.logit.build((None, self.lstm_units))
        self.built = True

    def call(self, sequence):
        return self.logit(run_lstm_stack(self.lstms, flatten_frames(sequence, self.num_keypoints)))

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_keypoints": self.num_keypoints,
            "lstm_units": self.lstm_units,
            "lstm_layers": self.lstm_layers,
        })
        return config

