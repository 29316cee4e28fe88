"""`stages.run(cfg, "all")` end to end on the shared tiny run: outputs, skipping, staleness, errors."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from _tiny_run import NUM_FRAMES, NUM_TEST, NUM_TRAIN, copy_run, make_config, tiny_run  # noqa: F401
from kp_tf import config, run_folder, serving
from kp_tf.data import sources, tfrecords
from kp_tf.training import pseudo_labels as pl
from kp_tf import stages


def _step_of(checkpoint):
    reader = tf.train.load_checkpoint(checkpoint)
    return int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))


def _data_clips(data_dir, split):
    """clip_id → (label, num_frames) of the converted dataset."""
    clips = {}
    for record in tf.data.TFRecordDataset(tfrecords.shard_paths(data_dir, split)):
        clip = tfrecords.parse_clip(record)
        clips[clip["clip_id"].numpy().decode()] = (int(clip["label"]), int(clip["num_frames"]))
    return clips


def _label_records(labels_dir, split):
    path = os.path.join(labels_dir, f"{split}-00000-of-00001.tfrecord")
    out = {}
    for record in tf.data.TFRecordDataset(path):
        r = tfrecords.parse_keypoints(record)
        clip_id = r["clip_id"].numpy().decode()
        assert clip_id not in out, f"clip {clip_id} labelled twice"
        out[clip_id] = (int(r["label"]), int(r["num_frames"]), r["keypoints"].numpy())
    return out


def _snapshot(root):
    """{relative path: (inode, mtime_ns)} of every file under root: a rewrite changes it."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            st = os.stat(os.path.join(folder, name))
            files[os.path.relpath(os.path.join(folder, name), root)] = (st.st_ino, st.st_mtime_ns)
    return files


def test_checkpoints_at_configured_steps(tiny_run):  # noqa: F811
    cfg = tiny_run.cfg
    for stage, steps in (("keypoints", cfg.stage1_steps), ("motion", cfg.stage2_steps)):
        checkpoint = run_folder.latest_checkpoint(tiny_run.path(stage))
        assert checkpoint == tiny_run.path(stage, "checkpoints", f"ckpt-{steps}")
        assert _step_of(checkpoint) == steps
        with open(tiny_run.path(stage, "config.json")) as f:
            assert json.load(f)["num_keypoints"] == cfg.num_keypoints


def test_pseudo_labels_label_every_frame_of_every_clip(tiny_run):  # noqa: F811
    cfg, labels_dir = tiny_run.cfg, tiny_run.path("pseudo_labels")
    with open(os.path.join(labels_dir, pl.MANIFEST)) as f:
        manifest = json.load(f)
    checkpoint = run_folder.latest_checkpoint(tiny_run.path("keypoints"))
    assert manifest["detector_checkpoint"] == checkpoint
    assert manifest["detector_fingerprint"] == run_folder.checkpoint_fingerprint(checkpoint)
    assert manifest["num_keypoints"] == cfg.num_keypoints
    for split, count in (("train", NUM_TRAIN), ("test", NUM_TEST)):
        clips, labels = _data_clips(tiny_run.data_dir, split), _label_records(labels_dir, split)
        assert len(clips) == count and set(labels) == set(clips)
        for clip_id, (label, frames) in clips.items():
            got_label, got_frames, keypoints = labels[clip_id]
            assert (got_label, got_frames) == (label, frames) and frames == NUM_FRAMES
            assert keypoints.shape == (frames, cfg.num_keypoints, 2)
            assert np.all(np.isfinite(keypoints)) and np.abs(keypoints).max() <= 1.0
        assert manifest["splits"][split] == {"clips": count, "frames": count * NUM_FRAMES}
    # No temporary files left behind.
    assert sorted(os.listdir(labels_dir)) == [
        pl.MANIFEST, "test-00000-of-00001.tfrecord", "train-00000-of-00001.tfrecord"]


def test_pseudo_labels_are_the_detectors_keypoints(tiny_run):  # noqa: F811
    cfg = tiny_run.cfg
    detector = run_folder.restore_detector(cfg, run_folder.latest_checkpoint(tiny_run.path("keypoints")))
    record = next(iter(tf.data.TFRecordDataset(tfrecords.shard_paths(tiny_run.data_dir, "test"))))
    clip = tfrecords.parse_clip(record)
    frames = tfrecords.decode_frames(clip["frames_png"]).numpy()
    expected = np.asarray(detector(frames.astype(np.float32) / 127.5 - 1.0, training=False))
    labels = _label_records(tiny_run.path("pseudo_labels"), "test")
    np.testing.assert_allclose(labels[clip["clip_id"].numpy().decode()][2], expected, atol=1e-5)


def test_rerun_skips_finished_steps(tiny_run, capsys):  # noqa: F811
    before_run, before_data = _snapshot(tiny_run.logdir), _snapshot(tiny_run.data_dir)
    capsys.readouterr()
    stages.run(tiny_run.cfg, "all")
    printed = capsys.readouterr().out
    after_run = _snapshot(tiny_run.logdir)
    # Only the stages' config.json files are written again; no checkpoint, pseudo-label,
    # export or data file is.
    changed = {p for p in set(before_run) | set(after_run)
               if before_run.get(p) != after_run.get(p)}
    assert changed <= {os.path.join("keypoints", "config.json"),
                       os.path.join("motion", "config.json")}, sorted(changed)
    assert _snapshot(tiny_run.data_dir) == before_data
    assert "Pseudo-labelling" not in printed and "Exported" not in printed, printed


def _relocate(copy, original_logdir):
    """Rewrites the copied run's records of checkpoint paths to the copy's own paths."""
    for path in (copy.path("pseudo_labels", pl.MANIFEST), copy.path("export", run_folder.EXPORT_INFO)):
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace(original_logdir, copy.logdir))


def test_stale_pseudo_labels_and_export_are_rebuilt(tiny_run, tmp_path, capsys):  # noqa: F811
    copy = copy_run(tiny_run, tmp_path)
    _relocate(copy, tiny_run.logdir)
    old_ckpt1 = run_folder.latest_checkpoint(copy.path("keypoints"))
    assert pl.is_current(copy.path("pseudo_labels"), old_ckpt1)
    old_labels = _label_records(copy.path("pseudo_labels"), "test")
    before = _snapshot(copy.logdir)

    cfg = copy.cfg.replace(stage1_steps=copy.cfg.stage1_steps + 1)  # stage 1 trains on
    stages.run(cfg, "all")
    printed = capsys.readouterr().out
    after = _snapshot(copy.logdir)

    new_ckpt1 = run_folder.latest_checkpoint(copy.path("keypoints"))
    assert new_ckpt1 == copy.path("keypoints", "checkpoints", f"ckpt-{cfg.stage1_steps}")
    assert _step_of(new_ckpt1) == cfg.stage1_steps
    # The pseudo-labels were stale, so they are made again by the new detector ...
    assert "Pseudo-labelling" in printed
    with open(copy.path("pseudo_labels", pl.MANIFEST)) as f:
        assert json.load(f)["detector_checkpoint"] == new_ckpt1
    assert pl.is_current(copy.path("pseudo_labels"), new_ckpt1)
    for split in ("train", "test"):
        name = os.path.join("pseudo_labels", f"{split}-00000-of-00001.tfrecord")
        assert after[name] != before[name]
    new_labels = _label_records(copy.path("pseudo_labels"), "test")
    assert set(new_labels) == set(old_labels)
    assert any(not np.array_equal(new_labels[c][2], old_labels[c][2]) for c in old_labels)
    # ... stage 2 had reached its steps and is not trained again ...
    motion_ckpts = {p for p in set(before) | set(after)
                    if p.startswith(os.path.join("motion", "checkpoints"))}
    assert all(before.get(p) == after.get(p) for p in motion_ckpts)
    # ... and the export is redone from the newest checkpoints of both stages.
    assert "Exported" in printed
    saved_model = os.path.join("export", "saved_model.pb")
    assert after[saved_model] != before[saved_model]
    with open(copy.path("export", run_folder.EXPORT_INFO)) as f:
        info = json.load(f)
    assert info["stage1_checkpoint"] == new_ckpt1
    assert info["stage1_fingerprint"] == run_folder.checkpoint_fingerprint(new_ckpt1)
    assert info["stage2_checkpoint"] == run_folder.latest_checkpoint(copy.path("motion"))
    with open(copy.path("export", "assets.extra", "config.json")) as f:
        assert json.load(f)["stage1_steps"] == cfg.stage1_steps
    # No half-written export left beside it.
    assert not [n for n in os.listdir(copy.logdir) if n.startswith(".export-")]


class _Rebuilt(Exception):
    pass


def test_checkpoint_retrained_to_the_same_path_is_new(tiny_run, tmp_path,  # noqa: F811
                                                      monkeypatch):
    """A stage retrained from scratch writes ckpt-N again: same path, other weights."""
    copy = copy_run(tiny_run, tmp_path)
    _relocate(copy, tiny_run.logdir)

    def rebuild(*args, **kwargs):  # stands in for the (slow) export
        raise _Rebuilt

    monkeypatch.setattr(serving, "restore_models", rebuild)
    ckpt1 = run_folder.latest_checkpoint(copy.path("keypoints"))
    assert pl.is_current(copy.path("pseudo_labels"), ckpt1)
    serving.export_run(copy.cfg, copy.export_dir)  # current: returns without rebuilding

    tf.train.Checkpoint(step=tf.Variable(7, dtype=tf.int64)).write(ckpt1)
    assert run_folder.latest_checkpoint(copy.path("keypoints")) == ckpt1
    assert not pl.is_current(copy.path("pseudo_labels"), ckpt1)
    with pytest.raises(_Rebuilt):
        serving.export_run(copy.cfg, copy.export_dir)


@pytest.mark.parametrize("stage", ["pseudo_labels", "motion"])
def test_stage_without_stage1_checkpoint_explains(tiny_run, tmp_path, stage):  # noqa: F811
    cfg = make_config(tiny_run.data_dir, tmp_path / "empty_run")
    with pytest.raises(FileNotFoundError) as err:
        stages.run(cfg, stage)
    message = str(err.value)
    assert "no stage-1 checkpoint" in message
    assert str(tmp_path / "empty_run" / "keypoints") in message
    assert "--stage=keypoints" in message


def test_export_without_checkpoints_explains(tiny_run, tmp_path):  # noqa: F811
    cfg = make_config(tiny_run.data_dir, tmp_path / "empty_run")
    with pytest.raises(FileNotFoundError, match="export needs both stages' checkpoints"):
        stages.run(cfg, "export")
    assert not (tmp_path / "empty_run" / "export").exists()


@pytest.mark.parametrize("stage", ["all", "data", "keypoints"])
def test_real_dataset_without_tfrecords_explains(tmp_path, stage):
    data_dir = tmp_path / "weizmann_empty"
    data_dir.mkdir()
    cfg = config.load_preset("weizmann", data_dir=str(data_dir), logdir=str(tmp_path / "run"),
                             vgg_weights="none")
    with pytest.raises(sources.SourceError) as err:
        stages.run(cfg, stage)
    assert str(err.value) == (f"no data for --dataset=weizmann: {data_dir} holds no conversion "
                              f"(no manifest.json) and no --src was given")
    assert "    labels.csv           columns file,frames,action,actor,split" in err.value.details
    assert os.listdir(data_dir) == []  # nothing was written into the data folder


def test_unknown_stage():
    with pytest.raises(ValueError, match="unknown stage 'bogus'"):
        stages.run(config.load_preset("tiny"), "bogus")


def test_samples_start_from_a_clip_of_the_requested_action(tiny_run):  # noqa: F811
    shards = tfrecords.shard_paths(tiny_run.data_dir, "test")
    clips = [tfrecords.parse_clip(r) for r in tf.data.TFRecordDataset(shards)]
    labels = [int(c["label"]) for c in clips]
    size = tiny_run.cfg.image_size
    frames = stages.first_frame_per_label(tiny_run.cfg, tiny_run.data_dir, "test", max(labels) + 1)
    assert sorted(frames) == sorted(set(labels))
    for label, frame in frames.items():
        clip = clips[labels.index(label)]
        want = tfrecords.decode_frames(clip["frames_png"][:1]).numpy()[0] / 127.5 - 1.0
        assert frame.shape == (size, size, 3)
        np.testing.assert_allclose(frame, want, atol=1e-5)
    first = stages.first_frame_per_label(tiny_run.cfg, tiny_run.data_dir, "test", 0)
    assert list(first) == [labels[0]]


def test_samples_stage_writes_a_gif_per_action(tiny_run):  # noqa: F811
    from PIL import Image

    names = sorted(f for f in os.listdir(tiny_run.path("samples")) if f.endswith(".gif"))
    with open(tiny_run.path("export", "assets.extra", "actions.txt")) as f:
        actions = f.read().split()
    assert names == sorted(f"{a}_{i}.gif" for a in actions for i in range(2))
    with Image.open(tiny_run.path("samples", names[0])) as gif:
        size = tiny_run.cfg.image_size * -(-128 // tiny_run.cfg.image_size)  # ≥ 128 px
        # Only the size: Pillow merges identical frames, and a 2-step model may render them.
        assert gif.size == (2 * size, size)  # video | keypoints
    stamp = open(tiny_run.path("samples", run_folder.EXPORT_INFO)).read()
    assert stamp == open(tiny_run.path("export", run_folder.EXPORT_INFO)).read()
