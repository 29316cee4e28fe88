"""The run folder: what each step leaves in `runs/NAME/`, and how later steps read it back.

    runs/NAME/
      keypoints/      stage 1: config.json, checkpoints/ckpt-STEP, train/ (TensorBoard events)
      pseudo_labels/  {split}-00000-of-00001.tfrecord and manifest.json (the detector that made them)
      motion/         stage 2: config.json, checkpoints/ckpt-STEP, train/
      export/         the SavedModel and export_info.json (the checkpoints that made it)
      tflite/         TFLite models, written only by `python -m kp_tf.export --format=tflite`
      samples/        GIFs per action and export_info.json (the export that made them)
      .lock           pid and host of the `train` working here, flock-ed while it runs (RunLock)

A checkpoint is named by its path and its fingerprint (the sha256 of its .index, which holds
a CRC of every saved tensor), because a stage retrained from scratch reuses the same path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
import time
from typing import Optional

import tensorflow as tf
from absl import logging

from kp_tf import config as config_lib

STEPS = ("keypoints", "pseudo_labels", "motion", "export", "samples")
CONFIG = "config.json"
EXPORT_INFO = "export_info.json"


def paths(cfg) -> dict:
    """{step: its folder} for the run of `cfg` (see the module docstring)."""
    return {name: os.path.join(cfg.resolved_logdir, name) for name in STEPS}


def write_config(cfg, directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, CONFIG), "w") as f:
        json.dump(dataclasses.asdict(cfg), f, indent=2)


def read_config(directory: str) -> config_lib.Config:
    """The Config a stage was trained with (its config.json, also an export's assets.extra);
    fields this code does not know are ignored, fields the file lacks take their defaults."""
    with open(os.path.join(directory, CONFIG)) as f:
        return config_from_dict(json.load(f))


def read_stage_config(logdir: str, stage: str) -> config_lib.Config:
    """`read_config` of the run's `stage` folder; FileNotFoundError saying that the run has
    not trained that stage, for a command to show in one line."""
    directory = os.path.join(logdir, stage)
    if not os.path.isfile(os.path.join(directory, CONFIG)):
        raise FileNotFoundError(f"{logdir}: no trained {stage} stage here "
                                f"(no {stage}/{CONFIG})")
    return read_config(directory)


def config_from_dict(stored: dict) -> config_lib.Config:
    return config_lib.Config(**{k: v for k, v in stored.items() if k in config_lib.FIELDS})


# --- checkpoints ------------------------------------------------------------------------------

def latest_checkpoint(stage_dir: str) -> Optional[str]:
    return tf.train.latest_checkpoint(os.path.join(stage_dir, "checkpoints"))


def checkpoint_step(checkpoint) -> Optional[int]:
    """The training step in a checkpoint's name (…/ckpt-STEP), None for anything else."""
    match = re.search(r"ckpt-(\d+)$", str(checkpoint or ""))
    return int(match.group(1)) if match else None


def stage_finished(stage_dir: str, steps: int) -> bool:
    step = checkpoint_step(latest_checkpoint(stage_dir))
    return step is not None and step >= steps


def checkpoint_fingerprint(checkpoint: str) -> Optional[str]:
    """sha256 of the checkpoint's .index; None when there is no such file."""
    from kp_tf.data import tfrecords

    index = checkpoint + ".index"
    return tfrecords.sha256_file(index) if os.path.isfile(index) else None


def restore_stage1(cfg, checkpoint: str):
    """Stage1Networks with the detector, image encoder and translator of a stage-1 checkpoint
    (the discriminator stays untrained: inference does not use it)."""
    from kp_tf.models.networks import Stage1Networks

    nets = Stage1Networks(cfg)
    tf.train.Checkpoint(detector=nets.detector, image_encoder=nets.image_encoder,
                        translator=nets.translator).restore(checkpoint).expect_partial()
    return nets


def restore_detector(cfg, checkpoint: str):
    from kp_tf.models.detector import build_detector

    detector = build_detector(cfg)
    tf.train.Checkpoint(detector=detector).restore(checkpoint).expect_partial()
    return detector


def restore_motion_generator(cfg, checkpoint: str):
    from kp_tf.models.networks import build_motion_models

    generator, _ = build_motion_models(cfg)
    tf.train.Checkpoint(motion_generator=generator).restore(checkpoint).expect_partial()
    return generator


# --- what made an export ----------------------------------------------------------------------

def newest_checkpoints_info(cfg) -> dict:
    """Paths and fingerprints of both stages' newest checkpoints (what an export records)."""
    p = paths(cfg)
    ckpt1, ckpt2 = latest_checkpoint(p["keypoints"]), latest_checkpoint(p["motion"])
    if not ckpt1 or not ckpt2:
        raise FileNotFoundError(f"export needs both stages' checkpoints under {cfg.resolved_logdir} "
                                f"(found stage 1: {ckpt1}, stage 2: {ckpt2})")
    return {"stage1_checkpoint": ckpt1, "stage2_checkpoint": ckpt2,
            "stage1_fingerprint": checkpoint_fingerprint(ckpt1),
            "stage2_fingerprint": checkpoint_fingerprint(ckpt2)}


def read_export_info(directory: str) -> Optional[dict]:
    """The export_info.json in `directory` (an export, or the samples made from one), or None."""
    path = os.path.join(directory, EXPORT_INFO)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_export_info(directory: str, info: dict) -> None:
    with open(os.path.join(directory, EXPORT_INFO), "w") as f:
        json.dump(info, f, indent=2)


def export_steps(model_dir: str) -> dict:
    """The training steps and checkpoints an export was made from (None where unknown)."""
    info = read_export_info(model_dir) or {}
    out = {}
    for stage in ("stage1", "stage2"):
        out[f"{stage}_checkpoint"] = info.get(f"{stage}_checkpoint")
        out[stage] = checkpoint_step(info.get(f"{stage}_checkpoint"))
    return out


# --- folders written whole ---------------------------------------------------------------

def _remove_abandoned(parent: str, kind: str) -> None:
    """Deletes the temporary `kind` folders of commands killed on this host (their process is
    gone): never read, each would otherwise stay beside its output, an export's size."""
    pattern = re.compile(rf"\.{re.escape(kind)}-{re.escape(socket.gethostname())}-(\d+)-\w+")
    for name in os.listdir(parent):
        match = pattern.fullmatch(name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue  # alive: a command in progress
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        except PermissionError:
            continue  # alive, another user's


@contextlib.contextmanager
def written_whole(out: str, kind: str):
    """Yields a temporary folder beside `out` (`.KIND-HOST-PID-…`) to write into; `out` is
    replaced by it only when the block ends without an error, so a reader never finds half a
    folder. An error or a kill leaves `out` as it was; the next call on this host removes what
    a killed one left."""
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    _remove_abandoned(parent, kind)
    tmp = tempfile.mkdtemp(prefix=f".{kind}-{socket.gethostname()}-{os.getpid()}-", dir=parent)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.exists(out):
        shutil.rmtree(out)
    os.replace(tmp, out)


def write_action_names(folder: str, names) -> None:
    """`folder`/actions.txt: the action names, one a line (the exports' assets)."""
    with open(os.path.join(folder, "actions.txt"), "w") as f:
        f.write("\n".join(names) + ("\n" if names else ""))


# --- the run's lock ---------------------------------------------------------------------------

LOCK = ".lock"


class RunLockedError(RuntimeError):
    """Another live process trains in the same run folder."""


def _describe_holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"pid {holder['pid']} on host {holder['host']} (since {holder['since']})"
    except (ValueError, KeyError, TypeError):
        return "a process that left no readable pid and host"


class RunLock:
    """An exclusive lock on a run folder: `LOGDIR/.lock`, holding the pid and host of its
    owner, locked with flock while the owner lives.

    The kernel drops the flock when its process ends however it ends (a SIGKILL included),
    so a lock file left by a dead run is stale by construction: the next run takes it over and
    says whose it was. Linux NFS clients map flock onto NFS byte-range locks, so two machines
    sharing the folder see each other's lock too. A live holder makes `acquire` raise
    RunLockedError naming its pid and host.
    """

    def __init__(self, logdir: str):
        self.path = os.path.join(logdir, LOCK)
        self._fd = None

    def acquire(self) -> "RunLock":
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
                os.close(fd)
                raise RunLockedError(
                    f"{os.path.dirname(self.path)} is in use by {_describe_holder(text)}: wait "
                    f"for that run to end or stop it, or give another --logdir") from None
            # The holder before us may have unlinked the file between our open and our flock:
            # the lock we got is then on a name nobody else will open, so try again.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        if stale.strip():
            logging.warning("%s: taking over the stale lock of %s, which no longer runs",
                            self.path, _describe_holder(stale))
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink before unlocking: a process that opens the name after this makes a new file
        # and locks that; one that opened it before sees the unlink and tries again.
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
