"""A small video action classifier, trained on real clips, to score generated videos (protocols §3).

The paper scores generated Penn Action videos with a classifier fine-tuned on real videos. No
pretrained video network is available offline, so this module trains a small (2+1)-D conv net
from scratch on the real training clips of a labelled dataset (synthetic, Weizmann, Penn):

  input  [B, T, S, S, 3] float in [-1, 1] (T = 16 frames by default)
  4 blocks, each: 3×3 spatial conv (stride 2) → BN → ReLU → 3-tap temporal conv (stride 1 in
            the first block, 2 after) → BN → ReLU; widths w, 2w, 4w, 8w (w = 16 by default)
  global average pool → dropout 0.3 → dense softmax over the A classes

Training windows follow the idea of stage 2's temporal sampling (`pipeline.sample_indices`):
a fixed stride through the clip from a random start, so that the classifier sees motion at
the time scales generated videos have. Per window: stride ~ U{1 … max(1, ⌊(n − 1)/(T − 1)⌋)},
start ~ U{0 … n − 1 − (T − 1)·stride}; clips shorter than T frames are stretched (frame
indices round(linspace(0, n − 1, T))). Augmentation: the whole window flipped left-right
with p = 0.5. Optimiser: Adam with cosine decay, sparse cross-entropy, stopped at `steps` or
after `max_seconds`, whichever comes first.

A second kind, `motion_only`, sees only each frame minus the first (x_t − x_0): a still
video is all zeros to it, so it cannot name an action from one frame's pose or background, and
its accuracy on generated videos measures their motion alone. On Weizmann the plain classifier
names 7 of the 8 test clips from a still frame, so the static baseline sits at its ceiling and
only the motion-only classifier can tell a moving prediction from a still one. It has one class
more than the data, STILL_CLASS, learnt from windows that repeat their first frame, half of
them exactly and half under a little per-frame noise (one window in A + 1): without it a still
video had to be named some action, and on Weizmann every still video was "bend", so the static
baseline scored 100 % on the bend and no generated bend could beat it. A video whose motion is
too faint to tell apart from a still one is now called still, which counts as wrong for every
action.

The trained model is stored with the data, `<data_dir>/action_classifier/classifier_T{T}_S{S}.keras`
(`..._motion.keras` for the motion-only kind) plus a `.json` with its settings, training time and its accuracy on real test clips (the
ceiling for generated videos), and is reused when its JSON matches the data (shard checksums),
T and S. `load_or_train` is the entry point.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable, Optional

import numpy as np

from kp_tf import conventions
from kp_tf.progress import plural

CLASSIFIER_DIR = "action_classifier"
DEFAULT_FRAMES = 16
STILL_CLASS = "still"  # the motion-only classifier's extra class (module docstring)
STILL_NOISE = 0.02  # std of the per-frame noise on its training windows, [-1, 1] units
_STREAM = 3  # seed stream, unrelated to stage 1 (1) and stage 2 (2)


@dataclasses.dataclass
class ClassifierSettings:
    """Architecture and training budget. The defaults fit a few CPU minutes at 64×64."""

    frames: int = DEFAULT_FRAMES
    image_size: int = 64
    width: int = 16
    steps: int = 600
    batch_size: int = 16
    learning_rate: float = 2e-3
    max_seconds: float = 240.0
    seed: int = 0
    flip: bool = True
    dropout: float = 0.3
    motion_only: bool = False
    still_class: bool = False  # an extra class for still windows (the motion-only kind has it)


# --- the network -------------------------------------------------------------------------

def build_classifier(num_classes: int, frames: int = DEFAULT_FRAMES, image_size: int = 64,
                     width: int = 16, dropout: float = 0.3, seed: int = 0,
                     motion_only: bool = False):
    """The (2+1)-D conv net described in the module docstring (a Keras functional model);
    with `motion_only` it reads x_t − x_0 instead of the frames.

    Each block factorises a 3×3×3 convolution (Tran et al. 2018, "R(2+1)D") into a 3×3 spatial
    convolution on every frame (TimeDistributed Conv2D) and a 3-tap temporal one (a Conv2D
    over [time, pixels]): only 2-D kernels, whose gradients TensorFlow runs ~6× faster on a
    CPU than Conv3D's.
    """
    import keras

    layers = keras.layers
    init = lambda i: keras.initializers.HeNormal(seed=seed + i)  # noqa: E731
    inputs = keras.Input((frames, image_size, image_size, 3), name="video")
    x, t, s = inputs, frames, image_size
    if motion_only:
        from kp_tf.layers import FrameDifference

        x = FrameDifference(name="frame_difference")(x)
    for i, (mult, t_stride) in enumerate([(1, 1), (2, 2), (4, 2), (8, 2)]):
        c, name = width * mult, f"block{i + 1}"
        x = layers.TimeDistributed(
            layers.Conv2D(c, 3, strides=2, padding="same", use_bias=False,
                          kernel_initializer=init(2 * i)), name=f"{name}_spatial")(x)
        s = (s + 1) // 2
        # momentum 0.9: the moving statistics must settle within a few hundred steps
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn1")(x)
        x = layers.ReLU(name=f"{name}_relu1")(x)
        x = layers.Reshape((t, s * s, c), name=f"{name}_to_time")(x)
        x = layers.Conv2D(c, (3, 1), strides=(t_stride, 1), padding="same", use_bias=False,
                          kernel_initializer=init(2 * i + 1), name=f"{name}_temporal")(x)
        t = (t + t_stride - 1) // t_stride
        x = layers.Reshape((t, s, s, c), name=f"{name}_to_video")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn2")(x)
        x = layers.ReLU(name=f"{name}_relu2")(x)
    x = layers.GlobalAveragePooling3D(name="pool")(x)
    x = layers.Dropout(dropout, seed=seed, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax",
                           kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 99),
                           name="probabilities")(x)
    return keras.Model(inputs, outputs, name="action_classifier")


# --- data ----------------------------------------------------------------------------------

def window_indices(num_frames, frames: int, seed=None, stride=None, start=None):
    """int32 [frames] frame indices of one window (see module docstring).

    seed: stateless [2] seed for a random stride and start (training). Without a seed, the
    given `stride` (default 1) and `start` (default 0) are used, clipped to the clip.
    """
    import tensorflow as tf

    n = tf.cast(num_frames, tf.int32)
    steps = tf.range(frames, dtype=tf.int32)
    max_stride = tf.maximum(1, (n - 1) // max(frames - 1, 1)) if frames > 1 else tf.constant(1)
    if seed is not None:
        s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        stride_t = tf.random.stateless_uniform([], s1, 1, max_stride + 1, dtype=tf.int32)
        room = tf.maximum(n - 1 - (frames - 1) * stride_t, 0)
        start_t = tf.random.stateless_uniform([], s2, 0, room + 1, dtype=tf.int32)
    else:
        stride_t = tf.minimum(tf.constant(stride or 1, tf.int32), max_stride)
        room = tf.maximum(n - 1 - (frames - 1) * stride_t, 0)
        start_t = tf.minimum(tf.constant(start or 0, tf.int32), room)
    strided = start_t + stride_t * steps
    stretched = tf.cast(tf.round(tf.linspace(0.0, tf.cast(n - 1, tf.float32), frames)), tf.int32)
    return tf.where(n >= frames, tf.minimum(strided, n - 1), stretched)


def _decode(frames_png, size: int):
    """[T] PNG strings → float32 [T, size, size, 3] in [-1, 1]."""
    import tensorflow as tf

    from kp_tf.data import tfrecords

    x = tf.cast(tfrecords.decode_frames(frames_png), tf.float32)
    shape = tf.shape(x)
    x = tf.cond(tf.logical_and(tf.equal(shape[1], size), tf.equal(shape[2], size)),
                lambda: x, lambda: tf.image.resize(x, [size, size], antialias=True))
    return conventions.to_model(tf.ensure_shape(x, [None, size, size, 3]))


def training_dataset(data_dir: str, settings: ClassifierSettings, split: str = "train"):
    """Endless, seeded batches (video [B, T, S, S, 3] in [-1, 1], label [B]) of random windows."""
    import tensorflow as tf

    from kp_tf.data import tfrecords

    t, size = settings.frames, settings.image_size
    base = tf.constant([settings.seed, _STREAM], tf.int64)
    fold_in = tf.random.experimental.stateless_fold_in

    num_classes = len(tfrecords.load_manifest(data_dir).get("class_names") or [])

    def load(i, serialized):
        clip = tfrecords.parse_clip(serialized)
        window_seed, flip_seed, still_seed, noise_seed = tf.unstack(
            tf.random.experimental.stateless_split(fold_in(base, i), 4))
        video = _decode(tf.gather(clip["frames_png"], window_indices(clip["num_frames"], t, window_seed)),
                        size)
        if settings.flip:
            flip = tf.random.stateless_uniform([], flip_seed) < 0.5
            video = tf.cond(flip, lambda: tf.reverse(video, axis=[2]), lambda: video)
        label = tf.cast(clip["label"], tf.int64)
        if settings.still_class:
            still = tf.random.stateless_uniform([], still_seed) < 1.0 / (num_classes + 1)
            # half of them exactly still (the static baseline), half flickering with noise of
            # a std up to STILL_NOISE: a net that had seen only noise told zeros apart from it
            noise_seed, scale_seed = tf.unstack(
                tf.random.experimental.stateless_split(noise_seed, 2))
            scale = STILL_NOISE * tf.maximum(
                0.0, 2.0 * tf.random.stateless_uniform([], scale_seed) - 1.0)
            frozen = tf.repeat(video[:1], t, axis=0) + scale * tf.random.stateless_normal(
                [t, size, size, 3], noise_seed)
            video = tf.where(still, frozen, video)
            label = tf.where(still, tf.constant(num_classes, tf.int64), label)
        return tf.ensure_shape(video, [t, size, size, 3]), label

    records = tf.data.TFRecordDataset(tfrecords.shard_paths(data_dir, split)).cache()
    ds = records.repeat().shuffle(512, seed=settings.seed, reshuffle_each_iteration=True)
    ds = ds.enumerate().map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(settings.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def load_windows(data_dir: str, frames: int, image_size: int, split: str = "test",
                 stride=1, start: int = 1, max_clips: Optional[int] = None):
    """Deterministic windows of every clip of a split → (uint8 [N, T, S, S, 3], labels [N]).

    stride: an int, or 'span' for ⌊n / (T + 1)⌋ (at least 1), the stride that spreads
    frames 1..T over the whole clip as stage 2's test sampling does for L = T.
    """
    import tensorflow as tf

    from kp_tf.data import tfrecords

    videos, labels = [], []
    for i, serialized in enumerate(tf.data.TFRecordDataset(tfrecords.shard_paths(data_dir, split))):
        if max_clips is not None and i >= max_clips:
            break
        clip = tfrecords.parse_clip(serialized)
        n = int(clip["num_frames"])
        s = max(1, n // (frames + 1)) if stride == "span" else int(stride)
        idx = window_indices(n, frames, stride=s, start=start * s if stride == "span" else start)
        video = _decode(tf.gather(clip["frames_png"], idx), image_size)
        videos.append(conventions.to_uint8(video.numpy()))
        labels.append(int(clip["label"]))
    return np.stack(videos), np.asarray(labels, np.int32)


# --- the classifier object ---------------------------------------------------------------

class ActionClassifier:
    """A trained classifier and its record (settings, data, real test accuracy)."""

    def __init__(self, model, info: dict):
        self.model = model
        self.info = info
        self.frames = int(info["settings"]["frames"])
        self.image_size = int(info["settings"]["image_size"])
        self.motion_only = bool(info["settings"].get("motion_only", False))
        self.class_names = list(info.get("class_names") or [])

    def probabilities(self, videos, batch_size: int = 16) -> np.ndarray:
        """uint8 0..255 (or float in [-1, 1]) videos [N, T, S, S, 3] → [N, A] probabilities."""
        videos = np.asarray(videos)
        if videos.ndim != 5 or videos.shape[1:] != (self.frames, self.image_size, self.image_size, 3):
            raise ValueError(f"the classifier takes videos [N, {self.frames}, {self.image_size}, "
                             f"{self.image_size}, 3], got {videos.shape}")
        out = []
        for start in range(0, len(videos), batch_size):
            x = videos[start:start + batch_size]
            x = conventions.to_model(x) if x.dtype == np.uint8 else x.astype(np.float32)
            out.append(np.asarray(self.model(x, training=False)))
        return np.concatenate(out) if out else np.zeros([0, len(self.class_names)], np.float32)

    def predict(self, videos) -> np.ndarray:
        return self.probabilities(videos).argmax(-1).astype(np.int32)

    def accuracy(self, videos, labels) -> dict:
        """{'accuracy', 'N', 'per_class': {name: accuracy}, 'confusion': [A, A] counts}."""
        return accuracy_summary(self.predict(videos), labels, self.class_names)


def accuracy_summary(predicted, labels, class_names) -> dict:
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    num = len(class_names)
    confusion = np.zeros([num, num], np.int64)
    for p, y in zip(predicted, labels):
        confusion[y, p] += 1
    per_class = {}
    for a, name in enumerate(class_names):
        total = confusion[a].sum()
        per_class[name] = float(confusion[a, a] / total) if total else None
    return {"accuracy": float((predicted == labels).mean()) if len(labels) else float("nan"),
            "N": int(len(labels)), "per_class": per_class, "confusion": confusion.tolist()}


# --- train / store / reuse ---------------------------------------------------------------

def _fingerprint(data_dir: str) -> dict:
    from kp_tf.data import tfrecords

    manifest = tfrecords.load_manifest(data_dir)
    splits = manifest.get("splits", {})
    return {"dataset": manifest.get("dataset"), "resolution": manifest.get("resolution"),
            "class_names": list(manifest.get("class_names") or []),
            "shards": {s: [sh.get("sha256") for sh in splits[s].get("shards", [])]
                       for s in sorted(splits)}}


def _time_budget(seconds: float):
    """A Keras callback that stops training once `seconds` have passed."""
    import keras

    class TimeBudget(keras.callbacks.Callback):
        stopped_early = False

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if time.perf_counter() - self.start > seconds:
                self.model.stop_training = True
                self.stopped_early = True

    return TimeBudget()


def train_classifier(data_dir: str, settings: ClassifierSettings,
                     log: Optional[Callable[[str], None]] = print) -> ActionClassifier:
    """Trains on the train split; evaluates on the test split (real clips). Not saved."""
    import keras
    import tensorflow as tf

    log = log or (lambda _: None)
    fingerprint = _fingerprint(data_dir)
    names = fingerprint["class_names"]
    if len(names) < 2:
        raise ValueError(f"{data_dir}: the action classifier needs a dataset with classes "
                         f"(manifest lists {names})")
    keras.utils.set_random_seed(settings.seed)
    if settings.still_class:
        names = names + [STILL_CLASS]
    model = build_classifier(len(names), settings.frames, settings.image_size, settings.width,
                             settings.dropout, settings.seed, settings.motion_only)
    schedule = keras.optimizers.schedules.CosineDecay(settings.learning_rate, settings.steps,
                                                      alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    budget = _time_budget(settings.max_seconds)
    log(f"action classifier: training on {data_dir} (train split) for up to {settings.steps} "
        f"steps / {settings.max_seconds:.0f} s, {model.count_params():,} parameters")
    epochs = max(1, min(10, settings.steps))
    per_epoch = max(1, settings.steps // epochs)
    start = time.perf_counter()
    history = model.fit(training_dataset(data_dir, settings), epochs=epochs, steps_per_epoch=per_epoch,
                        callbacks=[budget], shuffle=False, verbose=2 if log is print else 0)
    seconds = time.perf_counter() - start
    steps_done = int(model.optimizer.iterations.numpy())
    tests = {}
    for label, stride in (("consecutive_frames_1_to_T", 1), ("whole_clip_stride", "span")):
        videos, labels = load_windows(data_dir, settings.frames, settings.image_size, "test",
                                      stride=stride, start=1)
        clf = ActionClassifier(model, {"settings": dataclasses.asdict(settings), "class_names": names})
        tests[label] = clf.accuracy(videos, labels)
    kind = "motion-only (x_t − x_0) " if settings.motion_only else ""
    still = f" with a '{STILL_CLASS}' class" if settings.still_class else ""
    info = {"what": f"(2+1)-D conv {kind}action classifier{still} on real clips "
                    "(kp_tf.evaluation.action)",
            "settings": dataclasses.asdict(settings), "class_names": names,
            "num_parameters": int(model.count_params()), "steps": steps_done,
            "stopped_by_time_budget": bool(budget.stopped_early),
            "train_seconds": round(seconds, 1),
            "final_train_loss": float(history.history["loss"][-1]),
            "final_train_accuracy": float(history.history["accuracy"][-1]),
            "test_accuracy": tests, "data": fingerprint, "tensorflow": tf.__version__}
    log(f"action classifier: {plural(steps_done, 'step')} in {seconds:.0f} s; real test "
        "accuracy " + ", ".join(f"{k} {v['accuracy']:.3f} (N={v['N']})" for k, v in tests.items()))
    return ActionClassifier(model, info)


def classifier_paths(directory: str, frames: int, image_size: int,
                     motion_only: bool = False) -> tuple[str, str]:
    suffix = "_motion" if motion_only else ""
    stem = os.path.join(directory, f"classifier_T{frames}_S{image_size}{suffix}")
    return stem + ".keras", stem + ".json"


def save(classifier: ActionClassifier, directory: str) -> str:
    """Writes the .keras and .json files atomically (temp names, then os.replace)."""
    os.makedirs(directory, exist_ok=True)
    model_path, info_path = classifier_paths(directory, classifier.frames, classifier.image_size,
                                             classifier.motion_only)
    tmp_model = os.path.join(directory, f".tmp-{os.getpid()}-" + os.path.basename(model_path))
    classifier.model.save(tmp_model)
    tmp_info = info_path + f".{os.getpid()}.tmp"
    with open(tmp_info, "w") as f:
        json.dump(classifier.info, f, indent=2)
    os.replace(tmp_model, model_path)
    os.replace(tmp_info, info_path)  # the JSON last: its presence means the pair is complete
    return model_path


def load(directory: str, frames: int, image_size: int,
         motion_only: bool = False) -> Optional[ActionClassifier]:
    import keras

    model_path, info_path = classifier_paths(directory, frames, image_size, motion_only)
    if not (os.path.exists(model_path) and os.path.exists(info_path)):
        return None
    with open(info_path) as f:
        info = json.load(f)
    from kp_tf.layers import FrameDifference

    model = keras.models.load_model(model_path, compile=False,
                                    custom_objects={"kp_tf>FrameDifference": FrameDifference})
    return ActionClassifier(model, info)


def load_or_train(data_dir: str, frames: int = DEFAULT_FRAMES, image_size: Optional[int] = None,
                  directory: Optional[str] = None, retrain: bool = False,
                  log: Optional[Callable[[str], None]] = print, **settings) -> ActionClassifier:
    """The stored classifier for (data, T, S) when its record matches the data, else a new one.

    Args:
      data_dir: converted, labelled dataset (train and test splits).
      frames, image_size: the videos it will score (image_size default: the data's resolution).
      directory: where it is kept; default `<data_dir>/action_classifier`.
      retrain: ignore a stored one.
      **settings: other `ClassifierSettings` fields (budget, width, seed) for a new one;
        `motion_only` also selects which stored one is used, and brings `still_class` with it
        unless that is given.
    """
    from kp_tf.data import tfrecords

    log = log or (lambda _: None)
    image_size = int(image_size or tfrecords.load_manifest(data_dir)["resolution"])
    directory = directory or os.path.join(data_dir, CLASSIFIER_DIR)
    motion_only = bool(settings.get("motion_only", False))
    settings = {"still_class": motion_only, **settings}
    if not retrain:
        stored = load(directory, frames, image_size, motion_only)
        if stored is not None:
            stored_still = bool(stored.info.get("settings", {}).get("still_class", False))
            if stored.info.get("data") != _fingerprint(data_dir):
                log("action classifier: the stored one was trained on other data; retraining")
            elif stored_still != bool(settings["still_class"]):
                log(f"action classifier: the stored one {'has' if stored_still else 'lacks'} "
                    f"the '{STILL_CLASS}' class; retraining")
            else:
                path = classifier_paths(directory, frames, image_size, motion_only)[0]
                log(f"action classifier: reusing {path}")
                return stored
    classifier = train_classifier(data_dir, ClassifierSettings(frames=frames, image_size=image_size,
                                                               **settings), log)
    try:
        path = save(classifier, directory)
        log(f"action classifier: saved {path}")
    except OSError as e:  # e.g. a read-only data folder: still usable for this run
        log(f"action classifier: could not save into {directory} ({e}); pass another directory")
    return classifier
