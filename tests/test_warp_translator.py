"""The warping translator (beyond the paper): its layers' geometry, and the whole model moving
the reference with a keypoint."""

import numpy as np
import pytest
import tensorflow as tf

from kp_tf.layers import (CandidateWarps, DenseFlow, SparseMotion, prior_warp,
                          ResizeFlow, antialias_matrix, bilinear_sample)
from kp_tf.models import networks
from kp_tf.models.translator import WarpTranslator

RNG = np.random.default_rng(0)


def _grid(n):
    xs, ys = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n))
    return np.stack([xs, ys], -1).astype(np.float32)


def test_bilinear_sample_is_exact_on_pixel_centres_and_clamps_outside():
    images = RNG.uniform(-1, 1, (2, 6, 6, 3)).astype(np.float32)
    identity = np.broadcast_to(_grid(6), (2, 6, 6, 2))
    np.testing.assert_allclose(bilinear_sample(images, identity), images, atol=1e-6)
    one_pixel = identity + np.array([2 / 5, 0], np.float32)  # sample one pixel to the right
    shifted = np.asarray(bilinear_sample(images, one_pixel))
    np.testing.assert_allclose(shifted[:, :, :5], images[:, :, 1:], atol=1e-6)
    np.testing.assert_allclose(shifted[:, :, 5], images[:, :, 5], atol=1e-6)  # border repeats
    halfway = identity + np.array([0, 1 / 5], np.float32)  # half a pixel down
    np.testing.assert_allclose(np.asarray(bilinear_sample(images, halfway))[:, :5],
                               (images[:, :5] + images[:, 1:]) / 2, atol=1e-6)


def test_bilinear_sample_gradient_reaches_the_coordinates():
    images = tf.constant(np.tile(np.linspace(0, 1, 8, dtype=np.float32)[None, None, :, None],
                                 (1, 8, 1, 1)))  # brightness grows to the right by 1/7 a pixel
    coordinates = tf.Variable(np.broadcast_to(_grid(8), (1, 8, 8, 2)).copy() * 0.5)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(bilinear_sample(images, coordinates))
    grad = tape.gradient(total, coordinates).numpy()
    np.testing.assert_allclose(grad[..., 0], 0.5, rtol=1e-5)  # d/dx = (1/7) · (7/2) per unit
    np.testing.assert_allclose(grad[..., 1], 0.0, atol=1e-6)


def test_sparse_motion_candidates_carry_each_reference_keypoint_onto_its_target():
    ref = np.array([[[-0.5, 0.0], [0.5, 0.5]]], np.float32)
    tgt = np.array([[[-0.25, 0.25], [0.5, -0.5]]], np.float32)
    candidates = np.asarray(SparseMotion(5)(ref, tgt))
    assert candidates.shape == (1, 5, 5, 3, 2)
    np.testing.assert_allclose(candidates[0, :, :, 0], _grid(5), atol=1e-6)  # identity
    for k in range(2):
        np.testing.assert_allclose(candidates[0, :, :, k + 1], _grid(5) + ref[0, k] - tgt[0, k],
                                   atol=1e-6)


def test_prior_warp_moves_a_square_with_its_keypoint():
    s = 32
    step = 2.0 / (s - 1)
    reference = -np.ones((1, s, s, 3), np.float32)
    reference[0, 10:14, 10:14] = 1.0
    centre = (11.5 * step - 1.0)
    ref_kp = np.array([[[centre, centre], [0.8, -0.8]]], np.float32)
    tgt_kp = ref_kp + np.array([[[6 * step, 0.0], [0.0, 0.0]]], np.float32)  # 6 px right
    # A wide prior and an identity logit far below: the square's pixels follow keypoint 0.
    out = np.asarray(prior_warp(reference, ref_kp, tgt_kp, sigma=0.15, background_logit=-20))
    assert out[0, 10:14, 16:20].min() > 0.9  # the square, moved
    assert out[0, 0, 0].max() < -0.99  # far corners keep the background


def test_candidate_warps_and_dense_flow():
    images = RNG.uniform(-1, 1, (2, 4, 4, 3)).astype(np.float32)
    ref = RNG.uniform(-0.5, 0.5, (2, 3, 2)).astype(np.float32)
    tgt = RNG.uniform(-0.5, 0.5, (2, 3, 2)).astype(np.float32)
    candidates = SparseMotion(4)(ref, tgt)
    moved = np.asarray(CandidateWarps()(images, candidates)).reshape(2, 4, 4, 4, 3)
    for k in range(4):
        np.testing.assert_allclose(moved[:, :, :, k],
                                   bilinear_sample(images, candidates[:, :, :, k]), atol=1e-6)
    np.testing.assert_allclose(moved[:, :, :, 0], images, atol=1e-6)
    one_hot = np.zeros((2, 4, 4, 4), np.float32)
    one_hot[..., 2] = 1
    np.testing.assert_allclose(DenseFlow()(one_hot, candidates), candidates[:, :, :, 2],
                               atol=1e-6)


def test_upsampled_flow_keeps_the_identity_and_a_translation():
    identity = np.broadcast_to(_grid(4), (1, 4, 4, 2))
    np.testing.assert_allclose(ResizeFlow(16)(identity), _grid(16)[None], atol=1e-5)
    moved = identity + np.array([0.3, -0.2], np.float32)
    np.testing.assert_allclose(ResizeFlow(16)(moved),
                               _grid(16)[None] + np.array([0.3, -0.2]), atol=1e-5)


@pytest.mark.parametrize("size_in,size_out", [(32, 16), (64, 16), (12, 5)])
def test_shrinking_a_flow_is_tf_image_resize_with_antialiasing(size_in, size_out):
    """ResizeFlow shrinks with two matrix products (TFLite has no ScaleAndTranslate); they
    compute what tf.image.resize(antialias=True) does, border renormalisation included."""
    flow = RNG.uniform(-1, 1, (2, size_in, size_in, 2)).astype(np.float32)
    expected = tf.image.resize(flow - _grid(size_in)[None], (size_out, size_out),
                               antialias=True).numpy() + _grid(size_out)[None]
    np.testing.assert_allclose(ResizeFlow(size_out)(flow), expected, atol=1e-6)
    weights = antialias_matrix(size_in, size_out)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    assert weights.shape == (size_out, size_in) and (weights >= 0).all()


def _copying_translator(cfg, follow: int):
    """A warp translator whose dense motion follows keypoint `follow` everywhere and whose
    mask copies the warped reference: the output is the reference translated by that
    keypoint's motion."""
    translator = WarpTranslator(cfg.num_keypoints, cfg.image_size, 4, 8, cfg.gaussian_inv_std,
                                motion_filters=4, prior_sigma=0.0)
    masks = translator.get_layer("motion_masks")
    kernel, bias = masks.get_weights()
    bias[:] = -30.0
    bias[follow + 1] = 30.0
    masks.set_weights([np.zeros_like(kernel), bias])
    mask = translator.get_layer("mask")
    kernel, bias = mask.get_weights()
    mask.set_weights([np.zeros_like(kernel), np.full_like(bias, 30.0)])
    return translator


def test_warp_translator_moves_the_reference_with_its_keypoint(tiny_config):
    cfg = tiny_config
    s = cfg.image_size
    translator = _copying_translator(cfg, follow=1)
    reference = np.zeros((1, s, s, 3), np.float32) - 1
    reference[0, 8:12, 8:12] = 1.0  # a bright square at rows and columns 8..11
    features = RNG.uniform(-1, 1, (1, s // 4, s // 4, 4)).astype(np.float32)
    ref_kp = RNG.uniform(-0.8, 0.8, (1, cfg.num_keypoints, 2)).astype(np.float32)
    tgt_kp = ref_kp.copy()
    step = 2.0 / (s - 1)
    tgt_kp[0, 1] += np.array([8 * step, 4 * step])  # keypoint 1 moves 8 px right, 4 px down
    out = {k: np.asarray(v) for k, v in
           translator([reference, features, ref_kp, tgt_kp]).items()}
    np.testing.assert_allclose(out["mask"], 1.0, atol=1e-6)
    moved = out["output"][0]
    assert moved[12:16, 16:20].min() > 0.99  # the square, 4 rows down and 8 columns right
    assert moved[8:12, 8:12].max() < -0.99   # and gone from where it was
    assert out["flow"].shape == (1, s // 4, s // 4, 2) and out["occlusion"].shape == (1, s // 4, s // 4, 1)


def test_warp_translator_trains_the_keypoints(tiny_config):
    cfg = tiny_config.replace(translator="warp")
    nets = networks.Stage1Networks(cfg)
    x = tf.constant(RNG.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32))
    y = tf.constant(RNG.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        out = nets.translate(x, y, training=True)
        loss = tf.reduce_mean(tf.abs(out["output"] - y))
    grads = tape.gradient(loss, nets.detector.trainable_variables)
    assert all(g is not None for g in grads) and sum(float(tf.reduce_sum(tf.abs(g)))
                                                    for g in grads) > 0


def test_a_fresh_warp_translator_moves_pixels_with_their_nearest_keypoint(tiny_config):
    """With the nearest-keypoint prior the first flows already follow the keypoints: a pixel on
    a target keypoint samples the reference at that keypoint's reference position, and a
    pixel far from every keypoint stays where it is."""
    s, fs = 32, 8
    translator = WarpTranslator(2, s, 4, 8, tiny_config.gaussian_inv_std, motion_filters=4,
                                prior_sigma=0.1)
    grid = np.linspace(-1, 1, fs).astype(np.float32)
    ref_kp = np.array([[[grid[2] - 0.1, grid[3]], [grid[5], grid[5] + 0.1]]], np.float32)
    tgt_kp = np.array([[[grid[2], grid[3]], [grid[5], grid[5]]]], np.float32)
    x = RNG.uniform(-1, 1, (1, s, s, 3)).astype(np.float32)
    flow = np.asarray(translator([x, RNG.uniform(-1, 1, (1, fs, fs, 4)).astype(np.float32),
                                  ref_kp, tgt_kp])["flow"])[0]
    # On a target keypoint: its own candidate against the background's prior logit of −2.
    share = 1.0 / (1.0 + np.exp(translator.get_layer("motion_prior").background_logit))
    for k, (row, col) in enumerate([(3, 2), (5, 5)]):
        np.testing.assert_allclose(flow[row, col], tgt_kp[0, k] + share * (ref_kp[0, k] - tgt_kp[0, k]),
                                   atol=1e-4)
    np.testing.assert_allclose(flow[0, 7], [grid[7], grid[0]], atol=1e-4)  # far: identity


def test_warp_needs_a_size_divisible_by_16(tiny_config):
    with pytest.raises(ValueError, match="multiple of 16"):
        WarpTranslator(4, 40)
    with pytest.raises(ValueError, match="motion_scale must be 1, 2 or 4"):
        WarpTranslator(4, 32, motion_scale=3)


@pytest.mark.parametrize("scale", [1, 2])
def test_a_finer_dense_motion_moves_the_reference_as_the_coarse_one(tiny_config, scale):
    """At S/2 or S the dense motion has the same weights and, following one keypoint
    everywhere, moves the whole reference by that keypoint's motion."""
    cfg = tiny_config
    s = cfg.image_size
    coarse = _copying_translator(cfg, follow=0)
    fine = WarpTranslator(cfg.num_keypoints, s, 4, 8, cfg.gaussian_inv_std, motion_filters=4,
                          prior_sigma=0.0, motion_scale=scale)
    assert fine.count_params() == coarse.count_params()
    fine.set_weights(coarse.get_weights())
    reference = RNG.uniform(-1, 1, (1, s, s, 3)).astype(np.float32)
    features = RNG.uniform(-1, 1, (1, s // 4, s // 4, 4)).astype(np.float32)
    ref_kp = RNG.uniform(-0.5, 0.5, (1, cfg.num_keypoints, 2)).astype(np.float32)
    tgt_kp = ref_kp + np.float32(2 * 3 / (s - 1))  # 3 px right and down
    out = np.asarray(fine([reference, features, ref_kp, tgt_kp])["output"])[0]
    np.testing.assert_allclose(out[3:, 3:], reference[0, :-3, :-3], atol=1e-4)


def test_full_flow_mixes_the_motions_at_full_resolution(tiny_config):
    """full_flow: same weights, the flow at S; two keypoints 8 px apart move their own pixels
    (at S/4 they share a cell or two and blur into one motion)."""
    cfg = tiny_config
    s = cfg.image_size
    coarse = WarpTranslator(2, s, 4, 8, cfg.gaussian_inv_std, motion_filters=4, prior_sigma=0.05)
    fine = WarpTranslator(2, s, 4, 8, cfg.gaussian_inv_std, motion_filters=4, prior_sigma=0.05,
                          full_flow=True)
    assert fine.count_params() == coarse.count_params()
    fine.set_weights(coarse.get_weights())
    assert WarpTranslator.from_config(fine.get_config()).full_flow
    step = 2.0 / (s - 1)
    ref_kp = np.array([[[-8 * step, 0.0], [8 * step, 0.0]]], np.float32)
    tgt_kp = ref_kp + np.array([[[0.0, -3 * step], [0.0, 3 * step]]], np.float32)  # up / down
    inputs = [RNG.uniform(-1, 1, (1, s, s, 3)).astype(np.float32),
              RNG.uniform(-1, 1, (1, s // 4, s // 4, 4)).astype(np.float32), ref_kp, tgt_kp]
    flow = np.asarray(fine(inputs)["flow"])[0]
    assert flow.shape == (s, s, 2)
    assert np.asarray(coarse(inputs)["flow"]).shape == (1, s // 4, s // 4, 2)
    coarse_flow = np.asarray(ResizeFlow(s)(coarse(inputs)["flow"]))[0]
    for k, sign in ((0, 1), (1, -1)):
        col, row = np.round((tgt_kp[0, k] + 1) / step).astype(int)
        # Next to its target keypoint a pixel samples 3 px below / above it (2 px after the
        # background's share and half a pixel off the keypoint): its own keypoint's motion.
        # At S/4 a σ of 0.8 px falls between the cells and the pixel hardly moves.
        dy = (flow[row, col, 1] - tgt_kp[0, k, 1]) / step
        coarse_dy = (coarse_flow[row, col, 1] - tgt_kp[0, k, 1]) / step
        assert sign * dy > 1.5 and abs(coarse_dy) < 0.5, (k, dy, coarse_dy)


def test_without_decoder_maps_the_keypoints_reach_the_decoder_only_as_motion(tiny_config):
    cfg = tiny_config
    s, k = cfg.image_size, cfg.num_keypoints
    with_maps = WarpTranslator(k, s, 4, 8, cfg.gaussian_inv_std, motion_filters=4)
    without = WarpTranslator(k, s, 4, 8, cfg.gaussian_inv_std, motion_filters=4,
                             decoder_maps=False)
    # the first decoder conv (3×3, 8 filters) loses the 2K map channels
    assert with_maps.count_params() - without.count_params() == 3 * 3 * 2 * k * 8
    assert not WarpTranslator.from_config(without.get_config()).decoder_maps
    reference = RNG.uniform(-1, 1, (1, s, s, 3)).astype(np.float32)
    features = RNG.uniform(-1, 1, (1, s // 4, s // 4, 4)).astype(np.float32)
    ref_kp = RNG.uniform(-0.5, 0.5, (1, k, 2)).astype(np.float32)
    # No motion: the keypoints' positions do not change what the decoder sees.
    a = np.asarray(without([reference, features, ref_kp, ref_kp])["generated"])
    b = np.asarray(without([reference, features, ref_kp + 0.2, ref_kp + 0.2])["generated"])
    np.testing.assert_allclose(a, b, atol=1e-5)
