"""One tiny trained pipeline (data → stage 1 → pseudo-labels → stage 2 → export) per run.

Training it takes a few minutes on a loaded CPU, so test_export, test_predict and
test_pipeline_run share it: each module declares the `tiny_run` fixture by importing it,
and the build itself is memoised here, so it happens once per pytest process whatever the
number of modules. Tests must treat the run as read-only; a test that changes a run works
on a copy (`copy_run`).

For quick iterations, KP_TF_TINY_RUN=DIR keeps the run in DIR and reuses it in later
sessions (built there when DIR/run/export is missing).
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import pytest

NUM_TRAIN, NUM_TEST, NUM_FRAMES, RESOLUTION = 8, 4, 40, 32

_BUILT: dict = {}


@dataclasses.dataclass(frozen=True)
class TinyRun:
    cfg: object  # kp_tf.config.Config
    data_dir: str
    logdir: str

    @property
    def export_dir(self) -> str:
        return os.path.join(self.logdir, "export")

    def path(self, *parts) -> str:
        return os.path.join(self.logdir, *parts)


def make_config(data_dir, logdir, **overrides):
    from kp_tf import config

    return config.load_preset("tiny", data_dir=str(data_dir), logdir=str(logdir),
                              vgg_weights="none", summary_every=100, image_summary_every=100,
                              checkpoint_every=100, **overrides)


def build(root) -> TinyRun:
    from kp_tf.data import datasets
    from kp_tf import stages

    data_dir, logdir = os.path.join(root, "data"), os.path.join(root, "run")
    cfg = make_config(data_dir, logdir)
    datasets.convert("synthetic", out=data_dir, resolution=RESOLUTION, num_train=NUM_TRAIN,
                     num_test=NUM_TEST, num_frames=NUM_FRAMES, log=None)
    stages.run(cfg, "all")
    return TinyRun(cfg, data_dir, logdir)


def copy_run(tiny: TinyRun, dest) -> TinyRun:
    """A copy of the run folder (same data folder) that a test may change."""
    logdir = os.path.join(str(dest), "run")
    shutil.copytree(tiny.logdir, logdir)
    return TinyRun(tiny.cfg.replace(logdir=logdir), tiny.data_dir, logdir)


def first_test_frame(tiny: TinyRun):
    """The first frame of the run's first test clip, uint8 [S, S, 3] RGB: a figure to detect."""
    return first_test_clip(tiny, 1)[0]


def first_test_clip(tiny: TinyRun, count: int):
    """The first `count` frames of the run's first test clip, uint8 [count, S, S, 3] RGB."""
    import tensorflow as tf
    from kp_tf.data import tfrecords

    shard = tfrecords.shard_paths(tiny.data_dir, "test")[0]
    clip = tfrecords.parse_clip(next(iter(tf.data.TFRecordDataset(shard))))
    return tfrecords.decode_frames(clip["frames_png"][:count]).numpy()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    if "run" not in _BUILT:
        keep = os.environ.get("KP_TF_TINY_RUN")
        if keep and os.path.exists(os.path.join(keep, "run", "export", "saved_model.pb")):
            _BUILT["run"] = TinyRun(make_config(os.path.join(keep, "data"),
                                                os.path.join(keep, "run")),
                                    os.path.join(keep, "data"), os.path.join(keep, "run"))
        else:
            _BUILT["run"] = build(keep or str(tmp_path_factory.mktemp("tiny_run")))
    return _BUILT["run"]
