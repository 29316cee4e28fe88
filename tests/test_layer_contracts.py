"""Every custom layer and model of kp_tf keeps the layer contract (tests/layer_contract.py).

Sizes are the `tiny` preset's (32×32, K = 4, A = 6, LSTMs of 8 units), so the model counts
equal the tiny rows pinned in test_keypoint_networks.py and test_motion_generator.py. The
variable and parameter counts are pinned here as numbers: a change of architecture shows up
as a change of these literals. Arguments are given values other than their defaults, so that
one missing from a `get_config` is caught.
"""

import keras
import numpy as np
import pytest

from kp_tf import config
from kp_tf.evaluation.i3d import InceptionI3D, Unit3D
from kp_tf.layers import (CandidateWarps, DenseFlow, FastLSTM, FrameDifference,
                          FusedBatchNorm, GaussianMaps,
                          KeypointExpectation, NearestKeypointPrior, SparseMotion, ResizeFlow,
                          Warp)
from kp_tf.losses import PerceptualLoss
from kp_tf.models.detector import KeypointDetector
from kp_tf.models.discriminators import ImageDiscriminator, SequenceDiscriminator
from kp_tf.models.motion_generator import MotionDecoder, MotionEncoder, MotionGenerator
from kp_tf.models.translator import ImageEncoder, ImageTranslator, WarpTranslator
from layer_contract import run_layer_test

TINY = config.load_preset("tiny")
B, S, K, A = 2, TINY.image_size, TINY.num_keypoints, TINY.num_actions
F = S // 4  # the translator's feature and Gaussian-map resolution
L = TINY.sequence_length
RNG = np.random.default_rng(0)


def uniform(*shape, bound=1.0):
    return RNG.uniform(-bound, bound, shape).astype(np.float32)


def keypoints():
    return uniform(B, K, 2, bound=0.9)


def candidates():
    return np.asarray(SparseMotion(F)(keypoints(), keypoints()))


def softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# --- kp_tf/layers.py: no weights; (class, arguments, input, output shape).
WEIGHTLESS = {
    "keypoint_expectation_spatial": (
        KeypointExpectation, {"mode": "spatial", "temperature": 0.1},
        uniform(B, F, F, K, bound=5.0), (B, K, 2)),
    "keypoint_expectation_axis": (
        KeypointExpectation, {"mode": "axis", "temperature": 0.5},
        uniform(B, F, F + 2, K, bound=5.0), (B, K, 2)),
    "gaussian_maps": (
        GaussianMaps, {"size": F, "inv_std": 10.0}, keypoints(), (B, F, F, K)),
    "sparse_motion": (
        SparseMotion, {"size": F},
        {"reference_keypoints": keypoints(), "target_keypoints": keypoints()},
        (B, F, F, K + 1, 2)),
    "candidate_warps": (
        CandidateWarps, {}, {"images": uniform(B, F, F, 3), "candidates": candidates()},
        (B, F, F, 3 * (K + 1))),
    "dense_flow": (
        DenseFlow, {}, {"masks": softmax(uniform(B, F, F, K + 1, bound=3.0)),
                        "candidates": candidates()},
        (B, F, F, 2)),
    "upsample_flow": (
        ResizeFlow, {"size": S}, uniform(B, F, F, 2), (B, S, S, 2)),
    "warp": (
        Warp, {}, {"images": uniform(B, S, S, 3), "coordinates": uniform(B, F, F, 2)},
        (B, F, F, 3)),
    "frame_difference": (
        FrameDifference, {}, uniform(B, 3, F, F, 3), (B, 3, F, F, 3)),
    "nearest_keypoint_prior": (
        NearestKeypointPrior, {"size": F, "sigma": 0.2}, keypoints(), (B, F, F, K + 1)),
}


@pytest.mark.parametrize("name", sorted(WEIGHTLESS))
def test_keypoint_layer(name):
    layer_cls, kwargs, data, shape = WEIGHTLESS[name]
    run_layer_test(layer_cls, kwargs, data, shape, expected_num_trainable_weights=0)


# --- stage 1 networks (kp_tf/models/detector.py, translator.py, discriminators.py).
# BatchNorm moving statistics are the non-trainable variables.
@pytest.mark.parametrize("downsample", [1, 2])
def test_keypoint_detector(downsample):
    kwargs = dict(num_keypoints=K, image_size=S, encoder_filters=TINY.encoder_filters,
                  decoder_filters=TINY.detector_filters, softmax="spatial",
                  batchnorm_momentum=0.99, temperature=0.1, downsample=downsample,
                  name="detector")
    # The same weights whatever the downsampling: it only pools the input.
    run_layer_test(KeypointDetector, kwargs, uniform(B, S, S, 3), (B, K, 2),
                   expected_num_trainable_weights=90, expected_num_non_trainable_weights=44,
                   expected_num_params=25_489)


def test_image_encoder():
    kwargs = dict(image_size=S, filters=TINY.encoder_filters, batchnorm_momentum=0.99,
                  name="image_encoder")
    run_layer_test(ImageEncoder, kwargs, uniform(B, S, S, 3), (B, F, F, 4 * TINY.encoder_filters),
                   expected_num_trainable_weights=24, expected_num_non_trainable_weights=12,
                   expected_num_params=5_332)


def _translator_kwargs():
    return dict(num_keypoints=K, image_size=S, feature_channels=4 * TINY.encoder_filters,
                filters=TINY.translator_filters, gaussian_inv_std=10.0,
                batchnorm_momentum=0.99, mask_bias_init=-1.0, name="translator")


def _translator_inputs():
    return [uniform(B, S, S, 3), uniform(B, F, F, 4 * TINY.encoder_filters), keypoints(),
            keypoints()]


IMAGES = {"output": (B, S, S, 3), "generated": (B, S, S, 3), "mask": (B, S, S, 1)}


def test_image_translator():
    run_layer_test(ImageTranslator, _translator_kwargs(), _translator_inputs(), IMAGES,
                   expected_num_trainable_weights=44, expected_num_non_trainable_weights=20,
                   expected_num_params=4_620)


# blend="occlusion" leaves the decoder's mask head out of the outputs, so out of the model
# (2 variables, 19 parameters fewer); the prior has no weights.
@pytest.mark.parametrize("blend, prior_sigma, scale, trainable, params",
                         [("mask", 0.0, 4, 68, 9_326), ("occlusion", 0.2, 4, 66, 9_307),
                          ("mask", 0.1, 2, 68, 9_326)])
def test_warp_translator(blend, prior_sigma, scale, trainable, params):
    kwargs = dict(_translator_kwargs(), motion_filters=TINY.warp_filters, blend=blend,
                  prior_sigma=prior_sigma, motion_scale=scale)
    m = S // scale  # the dense motion's resolution
    outputs = dict(IMAGES, flow=(B, m, m, 2), occlusion=(B, m, m, 1))
    run_layer_test(WarpTranslator, kwargs, _translator_inputs(), outputs,
                   expected_num_trainable_weights=trainable,
                   expected_num_non_trainable_weights=30, expected_num_params=params)


def test_image_discriminator():
    kwargs = dict(image_size=S, filters=TINY.discriminator_filters,
                  num_layers=TINY.discriminator_layers, name="image_discriminator")
    # Each of the 3 stride-2 convs sees its input zero-padded by 1 ("same" on top):
    # 32 → 17 → 10 → 6, and the logit conv's own pad of 1 makes 8 logits a side.
    run_layer_test(ImageDiscriminator, kwargs, uniform(B, S, S, 3), (B, 8, 8, 1),
                   expected_num_trainable_weights=7, expected_num_params=2_924)


# --- stage 2 networks (kp_tf/models/motion_generator.py, discriminators.py).
LSTM = dict(num_keypoints=K, lstm_units=TINY.lstm_units, lstm_layers=TINY.lstm_layers)
MOTION = dict(LSTM, latent_dim=TINY.latent_dim)
DECODER = dict(MOTION, sequence_length=L, decoder_input_dim=TINY.decoder_input_dim)
Z = TINY.latent_dim


def _action(num_actions):
    return np.eye(num_actions, dtype=np.float32)[RNG.integers(0, num_actions, B)]


def test_fast_lstm():
    # kernel [6, 32], recurrent kernel [8, 32], bias [32]: 4 · 8 · (6 + 8 + 1) = 480.
    run_layer_test(FastLSTM, {"units": 8, "return_sequences": True, "unit_forget_bias": False,
                              "name": "lstm"},
                   uniform(B, L, 6), (B, L, 8), expected_num_trainable_weights=3,
                   expected_num_params=480)


def test_fused_batch_norm():
    # gamma, beta trainable; the moving mean and variance not: 4 × 6 parameters.
    run_layer_test(FusedBatchNorm, {"momentum": 0.9, "epsilon": 1e-4, "synchronized": True,
                                    "name": "bn"},
                   uniform(B, F, F, 6), (B, F, F, 6), expected_num_trainable_weights=2,
                   expected_num_non_trainable_weights=2, expected_num_params=24,
                   call_kwargs={"training": False})


def test_sequence_discriminator():
    # 2 LSTMs (kernel, recurrent kernel, bias each) and the logit Dense.
    run_layer_test(SequenceDiscriminator, dict(LSTM, name="sequence_discriminator"),
                   uniform(B, L, K, 2, bound=0.9), (B, 1),
                   expected_num_trainable_weights=8, expected_num_params=1_097)


# Without actions the posterior's input lacks the A one-hot values: 6 · 2·latent_dim = 48 fewer.
@pytest.mark.parametrize("num_actions, params", [(A, 1_272), (0, 1_224)])
def test_motion_encoder(num_actions, params):
    data = {"sequence": uniform(B, L, K, 2, bound=0.9), "k0": keypoints()}
    if num_actions:
        data["action"] = _action(num_actions)
    run_layer_test(MotionEncoder, dict(MOTION, num_actions=num_actions, name="motion_encoder"),
                   data, ((B, Z), (B, Z)), expected_num_trainable_weights=8,
                   expected_num_params=params)


# The residual and every-step options change the wiring only, not a weight.
@pytest.mark.parametrize("options", [{}, {"residual": True, "condition_every_step": True}],
                         ids=["original", "residual_every_step"])
def test_motion_decoder(options):
    data = {"z": uniform(B, Z), "k0": keypoints(), "action": _action(A)}
    run_layer_test(MotionDecoder, dict(DECODER, num_actions=A, name="motion_decoder", **options),
                   data, (B, L, K, 2), expected_num_trainable_weights=10,
                   expected_num_params=1_312)


# training=False: z is the posterior mean, so the output is a function of the input (the
# training pass draws ε). Without actions both heads lose the A inputs: 48 + 48 parameters.
@pytest.mark.parametrize("num_actions, params", [(A, 2_584), (0, 2_488)])
def test_motion_generator(num_actions, params):
    data = [uniform(B, L, K, 2, bound=0.9), keypoints()]
    if num_actions:
        data.append(_action(num_actions))
    kwargs = dict(DECODER, num_actions=num_actions, seed=3, name="motion_generator")
    run_layer_test(MotionGenerator, kwargs, data, ((B, L, K, 2), (B, Z), (B, Z)),
                   expected_num_trainable_weights=18, expected_num_params=params,
                   call_kwargs={"training": False})


# --- kp_tf/losses.py: the frozen VGG19 up to block2_conv2 (4 convs); a scalar over the batch.
def test_perceptual_loss():
    kwargs = {"layers": ["block1_conv2", "block2_conv2"], "weights": "none",
              "name": "perceptual"}
    run_layer_test(PerceptualLoss, kwargs,
                   {"prediction": uniform(B, S, S, 3), "target": uniform(B, S, S, 3)}, (),
                   expected_num_trainable_weights=0, expected_num_non_trainable_weights=8,
                   expected_num_params=260_160, batch_independent=False)


# --- kp_tf/evaluation/i3d.py.
@pytest.mark.parametrize("kwargs, trainable, non_trainable, params", [
    # Conv3D without bias, BatchNorm with an offset and no scale: 3·3·3·3·8 + 8 + 2·8.
    (dict(filters=8, kernel_size=(3, 3, 3), strides=(1, 2, 2),
          sonnet_name="Mixed_3b/Branch_1/Conv3d_0b_3x3"), 2, 2, 672),
    # The logits unit: Conv3D with a bias, no BatchNorm, no ReLU.
    (dict(filters=8, kernel_size=(1, 1, 1), use_batch_norm=False, use_bias=True,
          activation=None, sonnet_name="Logits/Conv3d_0c_1x1"), 2, 0, 32),
], ids=["conv_bn_relu", "logits"])
def test_unit3d(kwargs, trainable, non_trainable, params):
    strides = kwargs.get("strides", (1, 1, 1))
    shape = (B, 4 // strides[0], 8 // strides[1], 8 // strides[2], 8)
    run_layer_test(Unit3D, kwargs, uniform(B, 4, 8, 8, 3), shape,
                   expected_num_trainable_weights=trainable,
                   expected_num_non_trainable_weights=non_trainable, expected_num_params=params)


def test_inception_i3d():
    # 193 is the smallest frame whose 1/32 map still fits the logits' 7×7 VALID pool, and 9
    # frames the fewest for its 2-frame one; 4 classes instead of 400 (12,704,544 parameters
    # with 400, test_i3d.py). 57 units with BatchNorm (kernel and offset trainable, moving
    # mean and variance not) and the logits unit (kernel and bias).
    run_layer_test(InceptionI3D, {"num_classes": 4, "image_size": 193, "name": "i3d"},
                   uniform(B, 9, 193, 193, 3), (B, 4),
                   expected_num_trainable_weights=116, expected_num_non_trainable_weights=114,
                   expected_num_params=12_298_644)


# --- every layer of kp_tf is above, and registered.
COVERED = {KeypointExpectation, GaussianMaps, FrameDifference, FastLSTM, FusedBatchNorm, SparseMotion, CandidateWarps, DenseFlow,
           ResizeFlow, Warp, NearestKeypointPrior, KeypointDetector, ImageEncoder,
           ImageTranslator, WarpTranslator, ImageDiscriminator, SequenceDiscriminator,
           MotionEncoder, MotionDecoder, MotionGenerator, PerceptualLoss, Unit3D, InceptionI3D}


def test_every_kp_tf_layer_has_a_contract_test_and_is_registered():
    # The Layer subclasses (models included) of every kp_tf module imported so far, at least
    # those this file imports: a new layer fails here until it has its contract test above.
    found, stack = set(), [keras.layers.Layer]
    while stack:
        for cls in stack.pop().__subclasses__():
            stack.append(cls)
            if cls.__module__.startswith("kp_tf."):
                found.add(cls)
    assert {c.__name__ for c in found} == {c.__name__ for c in COVERED}
    for cls in found:
        assert keras.saving.get_registered_name(cls) == f"kp_tf>{cls.__name__}"


# --- the helper itself: each defect it is there to catch makes it fail.
@keras.saving.register_keras_serializable(package="kp_tf_tests")
class Scale(keras.layers.Layer):
    """x · factor: a correct layer with one argument."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return dict(super().get_config(), factor=self.factor)


class ForgetsItsFactor(Scale):
    def get_config(self):
        return keras.layers.Layer.get_config(self)


class MisstatesItsShape(Scale):
    def compute_output_shape(self, input_shape):
        return input_shape[:-1]


class MixesTheBatch(Scale):
    def call(self, x):
        return (x - keras.ops.mean(x, axis=0)) * self.factor


@pytest.mark.parametrize("layer_cls, message", [
    (ForgetsItsFactor, "get_config: factor"),
    (MisstatesItsShape, "symbolic call"),
    (MixesTheBatch, "first sample alone"),
])
def test_the_contract_fails_a_broken_layer(layer_cls, message):
    data = uniform(B, 3)
    run_layer_test(Scale, {"factor": 3.0}, data, (B, 3), expected_num_trainable_weights=0)
    with pytest.raises(AssertionError, match=message):
        run_layer_test(layer_cls, {"factor": 3.0}, data, (B, 3),
                       expected_num_trainable_weights=0)
