"""The serving model: one TF SavedModel holding the whole image → video pipeline.

Written by `python -m kp_tf.export --logdir=RUN --out=DIR` (or the export step of `kp_tf.train`).
Serving signatures (S = image size, K keypoints, A actions, L = sequence length):
  detect_keypoints(image f32 [B, S, S, 3] in [-1, 1]) → keypoints [B, K, 2]
  generate_motion(k0 [B, K, 2], action i32 [B], z [B, latent]) → keypoints [B, L, K, 2]
  translate(image [B, S, S, 3], source_kps [B, K, 2], target_kps [B, T, K, 2])
      → video [B, T, S, S, 3]: each image is encoded once and its T frames rendered as one batch
  predict_video(image [S, S, 3], action i32 [], seed i64 [], frames i32 [])
      → video [frames, S, S, 3], keypoints [frames, K, 2], first_keypoints [K, 2]
The action names and the preset travel as files (`assets.extra/actions.txt`, `config.json`)
and as the string tensors `action_names` and `config_json`; loading needs TensorFlow only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile

import tensorflow as tf

from kp_tf import run_folder
from kp_tf.models.motion_generator import rollout


class VideoPredictor(tf.Module):
    """The trained networks behind tf.function signatures (see module docstring)."""

    def __init__(self, cfg, detector, image_encoder, translator, motion_generator, action_names):
        super().__init__(name="kp_tf_video_predictor")
        self.detector = detector
        self.image_encoder = image_encoder
        self.translator = translator
        self.motion_generator = motion_generator
        # Keras keeps the sampler's RNG state outside the tracked variables; the traced
        # functions capture it, so it must be reachable from the root to be saved.
        self._sampler_state = motion_generator.seed_generator.state.value
        self._cfg = cfg
        # Variables, not constants: only trackable state is saved with the module.
        self.action_names = tf.Variable(list(action_names) or [""], trainable=False,
                                        dtype=tf.string, name="action_names")
        self.config_json = tf.Variable(json.dumps(dataclasses.asdict(cfg)), trainable=False,
                                       name="config_json")
        s, k, lat = cfg.image_size, cfg.num_keypoints, cfg.latent_dim
        self.detect_keypoints = tf.function(self._detect, input_signature=[
            tf.TensorSpec([None, s, s, 3], tf.float32, name="image")])
        self.generate_motion = tf.function(self._generate, input_signature=[
            tf.TensorSpec([None, k, 2], tf.float32, name="k0"),
            tf.TensorSpec([None], tf.int32, name="action"),
            tf.TensorSpec([None, lat], tf.float32, name="z")])
        self.translate = tf.function(self._translate, input_signature=[
            tf.TensorSpec([None, s, s, 3], tf.float32, name="image"),
            tf.TensorSpec([None, k, 2], tf.float32, name="source_kps"),
            tf.TensorSpec([None, None, k, 2], tf.float32, name="target_kps")])
        self.predict_video = tf.function(self._predict_video, input_signature=[
            tf.TensorSpec([s, s, 3], tf.float32, name="image"),
            tf.TensorSpec([], tf.int32, name="action"),
            tf.TensorSpec([], tf.int64, name="seed"),
            tf.TensorSpec([], tf.int32, name="frames")])

    def _detect(self, image):
        return {"keypoints": self.detector(image, training=False)}

    def _one_hot(self, action):
        num_actions = self._cfg.num_actions
        return tf.one_hot(action, num_actions) if num_actions else None

    def _generate(self, k0, action, z):
        return {"keypoints": self.motion_generator.decode(z, k0, self._one_hot(action))}

    def _translate(self, image, source_kps, target_kps):
        b, t = tf.shape(target_kps)[0], tf.shape(target_kps)[1]
        features = self.image_encoder(image, training=False)

        def tile(x):  # [B, ...] → [B·T, ...], once-per-image work shared by its T frames
            return tf.reshape(tf.repeat(x[:, None], t, axis=1),
                              tf.concat([[b * t], tf.shape(x)[1:]], 0))

        out = self.translator([tile(image), tile(features), tile(source_kps),
                               tf.reshape(target_kps, [b * t, self._cfg.num_keypoints, 2])],
                              training=False)
        video = tf.clip_by_value(out["output"], -1.0, 1.0)
        s = self._cfg.image_size
        return {"video": tf.reshape(video, [b, t, s, s, 3])}

    def _predict_video(self, image, action, seed, frames):
        tf.debugging.assert_positive(frames, message="frames must be ≥ 1")
        image = image[None]
        k0 = self.detector(image, training=False)
        z = tf.random.stateless_normal([1, self._cfg.latent_dim], tf.stack([seed, seed + 1]))
        one_hot = self._one_hot(action[None])
        keypoints = rollout(lambda start: self.motion_generator.decode(z, start, one_hot), k0,
                            frames, self._cfg.sequence_length)
        video = self._translate(image, k0, keypoints)["video"]
        return {"video": video[0], "keypoints": keypoints[0], "first_keypoints": k0[0]}

    def signatures(self):
        return {"detect_keypoints": self.detect_keypoints,
                "generate_motion": self.generate_motion,
                "translate": self.translate,
                "predict_video": self.predict_video}


def restore_models(cfg, stage1_checkpoint: str, stage2_checkpoint: str):
    """Inference networks restored from the two stages' checkpoints."""
    nets = run_folder.restore_stage1(cfg, stage1_checkpoint)
    generator = run_folder.restore_motion_generator(cfg, stage2_checkpoint)
    return nets.detector, nets.image_encoder, nets.translator, generator


def action_names(cfg) -> list[str]:
    from kp_tf.data import tfrecords

    manifest = tfrecords.load_manifest(cfg.resolved_data_dir)
    names = list(manifest.get("class_names") or [])
    if cfg.num_actions and len(names) != cfg.num_actions:
        raise ValueError(f"{cfg.resolved_data_dir}/manifest.json lists {len(names)} classes but "
                         f"the preset has num_actions={cfg.num_actions}")
    return names


def export_run(cfg, out: str, force: bool = False) -> str:
    """Exports the newest checkpoints of a run; skipped when `out` already holds them."""
    info = run_folder.newest_checkpoints_info(cfg)
    if not force and run_folder.read_export_info(out) == info:
        return out
    names = action_names(cfg)
    module = VideoPredictor(cfg, *restore_models(cfg, info["stage1_checkpoint"],
                                                 info["stage2_checkpoint"]), names)
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    assets = os.path.join(tmp, "assets.extra")
    tf.saved_model.save(module, tmp, signatures=module.signatures())
    os.makedirs(assets, exist_ok=True)
    with open(os.path.join(assets, "actions.txt"), "w") as f:
        f.write("\n".join(names) + ("\n" if names else ""))
    run_folder.write_config(cfg, assets)
    run_folder.write_export_info(tmp, info)
    if os.path.exists(out):  # replace the old export only once the new one is complete
        shutil.rmtree(out)
    os.replace(tmp, out)
    print(f"Exported {out} (stage 1: {info['stage1_checkpoint']}; stage 2: "
          f"{info['stage2_checkpoint']})", flush=True)
    return out
