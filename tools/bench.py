"""Benchmarks, one subcommand each: `python tools/bench.py NAME [--flags]`.

  data   synthetic generation, TFRecord reading and decoding, stage-1 and stage-2 input
         pipeline throughput (kp_tf.data.pipeline).
  stage1 where a stage-1 training step's time goes: the whole step, the step of the
         plain-pair phase (detector frozen), the G update with and without the equivariance
         term, and the forward passes of its parts.
  stage2 the stage-2 training step (motion generator + sequence discriminator) and the
         generator's forward pass, on random keypoint sequences.
  predict image → video at the preset's size with random weights, through the serving
         computations (kp_tf.serving.VideoPredictor: what the SavedModel's predict_video
         runs), in float32 or mixed_bfloat16.
  convert conversion of a raw copy (what `train --src` does on first use) on fake clips in
         the dataset's raw layout and at its download's frame size: clips/s, CPU time and
         size on disk per 1,000 clips (docs/datasets.md).

Each flag below says which benchmarks take it; giving one to another benchmark is an error.

Adding a benchmark: write `def bench_NAME() -> None` (read its flags from FLAGS, print its
figures), define its own flags below and register both in COMMANDS. `timed_rate` and
`temporary_dataset` are there to share.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from typing import Callable, Iterable, Iterator

# The checkout this file is in, whatever kp_tf the environment has installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from kp_tf import cli  # noqa: E402  (kp_tf before TensorFlow: it sets TF_ENABLE_ONEDNN_OPTS)

if __name__ == "__main__":
    cli.quiet_tensorflow_logs()  # before TensorFlow is imported: its start-up lines too

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kp_tf import config  # noqa: E402
from kp_tf.data import pipeline, tfrecords  # noqa: E402
from kp_tf.data.clip import Clip  # noqa: E402
from kp_tf.models.motion_generator import rollout  # noqa: E402
from kp_tf.training import loop  # noqa: E402

flags.DEFINE_string("preset", "synthetic", "All: the preset the figures are for.")
flags.DEFINE_integer("batch_size", None, "data: the stage-1 batch (default 16, fixed rather "
                     "than the preset's so that figures stay comparable when presets change; "
                     "pairs/s barely depends on it). stage1, stage2: the training batch "
                     "(default, or 0: the preset's).", lower_bound=0)
flags.DEFINE_integer("calls", None, "stage1, stage2, predict: timed calls per figure "
                     "(default 10 for stage1, 20 for stage2, 5 for predict).", lower_bound=1)
flags.DEFINE_multi_string("set", [], "stage1, stage2, predict: override a preset setting NAME=VALUE, "
                          "as the train flag --NAME=VALUE (repeatable), e.g. "
                          "--set=detector_downsample=2.")
flags.DEFINE_string("vgg_weights", "imagenet", "stage1: 'none' for random VGG weights (same "
                    "cost, no weights file).")
flags.DEFINE_string("precision", "", "stage1, stage2, predict: float32, mixed_bfloat16 or "
                    "auto; default: the preset's (stage1), float32 (stage2, predict).")
flags.DEFINE_integer("video_frames", 32, "predict: frames of each video.", lower_bound=1)
flags.DEFINE_integer("images", 1, "predict: images per call; 1 times the predict_video "
                     "signature, more its batched signatures chained (detect_keypoints, "
                     "generate_motion, translate).", lower_bound=1)
flags.DEFINE_integer("warmup", 2, "stage1, stage2, predict: untimed calls before the timed "
                     "ones (the first also traces).", lower_bound=1)
flags.DEFINE_boolean("step_only", False, "stage1, stage2: time the whole training step only, "
                     "not its parts (the paper presets take seconds a step).")
flags.DEFINE_string("json", "", "stage1, stage2, predict: also write the figures, with every "
                    "call's seconds, to this JSON file.")
flags.DEFINE_string("data_dir", "", "data: a converted dataset to read (default: a temporary "
                    "synthetic one).")
flags.DEFINE_string("split", "train", "data: the split read.")
flags.DEFINE_string("pseudo_label_dir", "", "data: pseudo-labels for stage 2 (default: "
                    "temporary random ones).")
flags.DEFINE_integer("clips", 24, "data, convert: clips per temporary dataset.", lower_bound=1)
flags.DEFINE_integer("frames", 0, "convert: frames per fake clip (default: the dataset's "
                     "FAKE_RAW figure).", lower_bound=0)
flags.DEFINE_float("seconds", 4.0, "data: time per measurement.", lower_bound=0.1)
FLAGS = flags.FLAGS


# --- shared helpers ------------------------------------------------------------------------

def timed_rate(items: Iterator, count: Callable[[object], int], seconds: float,
               warmup: int = 2) -> tuple[float, int]:
    """Pulls items for about `seconds` after `warmup` items; returns (units/s, units).

    `count(item)` says how many units (clips, frames, pairs) an item holds. The warm-up
    keeps tracing, the first shuffle-buffer fill and thread start-up out of the figure.
    """
    for _ in range(warmup):
        next(items)
    units, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        try:
            units += count(next(items))
        except StopIteration:
            break
    return units / (time.perf_counter() - start), units


def _fallback_clips(count: int, size: int, num_frames: int, seed: int = 0) -> Iterator[Clip]:
    """A coloured square moving over noise, for when kp_tf.data.synthetic is not there."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        background = rng.integers(0, 256, [size, size, 3], dtype=np.uint8)
        frames = np.repeat(background[None], num_frames, 0)
        side = size // 4
        path = rng.uniform(0, size - side, 2) + np.linspace(0, 1, num_frames)[:, None] * 8
        for t, (x, y) in enumerate(np.clip(path, 0, size - side).astype(int)):
            frames[t, y:y + side, x:x + side] = rng.integers(0, 256, 3)
        yield Clip(f"fallback{index:05d}", frames, label=index % 6)


def generate_clips(split: str, count: int, size: int, num_frames: int = 48) -> Iterable[Clip]:
    """kp_tf.data.synthetic.generate_split when it exists, else `_fallback_clips`."""
    try:
        from kp_tf.data.synthetic import generate_split
    except ImportError:
        return _fallback_clips(count, size, num_frames)
    return generate_split(split, count, seed=0, size=size, num_frames=num_frames)


def write_split(data_dir: str, split: str, clips: Iterable[Clip]) -> int:
    """`{split}-00000-of-00001.tfrecord` plus its manifest entry; returns the frame count."""
    os.makedirs(data_dir, exist_ok=True)
    name = tfrecords.shard_name(split, 0, 1)
    frames = clips_written = 0
    with tf.io.TFRecordWriter(os.path.join(data_dir, name)) as writer:
        for clip in clips:
            writer.write(tfrecords.serialize_clip(clip))
            frames += clip.num_frames
            clips_written += 1
    path = os.path.join(data_dir, "manifest.json")
    manifest = json.load(open(path)) if os.path.exists(path) else {"splits": {}}
    manifest["splits"][split] = {"shards": [{"file": name, "clips": clips_written}]}
    tfrecords.write_manifest(data_dir, manifest)
    return frames


def write_pseudo_labels(folder: str, split: str, count: int, num_frames: int,
                        num_keypoints: int, seed: int = 0) -> None:
    """Random-walk keypoints [T, K, 2] in the pseudo-label format, one record per clip."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(folder, f"{split}-00000-of-00001.tfrecord")) as w:
        for index in range(count):
            start = rng.uniform(-0.6, 0.6, [1, num_keypoints, 2])
            walk = np.cumsum(rng.normal(0, 0.01, [num_frames, num_keypoints, 2]), axis=0)
            w.write(tfrecords.serialize_keypoints(f"clip{index:05d}", index % 6,
                                                  np.clip(start + walk, -1, 1)))


@contextlib.contextmanager
def temporary_dataset(count: int, size: int, num_frames: int = 48):
    """A temporary data dir with a `train` split of generated clips; yields (dir, seconds
    spent generating, frames generated)."""
    with tempfile.TemporaryDirectory(prefix="kp_bench_") as tmp:
        clips = iter(generate_clips("train", count, size, num_frames))
        generated, start, elapsed = [], time.perf_counter(), 0.0
        for clip in clips:  # time generation only, not the PNG encoding
            elapsed += time.perf_counter() - start
            generated.append(clip)
            start = time.perf_counter()
        frames = write_split(tmp, "train", generated)
        yield tmp, elapsed, frames


# --- data ----------------------------------------------------------------------------------

def _read_rate(data_dir: str, split: str, seconds: float) -> tuple[float, float]:
    """(clips/s, frames/s) parsing and decoding every frame of every clip."""
    def decode(serialized):
        clip = tfrecords.parse_clip(serialized)
        return tf.shape(tfrecords.decode_frames(clip["frames_png"]))[0]

    ds = (tf.data.TFRecordDataset(tfrecords.shard_paths(data_dir, split)).repeat()
          .map(decode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
    frames = []
    clips, _ = timed_rate(iter(ds), lambda n: frames.append(int(n)) or 1, seconds)
    return clips, clips * float(np.mean(frames))


def _batch_rate(ds: tf.data.Dataset, key: str, seconds: float) -> float:
    """Examples per second of a batched pipeline."""
    return timed_rate(iter(ds), lambda b: int(b[key].shape[0]), seconds, warmup=3)[0]


def bench_data() -> None:
    """Input pipeline figures."""
    cfg = config.load_preset(FLAGS.preset, batch_size=FLAGS.batch_size or 16)
    sizes = [cfg.image_size] + ([128] if cfg.image_size != 128 else [])
    print(f"bench data: preset {FLAGS.preset}, batch {cfg.batch_size}, "
          f"stage-2 batch {cfg.stage2_batch_size}, {os.cpu_count()} CPUs, TF {tf.__version__}")

    with contextlib.ExitStack() as stack:
        if FLAGS.data_dir:
            resolution = tfrecords.load_manifest(FLAGS.data_dir).get("resolution", cfg.image_size)
            data_dirs = {int(resolution): FLAGS.data_dir}
        else:
            data_dirs = {}
            for size in sizes:
                data_dir, elapsed, frames = stack.enter_context(
                    temporary_dataset(FLAGS.clips, size))
                data_dirs[size] = data_dir
                print(f"synthetic generation {size:4d}px: {frames / elapsed:8.1f} frames/s "
                      f"({frames} frames)")
        for size, data_dir in data_dirs.items():
            clips, frames = _read_rate(data_dir, FLAGS.split, FLAGS.seconds)
            print(f"TFRecord read+decode {size:4d}px: {clips:8.1f} clips/s  "
                  f"{frames:8.1f} frames/s")
        for size, data_dir in data_dirs.items():
            for augment in (True, False):
                c = cfg.replace(image_size=size, augment=augment, data_dir=data_dir)
                rate = _batch_rate(pipeline.stage1_pairs(c, FLAGS.split), "reference",
                                   FLAGS.seconds)
                print(f"stage-1 pairs        {size:4d}px, batch {c.batch_size}, "
                      f"augment {'on ' if augment else 'off'}: {rate:8.1f} pairs/s")

        labels_dir = FLAGS.pseudo_label_dir
        if not labels_dir:
            labels_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="kp_bench_"))
            write_pseudo_labels(labels_dir, FLAGS.split, max(FLAGS.clips, 64), 96,
                                cfg.num_keypoints)
        rate = _batch_rate(pipeline.stage2_sequences(cfg, labels_dir, FLAGS.split),
                           "sequence", FLAGS.seconds)
        print(f"stage-2 sequences    L={cfg.sequence_length}, K={cfg.num_keypoints}, "
              f"batch {cfg.stage2_batch_size}: {rate:8.1f} sequences/s")


def _call_seconds(fn, args, calls: int, warmup: int = 2) -> tuple[list, list]:
    """(wall seconds, process CPU seconds) of each of `calls` calls of a tf.function after
    `warmup` calls (tracing left out); each call's outputs are fetched, so that its queued
    work is inside its time. The CPU seconds tell a call slowed by other processes on the
    cores (wall up, CPU not) from one that does more work."""
    def call():
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, fn(*args))

    for _ in range(warmup):
        call()
    seconds, cpu = [], []
    for _ in range(calls):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return seconds, cpu


def _report(parts, calls: int, header: dict) -> None:
    """Times each (name, tf.function, args) of `parts`: prints the median per call in ms
    (the line format that tests and readers parse) and writes every call to --json."""
    figures = {}
    for name, fn, fn_args in parts:
        seconds, cpu = _call_seconds(fn, fn_args, calls, FLAGS.warmup)
        figures[name] = {"median": float(np.median(seconds)), "min": min(seconds),
                         "max": max(seconds), "all": seconds, "cpu": cpu}
        print(f"{name:<56} {1000 * figures[name]['median']:8.1f} ms", flush=True)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump({**header, "loadavg": os.getloadavg(), "figures": figures}, f, indent=1)


def _step_config(batch_field: str, **overrides) -> config.Config:
    """The preset with `--set` overrides, then `overrides`, then `--batch_size` into
    `batch_field`."""
    values = {}
    for item in FLAGS.set:
        try:
            name, value = config.parse_setting(item)
        except ValueError as e:
            raise cli.UserError(f"--set {item!r}: {e}") from None
        values[name] = value
    values.update(overrides)
    if FLAGS.batch_size:
        values[batch_field] = FLAGS.batch_size
    cfg = config.load_preset(FLAGS.preset, **values)
    loop.configure_determinism(cfg.deterministic)  # --set deterministic=true: its cost per step
    return cfg


def bench_stage1() -> None:
    """Stage-1 step time and its parts."""
    from kp_tf.training.keypoint_trainer import KeypointTrainer

    calls = FLAGS.calls or 10
    overrides = {"vgg_weights": FLAGS.vgg_weights}
    if FLAGS.precision:
        overrides["precision"] = FLAGS.precision
    cfg = _step_config("batch_size", **overrides)
    b, s = cfg.batch_size, cfg.image_size
    print(f"bench stage1: preset {FLAGS.preset}, batch {b}, {s}x{s}, K {cfg.num_keypoints}, "
          f"equivariance {cfg.lambda_equivariance}, detector downsample "
          f"{cfg.detector_downsample}, {os.cpu_count()} CPUs, TF {tf.__version__}")
    trainer = KeypointTrainer(cfg)
    print(f"precision {trainer.precision}")
    rng = np.random.default_rng(0)
    image = lambda: tf.constant(rng.uniform(-1, 1, (b, s, s, 3)), tf.float32)  # noqa: E731
    plain = {"reference": image(), "target": image()}
    batch = dict(plain)
    if cfg.lambda_equivariance > 0:
        batch.update(warped_reference=image(), warp_matrix=tf.eye(2, batch_shape=[b]),
                     warp_shift=tf.zeros([b, 2]))
    nets = trainer.nets
    both = tf.concat([plain["reference"], plain["target"]], 0)
    g_update = tf.function(lambda x: trainer.train_generator(x)[1])  # one trace per batch kind

    def frozen_detector_step(x):  # the flag is read while tracing, so set it only then
        trainer.train_detector = False
        try:
            return trainer.train_step(x)
        finally:
            trainer.train_detector = True

    parts = [
        # jit_compile as loop.fit compiles the step (--set=xla=true)
        ("whole step (G update + D update)",
         tf.function(trainer.train_step, jit_compile=cfg.xla or None), (batch,)),
        ("whole step, detector frozen (plain-pair phase)", tf.function(frozen_detector_step),
         (plain,)),
        ("G update", g_update, (batch,)),
        ("G update without the equivariance term", g_update, (plain,)),
        (f"forward: detector on {2 * b} frames",
         tf.function(lambda x: nets.detector(x, training=True)), (both,)),
        ("forward: translate (detector, encoder, translator)",
         tf.function(lambda r, t: nets.translate(r, t, training=True)["output"]),
         (plain["reference"], plain["target"])),
        ("forward: perceptual loss (VGG19 on output and target)",
         tf.function(trainer.perceptual), (plain["reference"], plain["target"])),
        ("forward: image discriminator",
         tf.function(lambda x: trainer.discriminator(x, training=True)), (plain["target"],)),
    ]
    _report(parts[:1] if FLAGS.step_only else parts, calls,
            {"bench": "stage1", "preset": FLAGS.preset, "batch": b,
             "precision": trainer.precision})


def bench_stage2() -> None:
    """Stage-2 step time and its parts."""
    from kp_tf.training.motion_trainer import MotionTrainer

    calls = FLAGS.calls or 20
    cfg = _step_config("stage2_batch_size")
    b, t, k, a = (cfg.stage2_batch_size, cfg.sequence_length, cfg.num_keypoints,
                  cfg.num_actions)
    print(f"bench stage2: preset {FLAGS.preset}, batch {b}, {t} steps, K {k}, LSTM "
          f"{cfg.lstm_layers}x{cfg.lstm_units}, {os.cpu_count()} CPUs, TF {tf.__version__}")
    precision = loop.resolve_precision(FLAGS.precision or "float32")
    print(f"precision {precision}")
    with loop.dtype_policy(precision):
        trainer = MotionTrainer(cfg)
    rng = np.random.default_rng(0)
    batch = {"sequence": tf.constant(rng.uniform(-0.5, 0.5, (b, t, k, 2)), tf.float32),
             "first": tf.constant(rng.uniform(-0.5, 0.5, (b, k, 2)), tf.float32),
             "action": pipeline.action_one_hot(rng.integers(0, max(a, 1), b), a)}
    generator = trainer.generator
    parts = [
        # jit_compile as loop.fit compiles the step (--set=xla=true)
        ("whole step (G update + D update)",
         tf.function(trainer.train_step, jit_compile=cfg.xla or None), (batch,)),
        ("forward: motion generator (posterior)",
         tf.function(lambda x: generator((x["sequence"], x["first"], x["action"]),
                                         training=True)[0]), (batch,)),
        ("forward: sequence discriminator",
         tf.function(lambda x: trainer.discriminator(x, training=True)), (batch["sequence"],)),
    ]
    _report(parts[:1] if FLAGS.step_only else parts, calls,
            {"bench": "stage2", "preset": FLAGS.preset, "batch": b, "precision": precision})


def _video_function(predictor, images: int):
    """(tf.function, its arguments): image → video as a SavedModel client gets it, the
    predict_video signature for one image, else the batched signatures chained."""
    cfg = predictor._cfg
    s, k = cfg.image_size, cfg.num_keypoints
    rng = np.random.default_rng(0)
    image = tf.constant(rng.uniform(-1, 1, (images, s, s, 3)), tf.float32)
    action = tf.constant(rng.integers(0, max(cfg.num_actions, 1), images), tf.int32)
    frames = FLAGS.video_frames
    if images == 1:
        fn = tf.function(predictor.predict_video,
                         input_signature=predictor.input_signatures()["predict_video"])
        return fn, (image[0], action[0], tf.constant(0, tf.int64), tf.constant(frames))

    @tf.function
    def batched(image, action):
        k0 = predictor.detect_keypoints(image)["keypoints"]
        z = tf.random.stateless_normal([images, cfg.latent_dim], [0, 1])
        motion = rollout(lambda start: predictor.generate_motion(start, action, z)["keypoints"],
                         k0, frames, cfg.sequence_length)
        return predictor.translate(image, k0, tf.reshape(motion, [images, frames, k, 2]))

    return batched, (image, action)


def bench_predict() -> None:
    """Image → video: the serving computations on random weights."""
    from kp_tf.models.networks import Stage1Networks, build_motion_models
    from kp_tf.serving import VideoPredictor

    calls = FLAGS.calls or 5
    cfg = _step_config("batch_size", vgg_weights="none")
    precision = loop.resolve_precision(FLAGS.precision or "float32")
    with loop.dtype_policy(precision):
        nets = Stage1Networks(cfg)
        generator, _ = build_motion_models(cfg)
    predictor = VideoPredictor(cfg, nets.detector, nets.image_encoder, nets.translator,
                               generator)
    s, n, t = cfg.image_size, FLAGS.images, FLAGS.video_frames
    print(f"bench predict: preset {FLAGS.preset}, {n} image(s) of {s}x{s} → {t} frames, K "
          f"{cfg.num_keypoints}, {precision}, {os.cpu_count()} CPUs, TF {tf.__version__}")
    fn, fn_args = _video_function(predictor, n)
    _report([(f"image → {t}-frame video, {n} image(s)", fn, fn_args)], calls,
            {"bench": "predict", "preset": FLAGS.preset, "images": n, "frames": t,
             "precision": precision})


# --- convert -------------------------------------------------------------------------------

# Per dataset: (frame height, width, frames per clip) of the fake clips, those of the download
# as far as known (MGif: 256x256 GIFs; UvA-NEMO: 1920x1080 at 50 fps, 3 s a smile; Penn
# Action: JPEG frames, 480x270 and about 70 a video assumed); the content only imitates how
# such frames compress (flat colours on white for MGif, a photograph-like scene elsewhere).
FAKE_RAW = {"mgif": (256, 256, 32), "nemo": (1080, 1920, 150), "penn": (270, 480, 70)}


def _photo_like(rng, h: int, w: int, t: int) -> Iterator[np.ndarray]:
    """uint8 [h, w, 3] frames: a smooth random scene (bicubic from 1/16 size), a disc moving
    across it and sensor-like noise, so that PNG and video coding cost what a photo costs."""
    scene = cv2.resize(rng.integers(0, 256, (max(h // 16, 2), max(w // 16, 2), 3), np.uint8),
                       (w, h), interpolation=cv2.INTER_CUBIC)
    noise = [rng.integers(-4, 5, (h, w, 3), dtype=np.int16) for _ in range(4)]
    for i in range(t):
        frame = scene.astype(np.int16) + noise[i % 4]
        cv2.circle(frame, (int(w * (0.2 + 0.6 * i / max(t - 1, 1))), h // 2), h // 6,
                   (200, 90, 60), -1)
        yield np.clip(frame, 0, 255).astype(np.uint8)


def _cartoon(rng, size: int, t: int) -> list[np.ndarray]:
    """uint8 [size, size, 3] frames: a flat-coloured figure walking on white (an MGif GIF)."""
    colour = tuple(int(c) for c in rng.integers(0, 200, 3))
    frames = []
    for i in range(t):
        frame = np.full((size, size, 3), 255, np.uint8)
        x = int(size * (0.3 + 0.4 * i / max(t - 1, 1)))
        cv2.ellipse(frame, (x, size // 2), (size // 5, size // 8), 0, 0, 360, colour, -1)
        for leg in (-1, 1):
            cv2.line(frame, (x + leg * size // 10, size // 2),
                     (x + leg * size // 10 + (i % 4 - 2) * 4, int(size * 0.8)), colour, 6)
        frames.append(frame)
    return frames


def write_fake_raw(dataset: str, root: str, clips: int, frames: int, seed: int = 0) -> None:
    """`clips` fake clips in `dataset`'s raw layout under `root` (the last one in test)."""
    import scipy.io
    from PIL import Image

    h, w, _ = FAKE_RAW[dataset]
    rng = np.random.default_rng(seed)
    for index in range(clips):
        split = "test" if index == clips - 1 else "train"
        if dataset == "mgif":
            os.makedirs(os.path.join(root, split), exist_ok=True)
            images = [Image.fromarray(f) for f in _cartoon(rng, h, frames)]
            images[0].save(os.path.join(root, split, f"{index:04d}.gif"), save_all=True,
                           append_images=images[1:], duration=100, loop=0)
        elif dataset == "nemo":
            os.makedirs(os.path.join(root, split), exist_ok=True)
            writer = cv2.VideoWriter(os.path.join(root, split, f"{index:04d}.mp4"),
                                     cv2.VideoWriter_fourcc(*"mp4v"), 50, (w, h))
            for frame in _photo_like(rng, h, w, frames):
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            writer.release()
        else:  # penn
            vid = f"{index + 1:04d}"
            os.makedirs(os.path.join(root, "frames", vid))
            os.makedirs(os.path.join(root, "labels"), exist_ok=True)
            for i, frame in enumerate(_photo_like(rng, h, w, frames), 1):
                Image.fromarray(frame).save(os.path.join(root, "frames", vid, f"{i:06d}.jpg"),
                                            quality=90)
            scipy.io.savemat(os.path.join(root, "labels", f"{vid}.mat"),
                             {"x": rng.uniform(0, w, (frames, 13)), "y": rng.uniform(0, h, (frames, 13)),
                              "visibility": np.ones((frames, 13)), "action": "squat"})
            with open(os.path.join(root, f"{split}_set.txt"), "a") as f:
                f.write(f"frames/{vid} 7\n")


def bench_convert() -> None:
    """Conversion speed and output size on fake raw clips."""
    from kp_tf.data import datasets

    cfg = config.load_preset(FLAGS.preset)
    if cfg.dataset not in FAKE_RAW:
        raise cli.UserError(f"bench.py convert knows the raw layouts of {', '.join(FAKE_RAW)}, "
                            f"not {cfg.dataset!r}")
    h, w, frames = FAKE_RAW[cfg.dataset]
    frames = FLAGS.frames or frames
    with tempfile.TemporaryDirectory(prefix="kp_bench_") as tmp:
        src, out = os.path.join(tmp, "raw"), os.path.join(tmp, "data")
        write_fake_raw(cfg.dataset, src, FLAGS.clips, frames)
        cpu, start = time.process_time(), time.perf_counter()
        manifest = datasets.convert(cfg.dataset, src, out, resolution=cfg.image_size, log=None)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - start
    clips = sum(s["clips"] for s in manifest["splits"].values())
    done = sum(s["frames"] for s in manifest["splits"].values())
    size = sum(shard["bytes"] for s in manifest["splits"].values() for shard in s["shards"])
    per_1000 = 1000 / clips
    print(f"bench convert: {cfg.dataset}, {clips} fake clips of {frames} frames at {w}x{h} "
          f"to {cfg.image_size}x{cfg.image_size}, {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{clips / wall:.2f} clips/s, {done / wall:.0f} frames/s; per 1,000 clips: "
          f"{wall * per_1000 / 60:.1f} min ({cpu * per_1000 / 60:.1f} min of CPU), "
          f"{size * per_1000 / 2**30:.2f} GiB ({size / done / 1024:.1f} KiB a frame)")


# --- entry point ---------------------------------------------------------------------------

_COMMON_FLAGS = ("preset", "batch_size")
# Each benchmark and the flags it takes besides the common ones.
COMMANDS: dict[str, tuple[Callable[[], None], tuple[str, ...]]] = {
    "data": (bench_data, ("data_dir", "split", "pseudo_label_dir", "clips", "seconds")),
    "stage1": (bench_stage1, ("calls", "set", "vgg_weights", "precision", "warmup",
                              "step_only", "json")),
    "stage2": (bench_stage2, ("calls", "set", "precision", "warmup", "step_only", "json")),
    "predict": (bench_predict, ("calls", "set", "precision", "video_frames", "images",
                                "warmup", "json")),
    "convert": (bench_convert, ("clips", "frames")),
}


def main(argv: list[str]) -> int:
    names = ", ".join(COMMANDS)
    if len(argv) != 2 or argv[1] not in COMMANDS:
        given = f" (got {' '.join(argv[1:])})" if len(argv) > 1 else ""
        raise cli.UserError(f"name one benchmark: {names}{given}")
    bench, own = COMMANDS[argv[1]]
    others = sorted({f for _, fs in COMMANDS.values() for f in fs} - set(own) - set(_COMMON_FLAGS))
    misplaced = [f"--{f}" for f in others if FLAGS[f].present]
    if misplaced:
        verb = "is not a flag" if len(misplaced) == 1 else "are not flags"
        raise cli.UserError(f"{', '.join(misplaced)} {verb} of bench.py {argv[1]} (see --help)")
    if FLAGS.preset not in config.available_presets():
        raise cli.UserError(f"unknown preset {FLAGS.preset!r}; presets: "
                            f"{', '.join(config.available_presets())}")
    bench()
    return 0


def console_main() -> None:
    """`python tools/bench.py NAME [--flags]`."""
    cli.run(main, takes_arguments=True)


if __name__ == "__main__":
    console_main()
