"""Sharded TFRecord writing, the manifest helpers, and the clip record round trip."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kp_tf.data import tfrecords
from kp_tf.data.clip import Clip


def make_clip(i, t=3, h=8, w=10, joints=True):
    rng = np.random.default_rng(i)
    j = rng.uniform(0, [w - 1, h - 1], (t, 4, 2)).astype(np.float32) if joints else None
    vis = (rng.random((t, 4)) > 0.3).astype(np.float32) if joints else None
    return Clip(clip_id=f"c{i:03d}", frames=rng.integers(0, 256, (t, h, w, 3), np.uint8),
                label=i % 3, joints=j, visibility=vis)


def read_split(paths):
    return [tfrecords.clip_from_features(tfrecords.parse_clip(r))
            for r in tf.data.TFRecordDataset(paths)]


def write_split(out, split, clips, clips_per_shard):
    writer = tfrecords.ShardWriter(out, split, clips_per_shard)
    for c in clips:
        writer.write(c)
    return writer, writer.commit()


def test_deterministic_serialization_parses_like_serialize_clip():
    clip = make_clip(0)
    a = tfrecords.parse_clip(tfrecords.serialize_clip(clip))
    b = tfrecords.parse_clip(tfrecords.serialize_clip_deterministic(clip))
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())


def test_shards_round_trip_exactly(tmp_path):
    clips = [make_clip(i, t=2 + i % 3) for i in range(7)] + [make_clip(7, joints=False)]
    writer, shards = write_split(tmp_path, "train", clips, clips_per_shard=3)
    assert [s["file"] for s in shards] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert [s["clips"] for s in shards] == [3, 3, 2]
    assert writer.num_clips == 8 and writer.num_frames == sum(c.num_frames for c in clips)
    assert (writer.min_frames, writer.max_frames) == (2, 4)
    for s in shards:
        path = tmp_path / s["file"]
        assert s["sha256"] == tfrecords.sha256_file(path) and s["bytes"] == path.stat().st_size
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]

    got = read_split(sorted(glob.glob(str(tmp_path / "train-*.tfrecord"))))
    assert len(got) == len(clips)
    for want, have in zip(clips, got):
        assert have.clip_id == want.clip_id and have.label == want.label
        np.testing.assert_array_equal(have.frames, want.frames)
        if want.joints is None:
            assert have.joints is None
        else:
            np.testing.assert_allclose(have.joints, want.joints, atol=1e-4)
            np.testing.assert_array_equal(have.visibility, want.visibility)


def test_no_visible_shard_before_commit_and_abort_keeps_old(tmp_path):
    _, old = write_split(tmp_path, "test", [make_clip(0)], 4)
    writer = tfrecords.ShardWriter(tmp_path, "test", 4)
    for i in range(6):
        writer.write(make_clip(i))
    # Half-done: only the old shard matches *.tfrecord; the new ones hide as .tmp files.
    assert sorted(glob.glob(str(tmp_path / "*.tfrecord"))) == [str(tmp_path / old[0]["file"])]
    assert len(glob.glob(str(tmp_path / ".test-*.tfrecord.tmp"))) == 2
    writer.abort()
    assert sorted(os.listdir(tmp_path)) == [old[0]["file"]]
    assert tfrecords.sha256_file(tmp_path / old[0]["file"]) == old[0]["sha256"]


def test_context_manager_aborts_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with tfrecords.ShardWriter(tmp_path, "train", 2) as writer:
            writer.write(make_clip(0))
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_rewrite_replaces_old_shards_and_is_reproducible(tmp_path):
    clips = [make_clip(i) for i in range(5)]
    _, first = write_split(tmp_path, "train", clips, 2)          # 3 shards
    _, again = write_split(tmp_path, "train", clips, 2)
    assert again == first  # same names, sizes and checksums
    _, fewer = write_split(tmp_path, "train", clips, 10)         # 1 shard: stale ones go
    _, other = write_split(tmp_path, "test", clips[:1], 10)      # other split untouched below
    _, fewer2 = write_split(tmp_path, "train", clips, 10)
    assert fewer2 == fewer
    assert sorted(os.listdir(tmp_path)) == ["test-00000-of-00001.tfrecord",
                                            "train-00000-of-00001.tfrecord"]
    assert len(read_split([str(tmp_path / fewer[0]["file"])])) == 5
    _, none = write_split(tmp_path, "train", [], 10)             # an emptied split leaves nothing
    assert none == [] and os.listdir(tmp_path) == ["test-00000-of-00001.tfrecord"]


def test_manifest_and_shard_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        tfrecords.load_manifest(tmp_path)
    _, shards = write_split(tmp_path, "train", [make_clip(i) for i in range(3)], 2)
    manifest = {"dataset": "x", "splits": {"train": {"clips": 3, "shards": shards},
                                           "test": {"clips": 0, "shards": []}}}
    path = tfrecords.write_manifest(str(tmp_path), manifest)
    assert json.loads(open(path).read()) == manifest == tfrecords.load_manifest(tmp_path)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert tfrecords.shard_paths(tmp_path, "train", verify=True) == [
        str(tmp_path / s["file"]) for s in shards]
    with pytest.raises(ValueError, match="no split 'val'"):
        tfrecords.shard_paths(tmp_path, "val")
    with pytest.raises(ValueError, match="has no clips"):
        tfrecords.shard_paths(tmp_path, "test")
    with open(tmp_path / shards[1]["file"], "ab") as f:
        f.write(b"x")
    with pytest.raises(ValueError, match="sha256"):
        tfrecords.shard_paths(tmp_path, "train", verify=True)
    os.remove(tmp_path / shards[0]["file"])
    with pytest.raises(FileNotFoundError, match=shards[0]["file"]):
        tfrecords.shard_paths(tmp_path, "train")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        tfrecords.ShardWriter(tmp_path, "train", 0)
    with pytest.raises(ValueError):
        tfrecords.ShardWriter(tmp_path, "../x", 1)
