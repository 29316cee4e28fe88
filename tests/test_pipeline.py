"""Input pipelines (kp_tf.data.pipeline) and augmentation (kp_tf.data.augment) on tiny TFRecords.

Frames are patterned so that a pair reveals where it came from: in clip c, frame t has red =
8·t and green = 20·c everywhere. Pseudo-labels store x = t/100 for frame t.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from kp_tf import conventions
from kp_tf.data import augment, pipeline, tfrecords
from kp_tf.data.clip import Clip

TRAIN_LENGTHS = [30, 20, 12, 9, 5, 1]   # includes clips shorter than the pair gap
TEST_LENGTHS = [30, 6, 1]
KP_LENGTHS = [100, 40, 9, 5, 1]         # with L = 8: gap 11, 4, 1, short, single frame
SIZE = 32                               # tiny preset image_size


# --- writing tiny datasets -----------------------------------------------------------------

def _write_split(data_dir, split, clips):
    """One shard plus a manifest entry (what `tfrecords.shard_paths` reads)."""
    os.makedirs(data_dir, exist_ok=True)
    name = f"{split}-00000-of-00001.tfrecord"
    with tf.io.TFRecordWriter(os.path.join(data_dir, name)) as writer:
        for clip in clips:
            writer.write(tfrecords.serialize_clip(clip))
    path = os.path.join(data_dir, "manifest.json")
    manifest = json.load(open(path)) if os.path.exists(path) else {"splits": {}}
    manifest["splits"][split] = {"shards": [{"file": name, "clips": len(clips)}]}
    tfrecords.write_manifest(data_dir, manifest)


def _indexed_clip(code, num_frames, size=SIZE):
    frames = np.zeros([num_frames, size, size, 3], np.uint8)
    frames[..., 0] = (8 * np.arange(num_frames))[:, None, None]
    frames[..., 1] = 20 * code
    # Three joints drifting right by one pixel per frame.
    base = np.array([[4.0, 5.0], [16.0, 16.0], [27.0, 10.0]], np.float32) * (size - 1) / 31
    joints = base[None] + np.stack([np.arange(num_frames), np.zeros(num_frames)], -1)[:, None]
    return Clip(clip_id=f"clip{code}", frames=frames, label=code % 6,
                joints=joints.astype(np.float32))


def _write_keypoints(folder, split, records):
    os.makedirs(folder, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(folder, f"{split}-00000-of-00001.tfrecord")) as w:
        for clip_id, label, points in records:
            w.write(tfrecords.serialize_keypoints(clip_id, label, points))


def _indexed_keypoints(num_frames, k=4):
    points = np.zeros([num_frames, k, 2], np.float32)
    points[..., 0] = (np.arange(num_frames) / 100.0)[:, None]
    points[..., 1] = (np.arange(k) / 10.0)[None]
    return points


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    data_dir, labels_dir = str(root / "data"), str(root / "pseudo")
    rng = np.random.default_rng(0)
    _write_split(data_dir, "train", [_indexed_clip(c, n) for c, n in enumerate(TRAIN_LENGTHS)])
    _write_split(data_dir, "test", [_indexed_clip(c, n) for c, n in enumerate(TEST_LENGTHS)])
    _write_split(data_dir, "big", [_indexed_clip(c, 12, size=40) for c in range(2)])
    still = rng.integers(0, 256, [1, SIZE, SIZE, 3], dtype=np.uint8)
    _write_split(data_dir, "still", [Clip(f"still{c}", np.repeat(still, 15, 0)) for c in range(4)])
    _write_keypoints(labels_dir, "train",
                     [(f"kp{c}", c, _indexed_keypoints(n)) for c, n in enumerate(KP_LENGTHS)])
    # L + 1 = 9 frames: gap 1 and start 0 whatever the seed, so the sampled points are known.
    rigid = [(f"rigid{c}", c, rng.uniform(-0.8, 0.8, [9, 4, 2]).astype(np.float32))
             for c in range(4)]
    _write_keypoints(labels_dir, "rigid", rigid)
    return {"data_dir": data_dir, "labels_dir": labels_dir,
            "rigid": {label: points for _, label, points in rigid}}


@pytest.fixture(autouse=True)
def small_shuffle_buffer(monkeypatch):
    # The default buffer spans ~170 epochs of these 6-clip splits; filling it costs seconds.
    monkeypatch.setattr(pipeline, "SHUFFLE_BUFFER", 32)


@pytest.fixture
def cfg(tiny_config, data):
    return tiny_config.replace(data_dir=data["data_dir"])


def _frame_and_clip(images):
    """Patterned frames [B, S, S, 3] in [-1, 1] → (frame index [B], clip code [B])."""
    pixels = (np.asarray(images) + 1.0) * 127.5
    return (np.rint(pixels[..., 0].mean((1, 2)) / 8).astype(int),
            np.rint(pixels[..., 1].mean((1, 2)) / 20).astype(int))


def _batches(ds, n):
    return [tf.nest.map_structure(np.asarray, b) for b in ds.take(n)]


# --- stage 1 -------------------------------------------------------------------------------

def test_stage1_shapes_dtypes_and_range(cfg):
    ds = pipeline.stage1_pairs(cfg)  # tiny preset: augment on, batch 2
    assert ds.element_spec["reference"].shape.as_list() == [2, SIZE, SIZE, 3]
    for batch in _batches(ds, 4):
        for key in ("reference", "target"):
            assert batch[key].dtype == np.float32
            assert batch[key].min() >= -1.0 and batch[key].max() <= 1.0
        assert batch["label"].dtype == np.int32 and batch["label"].shape == (2,)


def test_stage1_pair_gaps_without_wraparound(cfg):
    ds = pipeline.stage1_pairs(cfg.replace(augment=False), batch_size=8)
    gaps = {}
    for batch in _batches(ds, 25):
        first, code = _frame_and_clip(batch["reference"])
        second, code2 = _frame_and_clip(batch["target"])
        np.testing.assert_array_equal(code, code2)
        for i, j, c in zip(first, second, code):
            n = TRAIN_LENGTHS[c]
            assert 0 <= i <= j < n  # never past the end, never wrapped to the start
            if n >= 12:
                assert 8 <= j - i <= 11
            else:  # too short: the largest gap that fits
                assert j - i == n - 1
            gaps.setdefault(n, set()).add(j - i)
    assert gaps[30] == {8, 9, 10, 11}
    assert gaps[1] == {0}


def test_stage1_same_augmentation_for_both_frames(cfg):
    ds = pipeline.stage1_pairs(cfg, "still", batch_size=4)
    original = tf.io.decode_png(next(iter(tf.data.TFRecordDataset(
        tfrecords.shard_paths(cfg.data_dir, "still")).map(
            lambda r: tfrecords.parse_clip(r)["frames_png"][0]))))
    original = original.numpy() / 127.5 - 1.0
    for batch in _batches(ds, 3):
        np.testing.assert_allclose(batch["reference"], batch["target"], atol=1e-5)
        for image in batch["reference"]:
            assert np.abs(image - original).mean() > 1e-3  # augmentation did change it


def test_target_jitter_moves_the_target_alone_with_its_joints():
    """jitter_target leaves the reference as it is and moves the target's content and joints
    by the same similarity; the nearest-pixel border keeps a plain background plain."""
    size = 48
    grid = np.linspace(-1, 1, size, dtype=np.float32)
    xx, yy = np.meshgrid(grid, grid)
    p = np.array([[0.2, -0.1]], np.float32)
    blob = np.exp(-((xx - p[0, 0]) ** 2 + (yy - p[0, 1]) ** 2) / (2 * 0.05 ** 2))
    image = np.repeat((50.0 + 200.0 * blob)[None, ..., None], 3, -1).astype(np.float32)
    pair = np.concatenate([image, image])
    shifts = []
    for s in range(6):
        frames, joints = augment.jitter_target(pair, tf.constant([s, 3], tf.int64),
                                               np.stack([p, p]), max_shift=0.2,
                                               max_rotation=10.0, max_scale=0.1)
        frames, joints = frames.numpy(), joints.numpy()
        np.testing.assert_array_equal(frames[0], image[0])
        np.testing.assert_array_equal(joints[0], p)
        target = frames[1, ..., 0] - 50.0
        centroid = np.array([(target * xx).sum(), (target * yy).sum()]) / target.sum()
        np.testing.assert_allclose(centroid, joints[1, 0], atol=0.02)
        assert np.abs(frames[1] - 50.0).max() > 0  # the blob is there ...
        np.testing.assert_allclose(frames[1][[0, -1]], 50.0, atol=0.5)  # ... border plain
        shifts.append(np.abs(joints[1, 0] - p[0]).max())
    assert max(shifts) > 0.05 and max(shifts) <= 0.2 * 1.2 + 0.05


def test_stage1_target_jitter_in_the_pipeline(cfg):
    ds = pipeline.stage1_pairs(cfg.replace(target_shift=0.2), "still", batch_size=4)
    for batch in _batches(ds, 2):
        assert np.abs(batch["reference"] - batch["target"]).mean(axis=(1, 2, 3)).min() > 1e-3


def test_stage1_equivariance_warp_in_the_pipeline(cfg):
    ds = pipeline.stage1_pairs(cfg.replace(lambda_equivariance=1.0, equivariance_shift=0.3,
                                           augment=False), "still", batch_size=4)
    batch = _batches(ds, 1)[0]
    assert batch["warp_matrix"].shape == (4, 2, 2) and batch["warp_shift"].shape == (4, 2)
    for i in range(4):  # the reference moved by its own similarity, which differs per pair
        want = augment.warp_images(batch["reference"][i:i + 1], batch["warp_matrix"][i],
                                   batch["warp_shift"][i], fill_mode="NEAREST")[0]
        np.testing.assert_allclose(batch["warped_reference"][i], want, atol=1e-4)
    assert len({tuple(np.round(m, 5)) for m in batch["warp_shift"]}) == 4
    # Off by default and never at test time.
    assert "warped_reference" not in _batches(pipeline.stage1_pairs(cfg, "still"), 1)[0]
    test_batch = _batches(pipeline.stage1_pairs(cfg.replace(lambda_equivariance=1.0), "test",
                                                training=False), 1)[0]
    assert "warped_reference" not in test_batch


def test_stage1_deterministic_for_a_seed(cfg):
    def first_batches(seed, ds=None):
        ds = ds or pipeline.stage1_pairs(cfg, seed=seed)
        return np.stack([b["reference"] for b in _batches(ds, 2)])

    ds = pipeline.stage1_pairs(cfg, seed=3)
    a = first_batches(3, ds)
    np.testing.assert_array_equal(a, first_batches(3, ds))   # same Dataset, iterated again
    np.testing.assert_array_equal(a, first_batches(3))       # rebuilt
    assert np.abs(a - first_batches(4)).max() > 0.1          # another seed


def test_stage1_test_split_fixed_pairs(cfg):
    ds = pipeline.stage1_pairs(cfg, "test", training=False)
    batches = _batches(ds, 10)
    assert [len(b["label"]) for b in batches] == [2, 1]  # no repeat, partial batch kept
    reference = np.concatenate([b["reference"] for b in batches])
    target = np.concatenate([b["target"] for b in batches])
    i, code = _frame_and_clip(reference)
    j, _ = _frame_and_clip(target)
    np.testing.assert_array_equal(code, [0, 1, 2])  # file order
    np.testing.assert_array_equal(i, [0, 0, 0])
    np.testing.assert_array_equal(j, [10, 5, 0])
    # Unaugmented: exactly the stored pixels.
    np.testing.assert_allclose((reference[0, ..., 0] + 1) * 127.5, 0.0, atol=1e-4)


def test_stage1_resizes_stored_frames(cfg):
    batch = _batches(pipeline.stage1_pairs(cfg, "big", training=False), 1)[0]
    assert batch["reference"].shape == (2, SIZE, SIZE, 3)
    j, code = _frame_and_clip(batch["target"])
    np.testing.assert_array_equal(j, [10, 10])
    np.testing.assert_array_equal(code, [0, 1])


def test_stage1_joints(cfg):
    ds = pipeline.stage1_pairs(cfg, "test", training=False, with_joints=True)
    batch = _batches(ds, 1)[0]
    clip = _indexed_clip(0, 30)
    expected = conventions.pixels_to_normalized(clip.joints[[0, 10]], SIZE, SIZE)
    np.testing.assert_allclose(batch["reference_joints"][0], expected[0], atol=1e-6)
    np.testing.assert_allclose(batch["target_joints"][0], expected[1], atol=1e-6)
    # Frame 10 moved joint 2 (x = 27 + 10 px) out of the 32-px frame.
    np.testing.assert_array_equal(batch["target_visibility"][0], [1, 1, 0])
    train = _batches(pipeline.stage1_pairs(cfg, with_joints=True), 1)[0]
    assert train["reference_joints"].shape == (2, 3, 2)
    assert train["reference_visibility"].shape == (2, 3)


def test_geometric_augmentation_moves_joints_with_the_image():
    """A Gaussian blob drawn at p lands, after warping, where transform_points sends p."""
    size = 48
    grid = np.linspace(-1, 1, size, dtype=np.float32)
    xx, yy = np.meshgrid(grid, grid)
    for s in range(8):
        p = np.array([0.3 * np.cos(s), 0.3 * np.sin(s)], np.float32)
        blob = np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * 0.05 ** 2))
        image = np.repeat(blob[None, ..., None] * 255.0, 3, -1).astype(np.float32)
        params = augment.sample_frame_augmentation(tf.constant([s, 7], tf.int64))
        warped = augment.warp_images(image, params["matrix"], params["offset"]).numpy()[0, ..., 0]
        centroid = np.array([(warped * xx).sum(), (warped * yy).sum()]) / warped.sum()
        moved = augment.transform_points(p, params["matrix"], params["offset"]).numpy()
        np.testing.assert_allclose(centroid, moved, atol=0.02)


def test_photometric_filters():
    grey = tf.fill([2, 8, 8, 3], 100.0)
    noise = tf.random.stateless_uniform([2, 8, 8, 3], [1, 2], 0.0, 255.0)
    for index, (name, _, (low, high)) in enumerate(augment.FILTERS):
        factor = 0.5 * (low + high)
        out = augment.apply_filter(grey, index, factor).numpy()
        # Kernels sum to 1 and a flat grey image has no colour or contrast: only brightness acts.
        expected = 100.0 * factor if name == "brightness" else 100.0
        np.testing.assert_allclose(out, expected, rtol=1e-5, err_msg=name)
        out = augment.apply_filter(noise, index, high).numpy()
        assert out.min() >= 0.0 and out.max() <= 255.0, name
        if name != "brightness":  # the same filter acts on each image of the pair alike
            np.testing.assert_allclose(
                augment.apply_filter(noise[:1], index, high).numpy(), out[:1], atol=1e-3)


# --- stage 2 -------------------------------------------------------------------------------

def test_sample_indices():
    long = pipeline.sample_indices(100, 32)  # gap = 3, start ∈ {0, 1}
    np.testing.assert_array_equal(long.lower, 3 * np.arange(33))
    np.testing.assert_array_equal(long.upper, long.lower)
    np.testing.assert_array_equal(long.weight, 0.0)
    starts = {int(pipeline.sample_indices(100, 32, tf.constant([s, 0])).lower[0])
              for s in range(20)}
    assert starts == {0, 1}
    exact = pipeline.sample_indices(33, 32, tf.constant([5, 0]))
    np.testing.assert_array_equal(exact.lower, np.arange(33))
    # Short clip: 9 steps spread over frames 0..4, every other one halfway between frames.
    short = pipeline.sample_indices(5, 8, tf.constant([5, 0]))
    np.testing.assert_array_equal(short.lower, [0, 0, 1, 1, 2, 2, 3, 3, 4])
    np.testing.assert_array_equal(short.upper, [1, 1, 2, 2, 3, 3, 4, 4, 4])
    np.testing.assert_allclose(short.weight, [0, .5] * 4 + [0])
    np.testing.assert_array_equal(short.nearest(), [0, 1, 1, 2, 2, 3, 3, 4, 4])
    np.testing.assert_allclose(short.interpolate(tf.range(5.0)), np.arange(9) / 2)
    single = pipeline.sample_indices(1, 8, tf.constant([5, 0]))
    np.testing.assert_array_equal(single.lower, 0)
    np.testing.assert_array_equal(single.upper, 0)


def test_pseudo_label_smoothing_in_time():
    rng = np.random.default_rng(0)
    t = np.arange(40, dtype=np.float32)
    static = np.broadcast_to(rng.uniform(-1, 1, (1, 3, 2)), (40, 3, 2)).astype(np.float32)
    linear = (0.01 * t[:, None, None] * np.ones((1, 3, 2))).astype(np.float32)
    noisy = (linear + 0.05 * rng.normal(size=linear.shape)).astype(np.float32)
    assert pipeline.smooth_in_time(noisy, 0.0) is noisy
    np.testing.assert_allclose(pipeline.smooth_in_time(static, 2.0), static, atol=1e-6)
    # A linear motion keeps its slope up to the ends (point reflection), and the first frame,
    # the motion generator's k_0, keeps its value: a motion starting at frame 0 is not damped.
    np.testing.assert_allclose(pipeline.smooth_in_time(linear, 2.0), linear, atol=1e-5)
    onset = np.where(t[:, None, None] < 10, 0.0, 0.02 * (t[:, None, None] - 10)) * np.ones((1, 3, 2))
    onset = (static + onset).astype(np.float32)
    np.testing.assert_allclose(pipeline.smooth_in_time(noisy, 2.0)[0], noisy[0], atol=1e-6)
    np.testing.assert_allclose(pipeline.smooth_in_time(onset, 2.0)[:4], onset[:4], atol=1e-6)
    assert pipeline.smooth_in_time(noisy[:1], 2.0).shape == (1, 3, 2)  # a one-frame clip
    smoothed = pipeline.smooth_in_time(noisy, 2.0).numpy()
    # Noise is cut where the window fits; at the ends less (frame 0 is kept as detected).
    assert np.abs(smoothed - linear)[6:-6].mean() < 0.4 * np.abs(noisy - linear)[6:-6].mean()
    assert np.abs(smoothed - linear).mean() < 0.6 * np.abs(noisy - linear).mean()
    # One frame moved: only frames within 3σ change.
    spike = static.copy()
    spike[20] += 1.0
    changed = np.abs(pipeline.smooth_in_time(spike, 1.0).numpy() - static).max(axis=(1, 2)) > 1e-5
    assert np.flatnonzero(changed).tolist() == list(range(17, 24))


def test_stage2_shapes_and_actions(cfg, data):
    ds = pipeline.stage2_sequences(cfg, data["labels_dir"])  # K 4, L 8, A 6, batch 2
    for batch in _batches(ds, 5):
        assert batch["first"].shape == (2, 4, 2) and batch["first"].dtype == np.float32
        assert batch["sequence"].shape == (2, 8, 4, 2)
        assert batch["action"].shape == (2, 6) and batch["label"].dtype == np.int32
        np.testing.assert_array_equal(batch["action"].sum(-1), 1.0)
        np.testing.assert_array_equal(batch["action"].argmax(-1), batch["label"])
    no_actions = pipeline.stage2_sequences(cfg.replace(num_actions=0), data["labels_dir"])
    assert _batches(no_actions, 1)[0]["action"].shape == (2, 0)


def test_stage2_temporal_sampling(cfg, data):
    plain = cfg.replace(augment=False)
    test = _batches(pipeline.stage2_sequences(plain, data["labels_dir"], training=False,
                                              batch_size=5), 1)[0]
    for c, n in enumerate(KP_LENGTHS):
        expected = pipeline.sample_indices(n, 8).interpolate(tf.range(n, dtype=tf.float32))
        np.testing.assert_allclose(test["first"][c, :, 0], 0.0)
        np.testing.assert_allclose(test["sequence"][c, :, 0, 0] * 100, expected[1:], atol=1e-4)
    for batch in _batches(pipeline.stage2_sequences(plain, data["labels_dir"]), 10):
        for label, first, seq in zip(batch["label"], batch["first"], batch["sequence"]):
            n = KP_LENGTHS[label]
            times = np.concatenate([first[:1, 0], seq[:, 0, 0]]) * 100
            gap = n // 9
            if gap >= 1:
                assert 0 <= times[0] <= n - 9 * gap
                np.testing.assert_allclose(np.diff(times), gap, atol=1e-3)
            np.testing.assert_allclose(seq[:, :, 1], np.tile(np.arange(4) / 10, (8, 1)),
                                       atol=1e-6)
    starts = {int(round(float(first[0, 0]) * 100))
              for batch in _batches(pipeline.stage2_sequences(plain, data["labels_dir"]), 10)
              for first in batch["first"]}
    assert len(starts) > 1  # random starts in the long clips
    # Without random starts training reads the test windows (clips that start at the onset).
    fixed = plain.replace(stage2_random_start=False)
    for batch in _batches(pipeline.stage2_sequences(fixed, data["labels_dir"]), 10):
        for label, first, seq in zip(batch["label"], batch["first"], batch["sequence"]):
            np.testing.assert_allclose(first[:, 0], 0.0)
            np.testing.assert_allclose(seq[:, 0, 0], test["sequence"][label, :, 0, 0], atol=1e-6)
    # Smoothing keeps the conditioning frame where it was detected and a linear motion as it
    # is (these keypoints move linearly): k_0 is not pulled into the motion that follows.
    smoothed = _batches(pipeline.stage2_sequences(plain.replace(pseudo_label_smoothing=2.0),
                                                  data["labels_dir"], training=False,
                                                  batch_size=5), 1)[0]
    np.testing.assert_allclose(smoothed["first"], test["first"], atol=1e-6)
    np.testing.assert_allclose(smoothed["sequence"], test["sequence"], atol=1e-5)


def _augmentation_matrices(cfg, data, batches=4):
    """The 2×2 matrix each augmented sample's points were moved by (least squares)."""
    ds = pipeline.stage2_sequences(cfg, data["labels_dir"], "rigid", batch_size=4)
    matrices = []
    for batch in _batches(ds, batches):
        for label, first, seq in zip(batch["label"], batch["first"], batch["sequence"]):
            original = data["rigid"][label].reshape(-1, 2)
            moved = np.concatenate([first[None], seq]).reshape(-1, 2)
            matrix, *_ = np.linalg.lstsq(original, moved, rcond=None)
            np.testing.assert_allclose(original @ matrix, moved, atol=1e-5)  # one linear map
            matrices.append(matrix)
    return np.array(matrices)


def test_stage2_keypoint_flip_can_be_turned_off(cfg, data):
    mirrored = np.linalg.det(_augmentation_matrices(cfg, data, 6)) < 0
    assert 0 < mirrored.sum() < len(mirrored)  # the original: mirrored with p = 0.5
    kept = np.linalg.det(_augmentation_matrices(cfg.replace(keypoint_flip=False), data, 6))
    assert np.all(kept > 0)


def test_stage2_augmentation_is_one_similarity_for_the_whole_sample(cfg, data):
    """first and sequence are the stored points under one scaled rotation (maybe mirrored)."""
    scales = []
    for matrix in _augmentation_matrices(cfg, data):
        gram = matrix.T @ matrix
        scale = np.sqrt(gram[0, 0])
        np.testing.assert_allclose(gram, scale ** 2 * np.eye(2), atol=1e-5)
        assert 0.7 - 1e-5 <= scale <= 1.2 + 1e-5
        scales.append(scale)
    assert np.ptp(scales) > 0.05


# --- whole clips ---------------------------------------------------------------------------

def test_clip_sequences(cfg):
    clips = [tf.nest.map_structure(np.asarray, c)
             for c in pipeline.clip_sequences(cfg, cfg.data_dir, "train")]
    assert [len(c["frames"]) for c in clips] == TRAIN_LENGTHS
    first = clips[0]
    assert first["frames"].dtype == np.uint8 and first["frames"].shape == (30, SIZE, SIZE, 3)
    np.testing.assert_array_equal(first["frames"][:, 0, 0, 0], 8 * np.arange(30))
    assert first["clip_id"] == b"clip0" and first["joints"].shape == (30, 3, 2)
    head = next(iter(pipeline.clip_sequences(cfg, cfg.data_dir, "train", frames=3)))
    assert head["frames"].shape[0] == 3
    picked = next(iter(pipeline.clip_sequences(
        cfg, cfg.data_dir, "train",
        frames=lambda n: pipeline.sample_indices(n, 8).nearest())))
    np.testing.assert_array_equal(picked["frame_indices"], 3 * np.arange(9))
    np.testing.assert_array_equal(picked["frames"][:, 0, 0, 0], 24 * np.arange(9))


# --- tf.distribute ---------------------------------------------------------------------------

_DISTRIBUTED = textwrap.dedent("""
    import sys
    import tensorflow as tf
    from kp_tf import config
    from kp_tf.data import pipeline  # imported first: importing must not start the TF runtime
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    data_dir, labels_dir = sys.argv[1:3]
    # Augmentation is irrelevant to distribution and costs tracing time.
    cfg = config.load_preset("tiny", data_dir=data_dir, augment=False)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    for ds, key, shape in [
            (pipeline.stage1_pairs(cfg, batch_size=4), "reference", [2, 32, 32, 3]),
            (pipeline.stage2_sequences(cfg, labels_dir, batch_size=4), "sequence", [2, 8, 4, 2])]:
        batch = next(iter(strategy.experimental_distribute_dataset(ds)))
        parts = strategy.experimental_local_results(batch[key])
        assert [p.shape.as_list() for p in parts] == [shape, shape], parts
        total = strategy.run(lambda b: tf.reduce_sum(tf.ones_like(b["label"])), args=(batch,))
        assert int(strategy.reduce("SUM", total, axis=None)) == 4
    print("OK")
""")


def test_distributed_over_two_logical_cpus(data):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, "-c", _DISTRIBUTED, data["data_dir"],
                             data["labels_dir"]], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
