"""The evaluation (`python -m kp_tf.evaluate`): metrics on known inputs, the baselines, and the
report end to end on the tiny trained pipeline (FVD with a stand-in feature extractor, and with
the real I3D when ../shared has its weights)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from _tiny_run import tiny_run  # noqa: F401  (the shared trained run, a fixture)
from conftest import REPO, command_env
from kp_tf.data import synthetic
from kp_tf.evaluation import metrics as M
from kp_tf.evaluation import report as evaluation, test_clips

FRAMES = 9  # ≥ 9 for I3D; the tiny preset generates 8 steps per chunk, so this also rolls forward
CLASSIFIER_STEPS = 4  # a tiny budget: the test checks the plumbing, not the accuracy


# --- metrics on known inputs ------------------------------------------------------------------

def test_pixel_metrics_known_values():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    assert np.all(M.psnr(a, a) == M.PSNR_CAP_DB)  # identical: capped, not inf
    np.testing.assert_allclose(M.ssim(a, a), 1.0, atol=1e-6)
    assert np.all(M.l1(a, a) == 0)
    zeros, tenth = np.zeros((2, 16, 16, 3), np.float32), np.full((2, 16, 16, 3), 0.1, np.float32)
    np.testing.assert_allclose(M.psnr(zeros, tenth), 20.0, rtol=1e-5)  # MSE 0.01 → 20 dB
    np.testing.assert_allclose(M.l1(zeros, tenth), 0.1, rtol=1e-6)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    assert np.all(M.ssim(a, b) < 0.99) and np.all(M.psnr(a, b) < 40)
    with pytest.raises(ValueError, match="shape"):
        M.l1(a, a[:2])
    means = M.RunningMeans().update({"x": [1, 2]}).update({"x": 3}).result()
    assert means["x"]["mean"] == 2.0 and means["x"]["count"] == 3


def test_moving_region_and_metrics_inside_it():
    reference = np.zeros((1, 20, 20, 3), np.uint8)
    target = reference.copy()
    target[0, 5:7, 8:10] = 200  # a 2×2 patch moved in: the only change
    region = M.moving_region(reference, target, dilation=1)
    assert region.shape == (1, 20, 20) and region.sum() == 16  # 2×2 grown by 1 px: 4×4
    assert region[0, 4:8, 7:11].all()
    # A copy of the reference is wrong inside the region and right outside it.
    inside = M.region_metrics(reference, target, region)
    np.testing.assert_allclose(inside["l1"], 4 * 200 / 255 / 16, rtol=1e-5)  # 4 of 16 pixels
    assert inside["pixels"][0] == 16 and inside["ssim"][0] < 0.9
    whole = M.l1(reference, target)
    assert inside["l1"][0] > 10 * whole[0]  # the whole frame dilutes the error
    perfect = M.region_metrics(target, target, region)
    assert perfect["l1"][0] == 0 and perfect["psnr"][0] == M.PSNR_CAP_DB
    np.testing.assert_allclose(perfect["ssim"], 1.0, atol=1e-6)
    nothing = M.region_metrics(reference, reference, M.moving_region(reference, reference))
    assert np.isnan(nothing["l1"][0]) and nothing["pixels"][0] == 0
    # The SSIM map agrees with tf.image.ssim away from the borders it treats differently.
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    np.testing.assert_allclose(M.ssim_map(a, b)[:, 5:-5, 5:-5].mean(axis=(1, 2)), M.ssim(a, b),
                               atol=0.01)


def test_diversity():
    seq = np.random.default_rng(1).uniform(-1, 1, (1, 8, 4, 2))
    assert M.keypoint_diversity(np.repeat(seq, 5, 0)) == 0.0
    shifted = np.concatenate([seq, seq + 0.5, seq - 0.5])  # pairs differ by .5, .5 and 1
    assert M.keypoint_diversity(shifted) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    video = np.zeros((1, 4, 8, 8, 3), np.uint8)
    assert M.video_diversity(np.repeat(video, 3, 0)) == 0.0
    assert M.video_diversity(np.concatenate([video, video + 255])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2"):
        M.keypoint_diversity(seq)


def test_class_matrix_on_hand_made_sequences():
    t = np.arange(5, dtype=np.float64)[:, None, None]  # 5 frames (frame 0 is the start)

    def moving(direction, start, n):  # n sequences [n, 5, 2 keypoints, 2]
        d = np.asarray(direction, np.float64) * 0.1
        return np.stack([np.broadcast_to(np.asarray(start) + i * 0.01 + t * d, (5, 2, 2))
                         for i in range(n)])

    real = [moving([1, 0], [0.3, 0.3], 3), moving([0, 1], [-0.5, 0.2], 2), moving([-1, 0], [0, 0], 2)]
    # Generated from other start poses: only the displacement matrix sees the motions match.
    gen = [moving([1, 0], [-0.8, 0.8], 4), moving([0, 1], [0.8, -0.8], 4), moving([-1, 0], [0.5, 0.5], 4)]
    d = M.class_distance_matrix(gen, real, relative=True)
    assert d.shape == (3, 3)
    np.testing.assert_allclose(np.diag(d), 0.0, atol=1e-12)
    assert M.diagonal_minimum(d) == {"row_min_on_diagonal": [True] * 3, "fraction": 1.0}
    # right vs up: |Δx| = |Δy| = 0.1 t, mean over frames t = 1..4 and both coordinates = 0.25
    assert d[0, 1] == pytest.approx(0.25)
    absolute = M.class_distance_matrix(gen, real, relative=False)
    assert not M.diagonal_minimum(absolute)["row_min_on_diagonal"][0]
    # a class without real clips: a NaN column, ignored for the row minimum
    d2 = M.class_distance_matrix(gen, real[:2] + [np.zeros((0, 5, 2, 2))])
    assert np.isnan(d2[:, 2]).all()
    assert M.diagonal_minimum(d2)["row_min_on_diagonal"] == [True, True, False]
    # The real-vs-real control never compares a sequence with itself.
    periodic = [np.stack([np.broadcast_to(np.sin(np.arange(5) + phase)[:, None, None], (5, 2, 2))
                          for phase in (0.0, 1.5, 3.0)])]
    control = M.class_distance_matrix(periodic, periodic, exclude_self=True)
    moved = periodic[0][:, 1:] - periodic[0][:, :1]
    pairs = [np.abs(moved[i] - moved[j]).mean() for i in range(3) for j in range(3) if i != j]
    assert control[0, 0] == pytest.approx(np.mean(pairs)) and control[0, 0] > 0.1
    assert M.class_distance_matrix(periodic, periodic)[0, 0] < control[0, 0]



def test_class_mean_matrix_is_free_of_the_columns_spread():
    """Class 0 moves a little, class 1 a lot with noise. A generator that reproduces class 1's
    typical motion exactly is nearer, over all pairs, to the quiet class 0 (class 1's noise
    adds to every pair), but nearest to class 1's mean."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 6)[:, None, None] * np.ones((6, 2, 2))
    quiet = 0.05 * t + 0.005 * rng.normal(size=(20, 6, 2, 2))
    loud = 0.30 * t + 0.25 * rng.normal(size=(20, 6, 2, 2))
    real = [quiet, loud]
    generated = [0.05 * t[None].repeat(3, 0), 0.30 * t[None].repeat(3, 0)]
    pairs = M.class_distance_matrix(generated, real, relative=False)
    assert M.diagonal_minimum(pairs)["row_min_on_diagonal"] == [True, False]
    means = M.class_distance_matrix(generated, real, relative=False, to_class_mean=True)
    assert M.diagonal_minimum(means)["row_min_on_diagonal"] == [True, True]
    assert means[1, 1] == pytest.approx(np.abs(generated[1] - loud.mean(0)).mean())
    # Control: the diagonal uses the mean of the class's other sequences.
    control = M.class_distance_matrix(real, real, relative=False, exclude_self=True,
                                      to_class_mean=True)
    loo = np.mean([np.abs(quiet[i] - np.delete(quiet, i, 0).mean(0)).mean() for i in range(20)])
    assert control[0, 0] == pytest.approx(loo)
    assert control[0, 1] == pytest.approx(np.abs(quiet - loud.mean(0)).mean())

def test_motion_amplitude_is_the_mean_distance_from_the_first_keypoints():
    # Two keypoints: one moves 3-4-5 triangles (distance 5 per unit of t), one stands still.
    t = np.arange(4, dtype=float)[:, None]
    moving = np.concatenate([3 * t, 4 * t], -1)                   # |k_t - k_0| = 5t
    still = np.zeros((4, 2))
    seq = np.stack([moving, still], 1)[None] + np.array([0.2, -0.1])  # [1, 4, 2, 2], offset
    assert M.motion_amplitude(seq) == pytest.approx((5 + 10 + 15) / 3 / 2)
    # Halving the motion halves it, whatever the start; no sequences give NaN.
    assert M.motion_amplitude(np.concatenate([seq, 0.5 * seq])) == pytest.approx(
        0.75 * M.motion_amplitude(seq))
    assert np.isnan(M.motion_amplitude(np.zeros((0, 4, 2, 2))))

# --- baselines and temporal sampling ----------------------------------------------------------

def test_static_video_repeats_the_frame():
    frame = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    video = test_clips.static_video(frame, 7)
    assert video.shape == (7, 32, 32, 3) and video.dtype == np.uint8
    assert all(np.array_equal(f, frame) for f in video)


def test_frame_indices():
    from kp_tf.data import pipeline

    # T ≤ L: exactly stage 2's test sampling (gap = 40 // 9 = 4)
    idx = test_clips.frame_indices(40, 6, 8).numpy()
    np.testing.assert_array_equal(idx, pipeline.sample_indices(40, 8).nearest().numpy()[:7])
    np.testing.assert_array_equal(idx, np.arange(7) * 4)
    # T > L: the same gap, held at the last frame
    np.testing.assert_array_equal(test_clips.frame_indices(40, 10, 8).numpy(),
                                  [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 39])
    np.testing.assert_array_equal(test_clips.frame_indices(40, 3, 8, "consecutive").numpy(), [0, 1, 2, 3])
    short = test_clips.frame_indices(5, 9, 8).numpy()  # shorter than L + 1: spread over the clip
    assert short[0] == 0 and short.max() == 4 and np.all(np.diff(short) >= 0)


def test_classifier_windows():
    from kp_tf.evaluation import action

    for n in (3, 16, 17, 48, 100):
        for i in range(5):
            idx = action.window_indices(n, 16, seed=[i, n]).numpy()
            assert idx.shape == (16,) and idx.min() >= 0 and idx.max() <= n - 1
            if n >= 16:
                steps = np.diff(idx)
                assert np.all(steps == steps[0]) and steps[0] >= 1
    np.testing.assert_array_equal(action.window_indices(48, 4, stride=3, start=1).numpy(), [1, 4, 7, 10])


def test_motion_only_classifier_names_still_videos_still(tiny_run, tmp_path, capsys):
    from kp_tf.evaluation import action

    names = list(synthetic.ACTIONS)
    settings = action.ClassifierSettings(frames=FRAMES, image_size=32, width=4, steps=120,
                                         max_seconds=120, motion_only=True, still_class=True)
    # One training window in A + 1 is a still one, labelled A.
    labels = np.concatenate([l.numpy() for _, l in
                             action.training_dataset(tiny_run.data_dir, settings).take(40)])
    share = np.mean(labels == len(names))
    assert labels.max() == len(names) and 0.5 / (len(names) + 1) < share < 2.0 / (len(names) + 1)
    clf = action.load_or_train(tiny_run.data_dir, frames=FRAMES, image_size=32,
                               directory=str(tmp_path), steps=120, max_seconds=120, width=4,
                               motion_only=True)
    assert clf.class_names == names + [action.STILL_CLASS] and "'still' class" in clf.info["what"]
    videos, real_labels = action.load_windows(tiny_run.data_dir, FRAMES, 32, "test")
    still = np.repeat(videos[:, :1], FRAMES, axis=1)
    result = clf.accuracy(still, real_labels)
    assert result["accuracy"] == 0.0  # a still video names no action
    assert np.asarray(result["confusion"])[:, len(names)].sum() == len(videos)
    assert result["per_class"][action.STILL_CLASS] is None  # no video is labelled still
    # A stored motion-only classifier without the class is not reused.
    clf.info["settings"]["still_class"] = False
    action.save(clf, str(tmp_path))
    capsys.readouterr()
    action.load_or_train(tiny_run.data_dir, frames=FRAMES, image_size=32, directory=str(tmp_path),
                         steps=2, width=4, motion_only=True)
    assert "lacks the 'still' class; retraining" in capsys.readouterr().out


# --- the command end to end -------------------------------------------------------------------

@pytest.fixture(scope="module")
def report_dir(tiny_run, tmp_path_factory):
    """The command on the tiny run with every metric but FVD (a tiny classifier budget)."""
    out = tmp_path_factory.mktemp("evaluation")
    evaluation.evaluate(tiny_run.export_dir, data_dir=tiny_run.data_dir,
                        metrics="action,diversity,recon,keypoints,classes", out=str(out),
                        samples=2, frames=FRAMES, seed=3, max_videos=3,
                        classifier_dir=str(out / "clf"),
                        classifier={"steps": CLASSIFIER_STEPS, "width": 4},
                        keypoint_train_clips=4, vgg_weights="none", verbose=False)
    return out


def test_evaluate_writes_reports(report_dir, tiny_run):
    report = json.loads((report_dir / "report.json").read_text())
    assert report["num_clips"] == 3 and report["frames"] == FRAMES and report["samples"] == 2
    assert report["checkpoints"]["stage1"] == tiny_run.cfg.stage1_steps
    assert report["checkpoints"]["stage2"] == tiny_run.cfg.stage2_steps
    assert report["metrics"] == ["action", "diversity", "recon", "keypoints", "classes"]
    assert report["skipped"] == {}
    sets = report["sets"]
    assert {k: v["N"] for k, v in sets.items()} == {"real": 3, "static": 3, "oracle": 3, "model": 6}
    for name in ("real", "static", "oracle", "model"):
        for key in ("action", "action_motion"):
            acc = sets[name][key]
            assert 0.0 <= acc["accuracy"] <= 1.0 and acc["N"] == sets[name]["N"]
            assert acc["frames"] == FRAMES and acc["seed"] == 3 and acc["steps"]["stage2"] == 2
    # The motion-only classifier sees every still video as zeros: one class for all of them
    # (after 4 steps not yet necessarily its 'still' class, the 7th column).
    static_motion = np.asarray(sets["static"]["action_motion"]["confusion"])
    assert static_motion.shape == (7, 7) and (static_motion.sum(axis=0) > 0).sum() == 1
    assert report["classifier_motion"]["path"].endswith("_motion.keras")
    assert "motion-only" in report["classifier_motion"]["what"]
    for name in ("static", "oracle", "model"):
        recon = sets[name]["recon"]
        assert set(recon) >= {"l1", "psnr", "ssim", "N", "N_frames", "frames", "seed", "steps",
                              "moving", "moving_region"}
        assert recon["N_frames"] == recon["N"] * FRAMES
        assert 0 <= recon["l1"]["mean"] <= 1 and -1 <= recon["ssim"]["mean"] <= 1
        moving = recon["moving"]
        assert 0 < moving["pixels_fraction"] < 1
        # where things move, copying frame 0 is further off than over the whole frame
        assert moving["l1"]["mean"] >= recon["l1"]["mean"] or name != "static"
        assert moving["perceptual"]["mean"] > 0
        assert set(moving["per_action"]) <= set(synthetic.ACTIONS) and moving["per_action"]
    div = sets["model"]["diversity"]
    assert div["keypoints"]["mean"] >= 0 and div["N"] == 3 and div["samples_per_clip"] == 2
    kp = report["keypoints"]
    assert kp["model"]["error_px"] > 0 and kp["N"] == kp["test_frames"] > 0
    per_joint = kp["model"]["per_joint_px"]  # every synthetic joint is visible: means agree
    assert list(per_joint) == list(synthetic.JOINT_NAMES)
    assert np.mean(list(per_joint.values())) == pytest.approx(kp["model"]["error_px"], abs=1e-3)
    classes = report["classes"]
    assert np.asarray(classes["displacement"]["matrix"], dtype=float).shape == (6, 6)
    assert len(classes["displacement"]["row_min_on_diagonal"]) == 6
    amp = classes["amplitude"]
    assert len(amp["generated_px"]) == len(amp["real_px"]) == len(amp["ratio"]) == 6
    for g, r, q in zip(amp["generated_px"], amp["real_px"], amp["ratio"]):
        # A class without test clips has no real motion (NaN, written as null).
        assert g > 0 and (r is None and q is None or r > 0 and q == pytest.approx(g / r))
    assert report["classifier"]["steps"] == CLASSIFIER_STEPS
    assert report["timing"]["total_s"] > 0
    md = (report_dir / "report.md").read_text()
    for text in ("| set | N | FVD | action acc. | action acc. (motion) |", "| static |",
                 "| oracle |", "| model |", "moving L1", "## Per action", "Moving region: pixels",
                 "Keypoint regression", "Class consistency", "stage 2 step 2",
                 "| class | generated (px) | real (px) | generated / real |"):
        assert text in md
    assert not [p for p in os.listdir(report_dir) if p.endswith(".tmp")]


def test_evaluate_reuses_the_classifier_and_skips_what_does_not_apply(report_dir, tiny_run,
                                                                       exported, capsys):
    from kp_tf.evaluation import action

    stored = action.load(str(report_dir / "clf"), FRAMES, 32)
    assert stored is not None and stored.info["test_accuracy"]["consecutive_frames_1_to_T"]["N"] == 4
    report = evaluation.evaluate(exported, data_dir=tiny_run.data_dir,
                               metrics="action,diversity", samples=1, frames=FRAMES,
                               max_videos=2, classifier_dir=str(report_dir / "clf"))
    assert capsys.readouterr().out.count("reusing") == 2  # the frames and the motion classifier
    assert report["sets"]["model"]["action"]["N"] == 2
    assert "diversity" in report["skipped"]
    with pytest.raises(test_clips.EvaluationError, match="unknown metrics"):
        evaluation.parse_metrics("fvd,psnr")


def test_evaluate_refuses_data_of_another_generator_version(tiny_run, exported, tmp_path):
    from kp_tf.data import tfrecords

    manifest = tfrecords.load_manifest(tiny_run.data_dir)
    assert manifest["generator_version"] == synthetic.GENERATOR_VERSION
    tfrecords.write_manifest(str(tmp_path), {**manifest, "generator_version": 1})
    with pytest.raises(test_clips.EvaluationError, match="generator version 1"):
        evaluation.evaluate(exported, data_dir=str(tmp_path), metrics="diversity", verbose=False)


@pytest.fixture(scope="module")
def exported(tiny_run):
    return test_clips.Exported(tiny_run.export_dir)  # loading takes seconds: once per module


class FakeI3D:
    """A deterministic stand-in for I3D: 8 pixel samples of the preprocessed videos, zero-padded
    to 400 features (a low-rank covariance keeps scipy's sqrtm fast)."""

    handle = "fake"

    def __call__(self, videos):
        flat = np.asarray(videos, np.float32).reshape(len(videos), -1)
        out = np.zeros([len(videos), 400], np.float32)
        out[:, :8] = flat[:, :: flat.shape[1] // 8][:, :8]
        return out


def test_fvd_plumbing_with_a_stand_in_extractor(tiny_run, exported, tmp_path):
    from kp_tf.evaluation import frechet_video_distance as fvd

    fake = FakeI3D()
    report = evaluation.evaluate(exported, data_dir=tiny_run.data_dir, metrics="fvd",
                               samples=2, frames=FRAMES, max_videos=3, i3d=fake,
                               fvd_cache_dir=str(tmp_path), verbose=False)
    f = report["sets"]["static"]["fvd"]
    assert f["N"] == 3 and f["N_real"] == 3 and f["frames"] == FRAMES
    assert report["sets"]["model"]["fvd"]["N"] == 6
    assert not f["real_statistics_from_cache"] and not f["statistics_from_cache"]
    # the real, the static and the real control's statistics (data only), cached
    assert len(list(tmp_path.glob("*.npz"))) == 3
    control = report["sets"]["real"]["fvd"]
    assert control["N"] == 3 and "training split" in control["what"] and control["value"] > 0
    # the same number as fvd() on the same videos: real frames 1..T vs frame 0 repeated
    clips = test_clips.load_test_clips(exported, tiny_run.data_dir, "test", FRAMES, "stage2", 3)
    real = [c["frames"][1:] for c in clips]
    static = [test_clips.static_video(c["frames"][0], FRAMES) for c in clips]
    assert f["value"] == pytest.approx(float(fvd.fvd(real, static, i3d=fake)), rel=1e-6)
    again = evaluation.evaluate(exported, data_dir=tiny_run.data_dir, metrics="fvd",
                              samples=1, frames=FRAMES, max_videos=3, i3d=fake,
                              fvd_cache_dir=str(tmp_path), verbose=False)
    assert again["sets"]["static"]["fvd"]["real_statistics_from_cache"]
    assert again["sets"]["static"]["fvd"]["statistics_from_cache"]
    assert again["timing"]["fvd_i3d_videos"] == 3 + 3  # oracle and model only
    assert again["sets"]["static"]["fvd"]["value"] == pytest.approx(f["value"], rel=1e-6)


def test_fvd_with_i3d(tiny_run, exported, tmp_path_factory, i3d_handle):
    """The real I3D on 2 clips (the CPU runs it at about a video a second)."""
    handle = i3d_handle
    out = tmp_path_factory.mktemp("fvd_report")
    report = evaluation.evaluate(exported, data_dir=tiny_run.data_dir, metrics="fvd",
                               out=str(out), samples=1, frames=FRAMES, max_videos=2, i3d=handle,
                               fvd_cache_dir=str(out / "cache"), verbose=False)
    for name in ("static", "oracle", "model"):
        f = report["sets"][name]["fvd"]
        assert np.isfinite(f["value"]) and f["value"] >= -1e-6
        assert f["N"] == 2 and f["N_real"] == 2 and f["i3d"] == handle
    assert "| static | 2 |" in (out / "report.md").read_text()


def test_command_line(tiny_run, tmp_path):
    out = subprocess.run([sys.executable, "-m", "kp_tf.evaluate", "--helpshort"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--metrics" in out.stdout and "--max_videos" in out.stdout
    run = subprocess.run([sys.executable, "-m", "kp_tf.evaluate", f"--model={tiny_run.export_dir}",
                          f"--data_dir={tiny_run.data_dir}", "--metrics=diversity,classes",
                          "--samples=2", f"--frames={FRAMES}", "--max_videos=2",
                          f"--out={tmp_path}", "--quiet"],
                         cwd=REPO, capture_output=True, text=True, timeout=600, env=command_env())
    assert run.returncode == 0, run.stderr[-2000:]
    assert "## Class consistency" in run.stdout and (tmp_path / "report.json").is_file()
    bad = subprocess.run([sys.executable, "-m", "kp_tf.evaluate", f"--model={tmp_path}"],
                         cwd=REPO, capture_output=True, text=True, timeout=60, env=command_env())
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no SavedModel" in bad.stderr


def test_generated_class_sequences_match_predict_video(tiny_run, exported):
    """The class matrix's sequences use predict_video's z and, past L frames, its restarts
    from re-detected keypoints: for the clip's own action and the seed of its sample 0 they
    are the keypoints of that video."""
    clip = test_clips.load_test_clips(exported, tiny_run.data_dir, "test", FRAMES, "stage2", 1)[0]
    k0 = exported.detect(clip["frames"][:1])
    generated = exported.generate(k0, [clip["label"]], [7], FRAMES, images=clip["frames"][:1])
    _, keypoints = exported.predict(clip["frames"][0], clip["label"], 7, FRAMES)
    assert generated.shape == (1, FRAMES) + k0.shape[1:]
    np.testing.assert_allclose(generated[0], keypoints, atol=1e-5)


def test_stage1_reconstruction_against_copying(tiny_run, tmp_path):
    """The held-out reconstruction report: both sets scored on the same frames, the copy
    baseline equal to a direct computation, the JSON and the TensorBoard grid written."""
    import glob
    import shutil

    from kp_tf.evaluation import reconstruction

    logdir = str(tmp_path / "run")  # the shared run is read-only: work on a copy
    shutil.copytree(tiny_run.logdir, logdir)
    clips = list(reconstruction.held_out_pairs(tiny_run.data_dir, "test",
                                               tiny_run.cfg.image_size, stride=4))
    assert len(clips) == 4 and clips[0][2].shape[1:] == (32, 32, 3)
    # Copying: L1 of [0, 1] pixels = half the L1 of [-1, 1] values, per target frame.
    copy_l1 = np.mean([np.abs(reference - target).mean() / 2.0
                       for _, reference, targets in clips for target in targets])
    env = command_env()
    proc = subprocess.run([sys.executable, "-m", "kp_tf.evaluation.reconstruction",
                           f"--logdir={logdir}", f"--data_dir={tiny_run.data_dir}"],
                          capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.load(open(os.path.join(logdir, "keypoints", "reconstruction_test.json")))
    n = sum(len(targets) for _, _, targets in clips)
    moving = sum(bool(np.any(np.abs(reference - target).max(-1) > 0.2))  # 0.1 of [0, 1]
                 for _, reference, targets in clips for target in targets)
    assert 0 < moving <= n
    for name in ("translator", "copy_reference"):
        assert {k: v["count"] for k, v in report[name].items()} == {
            "l1": n, "psnr": n, "ssim": n, "perceptual": n, "moving_l1": moving,
            "moving_psnr": moving, "moving_ssim": moving, "moving_perceptual": n}
        assert np.isfinite(report[name]["l1"]["mean"])
    assert report["copy_reference"]["l1"]["mean"] == pytest.approx(copy_l1, rel=1e-4)
    # copying is further off where things move than over the whole frame
    assert report["copy_reference"]["moving_l1"]["mean"] > report["copy_reference"]["l1"]["mean"]
    assert report["step"] == tiny_run.cfg.stage1_steps and report["clips"] == 4
    assert glob.glob(os.path.join(logdir, "keypoints", "test", "events*"))


def _toy_motion(rng, labels, frames=6, k=3):
    """Class 0 stands still, class 1 moves keypoint 0 right, class 2 keypoint 1 down; per-clip
    k_0 and amplitude vary."""
    t = np.arange(frames + 1) / frames
    seq = np.repeat(rng.uniform(-0.5, 0.5, (len(labels), 1, k, 2)), frames + 1, axis=1)
    amp = rng.uniform(0.2, 0.3, len(labels))[:, None]
    seq[labels == 1, :, 0, 0] += amp[labels == 1] * t
    seq[labels == 2, :, 1, 1] += amp[labels == 2] * t
    return seq + rng.normal(0, 0.005, seq.shape)


def test_motion_baselines_find_consistent_classes_and_copy_the_nearest_clip():
    from kp_tf.evaluation import motion_baselines as mb

    rng = np.random.default_rng(0)
    train_labels, test_labels = np.arange(60) % 3, np.arange(15) % 3
    train, test = _toy_motion(rng, train_labels), _toy_motion(rng, test_labels)
    report = mb.baselines(train, train_labels, test, test_labels, 3)
    for name in ("class_mean", "nearest_k0", "real_control"):
        assert report[name]["row_min_on_diagonal"] == [True] * 3, name
        assert np.asarray(report[name]["matrix"]).shape == (3, 3)
    assert report["nearest_k0_l1_to_own_future"] < report["repeat_k0_l1"]
    real, predicted = report["mean_abs_displacement"].values()
    assert real[0] < 0.01 and predicted[0] < 0.01 and min(real[1:] + predicted[1:]) > 0.005
    # With the training clips as test clips, the nearest k_0 is the clip itself: its own future.
    exact = mb.baselines(train, train_labels, train, train_labels, 3)
    assert exact["nearest_k0_l1_to_own_future"] == pytest.approx(0.0, abs=1e-12)
    rows = mb.predict(train, train_labels, test[:, 0], 3)["nearest_k0"]
    assert len(rows) == 3 and rows[1].shape == test.shape
    np.testing.assert_array_equal(rows[2][:, 0], test[:, 0])


def test_motion_baselines_class_median_misses_motion_only_some_clips_carry():
    """Class 1's motion is on keypoint 0 in a third of its clips and on keypoint 2 in the rest:
    the class mean keeps a third of keypoint 0's motion, the per-coordinate median none."""
    from kp_tf.evaluation import motion_baselines as mb

    rng = np.random.default_rng(1)
    labels = np.arange(60) % 2
    seq = _toy_motion(rng, np.where(labels == 1, 1, 0))
    minority = np.flatnonzero(labels == 1)[::3]
    majority = np.setdiff1d(np.flatnonzero(labels == 1), minority)
    t = np.arange(seq.shape[1]) / (seq.shape[1] - 1)
    seq[majority, :, 0, 0] = seq[majority, :1, 0, 0]  # keypoint 0 still, keypoint 2 moves
    seq[majority, :, 2, 1] += 0.25 * t
    rows = mb.predict(seq, labels, seq[:, 0], 2)
    disp = seq[:, 1:] - seq[:, :1]
    median_disp = rows["class_median"][1][:, 1:] - seq[:, None, 0]
    mean_disp = rows["class_mean"][1][:, 1:] - seq[:, None, 0]
    np.testing.assert_allclose(median_disp[0], np.median(disp[labels == 1], axis=0), atol=1e-12)
    np.testing.assert_allclose(mean_disp[0], disp[labels == 1].mean(axis=0), atol=1e-12)
    assert abs(median_disp[0, -1, 0, 0]) < 0.01 < mean_disp[0, -1, 0, 0]
    assert median_disp[0, -1, 2, 1] == pytest.approx(0.25, abs=0.02)


def test_motion_baselines_on_a_run(tiny_run, tmp_path):
    """What `python -m kp_tf.evaluation.motion_baselines` computes and prints (the command
    itself runs in test_console)."""
    from kp_tf.evaluation import motion_baselines as mb

    report = mb.run(tiny_run.logdir, frames=4)
    assert report["frames"] == 4 and report["N_test"] == 4 and report["N_train"] == 8
    assert np.asarray(report["class_mean"]["matrix"]).shape == (6, 6)
    lines = mb.format_report(report).splitlines()
    for name in ("class_mean", "class_median", "nearest_k0", "real_control"):
        rows = report[name]["row_min_on_diagonal"]
        assert f"{name:>12}: {sum(rows)}/6 rows on the diagonal {rows}" in lines
    with pytest.raises(FileNotFoundError, match="no trained motion stage"):
        mb.run(str(tmp_path))
