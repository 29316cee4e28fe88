"""Stage-2 networks: shapes, pinned parameter counts per preset, a training sanity check. Their
configs, serialisation and .keras files: test_layer_contracts.py."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kp_tf import config
from kp_tf import losses
from kp_tf.models import networks


def _lstm_params(inputs, units):
    # kernel [in, 4u] + recurrent kernel [u, 4u] + bias [4u]; TF1's LSTMCell keeps one
    # [in + u, 4u] kernel and a [4u] bias, the same count.
    return 4 * (inputs * units + units * units + units)


def _stack_params(inputs, cfg):
    return _lstm_params(inputs, cfg.lstm_units) + (cfg.lstm_layers - 1) * _lstm_params(
        cfg.lstm_units, cfg.lstm_units)


def expected_counts(cfg):
    """Closed-form trainable parameter counts (encoder, decoder, discriminator)."""
    k2, a, z, u = 2 * cfg.num_keypoints, cfg.num_actions, cfg.latent_dim, cfg.lstm_units
    # LSTM stack on 2K, then Dense([h_L, k0, a] → 2z) for (mu, log_var).
    encoder = _stack_params(k2, cfg) + (u + k2 + a) * 2 * z + 2 * z
    # Dense([z, k0, a] → D), LSTM stack on D, Dense(u → 2K).
    d = cfg.decoder_input_dim
    decoder = (z + k2 + a) * d + d + _stack_params(d, cfg) + u * k2 + k2
    # LSTM stack on 2K, Dense(u → 1).
    discriminator = _stack_params(k2, cfg) + u + 1
    return encoder, decoder, discriminator


# (encoder, decoder, discriminator) trainable parameters per preset in flags/. A new preset
# must be added here (test_every_preset_is_pinned), and a change of architecture shows up as
# a change of these literals.
PINNED_COUNTS = {
    "mgif": (13_229_184, 12_851_096, 13_083_649),
    "nemo": (12_849_024, 12_755_966, 12_715_009),
    "penn": (13_061_376, 12_809_104, 12_919_809),
    "synthetic": (254_176, 230_208, 246_913),
    "tiny": (1_272, 1_312, 1_097),
    "weizmann": (223_648, 221_128, 218_241),
}

# Reference §2.6/§2.7, counted from the original layer shapes for Penn (K = 40, A = 9):
# encoder ≈ 13.1 M, decoder ≈ 12.8 M, discriminator ≈ 12.9 M. Our fixes do not change any
# count: the log-variance half of the encoder head replaces the original σ half one for one,
# and removing the ReLUs removes no weights.
SPEC_PENN_MILLIONS = (13.1, 12.8, 12.9)


def _trainable(layer):
    return int(sum(np.prod(w.shape) for w in layer.trainable_weights))


def _inputs(cfg, batch=3, length=None, seed=0):
    rng = np.random.default_rng(seed)
    length = length or cfg.sequence_length
    sequence = rng.uniform(-0.9, 0.9, (batch, length, cfg.num_keypoints, 2)).astype("float32")
    k0 = rng.uniform(-0.9, 0.9, (batch, cfg.num_keypoints, 2)).astype("float32")
    action = (np.eye(cfg.num_actions, dtype="float32")[rng.integers(0, cfg.num_actions, batch)]
              if cfg.num_actions else None)
    return sequence, k0, action


@pytest.fixture(params=[6, 0], ids=["actions", "no_actions"])
def cfg(request, tiny_config):
    return tiny_config.replace(num_actions=request.param)


def test_shapes_and_range(cfg):
    generator, discriminator = networks.build_motion_models(cfg)
    sequence, k0, action = _inputs(cfg)
    batch, length, k = sequence.shape[:3]

    reconstruction, mu, log_var = generator((sequence, k0, action), training=True)
    assert reconstruction.shape == (batch, length, k, 2)
    assert mu.shape == log_var.shape == (batch, cfg.latent_dim)

    z = np.random.default_rng(1).normal(size=(batch, cfg.latent_dim)).astype("float32")
    for frames in (1, 3, length, 13):
        assert generator.decode(z, k0, action, length=frames).shape == (batch, frames, k, 2)
    long = generator.sample(k0, action, frames=int(2.5 * length))
    assert long.shape == (batch, int(2.5 * length), k, 2)
    for out in (reconstruction, long):
        assert np.all(np.abs(keras.ops.convert_to_numpy(out)) < 1.0)

    assert discriminator(sequence).shape == (batch, 1)
    assert discriminator(sequence[:, :5]).shape == (batch, 1)


def test_rollout_chunks_continue_from_last_keypoints(tiny_config):
    cfg = tiny_config
    generator, _ = networks.build_motion_models(cfg)
    _, k0, action = _inputs(cfg)
    z = np.random.default_rng(2).normal(size=(3, cfg.latent_dim)).astype("float32")
    decoder, length = generator.decoder, cfg.sequence_length

    full = keras.ops.convert_to_numpy(decoder.rollout(z, k0, action, frames=int(2.5 * length)))
    first = keras.ops.convert_to_numpy(decoder(z, k0, action))
    second = keras.ops.convert_to_numpy(decoder(z, first[:, -1], action))
    third = keras.ops.convert_to_numpy(decoder(z, second[:, -1], action, length=length // 2))
    np.testing.assert_allclose(full, np.concatenate([first, second, third], axis=1), atol=1e-6)
    # Short rollouts are plain decodes, and the causal LSTM makes them prefixes of longer ones.
    short = keras.ops.convert_to_numpy(decoder.rollout(z, k0, action, frames=3))
    np.testing.assert_allclose(short, first[:, :3], atol=1e-6)


def test_residual_and_every_step_decoder_options(tiny_config):
    """Same weights, other wiring: the residual decoder adds k_0 to the original's output; the
    every-step decoder matches the original at step 1 (same input, zero state) and not after
    (the original's later inputs are zeros). Neither option adds or removes a weight."""
    def decoder(**options):
        generator, _ = networks.build_motion_models(tiny_config.replace(**options))
        return generator.decoder

    original = decoder()
    residual = decoder(motion_residual=True)
    every = decoder(decoder_condition_every_step=True)
    for other in (residual, every):
        assert [w.shape for w in other.weights] == [w.shape for w in original.weights]
        other.set_weights(original.get_weights())
    _, k0, action = _inputs(tiny_config)
    z = np.random.default_rng(3).normal(size=(3, tiny_config.latent_dim)).astype("float32")
    want = keras.ops.convert_to_numpy(original(z, k0, action))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(residual(z, k0, action)),
                               want + k0[:, None], atol=1e-6)
    got = keras.ops.convert_to_numpy(every(z, k0, action))
    np.testing.assert_allclose(got[:, 0], want[:, 0], atol=1e-6)
    assert np.abs(got[:, 1:] - want[:, 1:]).min(axis=(2, 3)).max() > 0
    # A residual decoder with a zero output layer is the static motion: k_0 at every step.
    residual.to_coord.set_weights([np.zeros_like(w) for w in residual.to_coord.get_weights()])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(residual(z, k0, action)),
                               np.broadcast_to(k0[:, None], want.shape), atol=1e-7)


def test_action_is_required_when_configured(tiny_config):
    generator, _ = networks.build_motion_models(tiny_config)
    sequence, k0, _ = _inputs(tiny_config)
    with pytest.raises(ValueError, match="action"):
        generator.encode(sequence, k0)


def test_sampling_seeds_and_eval_mode(tiny_config):
    generator, _ = networks.build_motion_models(tiny_config)
    sequence, k0, action = _inputs(tiny_config)
    a = keras.ops.convert_to_numpy(generator.sample(k0, action, seed=7))
    b = keras.ops.convert_to_numpy(generator.sample(k0, action, seed=7))
    c = keras.ops.convert_to_numpy(generator.sample(k0, action, seed=8))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0
    # training=False decodes the posterior mean.
    reconstruction, mu, _ = generator((sequence, k0, action), training=False)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reconstruction),
        keras.ops.convert_to_numpy(generator.decode(mu, k0, action)), atol=1e-6)


def test_every_preset_is_pinned():
    assert sorted(PINNED_COUNTS) == config.available_presets(), (
        "pin the motion-network parameter counts of every preset in flags/ in PINNED_COUNTS")


@pytest.mark.parametrize("preset", sorted(PINNED_COUNTS))
def test_parameter_counts(preset, monkeypatch):
    # The QR behind the LSTMs' orthogonal recurrent init takes seconds per 1024-unit layer on
    # a CPU and has nothing to do with a count.
    monkeypatch.setattr(keras.initializers.Orthogonal, "__call__",
                        lambda self, shape, dtype=None: keras.ops.zeros(shape, dtype))
    cfg = config.load_preset(preset)
    assert expected_counts(cfg) == PINNED_COUNTS[preset]
    generator, discriminator = networks.build_motion_models(cfg)
    built = (_trainable(generator.encoder), _trainable(generator.decoder), _trainable(discriminator))
    assert built == PINNED_COUNTS[preset]
    assert _trainable(generator) == built[0] + built[1]
    assert not generator.non_trainable_weights and not discriminator.non_trainable_weights


def test_penn_counts_match_the_spec():
    cfg = config.load_preset("penn")
    assert (cfg.num_keypoints, cfg.num_actions, cfg.lstm_units) == (40, 9, 1024)
    millions = tuple(round(n / 1e6, 1) for n in PINNED_COUNTS["penn"])
    assert millions == SPEC_PENN_MILLIONS


def _sinusoid_batch(cfg):
    """4 sequences [4, L, K, 2] of keypoints circling their rest position, frequency by class."""
    rng = np.random.default_rng(0)
    rest = rng.uniform(-0.5, 0.5, (cfg.num_keypoints, 2))
    phase = rng.uniform(0, 2 * math.pi, cfg.num_keypoints)
    classes = np.arange(4)
    t = np.arange(cfg.sequence_length + 1)
    angle = ((classes[:, None, None] + 1) * math.pi * t[None, :, None] / cfg.sequence_length
             + phase[None, None, :])
    track = rest + 0.3 * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    action = np.eye(cfg.num_actions, dtype="float32")[classes]
    return track[:, 1:].astype("float32"), track[:, 0].astype("float32"), action


def test_training_reduces_l1_and_prior_samples_differ(tiny_config):
    cfg = tiny_config.replace(lstm_units=32)
    generator, _ = networks.build_motion_models(cfg, seed=1)
    sequence, k0, action = _sinusoid_batch(cfg)
    optimizer = keras.optimizers.Adam(3e-3)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            reconstruction, mu, log_var = generator((sequence, k0, action), training=True)
            terms = losses.motion_generator_losses(cfg, reconstruction, sequence, mu, log_var)
        grads = tape.gradient(terms["total"], generator.trainable_variables)
        optimizer.apply(grads, generator.trainable_variables)
        return terms["l1"]

    def eval_l1():
        reconstruction, _, _ = generator((sequence, k0, action), training=False)
        return float(np.mean(np.abs(keras.ops.convert_to_numpy(reconstruction) - sequence)))

    before = eval_l1()
    for _ in range(300):
        step()
    after = eval_l1()
    assert after < 0.2 * before, (before, after)

    # Two draws from the prior for the same k0 and class must give different motions.
    first, second = (keras.ops.convert_to_numpy(generator.sample(k0[:1], action[:1], seed=s))
                     for s in (1, 2))
    assert np.abs(first - second).mean() > 1e-3


def test_gradients_reach_encoder_through_z(tiny_config):
    generator, _ = networks.build_motion_models(tiny_config)
    sequence, k0, action = _inputs(tiny_config)
    with tf.GradientTape() as tape:
        reconstruction, _, _ = generator((sequence, k0, action), training=True)
        l1 = losses.motion_generator_losses(
            tiny_config, reconstruction, sequence, *generator.encode(sequence, k0, action))["l1"]
    variables = generator.encoder.trainable_variables + generator.decoder.trainable_variables
    grads = tape.gradient(l1, variables)
    for variable, grad in zip(variables, grads):
        assert grad is not None and np.abs(keras.ops.convert_to_numpy(grad)).max() > 0, variable.path

    z = tf.Variable(np.ones((3, tiny_config.latent_dim), "float32"))
    with tf.GradientTape() as tape:
        out = generator.decode(z, k0, action)
    assert np.abs(tape.gradient(out, z).numpy()).max() > 0


def test_generator_losses(tiny_config):
    cfg = tiny_config.replace(lambda_kl=0.5, lambda_l1=10.0, lambda_sequence_adv=2.0)
    sequence, _, _ = _inputs(cfg)
    reconstruction = sequence * 0.5
    mu = np.full((3, cfg.latent_dim), 0.3, "float32")
    log_var = np.full((3, cfg.latent_dim), -0.2, "float32")
    logits = np.array([[0.1], [-1.0], [2.0]], "float32")
    terms = {k: float(v) for k, v in
             losses.motion_generator_losses(cfg, reconstruction, sequence, mu, log_var, logits).items()}
    kl = cfg.latent_dim * 0.5 * (0.09 + math.exp(-0.2) + 0.2 - 1.0)
    l1 = float(np.mean(np.abs(0.5 * sequence)))
    adv = float(np.mean(np.log1p(np.exp(-logits))))
    np.testing.assert_allclose([terms["kl"], terms["l1"], terms["adversarial"]], [kl, l1, adv], rtol=1e-5)
    np.testing.assert_allclose(terms["total"], 0.5 * kl + 10.0 * l1 + 2.0 * adv, rtol=1e-5)
    no_d = losses.motion_generator_losses(cfg, reconstruction, sequence, mu, log_var)
    assert float(no_d["adversarial"]) == 0.0
    np.testing.assert_allclose(float(no_d["total"]), 0.5 * kl + 10.0 * l1, rtol=1e-5)


def test_free_bits_floor_each_dimension_of_the_kl_loss(tiny_config):
    cfg = tiny_config.replace(lambda_kl=1.0, lambda_l1=0.0, kl_free_bits=0.1)
    sequence, _, _ = _inputs(cfg)
    # Half the dimensions carry information (KL 0.5 each), half none (KL 0).
    mu = np.zeros((3, cfg.latent_dim), "float32")
    mu[:, : cfg.latent_dim // 2] = 1.0
    log_var = np.zeros_like(mu)
    terms = losses.motion_generator_losses(cfg, sequence, sequence, mu, log_var)
    half = cfg.latent_dim // 2
    assert float(terms["kl"]) == pytest.approx(0.5 * half)  # reported: the plain KL
    # Loss: the informative half as it is, the collapsed half counted at 0.1 nats each.
    assert float(terms["total"]) == pytest.approx(0.5 * half + 0.1 * (cfg.latent_dim - half))
    plain = losses.motion_generator_losses(cfg.replace(kl_free_bits=0.0), sequence, sequence,
                                           mu, log_var)
    assert float(plain["total"]) == pytest.approx(0.5 * half)


def test_rollout_takes_a_tensor_frame_count_and_bfloat16_chunks():
    """The export calls the roll-out in a graph with `frames` a tensor; a mixed-precision
    decoder returns bfloat16 chunks, which the loop must carry as float32."""
    from kp_tf.models.motion_generator import rollout

    k0 = tf.random.uniform([2, 3, 2], -0.5, 0.5, seed=1)

    def decode(start):  # each chunk moves every keypoint by 0.125 per frame
        steps = 0.125 * tf.range(1, 5, dtype=tf.float32)[None, :, None, None]
        return tf.cast(start[:, None] + steps, tf.bfloat16)

    out = tf.function(lambda frames: rollout(decode, k0, frames, 4))(tf.constant(10))
    assert out.dtype == tf.float32 and out.shape[0] == 2 and int(tf.shape(out)[1]) == 10
    expected = k0[:, None] + 0.125 * tf.range(1, 11, dtype=tf.float32)[None, :, None, None]
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=0.02)  # bfloat16 steps


@pytest.mark.parametrize("frames", [4, 9, 12])
def test_rollout_restart_gives_each_next_chunk_its_start(frames):
    """With a restart, chunk t+1 starts from restart(last keypoints of chunk t); the restart
    runs once per chunk boundary, never after the last chunk, in a graph as eagerly."""
    from kp_tf.models.motion_generator import rollout

    k0 = tf.zeros([2, 3, 2])
    calls = tf.Variable(0)

    def decode(start):  # one chunk of 4 frames: start + 0.1, + 0.2, ...
        return start[:, None] + 0.1 * tf.range(1, 5, dtype=tf.float32)[None, :, None, None]

    def restart(last):  # halves the last keypoints: what the next chunk must start from
        calls.assign_add(1)
        return 0.5 * last

    for run in (lambda n: rollout(decode, k0, n, 4, restart),
                tf.function(lambda n: rollout(decode, k0, n, 4, restart))):
        calls.assign(0)
        out = run(tf.constant(frames)).numpy()
        assert out.shape == (2, frames, 3, 2)
        start, expected = 0.0, []
        for _ in range(-(-frames // 4)):
            expected += [start + 0.1 * j for j in range(1, 5)]
            start = 0.5 * expected[-1]
        np.testing.assert_allclose(out[0, :, 0, 0], expected[:frames], atol=1e-6)
        assert int(calls.numpy()) == -(-frames // 4) - 1
