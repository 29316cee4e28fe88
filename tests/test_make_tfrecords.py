"""The dataset registry, fit_clip, `datasets.convert` and the make_tfrecords command."""

import csv
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kp_tf.data import datasets, readers, tfrecords
from kp_tf.data.clip import Clip

from conftest import REPO, command_env, require_shared, tensorflow_log_lines
from test_readers import (corrupt, empty, flat_frames, make_penn, random_frames, truncate,
                          write_frame_folder, write_gif, write_mp4, write_strip)

TOOL = REPO / "tools" / "make_tfrecords.py"


def read_clips(data_dir, split):
    paths = tfrecords.shard_paths(data_dir, split)
    return [tfrecords.clip_from_features(tfrecords.parse_clip(r))
            for r in tf.data.TFRecordDataset(paths)]


def make_gif_folder(root, good=3, bad=()):
    """root/{train,test}/*.gif, 16×16, plus broken files named in `bad` (in train)."""
    frames = {}
    for split, n in (("train", good), ("test", 1)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            f = random_frames(t=3 + i, h=16, w=16, seed=i + 10 * (split == "test"))
            write_gif(root / split / f"g{i}.gif", f)
            frames[(split, f"g{i}")] = f
    for name, damage in bad:
        path = root / "train" / name
        write_gif(path, random_frames(t=4, h=16, w=16))
        damage(path)
    return frames


# --- registry and resize policy -----------------------------------------------------------

def test_registry():
    assert set(datasets.DATASETS) >= {"mgif", "nemo", "folder", "penn", "weizmann", "synthetic",
                                      "synthetic_cluttered"}
    res = {n: s.resolution for n, s in datasets.DATASETS.items()}
    assert res["mgif"] == res["nemo"] == res["penn"] == 128
    assert res["weizmann"] == res["synthetic"] == res["synthetic_cluttered"] == 64
    assert datasets.DATASETS["mgif"].class_names == datasets.DATASETS["nemo"].class_names == ()
    assert datasets.DATASETS["penn"].class_names[0] == "tennis_serve"
    assert len(datasets.DATASETS["penn"].joint_names) == 13
    assert datasets.DATASETS["weizmann"].class_names == ("wave1", "wave2", "jack", "bend")
    assert datasets.get_spec("folder", 32).resolution == 32
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        datasets.get_spec("nope")


def test_fit_clip_crop_only_is_exact_and_moves_joints():
    frames = np.zeros((2, 4, 8, 3), np.uint8)
    frames[..., 0] = np.arange(8, dtype=np.uint8)  # red = column index
    joints = np.array([[[2.0, 1.0], [5.0, 3.0], [1.0, 0.0]]] * 2, np.float32)
    clip = Clip("c", frames, label=2, joints=joints, meta={"a": 1})
    out = datasets.fit_clip(clip, 4)  # height already 4: no resize, crop columns 2..5
    assert out.frames.shape == (2, 4, 4, 3) and out.label == 2
    np.testing.assert_array_equal(out.frames[0, 0, :, 0], [2, 3, 4, 5])
    np.testing.assert_allclose(out.joints[0], [[0, 1], [3, 3], [-1, 0]])
    np.testing.assert_array_equal(out.visibility[0], [1, 1, 0])  # x = -1 is outside the crop
    assert out.meta == {"a": 1, "original_size": [4, 8]}
    assert datasets.fit_clip(out, 4) is out  # already square at the resolution


def test_fit_clip_shrink_and_enlarge_joint_transform():
    frames = np.full((1, 100, 200, 3), 77, np.uint8)
    joints = np.array([[[100.0, 50.0], [10.0, 50.0], [199.5, 99.5]]], np.float32)
    out = datasets.fit_clip(Clip("c", frames, joints=joints), 50)  # ×0.5 to 50×100, crop x 25..74
    assert out.frames.shape == (1, 50, 50, 3) and (out.frames == 77).all()
    # (x + 0.5)·s − 0.5 − offset: the pixel-centre convention of pixels_to_normalized.
    np.testing.assert_allclose(out.joints[0], [[24.75, 24.75], [-20.25, 24.75], [74.5, 49.5]])
    np.testing.assert_array_equal(out.visibility[0], [1, 0, 0])
    big = datasets.fit_clip(Clip("d", np.full((1, 10, 5, 3), 9, np.uint8),
                                 joints=np.array([[[2.0, 4.5]]], np.float32)), 20)
    assert big.frames.shape == (1, 20, 20, 3) and (big.frames == 9).all()
    # ×4 to 40×20, crop y 10..29: x = 2.5·4 − 0.5 = 9.5, y = 5·4 − 0.5 − 10 = 9.5.
    np.testing.assert_allclose(big.joints[0], [[9.5, 9.5]])


# --- conversion ------------------------------------------------------------------------------

def test_convert_skips_bad_files_and_round_trips(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    frames = make_gif_folder(src, good=3, bad=[("zz_corrupt.gif", corrupt),
                                               ("zz_half.gif", truncate), ("zz_empty.gif", empty)])
    logs = []
    manifest = datasets.convert("mgif", str(src), str(out), resolution=16, clips_per_shard=2,
                                log=logs.append)
    assert {s["file"] for s in manifest["skipped"]} == {
        str(src / "train" / n) for n in ("zz_corrupt.gif", "zz_half.gif", "zz_empty.gif")}
    assert any("zz_half.gif" in line and "truncated" in line for line in logs)
    assert manifest["dataset"] == "mgif" and manifest["resolution"] == 16
    assert manifest["resize_policy"]["method"] == "shorter_side_then_center_crop"
    assert manifest["class_names"] == [] and manifest["joint_names"] == []
    assert manifest["source"] == str(src.resolve()) and manifest["created"]
    train = manifest["splits"]["train"]
    assert (train["clips"], train["frames"], train["min_frames"], train["max_frames"]) == (3, 12, 3, 5)
    assert [s["clips"] for s in train["shards"]] == [2, 1]
    assert manifest["splits"]["test"]["clips"] == 1
    for split in ("train", "test"):
        for s in manifest["splits"][split]["shards"]:
            assert tfrecords.sha256_file(out / s["file"]) == s["sha256"]
    assert tfrecords.load_manifest(out) == manifest
    got = read_clips(out, "train")
    assert [c.clip_id for c in got] == ["g0", "g1", "g2"]
    for c in got:
        np.testing.assert_array_equal(c.frames, frames[("train", c.clip_id)])
        assert c.label == -1 and c.joints is None


def test_convert_is_idempotent(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    make_gif_folder(src, good=5)
    first = datasets.convert("mgif", str(src), str(out), resolution=16, clips_per_shard=2, log=None)
    names = sorted(os.listdir(out))
    again = datasets.convert("mgif", str(src), str(out), resolution=16, clips_per_shard=2, log=None)
    assert sorted(os.listdir(out)) == names
    assert again["splits"] == first["splits"]  # same shards, same checksums
    datasets.convert("mgif", str(src), str(out), resolution=16, clips_per_shard=64, log=None)
    assert sorted(os.listdir(out)) == ["manifest.json", "test-00000-of-00001.tfrecord",
                                       "train-00000-of-00001.tfrecord"]
    assert len(read_clips(out, "train")) == 5


def test_convert_nothing_converted_leaves_output(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    make_gif_folder(src, good=1)
    before = datasets.convert("mgif", str(src), str(out), resolution=16, log=None)
    for split in ("train", "test"):
        for p in (src / split).iterdir():
            corrupt(p)
    with pytest.raises(datasets.ConversionError, match="nothing converted.*g0.gif"):
        datasets.convert("mgif", str(src), str(out), resolution=16, log=None)
    assert tfrecords.load_manifest(out) == before
    assert len(read_clips(out, "train")) == 1
    with pytest.raises(FileNotFoundError, match="split folder"):
        datasets.convert("mgif", str(tmp_path), str(out), log=None)


def test_convert_mixed_formats_and_classes(tmp_path):
    src = tmp_path / "nemo"
    (src / "train").mkdir(parents=True)
    (src / "test").mkdir()
    strip = random_frames(t=3, h=16, w=16)
    write_strip(src / "train" / "a.png", strip)
    write_frame_folder(src / "train" / "b", random_frames(t=2, h=16, w=24))
    write_mp4(src / "test" / "c.mp4", flat_frames([(200, 10, 10)] * 4, 32, 32))
    (src / "train" / "notes.txt").write_text("not a clip")
    manifest = datasets.convert("nemo", str(src), str(tmp_path / "out"), resolution=16, log=None)
    assert manifest["splits"]["train"]["clips"] == 2 and manifest["splits"]["test"]["clips"] == 1
    assert [Path(s["file"]).name for s in manifest["skipped"]] == ["notes.txt"]
    a, b = read_clips(tmp_path / "out", "train")
    np.testing.assert_array_equal(a.frames, strip)
    assert b.frames.shape == (2, 16, 16, 3)

    make_penn(tmp_path / "penn", t=3, h=24, w=32)
    manifest = datasets.convert("penn", str(tmp_path / "penn"), str(tmp_path / "pout"),
                                resolution=12, log=None)
    assert manifest["class_names"][7] == "squat" and len(manifest["joint_names"]) == 13
    (train,), (test,) = read_clips(tmp_path / "pout", "train"), read_clips(tmp_path / "pout", "test")
    assert (train.label, test.label) == (7, 1)
    want = datasets.fit_clip(readers.read_penn_clip(tmp_path / "penn", "0001"), 12)
    np.testing.assert_allclose(train.joints, want.joints, atol=1e-3)
    np.testing.assert_array_equal(train.visibility, want.visibility)


def test_synthetic_convert_and_ensure_converted(tmp_path):
    synthetic = pytest.importorskip("kp_tf.data.synthetic")
    out = tmp_path / "syn"
    opts = dict(num_train=3, num_test=2, num_frames=6, seed=1, log=None)
    manifest = datasets.ensure_converted("synthetic", str(out), **opts)
    assert manifest["joint_names"] == list(synthetic.JOINT_NAMES)
    assert manifest["class_names"] == list(synthetic.ACTIONS)
    assert manifest["splits"]["train"]["clips"] == 3 and manifest["splits"]["test"]["frames"] == 12
    clips = read_clips(out, "train")
    want = synthetic.generate_clip(1, split="train", seed=1, num_frames=6)
    np.testing.assert_array_equal(clips[1].frames, want.frames)
    np.testing.assert_allclose(clips[1].joints, want.joints, atol=1e-3)
    assert clips[1].label == want.label
    # Up to date: reused as is; different counts: converted again.
    assert datasets.ensure_converted("synthetic", str(out), **opts)["created"] == manifest["created"]
    opts["num_train"] = 4
    manifest = datasets.ensure_converted("synthetic", str(out), **opts)
    assert manifest["splits"]["train"]["clips"] == 4
    # Made by an older generator (which rendered other figures): generated again.
    assert manifest["generator_version"] == synthetic.GENERATOR_VERSION
    assert not datasets.generated_by_other_version(manifest)
    tfrecords.write_manifest(str(out), {**manifest, "generator_version": 1})
    assert datasets.generated_by_other_version(tfrecords.load_manifest(str(out)))
    manifest = datasets.ensure_converted("synthetic", str(out), **opts)
    assert manifest["generator_version"] == synthetic.GENERATOR_VERSION
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        datasets.ensure_converted("weizmann", str(tmp_path / "nothing"))


def test_weizmann_conversion(tmp_path):
    labels = require_shared("data/weizmann64/labels.csv")
    root = labels.parent
    manifest = datasets.convert("weizmann", str(root), str(tmp_path / "w"), log=None)
    with open(labels) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 64 and not manifest["skipped"]
    assert manifest["class_names"] == ["wave1", "wave2", "jack", "bend"]
    assert manifest["resolution"] == 64
    sp = manifest["splits"]
    assert (sp["train"]["clips"], sp["test"]["clips"]) == (56, 8)
    assert sp["train"]["frames"] + sp["test"]["frames"] == sum(int(r["frames"]) for r in rows)
    test = read_clips(tmp_path / "w", "test")
    by_file = {Path(r["file"]).stem: r for r in rows}
    assert Counter(c.label for c in test) == Counter(
        manifest["class_names"].index(r["action"]) for r in rows if r["split"] == "test")
    for c in test:
        assert by_file[c.clip_id]["split"] == "test"
        assert c.label == manifest["class_names"].index(by_file[c.clip_id]["action"])
    first = test[0]
    np.testing.assert_array_equal(
        first.frames, readers.read_strip(root / "clips" / f"{first.clip_id}.png").frames)


# --- GIF delays ---------------------------------------------------------------------------------

def write_merged_gif(path, frames):
    """A GIF as Pillow's writer makes it: consecutive identical frames stored as one frame
    shown longer (40 ms a frame). Returns the number of frames stored."""
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=40, loop=0)
    with Image.open(path) as gif:
        return gif.n_frames


def still_stretch_video(h=16, w=16):
    """8 frames, 5 distinct: A A A B C C C D (stretches of 3 still frames)."""
    distinct = random_frames(t=4, h=h, w=w, seed=7)
    return distinct[[0, 0, 0, 1, 2, 2, 2, 3]]


def test_convert_counts_the_frames_gif_delays_add(tmp_path):
    src = tmp_path / "src"
    for split in ("train", "test"):
        (src / split).mkdir(parents=True)
    video = still_stretch_video()
    assert write_merged_gif(src / "train" / "still.gif", video) == 4  # 4 frames dropped
    write_gif(src / "train" / "moving.gif", random_frames(t=5, h=16, w=16, seed=1))
    write_gif(src / "test" / "t.gif", random_frames(t=3, h=16, w=16, seed=2))
    lines = []
    manifest = datasets.convert("mgif", str(src), str(tmp_path / "out"), resolution=16,
                                log=lines.append, show_progress=False)
    train = manifest["splits"]["train"]
    assert train["frames"] == 8 + 5 and train["gif_clips"] == 2
    assert train["gif_expanded_frames"] == 4
    assert manifest["splits"]["test"]["gif_expanded_frames"] == 0
    timing = manifest["gif_timing"]
    assert (timing["gif_clips"], timing["clips_with_expanded_frames"],
            timing["expanded_frames"]) == (3, 1, 4)
    assert "train: 2 clips, 13 frames (4 frames added from GIF delays)" in lines
    assert "test: 1 clip, 3 frames (0 frames added from GIF delays)" in lines
    assert ("GIF delays: 4 frames added to 1 of 3 GIFs"
            in datasets.format_summary(manifest))
    still = {c.clip_id: c for c in read_clips(tmp_path / "out", "train")}["still"]
    np.testing.assert_array_equal(still.frames, video)


def test_convert_without_gifs_records_no_gif_timing(tmp_path):
    manifest = datasets.convert("synthetic", out=str(tmp_path / "out"), num_train=2,
                                num_test=1, num_frames=4, log=None)
    assert manifest["gif_timing"] is None and "gif_clips" not in manifest["splits"]["train"]
    assert "GIF delays" not in datasets.format_summary(manifest)


# --- the command line -------------------------------------------------------------------------

def run_tool(*args):
    """tools/make_tfrecords.py (the launcher of kp_tf.make_tfrecords) as a user runs it;
    output decoded as it is (text=True would turn a carriage return into a newline)."""
    proc = subprocess.run([sys.executable, str(TOOL), *args], capture_output=True,
                          env=command_env(CUDA_VISIBLE_DEVICES=""), timeout=300)
    proc.stdout, proc.stderr = proc.stdout.decode(), proc.stderr.decode()
    return proc


def test_tool_converts_good_files_and_names_bad_one(tmp_path):
    src = tmp_path / "src"
    make_gif_folder(src, good=2, bad=[("broken.gif", corrupt)])
    write_merged_gif(src / "train" / "still.gif", still_stretch_video())
    result = run_tool("--dataset=mgif", f"--src={src}", f"--out={tmp_path / 'out'}",
                      "--resolution=16")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and not tensorflow_log_lines(result.stderr)
    assert "broken.gif" in result.stdout and "skipped: 1" in result.stdout
    assert "clips/s" in result.stdout and "frames/s" in result.stdout
    assert "GIF delays: 4 frames added to 1 of 4 GIFs" in result.stdout
    # A log gets plain progress lines (the first at once, the last with the rate), no bar.
    assert "\r" not in result.stdout
    assert re.search(r"^train: 1/4 clips \(25%\)$", result.stdout, re.MULTILINE)
    assert re.search(r"^train: 4/4 clips \(100%\), [0-9.]+ (clips/s|s/clip), took \d+ s$",
                     result.stdout, re.MULTILINE), result.stdout
    manifest = tfrecords.load_manifest(tmp_path / "out")
    assert manifest["splits"]["train"]["clips"] == 3
    assert manifest["gif_timing"]["expanded_frames"] == 4
    # Another process, same input: same bytes (the Example's feature map order is canonical).
    again = datasets.convert("mgif", str(src), str(tmp_path / "again"), resolution=16, log=None)
    assert again["splits"] == manifest["splits"]


def test_tool_fails_with_one_line_when_nothing_converts(tmp_path):
    src = tmp_path / "src"
    for split in ("train", "test"):
        (src / split).mkdir(parents=True)
        corrupt(src / split / "x.gif")
    result = run_tool("--dataset=mgif", f"--src={src}", f"--out={tmp_path / 'out'}")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "nothing converted" in result.stderr and "x.gif" in result.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()
    result = run_tool("--dataset=mgif", f"--src={tmp_path / 'missing'}")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "missing not found" in result.stderr
