"""What an evaluation reads: a loaded export with batched helpers, and the test clips' frames.

For every test clip the conditioning frame is step 0 and the real future is steps 1..T,
taken with stage 2's test sampling (`sampling="stage2"`, the default): the model's motion
steps are frames `gap` apart with gap = ⌊n / (L + 1)⌋ (L = the export's sequence_length,
n = the clip's frames), i.e. exactly `pipeline.sample_indices(n, L)` (test: start 0) for
T ≤ L, continued with the same gap past L (repeating the last frame of clips that end first;
the report counts them). Short clips (gap 0) use that function's evenly spread steps
(nearest real frame). `sampling="consecutive"` takes frames 0..T instead.
"""

from __future__ import annotations

import hashlib
from typing import Optional

import numpy as np

from kp_tf import cli, conventions, run_folder

SAMPLINGS = ("stage2", "consecutive")


class EvaluationError(cli.UserError):
    """An evaluation that cannot run as asked (the message says why)."""


class ExportedDetector:
    """The export's `detect_keypoints` as a callable `detector(x, training=False)` → [B, K, 2],
    for code written against the Keras detector (kp_tf.evaluation.keypoints)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x, training: bool = False):
        import tensorflow as tf

        del training  # the export is always in inference mode
        return self.model.detect_keypoints(tf.convert_to_tensor(x, tf.float32))["keypoints"]


class Exported:
    """A loaded export (kp_tf.inference.Predictor) with batched helpers on uint8 frames."""

    def __init__(self, model_dir: str):
        from kp_tf.inference import Predictor

        self.predictor = Predictor(model_dir)
        self.model_dir = model_dir
        self.model = self.predictor.model
        self.config = self.predictor.config
        self.actions = self.predictor.actions
        self.image_size = self.predictor.image_size
        self.sequence_length = int(self.config["sequence_length"])
        self.latent_dim = int(self.config["latent_dim"])
        self.detector = ExportedDetector(self.model)
        self.steps = run_folder.export_steps(model_dir)

    def detect(self, frames_uint8) -> np.ndarray:
        """uint8 [N, S, S, 3] → keypoints [N, K, 2]."""
        return np.asarray(self.detector(conventions.to_model(frames_uint8)))

    def translate(self, image_uint8, source_kps, target_kps) -> np.ndarray:
        """One image [S, S, 3], its keypoints [K, 2], targets [T, K, 2] → uint8 video [T, S, S, 3]."""
        import tensorflow as tf

        out = self.model.translate(tf.constant(conventions.to_model(image_uint8)[None]),
                                   tf.constant(source_kps[None], tf.float32),
                                   tf.constant(target_kps[None], tf.float32))
        return conventions.to_uint8(out["video"].numpy()[0])

    def predict(self, image_uint8, action: int, seed: int, frames: int):
        """→ uint8 video [T, S, S, 3], keypoints [T, K, 2] (predict_video)."""
        video, keypoints, _ = self.predictor.predict(conventions.to_model(image_uint8), action,
                                                     seed, frames)
        return video, keypoints

    def generate(self, k0, actions, seeds, frames: int, images=None) -> np.ndarray:
        """Keypoint sequences [B, frames, K, 2] from k0 [B, K, 2] and actions [B], z drawn as
        predict_video does for `seeds` [B] (stateless normal, seed pair (s, s + 1)) and rolled
        out past the generator's length by motion_generator.rollout. With `images` (uint8
        [B, S, S, 3], the frames k0 was detected on) each later chunk starts from the
        keypoints detected on the frame rendered from them with the last ones, as
        predict_video does; without, from the last keypoints themselves."""
        import tensorflow as tf

        from kp_tf.models.motion_generator import rollout

        z = tf.concat([tf.random.stateless_normal([1, self.latent_dim],
                                                  tf.constant([s, s + 1], tf.int64))
                       for s in seeds], 0)
        actions = tf.constant(actions, tf.int32)
        return rollout(lambda start: self.model.generate_motion(start, actions, z)["keypoints"],
                       k0, frames, self.sequence_length,
                       None if images is None else self._redetection(images, k0)).numpy()

    def _redetection(self, images, k0):
        """rollout's restart: last keypoints [B, K, 2] → those detected on the frame rendered
        from `images` (uint8 [B, S, S, 3], keypoints k0) with them."""
        import tensorflow as tf

        x, first = tf.constant(conventions.to_model(images)), tf.constant(k0, tf.float32)

        def restart(last):
            frame = self.model.translate(x, first, last[:, None])["video"][:, 0]
            return self.model.detect_keypoints(frame)["keypoints"]
        return restart

    def run_config(self):
        """The export's Config (assets and config_json hold the run's)."""
        return run_folder.config_from_dict(self.config)


def load_export(model_dir) -> Exported:
    """`model_dir` loaded (or an `Exported` as it is: loading takes seconds)."""
    return model_dir if isinstance(model_dir, Exported) else Exported(model_dir)


def static_video(frame, frames: int) -> np.ndarray:
    """The static baseline: `frame` [S, S, 3] repeated → [frames, S, S, 3]."""
    frame = np.asarray(frame)
    return np.repeat(frame[None], frames, axis=0)


def frame_indices(num_frames, frames: int, length: int, sampling: str = "stage2"):
    """int32 [frames + 1]: the frames of a test clip at steps 0..T (see the module docstring)."""
    import tensorflow as tf

    from kp_tf.data import pipeline

    n = tf.cast(num_frames, tf.int32)
    steps = tf.range(frames + 1, dtype=tf.int32)
    if sampling == "consecutive":
        return tf.minimum(steps, n - 1)
    if sampling != "stage2":
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if frames <= length:
        return pipeline.sample_indices(n, length).nearest()[:frames + 1]
    gap = n // (length + 1)
    position = tf.cast(steps, tf.float32) * (tf.cast(n - 1, tf.float32) / max(length, 1))
    spread = tf.cast(tf.round(position), tf.int32)  # the short-clip rule, continued
    return tf.minimum(tf.where(gap >= 1, gap * steps, spread), n - 1)


def load_test_clips(exported: Exported, data_dir: str, split: str, frames: int, sampling: str,
                    max_videos: Optional[int], skip: int = 0) -> list[dict]:
    """Clips of `split` as dicts: frames uint8 [T + 1, S, S, 3], indices, num_frames, label,
    clip_id; at most `max_videos` of them, after leaving out the first `skip`."""
    from kp_tf.data import pipeline

    ds = pipeline.clip_sequences(
        exported.run_config(), data_dir, split,
        frames=lambda n: frame_indices(n, frames, exported.sequence_length, sampling))
    clips = []
    for element in ds.skip(skip):
        if max_videos is not None and len(clips) >= max_videos:
            break
        clips.append({"frames": element["frames"].numpy(),
                      "indices": element["frame_indices"].numpy(),
                      "num_frames": int(element["num_frames"]),
                      "label": int(element["label"]),
                      "clip_id": element["clip_id"].numpy().decode()})
    if not clips:
        raise EvaluationError(f"{data_dir}: split {split!r} has no clips")
    return clips


def data_fingerprint(manifest: dict, split: str) -> str:
    """A short digest of a split's shard checksums (names cached statistics of that data)."""
    shards = manifest.get("splits", {}).get(split, {}).get("shards", [])
    digest = hashlib.sha256("".join(s.get("sha256", "") for s in shards).encode())
    return digest.hexdigest()[:10]
