"""The contract every custom layer and model of kp_tf keeps, checked by one helper.

In the manner of keras-hub's `TestCase.run_layer_test` (and Keras' own): a layer is built
from its constructor arguments, called on a small input, and must then give the expected
output shapes and variable counts, rebuild from its config (directly, through
`serialize_keras_object` and, for models, through a `.keras` file) into a layer that gives the
same outputs once it has the same weights, and answer a symbolic call on a dynamic batch.
These are what checkpoints, exports and `keras.saving.load_model` rely on.
"""

from __future__ import annotations

import json
import os
import tempfile

import keras
import numpy as np
from keras import ops, tree


def _call(layer, data, call_kwargs):
    # A dict holds the call's keyword arguments (layers of several inputs, `Warp(images,
    # coordinates)`); anything else is its one input (a tensor, or a model's list of inputs).
    if isinstance(data, dict):
        return layer(**data, **call_kwargs)
    return layer(data, **call_kwargs)


def _map(fn, structure):
    # none_is_leaf=False: an optional input left at None stays None.
    return tree.map_structure(fn, structure, none_is_leaf=False)


def _shapes(output):
    return _map(lambda t: tuple(t.shape), output)


def _json(value):
    # Configs are compared as the JSON a .keras file stores: tuples and lists alike, and a
    # value JSON cannot hold fails here rather than at the first save.
    return json.dumps(value, sort_keys=True)


def _assert_close(got, want, atol, what):
    tree.assert_same_structure(got, want)
    for g, w in zip(tree.flatten(got), tree.flatten(want)):
        np.testing.assert_allclose(ops.convert_to_numpy(g), ops.convert_to_numpy(w),
                                   rtol=atol, atol=atol, err_msg=what)


def run_layer_test(layer_cls, init_kwargs, input_data, expected_output_shape,
                   expected_num_trainable_weights, expected_num_non_trainable_weights=0,
                   expected_num_params=None, call_kwargs=None, batch_independent=True,
                   atol=1e-5):
    """Checks `layer_cls(**init_kwargs)` called on `input_data`; returns (layer, output).

    Args:
      layer_cls, init_kwargs: the class and its constructor arguments. Give arguments other
        than their defaults: each must come back from `get_config()` with the same value.
      input_data: a dict of the call's keyword arguments, or its one input (an array, or a
        list of arrays for a model of several inputs). Axis 0 of every array is the batch.
      expected_output_shape: the output's shapes in the output's structure: a tuple for a
        tensor, a tuple of them for a tuple of outputs, a dict of them for a dict.
      expected_num_trainable_weights, expected_num_non_trainable_weights: how many variables.
      expected_num_params: the number of parameters (`count_params()`), when given.
      call_kwargs: further keyword arguments of every call (e.g. training=False).
      batch_independent: the first sample alone gives the first output (False for a layer
        that reduces over the batch).
      atol: tolerance of every comparison of outputs.
    """
    call_kwargs = call_kwargs or {}
    layer = layer_cls(**init_kwargs)
    output = _call(layer, input_data, call_kwargs)
    assert layer.built, "not built by its first call"
    shapes = _shapes(output)
    assert shapes == expected_output_shape, f"output shapes {shapes}"
    counts = len(layer.trainable_weights), len(layer.non_trainable_weights)
    assert counts == (expected_num_trainable_weights, expected_num_non_trainable_weights), (
        f"(trainable, non-trainable) variables {counts}")
    if expected_num_params is not None:
        assert layer.count_params() == expected_num_params, f"{layer.count_params()} parameters"

    # A symbolic call with the batch unknown, as in a functional model or an exported
    # signature. Keras answers it with compute_output_shape where the layer defines one, so
    # this is where a wrong compute_output_shape shows, and elsewhere it traces `call`.
    symbolic = _map(lambda t: keras.KerasTensor((None,) + t.shape[1:], dtype=t.dtype), input_data)
    symbolic_output = _call(layer_cls(**init_kwargs), symbolic, call_kwargs)
    unknown_batch = tree.map_shape_structure(lambda s: (None,) + tuple(s[1:]) if s else s,
                                             expected_output_shape)
    shapes = _shapes(symbolic_output)
    assert shapes == unknown_batch, f"symbolic call (compute_output_shape): {shapes}"

    if batch_independent:
        first = _call(layer, _map(lambda t: t[:1], input_data), call_kwargs)
        _assert_close(first, _map(lambda t: t[:1], output), atol, "first sample alone")

    config = layer.get_config()
    for key, value in init_kwargs.items():
        assert key in config and _json(config[key]) == _json(value), f"get_config: {key}"
    serialized = json.loads(_json(keras.saving.serialize_keras_object(layer)))
    clones = {"from_config": layer_cls.from_config(config),
              "deserialize_keras_object": keras.saving.deserialize_keras_object(serialized)}
    for how, clone in clones.items():
        assert type(clone) is layer_cls, f"{how}: {type(clone)}"
        assert _json(clone.get_config()) == _json(config), f"{how}: {clone.get_config()}"
        _call(clone, input_data, call_kwargs)  # builds a layer whose weights wait for a call
        clone.set_weights(layer.get_weights())
        _assert_close(_call(clone, input_data, call_kwargs), output, atol, how)

    if isinstance(layer, keras.Model):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.keras")
            layer.save(path)
            loaded = keras.saving.load_model(path)
        assert type(loaded) is layer_cls, f".keras file: {type(loaded)}"
        assert _json(loaded.get_config()) == _json(config), f".keras file: {loaded.get_config()}"
        _assert_close(_call(loaded, input_data, call_kwargs), output, atol, ".keras file")
    return layer, output
