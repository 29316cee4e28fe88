"""Building blocks shared by the networks: the conv units of stage 1, the LSTM stacks of stage 2.

Stage 1 (`../shared/reference/original-implementation.md` §2.1–2.5): 3×3 convs + BatchNorm
(ε 1e-5, decay `momentum`) + ReLU, bilinear ×2 upsampling, glorot-uniform kernels. Stage 2
(§2.6): stacked LSTMs over keypoint frames flattened to 2K values, x and y interleaved.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from kp_tf.layers import FastLSTM, FusedBatchNorm


def conv_bn_relu(x, filters, kernel, stride, name, momentum):
    x = layers.Conv2D(filters, kernel, stride, padding="same", name=f"{name}")(x)
    # synchronized=True: under MirroredStrategy the batch statistics are those of the global
    # batch, so N replicas compute the same update as one device on the same batch.
    x = FusedBatchNorm(momentum=momentum, epsilon=1e-5, synchronized=True, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)



def encoder(x, filters, num_scales, prefix, momentum):
    """The shared 8-conv encoder (spec §2.1); returns the feature of each scale, finest first."""
    features = []
    x = conv_bn_relu(x, filters, 7, 1, f"{prefix}conv_1", momentum)
    x = conv_bn_relu(x, filters, 3, 1, f"{prefix}conv_2", momentum)
    features.append(x)
    for s in range(1, num_scales):
        width = filters * 2 ** s
        x = conv_bn_relu(x, width, 3, 2, f"{prefix}conv_{2 * s + 1}", momentum)
        x = conv_bn_relu(x, width, 3, 1, f"{prefix}conv_{2 * s + 2}", momentum)
        features.append(x)
    return features



def upsample(x, name):
    return layers.UpSampling2D(2, interpolation="bilinear", name=name)(x)



def lstm_stack(units: int, layers: int, last_returns_sequence: bool, prefix: str):
    """`layers` LSTMs of `units` (tanh, sigmoid gates, zero initial state).

    Keras' `unit_forget_bias=True` initialises the forget-gate bias to 1, which matches the
    original `LSTMCell(forget_bias=1.0)` at initialisation (TF1 adds the 1 as a constant).
    Keras initialises the recurrent kernel orthogonally where TF1 drew the joint
    [input + units, 4·units] kernel from Glorot-uniform; the architecture is the same.
    """
    return [
        FastLSTM(
            units,
            unit_forget_bias=True,
            return_sequences=last_returns_sequence or i < layers - 1,
            name=f"{prefix}_{i}")
        for i in range(layers)
    ]



def track_lstm_stack(owner, lstms):
    """Keeps `lstms` on `owner` and also as attributes `lstm_0`, `lstm_1`, ...: Keras 3 tracks
    the list for `weights`, but the TF checkpoint graph only follows attributes, and without
    them a `tf.train.Checkpoint` of the model would silently leave the LSTMs out."""
    owner.lstms = lstms
    for i, lstm in enumerate(lstms):
        setattr(owner, f"lstm_{i}", lstm)



def build_lstm_stack(lstms, input_dim: int):
    for lstm in lstms:
        lstm.build((None, None, input_dim))
        input_dim = lstm.units



def run_lstm_stack(lstms, x):
    for lstm in lstms:
        x = lstm(x)
    return x



def flatten_frames(sequence, num_keypoints: int):
    """[B, L, K, 2] → [B, L, 2K] with x, y interleaved."""
    shape = ops.shape(sequence)
    return ops.reshape(sequence, (shape[0], shape[1], 2 * num_keypoints))

