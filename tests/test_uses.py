"""The protocols of the further uses (kp_tf.evaluation.uses) on the tiny run: their numbers
against direct computations, FVD with a stand-in feature extractor, the long-range roll-out
of the evaluation against the export's predict_video, and the command."""

import json
import subprocess
import sys

import numpy as np
import pytest

from _tiny_run import tiny_run  # noqa: F401  (the shared trained run, a fixture)
from conftest import REPO, command_env
from kp_tf import conventions
from kp_tf.evaluation import metrics as M
from kp_tf.evaluation import test_clips, uses
from test_evaluate import FakeI3D

CLASSIFIER = {"steps": 4, "max_seconds": 60}  # the plumbing, not the accuracy


@pytest.fixture(scope="module")
def exported(tiny_run):  # noqa: F811
    return test_clips.Exported(tiny_run.export_dir)


def test_transfer_scores_every_driven_frame(exported, tiny_run, tmp_path):  # noqa: F811
    report = uses.transfer(exported, tiny_run.data_dir, max_videos=2, joint_train_clips=2,
                           cross_identity=1, out=str(tmp_path), log=lambda *_: None)
    clips = uses.whole_test_clips(exported, tiny_run.data_dir, 2)
    assert report["N"] == 2 and report["N_frames"] == sum(len(c["frames"]) - 1 for c in clips)
    sets = report["sets"]
    for name in ("transfer", "static"):
        assert sets[name]["l1"]["count"] == report["N_frames"]
        for key in ("l1", "psnr", "ssim", "akd_px", "joint_error_px"):
            assert np.isfinite(sets[name][key]["mean"]), (name, key)
    # The static row is frame 0 against every later frame, as computed here directly.
    frames = [c["frames"] for c in clips]
    static_l1 = np.concatenate([M.l1(np.repeat(f[:1], len(f) - 1, 0), f[1:]) for f in frames])
    assert sets["static"]["l1"]["mean"] == pytest.approx(static_l1.mean(), rel=1e-5)
    # Static AKD: the first frame's keypoints against those of every later frame.
    detected = [exported.detect(f) for f in frames]
    akd = np.concatenate([np.linalg.norm(d[1:] - d[:1], axis=-1).mean(-1) for d in detected])
    assert sets["static"]["akd_px"]["mean"] == pytest.approx(
        akd.mean() * (exported.image_size - 1) / 2, rel=1e-4)
    assert sets["real"]["joint_error_px"]["count"] > 0
    assert len(report["gifs"]) == 1 and (tmp_path / report["gifs"][0].split("/")[-1]).is_file()


def test_interpolation_methods_and_baselines(exported, tiny_run, tmp_path):  # noqa: F811
    report = uses.interpolation(exported, tiny_run.data_dir, gaps=(2, 7), max_videos=2,
                                i3d=FakeI3D(), fvd_cache_dir=str(tmp_path), log=lambda *_: None)
    clips = test_clips.load_test_clips(exported, tiny_run.data_dir, "test", 3, "consecutive", 2)
    two = report["gaps"]["2"]
    assert two["N_clips"] == 2 and set(two["methods"]) == set(uses.INTERPOLATIONS)
    assert "fvd" not in two["methods"]["crossfade"]  # 4 frames: too few for I3D
    # The baselines, computed here: the mean of the two ends, and frame 0 again.
    real = np.stack([c["frames"][1:3] for c in clips])
    ends = [(c["frames"][0].astype(np.float32), c["frames"][3].astype(np.float32)) for c in clips]
    fade = np.stack([[np.round((2 * a + b) / 3), np.round((a + 2 * b) / 3)] for a, b in ends])
    assert two["methods"]["crossfade"]["l1"]["mean"] == pytest.approx(
        M.l1(fade.astype(np.uint8), real).mean(), rel=1e-5)
    first = np.stack([c["frames"][0] for c in clips])
    assert two["methods"]["repeat_first"]["l1"]["mean"] == pytest.approx(
        M.l1(np.repeat(first[:, None], 2, 1), real).mean(), rel=1e-5)
    seven = report["gaps"]["7"]["methods"]
    assert all(np.isfinite(m["fvd"]) for m in seven.values())
    # FVD on the 9 frames with both given ones: frame 0 eight times, then frame 8.
    from kp_tf.evaluation import frechet_video_distance as fvd

    long = test_clips.load_test_clips(exported, tiny_run.data_dir, "test", 8, "consecutive", 2)
    repeated = [np.concatenate([np.repeat(c["frames"][:1], 8, 0), c["frames"][8:]]) for c in long]
    assert seven["repeat_first"]["fvd"] == pytest.approx(
        float(fvd.fvd([c["frames"] for c in long], repeated, i3d=FakeI3D())), rel=1e-6, abs=1e-9)


def test_long_range_restarts_and_drift(exported, tiny_run, tmp_path):  # noqa: F811
    report = uses.long_range(exported, tiny_run.data_dir, frames=27, window=9, scored=(1, 19),
                             max_videos=3, seed=4, i3d=FakeI3D(), fvd_cache_dir=str(tmp_path),
                             classifier_dir=str(tmp_path / "classifier"),
                             classifier=CLASSIFIER, log=lambda *_: None)
    assert report["N"] == 3 and set(report["restarts"]) == set(uses.RESTARTS)
    none = report["restarts"]["none"]
    assert [w["frames"] for w in none["windows"]] == [[1, 9], [10, 18], [19, 27]]
    assert set(none["scored"]) == {"1-9", "19-27"}
    # The drift numbers, computed here from the same roll-out (clip i: seed 4 + i).
    clips = test_clips.load_test_clips(exported, tiny_run.data_dir, "test", 9, "stage2", 3)
    k0 = exported.detect(np.stack([c["frames"][0] for c in clips]))
    labels = [c["label"] for c in clips]
    seq = np.concatenate([k0[:, None], exported.generate(k0, labels, [4, 5, 6], 27)], 1)
    px = (exported.image_size - 1) / 2
    window = seq[:, 10:19]
    centred = window - window.mean(-2, keepdims=True)
    assert none["windows"][1]["spread_px"] == pytest.approx(
        np.sqrt((centred ** 2).sum(-1).mean(-1)).mean() * px, rel=1e-5)
    assert none["windows"][1]["amplitude_px"] == pytest.approx(
        np.linalg.norm(window - seq[:, 9:10], axis=-1).mean() * px, rel=1e-5)
    assert none["windows"][2]["outside_fraction"] == (np.abs(seq[:, 19:]).max(-1) > 1).mean()
    steps = np.linalg.norm(np.diff(seq, axis=1), axis=-1).mean(-1) * px  # [N, 27]
    assert none["chunk_boundary_step_px"] == pytest.approx(steps[:, [8, 16, 24]].mean(),
                                                           rel=1e-5)
    for entry in report["restarts"].values():
        assert entry["fvd_ratio"] == pytest.approx(
            entry["scored"]["19-27"]["fvd"] / entry["scored"]["1-9"]["fvd"])
        assert all(0 <= v["motion_accuracy"] <= 1 for v in entry["scored"].values())
    assert 0 <= report["static"]["motion_accuracy"] <= 1 and report["static"]["fvd"] > 0
    markdown = uses.format_markdown({"long_range": report})
    assert "| redetect |" in markdown and "| static |" in markdown
    with pytest.raises(uses.EvaluationError, match="ends before"):
        uses.long_range(exported, tiny_run.data_dir, frames=20, window=9, scored=(1, 19))


def test_the_evaluations_redetect_rollout_is_predict_videos(exported, tiny_run):  # noqa: F811
    """Exported.generate(images=...) (the long-range protocol's "redetect") is the roll-out
    of the export's predict_video, past the generator's L frames."""
    clips = test_clips.load_test_clips(exported, tiny_run.data_dir, "test", 1, "stage2", 2)
    first = np.stack([c["frames"][0] for c in clips])
    frames, seeds, actions = 3 * exported.sequence_length + 2, [5, 9], [1, 4]
    k0 = exported.detect(first)
    generated = exported.generate(k0, actions, seeds, frames, images=first)
    plain = exported.generate(k0, actions, seeds, frames)
    for i in range(2):
        _, keypoints, _ = exported.predictor.predict(conventions.to_model(first[i]), actions[i],
                                                     seeds[i], frames)
        np.testing.assert_allclose(generated[i], keypoints, atol=1e-5)
    length = exported.sequence_length
    np.testing.assert_allclose(generated[:, :length], plain[:, :length], atol=1e-6)


def test_command_writes_the_report(tiny_run, tmp_path):  # noqa: F811
    out = tmp_path / "uses"
    proc = subprocess.run([sys.executable, "-m", "kp_tf.evaluation.uses",
                           f"--model={tiny_run.export_dir}", f"--data_dir={tiny_run.data_dir}",
                           "--protocols=transfer", "--max_videos=1", "--cross_identity=0",
                           f"--out={out}"], cwd=REPO, env=command_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((out / "uses.json").read_text())
    assert report["transfer"]["N"] == 1 and report["date"] and "commit" in report
    assert "### Motion transfer" in (out / "uses.md").read_text()
    proc = subprocess.run([sys.executable, "-m", "kp_tf.evaluation.uses",
                           f"--model={tiny_run.export_dir}", "--protocols=teleport"], cwd=REPO,
                          env=command_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "unknown protocols ['teleport']" in proc.stderr
