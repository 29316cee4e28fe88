"""The training loop both stages share: strategy, checkpoints, resume, summaries, progress.

A trainer object provides:
  - `checkpoint_objects()`: dict of trackables (models, optimizers) to checkpoint;
  - `train_step(batch)`: one replica's update, returning a dict of scalar losses already
    divided by the number of replicas (so a SUM over replicas is the global-batch mean);
  - `learning_rate(step)`: the scheduled learning rate;
  - `write_images(batch, step)` (optional): image summaries on a fixed batch.
`fit` builds the distributed step, resumes from the newest checkpoint in the run folder,
stops on a non-finite loss without overwriting the last good checkpoint, and saves on
Ctrl-C, so a run killed at any moment continues from its last checkpoint. Its progress is
Keras' bar on a terminal and a plain line now and then anywhere else (kp_tf.progress).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
import sys
import tempfile
import time

import keras
import tensorflow as tf
from absl import logging

from kp_tf import progress as progress_lib


class NonFiniteLossError(RuntimeError):
    pass


def make_strategy(kind: str = "auto") -> tf.distribute.Strategy:
    """'auto': MultiWorkerMirrored when TF_CONFIG names several workers, Mirrored over several
    GPUs, else the default strategy; or 'default', 'mirrored', 'multiworker' explicitly."""
    if kind == "auto":
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
        if len(cluster.get("worker", [])) > 1:
            kind = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown strategy {kind!r}: use auto, default, mirrored or multiworker")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: always, but under MultiWorkerMirrored only
    the chief (task type "chief", else worker 0), as TensorFlow's multi-worker guide has it."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type is None:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (task_type == "worker" and resolver.task_id == 0
                                    and not has_chief)


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Returns once every worker of a MultiWorkerMirrored `strategy` has called it (an
    all-reduce of one number): the others wait there while the chief writes what they read
    next. Returns at once under any other strategy."""
    if getattr(getattr(strategy, "cluster_resolver", None), "task_type", None) is not None:
        _all_reduce_one(strategy)()


@functools.lru_cache(maxsize=None)
def _all_reduce_one(strategy):
    """One traced all-reduce per strategy: a new tf.function at each barrier would be traced
    again each time, and TensorFlow warns about that."""

    @tf.function
    def all_reduce():
        return strategy.reduce(tf.distribute.ReduceOp.SUM,
                               strategy.run(lambda: tf.constant(1.0)), axis=None)

    return all_reduce


def derived_seed(seed: int, *keys: int) -> int:
    """An independent 32-bit seed for each (seed, keys...): stages and phases of one run draw
    unrelated numbers, and each is the same whenever it runs (alone, resumed or in the whole run)."""
    import numpy as np

    return int(np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(1)[0])


def seed_networks(seed: int, stage: int) -> None:
    """Seeds Keras' initialisers (and Python, NumPy, TF) before a stage builds its networks."""
    keras.utils.set_random_seed(derived_seed(seed, stage))


def configure_determinism(deterministic: bool) -> None:
    """`--deterministic`: TensorFlow's op determinism, for bit-for-bit repeats on one machine.
    It cannot be turned off again within the process."""
    if deterministic:
        tf.config.experimental.enable_op_determinism()


PRECISIONS = ("float32", "mixed_bfloat16", "auto")


def _cpu_has_native_bfloat16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(name: str) -> str:
    """'auto' → 'mixed_bfloat16' on a CPU-only machine whose CPU has bfloat16 dot products
    (AVX512-BF16 or AMX; measured on the synthetic preset: the stage-1 step about 30 % faster),
    else 'float32': without them oneDNN emulates bfloat16, and on GPUs it is not measured."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}: use one of {PRECISIONS}")
    if name != "auto":
        return name
    if tf.config.list_logical_devices("GPU") or not _cpu_has_native_bfloat16():
        return "float32"
    return "mixed_bfloat16"


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras layers created inside take the dtype policy `name` (e.g. 'mixed_bfloat16');
    the previous global policy is restored on exit, so models built later (pseudo-labels,
    export) are float32 whatever stage 1 trained in. Variables stay float32 either way, so
    checkpoints do not depend on the precision. 'float32' leaves the global policy as it is
    (float32, or whatever `keras.config.set_floatx` made it)."""
    if name == "float32":
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def exponential_decay(cfg):
    """lr · decay^(step / decay_steps), smooth (the original's staircase=False)."""
    return keras.optimizers.schedules.ExponentialDecay(
        cfg.learning_rate, cfg.lr_decay_steps, cfg.lr_decay, staircase=False)


def adam(cfg):
    return keras.optimizers.Adam(exponential_decay(cfg), beta_1=cfg.beta1, beta_2=cfg.beta2)


def _check_finite(losses: dict, step: int, last_checkpoint) -> None:
    """Raises NonFiniteLossError naming the non-finite terms of `step` and what to do."""
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    if bad:
        raise NonFiniteLossError(
            f"non-finite loss ({', '.join(f'{k}={losses[k]}' for k in bad)}) at step "
            f"{step}; stopped without saving. The last good checkpoint is "
            f"{last_checkpoint or 'none (nothing saved yet)'}; lower the "
            f"learning rate or check the data, then rerun to resume from it.")


def _write_scalars(writer, step: int, losses: dict, learning_rate: float,
                   step_seconds: float) -> None:
    """The losses (a leading "_" dropped from their names), the learning rate and the time of
    the last step, as TensorBoard scalars of `step`."""
    with writer.as_default(step=step):
        for k, v in losses.items():
            tf.summary.scalar(k.lstrip("_"), v)
        tf.summary.scalar("learning_rate", learning_rate)
        tf.summary.scalar("step_seconds", step_seconds)


class _TrainingProgress:
    """`fit`'s progress: Keras' bar on a terminal (stdout a tty), kp_tf.progress lines
    elsewhere, nothing without `verbose`."""

    def __init__(self, steps: int, start: int, label: str, every: int, seconds: float,
                 verbose: bool):
        self._bar = self._lines = None
        if verbose and sys.stdout.isatty():
            self._bar = keras.utils.Progbar(steps, stateful_metrics=None, unit_name="step")
            self._bar.update(start)
        else:
            self._lines = progress_lib.Progress(steps, "step", start=start, label=label,
                                                every=every, seconds=seconds, enabled=verbose)

    def update(self, step: int, values: dict) -> None:
        if self._bar is not None:
            self._bar.update(step, values=list(values.items()))
        else:
            self._lines.update(step, values)

    def close(self) -> None:
        if self._lines is not None:
            self._lines.close()


def _sharded_by_data() -> tf.data.Options:
    """Multi-worker input sharding by data: every worker reads the whole stream and keeps its
    slice of each global batch, so the workers together train on the global batches that one
    process would, in the same order, and a resumed run skips the same elements. Sharding by
    file would give each worker other clips than one process reads, and cannot split fewer
    shards than workers; the stream is shuffled from all shards, so reading it all is what
    one process does anyway. No effect on one worker."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


class _Checkpoints:
    """A run's checkpoints as this process sees them. Every process restores from
    LOGDIR/checkpoints; every process saves, since saving distributed variables takes all
    workers, but only the chief saves there: another worker of MultiWorkerMirrored saves into
    a temporary folder of its own, removed after each save (TensorFlow's multi-worker guide)."""

    def __init__(self, ckpt, logdir: str, strategy):
        self.directory = os.path.join(logdir, "checkpoints")
        self.chief = is_chief(strategy)
        self._write = (self.directory if self.chief
                       else tempfile.mkdtemp(prefix="kp_tf-worker-checkpoints-"))
        self._manager = tf.train.CheckpointManager(ckpt, self._write, max_to_keep=3)

    @property
    def latest(self):
        return tf.train.latest_checkpoint(self.directory)

    def save(self, step: int) -> str:
        path = self._manager.save(checkpoint_number=step)
        if not self.chief:
            shutil.rmtree(self._write, ignore_errors=True)
        return path


def fit(trainer, make_dataset, *, steps: int, logdir: str, strategy: tf.distribute.Strategy,
        checkpoint_every: int, summary_every: int, image_summary_every: int,
        xla: bool = False, verbose: bool = True, log_every_seconds: float = 60.0) -> int:
    """Trains until `steps`; returns the final step. Resumes from `logdir/checkpoints`.

    `make_dataset(start_step)` returns the global-batch tf.data.Dataset; it gets the resume step
    so that a resumed run does not replay the batches it already trained on.

    With `verbose`, progress goes to stdout: on a terminal Keras' bar, elsewhere (a log, CI)
    a line at the first step, then every `summary_every` steps or `log_every_seconds`,
    whichever comes first, and at the end: step, the losses' means since the previous line,
    the speed and the ETA, labelled with the stage (the last part of `logdir`).
    """
    os.makedirs(logdir, exist_ok=True)
    with strategy.scope():
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        ckpt = tf.train.Checkpoint(step=step, **trainer.checkpoint_objects())
    checkpoints = _Checkpoints(ckpt, logdir, strategy)

    def current_step() -> int:
        return int(step.numpy())  # not int(step): a MirroredVariable has no __int__

    if checkpoints.latest:
        ckpt.restore(checkpoints.latest).assert_existing_objects_matched()
        logging.info("resumed from %s at step %d", checkpoints.latest, current_step())
        if verbose:
            print(f"Resumed from {checkpoints.latest} at step {current_step()}", flush=True)
    start = current_step()
    if start >= steps:
        return start

    dataset = make_dataset(start).with_options(_sharded_by_data())
    preview = next(iter(dataset))  # a fixed batch for image summaries
    batches = iter(strategy.experimental_distribute_dataset(dataset))

    def replica_step(batch):
        return trainer.train_step(batch)

    replica_step = tf.function(replica_step, jit_compile=True) if xla else replica_step

    @tf.function
    def distributed_step(batch):
        losses = strategy.run(replica_step, args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in losses.items()}

    writer = (tf.summary.create_file_writer(os.path.join(logdir, "train"))
              if checkpoints.chief else tf.summary.create_noop_writer())
    progress = _TrainingProgress(steps, start, os.path.basename(os.path.normpath(logdir)),
                                 summary_every, log_every_seconds, verbose)
    last_time = time.perf_counter()

    def save(reason):
        path = checkpoints.save(current_step())
        logging.info("checkpoint %s (%s)", path, reason)

    try:
        while current_step() < steps:
            losses = {k: float(v) for k, v in distributed_step(next(batches)).items()}
            _check_finite(losses, current_step() + 1, checkpoints.latest)
            step.assign_add(1)
            s = current_step()
            now = time.perf_counter()
            step_seconds, last_time = now - last_time, now
            progress.update(s, {k: v for k, v in losses.items() if not k.startswith("_")})
            if s % summary_every == 0 or s == steps:
                _write_scalars(writer, s, losses, float(trainer.learning_rate(s)), step_seconds)
            if hasattr(trainer, "write_images") and (s % image_summary_every == 0 or s == steps):
                with writer.as_default(step=s):
                    trainer.write_images(preview, s)
            if s % checkpoint_every == 0 or s == steps:
                save("periodic" if s < steps else "final")
        progress.close()
    except KeyboardInterrupt:
        save("interrupted")
        raise
    finally:
        writer.flush()
    return current_step()
