"""Stage 2: the cVAE motion generator and the keypoint-sequence discriminator (paper §3, eq. (5)).

Keypoints are [K, 2] arrays of (x, y) in [-1, 1]; a sequence is [B, L, K, 2] and holds the
L future frames k_1..k_L only. The first frame k_0 is a separate conditioning input, as in
the original code (reference §2.6). Inside the LSTMs every frame is flattened to 2K values
with x and y interleaved (k[0].x, k[0].y, k[1].x, ...).

Differences from the released code, all deliberate (reference §6.2):
  * the cVAE encoder head is linear and predicts (mu, log_var); the original passed it
    through a ReLU and used the second half directly as σ, so μ ≥ 0 and σ ≥ 0;
  * the decoder's conditioning projection is linear; the original ReLU'd it;
  * the sequence discriminator's logit is linear; the original ReLU'd it, so its
    probability could never fall below 0.5.
Parameter counts are unchanged by these fixes (a log-variance head is as large as a σ head).

Every layer builds its weights from its constructor arguments alone, so `build` ignores the
input shape and a layer rebuilt from its config has the same variables (names and shapes).
"""

from __future__ import annotations

import keras
from keras import ops

from kp_tf import losses

_PACKAGE = "kp_tf"


def _lstm_stack(units: int, layers: int, last_returns_sequence: bool, prefix: str):
    """`layers` LSTMs of `units` (tanh, sigmoid gates, zero initial state).

    Keras' `unit_forget_bias=True` initialises the forget-gate bias to 1, which matches the
    original `LSTMCell(forget_bias=1.0)` at initialisation (TF1 adds the 1 as a constant).
    Keras initialises the recurrent kernel orthogonally where TF1 drew the joint
    [input + units, 4·units] kernel from Glorot-uniform; the architecture is the same.
    """
    return [
        keras.layers.LSTM(
            units,
            unit_forget_bias=True,
            return_sequences=last_returns_sequence or i < layers - 1,
            name=f"{prefix}_{i}")
        for i in range(layers)
    ]


def _track_lstm_stack(owner, lstms):
    """Keeps `lstms` on `owner` and also as attributes `lstm_0`, `lstm_1`, ...: Keras 3 tracks
    the list for `weights`, but the TF checkpoint graph only follows attributes, and without
    them a `tf.train.Checkpoint` of the model would silently leave the LSTMs out."""
    owner.lstms = lstms
    for i, lstm in enumerate(lstms):
        setattr(owner, f"lstm_{i}", lstm)


def _build_lstm_stack(lstms, input_dim: int):
    for lstm in lstms:
        lstm.build((None, None, input_dim))
        input_dim = lstm.units


def _run_lstm_stack(lstms, x):
    for lstm in lstms:
        x = lstm(x)
    return x


def _flatten_frames(sequence, num_keypoints: int):
    """[B, L, K, 2] → [B, L, 2K] with x, y interleaved."""
    shape = ops.shape(sequence)
    return ops.reshape(sequence, (shape[0], shape[1], 2 * num_keypoints))


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
        _track_lstm_stack(self, _lstm_stack(lstm_units, lstm_layers, last_returns_sequence=False,
                                            prefix="lstm"))
        self.posterior = keras.layers.Dense(2 * latent_dim, name="posterior")

    def build(self, input_shape=None):
        _build_lstm_stack(self.lstms, 2 * self.num_keypoints)
        self.posterior.build((None, self.lstm_units + 2 * self.num_keypoints + self.num_actions))
        self.built = True

    def call(self, sequence, k0, action=None):
        h_last = _run_lstm_stack(self.lstms, _flatten_frames(sequence, self.num_keypoints))
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
        _track_lstm_stack(self, _lstm_stack(lstm_units, lstm_layers, last_returns_sequence=True,
                                            prefix="lstm"))
        self.to_coord = keras.layers.Dense(
            2 * num_keypoints,
            activation="tanh",
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
            bias_initializer="zeros",
            name="to_coord")

    def build(self, input_shape=None):
        self.condition.build((None, self.latent_dim + 2 * self.num_keypoints + self.num_actions))
        _build_lstm_stack(self.lstms, self.decoder_input_dim)
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
        coords = self.to_coord(_run_lstm_stack(self.lstms, inputs))
        coords = ops.reshape(coords, (-1, length, self.num_keypoints, 2))
        if self.residual:
            coords = coords + ops.expand_dims(ops.cast(k0, coords.dtype), 1)
        return coords

    def rollout(self, z, k0, action=None, frames=None):
        """Decodes `frames` future frames, past sequence_length if needed.

        Chunks of sequence_length frames are decoded one after another; chunk t+1 is decoded
        with the same z and action and with k_0 := the last keypoints of chunk t. Every chunk
        is thus an in-distribution decode (a fresh LSTM state started from a keypoint frame,
        L steps long), unlike running the LSTM past L on zero inputs, and keeping z keeps the
        motion's style (speed, amplitude) consistent across chunks. Because the LSTM is
        causal, the truncated last chunk equals the first frames of a full one.

        Args:
          z: [B, latent_dim]; k0: [B, K, 2]; action: [B, A] or None;
          frames: number of frames (default sequence_length).

        Returns:
          [B, frames, K, 2]; with frames ≤ sequence_length, identical to `self(z, k0, action,
          length=frames)`.
        """
        frames = self.sequence_length if frames is None else int(frames)
        chunks, start, produced = [], k0, 0
        while produced < frames:
            chunk = self(z, start, action, length=min(self.sequence_length, frames - produced))
            chunks.append(chunk)
            start = chunk[:, -1]
            produced += self.sequence_length
        return chunks[0] if len(chunks) == 1 else ops.concatenate(chunks, axis=1)

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
        _track_lstm_stack(self, _lstm_stack(lstm_units, lstm_layers, last_returns_sequence=False,
                                            prefix="lstm"))
        self.logit = keras.layers.Dense(1, name="logit")

    def build(self, input_shape=None):
        _build_lstm_stack(self.lstms, 2 * self.num_keypoints)
        self.logit.build((None, self.lstm_units))
        self.built = True

    def call(self, sequence):
        return self.logit(_run_lstm_stack(self.lstms, _flatten_frames(sequence, self.num_keypoints)))

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_keypoints": self.num_keypoints,
            "lstm_units": self.lstm_units,
            "lstm_layers": self.lstm_layers,
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


def build_motion_models(cfg, seed=None):
    """(MotionGenerator, SequenceDiscriminator) for a `kp_tf.config.Config`, weights built.

    Both are called once on zeros of the configured shapes, so their variables exist (for
    checkpoint restore and optimizer build) before the first training step.
    `seed` seeds the generator's sampling (default cfg.seed).
    """
    generator = MotionGenerator(
        num_keypoints=cfg.num_keypoints,
        num_actions=cfg.num_actions,
        lstm_units=cfg.lstm_units,
        lstm_layers=cfg.lstm_layers,
        latent_dim=cfg.latent_dim,
        sequence_length=cfg.sequence_length,
        decoder_input_dim=cfg.decoder_input_dim,
        residual=cfg.motion_residual,
        condition_every_step=cfg.decoder_condition_every_step,
        seed=cfg.seed if seed is None else seed,
        name="motion_generator")
    discriminator = SequenceDiscriminator(
        num_keypoints=cfg.num_keypoints,
        lstm_units=cfg.lstm_units,
        lstm_layers=cfg.lstm_layers,
        name="sequence_discriminator")
    sequence = ops.zeros((1, cfg.sequence_length, cfg.num_keypoints, 2))
    k0 = ops.zeros((1, cfg.num_keypoints, 2))
    action = ops.zeros((1, cfg.num_actions)) if cfg.num_actions else None
    generator((sequence, k0, action), training=False)
    discriminator(sequence)
    return generator, discriminator


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
    kl = losses.kl_divergence(mu, log_var)
    kl_loss = losses.kl_divergence(mu, log_var, cfg.kl_free_bits) if cfg.kl_free_bits else kl
    l1 = losses.keypoint_l1(reconstruction, target)
    if fake_logits is None:
        adversarial = ops.zeros((), dtype=kl.dtype)
    else:
        adversarial = losses.generator_adversarial_loss(fake_logits)
    total = cfg.lambda_kl * kl_loss + cfg.lambda_l1 * l1 + cfg.lambda_sequence_adv * adversarial
    return {"kl": kl, "l1": l1, "adversarial": adversarial, "total": total}
