"""I3D rebuilt in Keras 3: checkpoint loading by name, and the SavedModel's TF-Hub interface."""

import numpy as np
import pytest

from conftest import I3D_WEIGHTS as WEIGHTS, require_shared


@pytest.fixture(scope="module")
def arrays():
    with np.load(require_shared(WEIGHTS), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def model():
    from kp_tf.evaluation.i3d import InceptionI3D
    return InceptionI3D()


def test_checkpoint_map_is_one_to_one(model, arrays):
    from kp_tf.evaluation.i3d import NUM_WEIGHT_ARRAYS
    mapping = model.checkpoint_variables()
    assert len(mapping) == NUM_WEIGHT_ARRAYS == len(arrays) == len(model.weights)
    assert set(mapping) == set(arrays)
    assert model.count_params() == 12_704_544  # the README's parameter count
    # The original's naming quirk, kept by the checkpoint.
    assert "RGB/inception_i3d/Mixed_5b/Branch_2/Conv3d_0a_3x3/conv_3d/w" in mapping
    assert "RGB/inception_i3d/Mixed_5c/Branch_2/Conv3d_0b_3x3/conv_3d/w" in mapping


def test_loader_rejects_missing_array(model, arrays):
    from kp_tf.evaluation.i3d import load_checkpoint_npz
    name = "RGB/inception_i3d/Mixed_4d/Branch_1/Conv3d_0b_3x3/batch_norm/moving_mean"
    broken = {k: v for k, v in arrays.items() if k != name}
    with pytest.raises(ValueError, match="1 weight\\(s\\) missing from the file: " + name):
        load_checkpoint_npz(model, broken)


def test_loader_rejects_extra_array(model, arrays):
    from kp_tf.evaluation.i3d import load_checkpoint_npz
    extra = "RGB/inception_i3d/Logits/Conv3d_0c_1x1/batch_norm/gamma"
    broken = dict(arrays, **{extra: np.ones([400], np.float32)})
    with pytest.raises(ValueError, match="does not use: " + extra):
        load_checkpoint_npz(model, broken)


def test_loader_rejects_shape_mismatch(model, arrays, tmp_path):
    from kp_tf.evaluation.i3d import load_checkpoint_npz
    name = "RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w"
    broken = dict(arrays, **{name: np.zeros([7, 7, 7, 3, 32], np.float32)})
    path = tmp_path / "broken.npz"
    np.savez(path, **broken)
    with pytest.raises(ValueError, match="shape mismatch for " + name):
        load_checkpoint_npz(model, path)


def test_savedmodel_has_tfhub_interface_and_matches_keras(i3d_handle, model, arrays):
    import tensorflow as tf
    import tensorflow_hub as hub
    from kp_tf.evaluation.i3d import load_checkpoint_npz

    module = hub.load(i3d_handle)
    signature = module.signatures["default"]
    (spec,) = signature.structured_input_signature[1].values()
    assert spec.shape.as_list() == [None, None, 224, 224, 3] and spec.dtype == tf.float32

    rng = np.random.default_rng(0)
    videos = rng.uniform(-1, 1, [2, 9, 224, 224, 3]).astype(np.float32)
    logits = signature(tf.constant(videos))["default"].numpy()  # as with the TF-Hub module
    assert logits.shape == (2, 400) and np.all(np.isfinite(logits))
    # Keyword call by the declared input name, with another batch size.
    key = next(iter(signature.structured_input_signature[1]))
    one = signature(**{key: tf.constant(videos[:1, :9])})["default"].numpy()
    np.testing.assert_allclose(one[0], logits[0], rtol=1e-4, atol=1e-4)

    load_checkpoint_npz(model, arrays)
    keras_logits = np.asarray(model(videos[1:], training=False))
    np.testing.assert_allclose(keras_logits[0], logits[1], rtol=1e-4, atol=1e-4)
