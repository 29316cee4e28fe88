"""The motion generator (paper §3.2, eq. (5)): a class-conditional VAE of LSTMs over keypoints.

Keypoints are [K, 2] arrays of (x, y) in [-1, 1]; a sequence is [B, L, K, 2] and holds the
L future frames k_1..k_L only. The first frame k_0 is a separate conditioning input, as in
the original code (reference §2.6). Inside the LSTMs every frame is flattened to 2K values
with x and y interleaved (k[0].x, k[0].y, k[1].x, ...).

Differences from the released code, all deliberate (reference §6.2):
  * the cVAE encoder head is linear and predicts (mu, log_var); the original passed it
    through a ReLU and used the second half directly as σ, so μ ≥ 0 and σ ≥ 0;
  * the decoder's conditioning projection is linear; the original ReLU'd it;
Parameter counts are unchanged by these fixes (a log-variance head is as large as a σ head).

Every layer builds its weights from its constructor arguments alone, so `build` ignores the
input shape and a layer rebuilt from its config has the same variables (names and shapes).
"""

from __future__ import annotations

import keras
from keras import ops

from kp_tf.models.blocks import (build_lstm_stack, flatten_frames, lstm_stack, run_lstm_stack,
                                 track_lstm_stack)

_PACKAGE = "kp_tf"


def _conditioning(parts, k0, action, num_keypoints: int, num_actions: int):
    """concat[*parts, k0 flattened to 2K, action one-hot (omitted when num_actions == 0)]."""
    tensors = list(parts) + [ops.reshape(k0, (-1, 2 * num_keypoints))]
    if num_actions:
        if action is None:
            raise ValueError(f"num_actions={num_actions}: an action one-hot [B, {num_actions}] is required")
        tensors.append(ops.cast(action, tensors[0].dtype))
    return ops.concatenate(tensors, axis=-1)



@keras.saving.register_keras_serializable(package=_PACKAGE)
class MotionEncoder(keras.layers.Layer):
    """cVAE encoder q_φ(z | k_1:L, k_0, a) of the paper's eq. (5).

    The flattened sequence runs through `lstm_layers` stacked LSTMs from a zero state; the
    top layer's last output h_L is concatenated with k_0 (2K) and the action one-hot (A) and
    mapped by one linear Dense to 2·latent_dim values, split into mu and log_var.
    The original code ReLU'd this Dense and used its second half as σ directly (reference
    §2.6, §6.2); we use the standard linear log-variance head that eq. (5)'s Gaussian
    posterior implies, which has the same number of parameters.

    Args:
      num_keypoints: K.
      num_actions: A, the size of the action one-hot; 0 conditions on k_0 only (MGIF, NEMO).
      lstm_units: units of every LSTM layer.
      lstm_layers: number of stacked LSTM layers.
      latent_dim: size of z.

    Call: `encoder(sequence, k0, action=None)` with sequence [B, L, K, 2], k0 [B, K, 2] and
    action [B, A] (ignored, and may be None, when A = 0) → (mu, log_var), each [B, latent_dim].
    """

    def __init__(self, num_keypoints, num_actions, lstm_units, lstm_layers, latent_dim, **kwargs):
        super().__init__(**kwargs)
        self.num_keypoints = num_keypoints
        self.num_actions = num_actions
        self.lstm_units = lstm_units
        self.lstm_layers = lstm_layers
        self.latent_dim = latent_dim
        track_lstm_stack(self, lstm_stack(lstm_units, lstm_layers, last_returns_sequence=False,
                                            prefix="lstm"))
        self.posterior = keras.layers.Dense(2 * latent_dim, name="posterior")

    def build(self, input_shape=None):
        build_lstm_stack(self.lstms, 2 * self.num_keypoints)
        self.posterior.build((None, self.lstm_units + 2 * self.num_keypoints + self.num_actions))
        self.built = True

    def call(self, sequence, k0, action=None):
        h_last = run_lstm_stack(self.lstms, flatten_frames(sequence, self.num_keypoints))
        stats = self.posterior(
            _conditioning([h_last], k0, action, self.num_keypoints, self.num_actions))
        mu, log_var = ops.split(stats, 2, axis=-1)
        return mu, log_var

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_keypoints": self.num_keypoints,
            "num_actions": self.num_actions,
            "lstm_units": self.lstm_units,
            "lstm_layers": self.lstm_layers,
            "latent_dim": self.latent_dim,
        })
        return config



def rollout(decode, k0, frames, length: int, restart=None):
    """The one rule for motion longer than the decoder's L frames (training, export, evaluation).

    Chunks of L frames are decoded one after another by `decode(start) → [B, L, K, 2]` (the
    same z and action every time); chunk t+1 starts from k_0 := the last keypoints of chunk t,
    or from `restart(those keypoints)` when a restart is given. Every chunk is thus an
    in-distribution decode (a fresh LSTM state started from a keypoint frame, L steps long),
    unlike running the LSTM past L on zero inputs, and keeping z keeps the motion's style
    (speed, amplitude) across chunks. The LSTM is causal, so the first `frames` frames of a
    full chunk are what a shorter decode gives.

    Why a restart: the decoder was trained from keypoints the detector found on real frames,
    and its own output is smoother than those (an L1-trained mean); started from it, a chunk
    moves less than the one before (docs/uses.md: on the synthetic preset the motion per frame
    fell to 60 % in four chunks). The export restarts from the keypoints detected on the frame
    rendered from the last ones (kp_tf.serving), which keeps the amplitude.

    A TensorFlow loop, so that `frames` may be a tensor inside a SavedModel signature; it runs
    eagerly as well. `decode` may be a Keras model's call or an exported signature; its chunks
    are cast to float32 (a mixed-precision decoder returns bfloat16).

    Args:
      decode: start keypoints [B, K, 2] → [B, L, K, 2].
      k0: [B, K, 2]; frames: an int or a scalar int tensor ≥ 1; length: L.
      restart: optional last keypoints of a chunk [B, K, 2] → the next chunk's start
        [B, K, 2]; called only when another chunk follows.

    Returns: float32 [B, frames, K, 2].
    """
    import tensorflow as tf

    k0 = tf.cast(k0, tf.float32)
    frames = tf.cast(frames, tf.int32)
    chunks = (frames + length - 1) // length
    array = tf.TensorArray(tf.float32, size=chunks)

    def body(i, start, array):
        chunk = tf.cast(decode(start), tf.float32)
        last = chunk[:, -1]
        if restart is not None:
            last = tf.cond(i + 1 < chunks, lambda: tf.cast(restart(last), tf.float32),
                           lambda: last)
        return i + 1, last, array.write(i, chunk)

    _, _, array = tf.while_loop(lambda i, *_: i < chunks, body, (0, k0, array))
    shape = tf.shape(k0)
    sequence = tf.transpose(array.stack(), [1, 0, 2, 3, 4])  # [B, chunks, L, K, 2]
    return tf.reshape(sequence, [shape[0], -1, shape[1], 2])[:, :frames]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MotionDecoder(keras.layers.Layer):
    """cVAE decoder p_θ(k_1:L | z, k_0, a) of the paper's eq. (5).

    concat[z, k_0 (2K), a (A)] → linear Dense(decoder_input_dim) is the LSTM input of the
    first step only; steps 2..L get zeros, exactly as the original code, so all conditioning
    enters at step 1 and the LSTM state carries it. The original ReLU'd this projection
    (reference §6.2); ours is linear. Every step's top-layer output goes through one shared
    Dense(2K) (weights N(0, 0.02²), bias 0) and tanh, giving absolute coordinates (not
    offsets from k_0) in (-1, 1).

    Two options (off by default, i.e. the original) for short training runs. A decoder that
    must copy k_0 through a 32-d projection into an LSTM and back learns that slowly: after
    4,000 synthetic-preset steps its L1 (0.10) was still worse than repeating k_0 (0.066),
    and its output did not depend on the action at all.
      residual: output k_0 + tanh(Dense(h_t)), an offset from the first frame; at
        initialisation (small weights) this is the static motion.
      condition_every_step: the projection is the input of every step, not only the first,
        so the action and z cannot be forgotten along the sequence.
    Neither changes the parameter count.

    Args:
      num_keypoints: K.
      num_actions: A (0: no action input).
      lstm_units: units of every LSTM layer.
      lstm_layers: number of stacked LSTM layers.
      latent_dim: size of z.
      sequence_length: L, the training length and the default output length.
      decoder_input_dim: width of the first-step conditioning projection (original: 32).
      residual: predict offsets from k_0 (see above; original: False).
      condition_every_step: feed the conditioning at every step (original: False).

    Call: `decoder(z, k0, action=None, length=None)` with z [B, latent_dim], k0 [B, K, 2],
    action [B, A] → [B, length, K, 2]; `length` (a Python int) defaults to sequence_length.
    Past sequence_length the LSTM simply keeps running on zero inputs, which it never saw
    in training; use `rollout` for long videos.
    """

    def __init__(self, num_keypoints, num_actions, lstm_units, lstm_layers, latent_dim,
                 sequence_length, decoder_input_dim, residual=False, condition_every_step=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_keypoints = num_keypoints
        self.num_actions = num_actions
        self.lstm_units = lstm_units
        self.lstm_layers = lstm_layers
        self.latent_dim = latent_dim
        self.sequence_length = sequence_length
        self.decoder_input_dim = decoder_input_dim
        self.residual = bool(residual)
        self.condition_every_step = bool(condition_every_step)
        self.condition = keras.layers.Dense(decoder_input_dim, name="condition")
        track_lstm_stack(self, lstm_stack(lstm_units, lstm_layers, last_returns_sequence=True,
                                            prefix="lstm"))
        self.to_coord = keras.layers.Dense(
            2 * num_keypoints,
            activation="tanh",
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
            bias_initializer="zeros",
            name="to_coord")

    def build(self, input_shape=None):
        self.condition.build((None, self.latent_dim + 2 * self.num_keypoints + self.num_actions))
        build_lstm_stack(self.lstms, self.decoder_input_dim)
        self.to_coord.build((None, None, self.lstm_units))
        self.built = True

    def call(self, z, k0, action=None, length=None):
        length = self.sequence_length if length is None else int(length)
        if length < 1:
            raise ValueError(f"length must be ≥ 1, got {length}")
        first = self.condition(
            _conditioning([z], k0, action, self.num_keypoints, self.num_actions))
        if self.condition_every_step:
            inputs = ops.repeat(ops.expand_dims(first, 1), length, axis=1)
        else:
            inputs = ops.pad(ops.expand_dims(first, 1), [[0, 0], [0, length - 1], [0, 0]])
        coords = self.to_coord(run_lstm_stack(self.lstms, inputs))
        coords = ops.reshape(coords, (-1, length, self.num_keypoints, 2))
        if self.residual:
            coords = coords + ops.expand_dims(ops.cast(k0, coords.dtype), 1)
        return coords

    def rollout(self, z, k0, action=None, frames=None):
        """Decodes `frames` future frames, past sequence_length if needed (`rollout` below).

        Args:
          z: [B, latent_dim]; k0: [B, K, 2]; action: [B, A] or None;
          frames: number of frames (default sequence_length; an int or a scalar tensor).

        Returns:
          [B, frames, K, 2]; with frames ≤ sequence_length, identical to `self(z, k0, action,
          length=frames)`.
        """
        frames = self.sequence_length if frames is None else frames
        return rollout(lambda start: self(z, start, action), k0, frames, self.sequence_length)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_keypoints": self.num_keypoints,
            "num_actions": self.num_actions,
            "lstm_units": self.lstm_units,
            "lstm_layers": self.lstm_layers,
            "latent_dim": self.latent_dim,
            "sequence_length": self.sequence_length,
            "decoder_input_dim": self.decoder_input_dim,
            "residual": self.residual,
            "condition_every_step": self.condition_every_step,
        })
        return config



@keras.saving.register_keras_serializable(package=_PACKAGE)
class MotionGenerator(keras.Model):
    """The motion generator M: cVAE encoder and decoder of the paper's eq. (5).

    Args: those of `MotionDecoder`, plus
      seed: seed of the generator's own SeedGenerator, used for ε in `call` and z in `sample`
        when no explicit seed is given (None: random).

    Call: `generator((sequence, k0, action), training=None)` → (reconstruction, mu, log_var):
    the sequence [B, L, K, 2] is encoded, z = mu + exp(0.5·log_var)·ε is drawn with the
    reparameterisation trick and decoded to a reconstruction [B, L, K, 2]. With
    training=False, z = mu (a deterministic reconstruction for validation). `action` may be
    omitted or None when num_actions = 0. L must be static (it sets the decoder's length);
    the batch may be dynamic.

    Methods: `encode`, `decode`, `sample` (z from the prior N(0, I), the inference path).
    """

    def __init__(self, num_keypoints, num_actions, lstm_units, lstm_layers, latent_dim,
                 sequence_length, decoder_input_dim, residual=False, condition_every_step=False,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_keypoints = num_keypoints
        self.num_actions = num_actions
        self.lstm_units = lstm_units
        self.lstm_layers = lstm_layers
        self.latent_dim = latent_dim
        self.sequence_length = sequence_length
        self.decoder_input_dim = decoder_input_dim
        self.residual = bool(residual)
        self.condition_every_step = bool(condition_every_step)
        self.seed = seed
        self.encoder = MotionEncoder(
            num_keypoints, num_actions, lstm_units, lstm_layers, latent_dim, name="motion_encoder")
        self.decoder = MotionDecoder(
            num_keypoints, num_actions, lstm_units, lstm_layers, latent_dim, sequence_length,
            decoder_input_dim, residual=residual, condition_every_step=condition_every_step,
            name="motion_decoder")
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")

    def build(self, input_shape=None):
        self.encoder.build()
        self.decoder.build()
        self.built = True

    def encode(self, sequence, k0, action=None):
        """[B, L, K, 2], [B, K, 2], [B, A] → (mu, log_var), each [B, latent_dim]."""
        return self.encoder(sequence, k0, action)

    def decode(self, z, k0, action=None, length=None):
        """[B, latent_dim], [B, K, 2], [B, A] → [B, length or L, K, 2]."""
        return self.decoder(z, k0, action, length=length)

    def sample(self, k0, action=None, z=None, seed=None, frames=None):
        """Future keypoints from the prior: z ~ N(0, I) (unless given), then `decoder.rollout`.

        Args:
          k0: [B, K, 2] first keypoints; action: [B, A] or None.
          z: optional [B, latent_dim]; drawn from N(0, I) when None.
          seed: int or SeedGenerator for z; the model's own SeedGenerator when None.
          frames: output length (default sequence_length; longer is rolled out).

        Returns:
          [B, frames, K, 2] keypoints in (-1, 1).
        """
        if z is None:
            z = keras.random.normal(
                (ops.shape(k0)[0], self.latent_dim),
                seed=self.seed_generator if seed is None else seed)
        return self.decoder.rollout(z, k0, action, frames=frames)

    def call(self, inputs, training=None):
        sequence, k0, action = (tuple(inputs) + (None,))[:3]
        mu, log_var = self.encoder(sequence, k0, action)
        if training is False:
            z = mu
        else:
            eps = keras.random.normal(ops.shape(mu), dtype=mu.dtype, seed=self.seed_generator)
            z = mu + ops.exp(0.5 * log_var) * eps
        reconstruction = self.decoder(z, k0, action, length=ops.shape(sequence)[1])
        return reconstruction, mu, log_var

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_keypoints": self.num_keypoints,
            "num_actions": self.num_actions,
            "lstm_units": self.lstm_units,
            "lstm_layers": self.lstm_layers,
            "latent_dim": self.latent_dim,
            "sequence_length": self.sequence_length,
            "decoder_input_dim": self.decoder_input_dim,
            "residual": self.residual,
            "condition_every_step": self.condition_every_step,
            "seed": self.seed,
        })
        return config

