"""FastLSTM and FusedBatchNorm compute what keras.layers.LSTM and BatchNormalization do,
forward and backward, on every path.

Their TensorFlow paths (FastLSTM: the input projection of all steps before the loop, the
recurrence's gradient written out; FusedBatchNorm: TensorFlow's fused kernel) are what stage 2
and stage 1 train with; `tools/bench.py stage1|stage2` measures their speed. Here: the same
outputs, gradients and moving statistics as Keras' own layers with the same weights, and
Keras' path where the fast one does not apply.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kp_tf.layers import FastLSTM, FusedBatchNorm

T, B, D, H = 7, 3, 5, 6


def _pair(**kwargs):
    """keras.layers.LSTM and FastLSTM with the same weights."""
    keras.utils.set_random_seed(0)
    reference, fast = keras.layers.LSTM(H, **kwargs), FastLSTM(H, **kwargs)
    for layer in (reference, fast):
        layer.build((None, None, D))
    # Non-zero biases, so that a gate taken in the wrong order shows.
    weights = [w + np.random.default_rng(1).normal(0, 0.3, w.shape).astype(np.float32)
               for w in reference.get_weights()]
    reference.set_weights(weights)
    fast.set_weights(weights)
    return reference, fast


def _loss_and_gradients(layer, x, initial_state=None):
    with tf.GradientTape() as tape:
        tape.watch([x] + list(initial_state or []))
        out = layer(x, initial_state=initial_state)
        outs = out if isinstance(out, (list, tuple)) else [out]
        # weights per output element, so that each output's gradient counts differently
        loss = sum(tf.reduce_sum(tf.sin(3.0 * o) * tf.cast(
            tf.reshape(tf.range(tf.size(o)), tf.shape(o)), o.dtype)) for o in outs)
    sources = [x] + layer.trainable_variables + (list(initial_state) if initial_state else [])
    return outs, tape.gradient(loss, sources)


@pytest.mark.parametrize("kwargs", [
    {"return_sequences": True}, {"return_sequences": False},
    {"return_sequences": True, "return_state": True}, {"unit_forget_bias": True}])
@pytest.mark.parametrize("graph", [False, True])
def test_outputs_and_gradients_equal_keras_lstm(kwargs, graph):
    reference, fast = _pair(**kwargs)
    x = tf.constant(np.random.default_rng(2).normal(0, 1, (B, T, D)), tf.float32)
    state = [tf.constant(np.random.default_rng(3).normal(0, 0.5, (B, H)), tf.float32)
             for _ in range(2)]
    for initial_state in (None, state):
        # in graph mode a fresh trace for each layer, as a training step has
        run = tf.function(_loss_and_gradients) if graph else _loss_and_gradients
        want_out, want_grads = run(reference, x, initial_state)
        run = tf.function(_loss_and_gradients) if graph else _loss_and_gradients
        got_out, got_grads = run(fast, x, initial_state)
        assert len(got_out) == len(want_out)
        for w, g in zip(want_out, got_out):
            np.testing.assert_allclose(g, w, atol=1e-5)
        assert len(got_grads) == len(want_grads)
        for w, g in zip(want_grads, got_grads):
            assert g is not None
            np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-4)


def test_the_fast_path_is_taken_and_keras_path_where_it_does_not_apply():
    _, fast = _pair(return_sequences=True)
    assert fast._fast_path(mask=None, training=True)
    assert not fast._fast_path(mask=tf.ones((B, T), tf.bool), training=True)
    _, backwards = _pair(go_backwards=True)
    assert not backwards._fast_path(mask=None, training=False)
    # Keras' path with a mask still gives Keras' result.
    reference, fast = _pair(return_sequences=True)
    x = tf.constant(np.random.default_rng(4).normal(0, 1, (B, T, D)), tf.float32)
    mask = tf.constant(np.arange(T)[None] < np.array([[T], [3], [5]]))
    np.testing.assert_allclose(fast(x, mask=mask), reference(x, mask=mask), atol=1e-6)


def test_mixed_bfloat16_follows_float32():
    _, fast32 = _pair(return_sequences=True)
    x = tf.constant(np.random.default_rng(5).normal(0, 1, (B, T, D)), tf.float32)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        fast16 = FastLSTM(H, return_sequences=True)
        fast16.build((None, None, D))
        fast16.set_weights(fast32.get_weights())
        out16, grads16 = _loss_and_gradients(fast16, x)
    finally:
        keras.config.set_dtype_policy("float32")
    out32, grads32 = _loss_and_gradients(fast32, x)
    assert out16[0].dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(out16[0], tf.float32), out32[0], atol=0.03)
    for g16, g32 in zip(grads16[1:], grads32[1:]):  # the variables' gradients, float32
        assert g16.dtype == tf.float32
        scale = float(tf.reduce_max(tf.abs(g32)))
        np.testing.assert_allclose(g16, g32, atol=0.05 * scale)


def test_static_shapes_are_those_of_keras_lstm():
    # The export's roll-out loops over decoder chunks: its loop variables need the static
    # batch size that Keras' LSTM keeps, and a reshape with -1 needs the static step count.
    reference, fast = _pair(return_sequences=True)
    shapes = {}

    @tf.function
    def trace(x):
        shapes["keras"], shapes["fast"] = reference(x).shape, fast(x).shape
        return x

    trace(tf.zeros((1, T, D)))
    assert shapes["fast"] == shapes["keras"] == (1, T, H)


# --- FusedBatchNorm

def _bn_pair(shape=(None, 5, 6, 4), **kwargs):
    """keras.layers.BatchNormalization and FusedBatchNorm with the same (non-default) weights."""
    reference = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, **kwargs)
    fused = FusedBatchNorm(momentum=0.9, epsilon=1e-5, **kwargs)
    rng = np.random.default_rng(6)
    weights = [rng.normal(1.0, 0.3, 4), rng.normal(0, 0.3, 4), rng.normal(0, 0.5, 4),
               rng.uniform(0.5, 2.0, 4)]  # gamma, beta, moving mean, moving variance
    for layer in (reference, fused):
        layer.build(shape)
        layer.set_weights([w.astype(np.float32) for w in weights])
    return reference, fused


@pytest.mark.parametrize("synchronized", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_equals_keras(synchronized, training):
    reference, fused = _bn_pair(synchronized=synchronized)
    assert fused._fused(tf.zeros((2, 5, 6, 4)), None)
    x = tf.constant(np.random.default_rng(7).normal(1.0, 2.0, (3, 5, 6, 4)), tf.float32)
    results = []
    for layer in (reference, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(tf.sin(3.0 * y))
        results.append((y, tape.gradient(loss, [x] + layer.trainable_variables),
                        layer.get_weights()))
    (y_ref, g_ref, w_ref), (y_fused, g_fused, w_fused) = results
    np.testing.assert_allclose(y_fused, y_ref, atol=2e-6)
    for want, got in zip(g_ref, g_fused):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)
    # The moving statistics move (training) or stay (inference) alike: the biased variance.
    for want, got in zip(w_ref, w_fused):
        np.testing.assert_allclose(got, want, atol=1e-6)
    moved = not np.allclose(w_ref[3], _bn_pair()[0].get_weights()[3])
    assert moved == training


def test_batch_norm_in_bfloat16_and_keras_path_elsewhere():
    _, fused32 = _bn_pair()
    x = tf.constant(np.random.default_rng(8).normal(0, 1, (3, 5, 6, 4)), tf.float32)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        _, fused16 = _bn_pair()
        y16 = fused16(x, training=True)
    finally:
        keras.config.set_dtype_policy("float32")
    assert y16.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(y16, tf.float32), fused32(x, training=True), atol=0.03)
    # masks, other ranks and renorm take Keras' path
    assert not fused32._fused(tf.zeros((2, 6, 4)), None)
    assert not fused32._fused(x, tf.ones((3, 5, 6), tf.bool))
    reference, fused = _bn_pair(shape=(None, 6, 4))
    x3 = tf.constant(np.random.default_rng(9).normal(0, 1, (3, 6, 4)), tf.float32)
    np.testing.assert_allclose(fused(x3, training=True), reference(x3, training=True),
                               atol=2e-6)
