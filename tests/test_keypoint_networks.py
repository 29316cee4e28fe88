"""Stage-1 layers and networks: semantics of eqs. (1)-(3), pinned sizes per preset. Their
shapes, configs, serialisation and .keras files: test_layer_contracts.py."""

import numpy as np
import pytest
import tensorflow as tf

from kp_tf import config
from kp_tf.layers import GaussianMaps, KeypointExpectation
from kp_tf.models import detector, networks

# Trainable + non-trainable parameters per preset (detector, image encoder, translator,
# discriminator). The spec counts trainable weights at K=40, 128x128: detector ~2.25 M,
# translator ~3.1 M, discriminator ~44.7 M. Ours: detector 2,256,616 total of which
# 2,249,624 trainable (BatchNorm moving statistics are the rest), translator 3,107,204 and
# discriminator 44,721,088 -- the same layer shapes. The image encoder is 0.89 M smaller
# than the original's because its unused 1/8-resolution block is not built.
PINNED = {
    "mgif": (2256956, 292640, 3199364, 44721088),
    "nemo": (2256191, 292640, 2992004, 44721088),
    "penn": (2256616, 292640, 3107204, 44721088),
    "weizmann": (390060, 74896, 488410, 174192),  # its translator is the warping one
    "synthetic": (390200, 74896, 561014, 174192),  # warping too
    "tiny": (25489, 5332, 4620, 2924),
}


# The warping translator (--translator=warp) of each preset: the paper's decoder plus the
# dense-motion hourglass (warp_filters wide) at S/4.
WARP_PINNED = {"mgif": 3519266, "nemo": 3247061, "penn": 3398286, "synthetic": 561014,
               "tiny": 9326, "weizmann": 488410}


def test_every_preset_is_pinned():
    assert sorted(PINNED) == config.available_presets() == sorted(WARP_PINNED)


@pytest.mark.parametrize("preset", sorted(WARP_PINNED))
def test_warp_translator_parameter_counts(preset):
    from kp_tf.models.translator import build_translator

    translator = build_translator(config.load_preset(preset, translator="warp"))
    assert translator.count_params() == WARP_PINNED[preset]


@pytest.mark.parametrize("preset", sorted(PINNED))
def test_parameter_counts(preset):
    nets = networks.Stage1Networks(config.load_preset(preset))
    counts = tuple(m.count_params() for m in
                   (nets.detector, nets.image_encoder, nets.translator, nets.discriminator))
    assert counts == PINNED[preset]


def test_penn_trainable_counts_match_spec():
    nets = networks.Stage1Networks(config.load_preset("penn"))
    trainable = lambda m: sum(int(np.prod(v.shape)) for v in m.trainable_variables)
    assert abs(trainable(nets.detector) - 2.25e6) < 0.01e6
    assert abs(trainable(nets.translator) - 3.1e6) < 0.02e6
    assert abs(trainable(nets.discriminator) - 44.7e6) < 0.05e6
    assert nets.discriminator.output_shape == (None, 6, 6, 1)  # the original's 6x6 patches


@pytest.mark.parametrize("mode", ["axis", "spatial"])
def test_keypoint_expectation_finds_peak(mode):
    h, w, k = 16, 20, 2
    logits = np.full((1, h, w, k), -30.0, np.float32)
    logits[0, 0, 0, 0] = 30.0  # top-left pixel
    logits[0, h - 1, 5, 1] = 30.0  # bottom row, column 5
    kp = np.asarray(KeypointExpectation(mode)(logits))
    if mode == "axis":
        # The original averages logits over the other axis before the softmax, so a single
        # peak is diluted: the expectation only leans towards it. Check direction and order.
        assert kp[0, 0, 0] < -0.5 and kp[0, 0, 1] < -0.5
        assert kp[0, 1, 1] > 0.5
    else:
        np.testing.assert_allclose(kp[0, 0], [-1, -1], atol=1e-4)
        np.testing.assert_allclose(kp[0, 1], [-1 + 2 * 5 / (w - 1), 1], atol=1e-4)


def test_spatial_expectation_is_the_flattened_softmax_expectation():
    """The written-out 2-D softmax equals numpy's softmax over the H·W positions, also at
    temperature 0.1 on logits large enough to overflow exp without the max subtracted."""
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(3, 12, 10, 4)) * 20).astype(np.float32)
    scaled = logits.astype(np.float64) / 0.1
    flat = scaled.reshape(3, 120, 4)
    p = np.exp(flat - flat.max(1, keepdims=True))
    p = (p / p.sum(1, keepdims=True)).reshape(3, 12, 10, 4)
    ys, xs = np.linspace(-1, 1, 12), np.linspace(-1, 1, 10)
    expected = np.stack([np.einsum("bhwk,w->bk", p, xs), np.einsum("bhwk,h->bk", p, ys)], -1)
    kp = np.asarray(KeypointExpectation("spatial", temperature=0.1)(logits))
    assert np.isfinite(kp).all()
    np.testing.assert_allclose(kp, expected, atol=1e-5)


def test_keypoint_expectation_axis_exact_on_separable_logits():
    # Logits a(y) + b(x): the per-axis mean keeps each marginal, so the result is exact.
    ys, xs = np.linspace(-1, 1, 32), np.linspace(-1, 1, 32)
    logits = -40 * ((ys[:, None] - 0.25) ** 2 + (xs[None, :] + 0.5) ** 2)
    kp = np.asarray(KeypointExpectation("axis")(logits[None, :, :, None].astype(np.float32)))
    np.testing.assert_allclose(kp[0, 0], [-0.5, 0.25], atol=1e-3)


def test_gaussian_maps_peak_and_width():
    maps = np.asarray(GaussianMaps(33, 14.3)(np.array([[[0.0, 0.5]]], np.float32)))
    assert maps.shape == (1, 33, 33, 1)
    y, x = np.unravel_index(np.argmax(maps[0, :, :, 0]), (33, 33))
    assert (x, y) == (16, 24)  # x = 0 → centre column; y = 0.5 → 3/4 down
    assert maps[0, 24, 16, 0] == pytest.approx(1.0)
    # One grid step (2/32) away: exp(-(1/16)^2 * 14.3^2) ≈ 0.45.
    assert maps[0, 24, 17, 0] == pytest.approx(np.exp(-(2 / 32) ** 2 * 14.3 ** 2), rel=1e-4)


def test_downsampled_detector_is_the_small_detector_on_the_pooled_frame(tiny_config):
    """detector_downsample=2 at 32×32 = the 16×16 detector, same weights, on 2×2 means; the
    weights do not depend on it."""
    pooled = detector.build_detector(tiny_config.replace(detector_downsample=2))
    small = detector.build_detector(tiny_config.replace(image_size=16))
    assert pooled.count_params() == small.count_params()
    small.set_weights(pooled.get_weights())
    x = np.random.default_rng(3).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    means = x.reshape(2, 16, 2, 16, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(pooled(x), small(means), atol=1e-5)
    with pytest.raises(ValueError, match="image_size 32 / downsample 8"):
        detector.build_detector(tiny_config.replace(detector_downsample=8))


def test_translator_blends_reference_where_mask_is_one(tiny_config):
    nets = networks.Stage1Networks(tiny_config)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    y = np.random.default_rng(2).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    out = {k: np.asarray(v) for k, v in nets.translate(x, y).items()}
    m = out["mask"]
    np.testing.assert_allclose(out["output"], x * m + out["generated"] * (1 - m), atol=1e-5)
    assert out["reference_keypoints"].shape == (2, 4, 2)
    assert np.all(np.abs(out["target_keypoints"]) <= 1)


def test_keypoint_equivariance_loss():
    from kp_tf import losses

    rng = np.random.default_rng(0)
    kp = rng.uniform(-0.5, 0.5, size=(2, 3, 2)).astype(np.float32)
    theta = np.radians([10.0, -20.0])
    matrix = np.stack([[[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]] for t in theta])
    matrix = (matrix * np.array([1.1, 0.9])[:, None, None]).astype(np.float32)
    shift = np.array([[0.1, -0.2], [0.0, 0.05]], np.float32)
    moved = np.einsum("bij,bkj->bki", matrix, kp) + shift[:, None]
    assert float(losses.keypoint_equivariance(kp, moved, matrix, shift)) < 1e-6
    off = moved + np.array([0.3, -0.1], np.float32)  # every coordinate off by 0.3 or 0.1
    np.testing.assert_allclose(float(losses.keypoint_equivariance(kp, off, matrix, shift)), 0.2,
                               rtol=1e-5)


def test_keypoint_separation_loss():
    from kp_tf import losses

    sigma = 0.05
    together = np.zeros((2, 4, 2), np.float32)
    assert float(losses.keypoint_separation(together, sigma)) == pytest.approx(1.0, rel=1e-6)
    # Three keypoints on a line, 0.05 and 0.1 apart: 6 ordered pairs, exp(-d²/2σ²) each.
    line = np.array([[[0.0, 0.0], [0.05, 0.0], [0.15, 0.0]]], np.float32)
    pairs = [0.05, 0.1, 0.15]
    expected = 2 * sum(np.exp(-d * d / (2 * sigma ** 2)) for d in pairs) / 6
    np.testing.assert_allclose(float(losses.keypoint_separation(line, sigma)), expected, rtol=1e-5)
    far = np.array([[[-0.9, -0.9], [0.9, 0.9], [-0.9, 0.9]]], np.float32)
    assert float(losses.keypoint_separation(far, sigma)) < 1e-30
    # Its gradient pushes the two close keypoints apart.
    kp = tf.Variable([[[0.0, 0.0], [0.02, 0.0]]])
    with tf.GradientTape() as tape:
        loss = losses.keypoint_separation(kp, sigma)
    grad = tape.gradient(loss, kp).numpy()
    assert grad[0, 0, 0] > 0 > grad[0, 1, 0]  # descent moves k_0 left and k_1 right


def test_keypoint_motion_loss_pays_a_keypoint_for_following_what_moves():
    from kp_tf import losses

    s = 32
    step = 2.0 / (s - 1)
    reference = -np.ones((1, s, s, 3), np.float32)
    reference[0, 10:18, 6:14] = 1.0
    target = -np.ones((1, s, s, 3), np.float32)
    target[0, 10:18, 12:20] = 1.0  # the square, 6 px to the right
    start = np.array([[[9.5 * step - 1.0, 13.5 * step - 1.0]]], np.float32)  # its centre
    values, grads = [], []
    for dx in (0, 3, 6):
        moved = tf.Variable(start + np.array([[[dx * step, 0.0]]], np.float32))
        with tf.GradientTape() as tape:
            loss = losses.keypoint_motion(
                losses.keypoint_warp_errors(reference, target, start, moved, sigma=0.15))
        values.append(float(loss))
        grads.append(tape.gradient(loss, moved).numpy()[0, 0, 0])
    # A keypoint that stays is the identity warp: the loss is the copy's error at full size
    # and its pooled levels (the square is aligned with them, so the same mean).
    assert values[0] == pytest.approx(float(np.abs(reference - target).mean()), rel=1e-5)
    assert values[0] > values[1] > values[2]
    assert values[2] < 0.6 * values[0]
    assert grads[0] < 0 and grads[1] < 0  # descent moves the target keypoint to the right


def test_keypoint_coverage_loss_pulls_the_nearest_keypoint_onto_unexplained_motion():
    from kp_tf import losses

    s = 32
    reference = -np.ones((1, s, s, 3), np.float32)
    target = reference.copy()
    target[0, 2:6, 24:28] = 1.0  # a patch appears top right, far from every keypoint
    # k_0 at the centre, k_1 bottom left: k_0 is the nearest to the patch
    keypoints = tf.Variable(np.array([[[0.0, 0.0], [-0.8, 0.8]]], np.float32))

    def coverage(reference_keypoints, target_keypoints):
        errors = losses.keypoint_warp_errors(reference, target, reference_keypoints,
                                             target_keypoints, sigma=0.1, scales=(2,))
        return losses.keypoint_coverage(errors[2], reference_keypoints, target_keypoints)

    with tf.GradientTape() as tape:
        loss = coverage(keypoints, keypoints)
    grad = tape.gradient(loss, keypoints).numpy()[0]
    # 2x2-pooled cells 1..2 (rows) and 12..13 (columns) of 16, normalized centres
    centre = np.array([12.5, 1.5]) * 2.0 / 15 - 1.0
    assert float(loss) == pytest.approx(float(np.sum(np.square(centre))), rel=0.05)
    descent = -grad[0] / np.linalg.norm(grad[0])
    np.testing.assert_allclose(descent, centre / np.linalg.norm(centre), atol=0.02)
    np.testing.assert_allclose(grad[1], 0.0)  # only the nearest keypoint is pulled
    # a target keypoint on the patch pays nothing; the reference one still pays its half
    on_patch = np.array([[centre, [-0.8, 0.8]]], np.float32)
    assert float(coverage(keypoints, on_patch)) == pytest.approx(float(loss) / 2, rel=0.05)


def test_perceptual_loss_is_the_joint_vgg_distance_with_no_target_gradient():
    """Two VGG passes give the value and prediction gradient of one pass over [prediction;
    target] (eq. (4)), and no gradient reaches the target."""
    from kp_tf.losses import PerceptualLoss

    loss = PerceptualLoss(["block1_conv2", "block2_conv2"], weights="none")
    rng = np.random.default_rng(0)
    prediction = tf.Variable(rng.uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32))
    target = tf.Variable(rng.uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        value = loss(prediction, target)
        both = loss.features(loss._preprocess(tf.concat([prediction, target], 0)))
        joint = tf.reduce_mean(tf.stack([tf.reduce_mean(tf.abs(f[:3] - f[3:])) for f in both]))
    np.testing.assert_allclose(float(value), float(joint), rtol=1e-6)
    assert float(value) > 0.1
    grad, joint_grad = tape.gradient(value, prediction), tape.gradient(joint, prediction)
    assert float(tf.reduce_max(tf.abs(grad))) > 0
    np.testing.assert_allclose(grad.numpy(), joint_grad.numpy(), rtol=1e-5, atol=1e-9)
    assert tape.gradient(value, target) is None
    assert float(loss(target, target)) == 0.0


def test_perceptual_pyramid_averages_the_distance_of_pooled_images():
    """scales=(1, 2, 4): the mean of eq. (4) on the images and on both average-pooled by 2 and
    by 4; factors below 1 are refused."""
    from kp_tf.losses import PerceptualLoss

    layers = ["block1_conv2", "block2_conv2"]
    plain = PerceptualLoss(layers, weights="none")
    pyramid = PerceptualLoss(layers, weights="none", scales=(1, 2, 4))
    pyramid.features.set_weights(plain.features.get_weights())
    rng = np.random.default_rng(1)
    a = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    b = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)

    def pooled(x, f):
        return x.reshape(2, 32 // f, f, 32 // f, f, 3).mean(axis=(2, 4))

    expected = np.mean([float(plain(pooled(a, f), pooled(b, f))) for f in (1, 2, 4)])
    assert float(pyramid(a, b)) == pytest.approx(expected, rel=1e-5)
    assert float(pyramid(a, b)) < float(plain(a, b))  # pooled noise differs less
    assert pyramid.get_config()["scales"] == [1, 2, 4]
    with pytest.raises(ValueError, match="scales"):
        PerceptualLoss(layers, weights="none", scales=(0,))
