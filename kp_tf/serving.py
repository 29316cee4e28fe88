"""The serving model: one TF SavedModel holding the whole image → video pipeline.

Written by `python -m kp_tf.export --logdir=RUN --out=DIR` (or the export step of `kp_tf.train`).
Serving signatures (S = image size, K keypoints, A actions, L = sequence length):
  detect_keypoints(image f32 [B, S, S, 3] in [-1, 1]) → keypoints [B, K, 2]
  generate_motion(k0 [B, K, 2], action i32 [B], z [B, latent]) → keypoints [B, L, K, 2]
  translate(image [B, S, S, 3], source_kps [B, K, 2], target_kps [B, T, K, 2])
      → video [B, T, S, S, 3]: each image is encoded once and its T frames rendered as one batch
  predict_video(image [S, S, 3], action i32 [] in 0..A−1, seed i64 [], frames i32 [] in 1..4096)
      → video [frames, S, S, 3], keypoints [frames, K, 2], first_keypoints [K, 2]
  animate(image [S, S, 3], driving_video [T, S, S, 3], 2 ≤ T ≤ 4096)
      → video [T, S, S, 3], keypoints [T, K, 2], source_keypoints [K, 2],
        driving_keypoints [T, K, 2]: motion transfer, relative with adapt_scale
  interpolate(first [S, S, 3], last [S, S, 3], frames i32 [] in 1..4096)
      → video [frames, S, S, 3], keypoints [frames, K, 2], first_keypoints [K, 2],
        last_keypoints [K, 2]: the frames between two images, by keypoint interpolation
  serving_default: predict_video again, for servers that call it when no signature is named.
Out-of-range values are InvalidArgument errors naming the limit (4096 is
kp_tf.conventions.MAX_FRAMES); wrong shapes and dtypes are refused by the signatures' specs.
The rules of animate and interpolate are kp_tf.animation's; past L frames predict_video
starts each chunk of the motion from the keypoints detected on the frame rendered with the
last ones (motion_generator.rollout's restart; docs/uses.md has why).
The action names and the preset travel as files (`assets.extra/actions.txt`, `config.json`)
and as the string variables `action_names` and `config_json`; loading needs TensorFlow only.

The archive is written by Keras' `ExportArchive`, not by `tf.saved_model.save` on a module
holding the models: a Keras 3 variable wraps a tf.Variable, and saved through the model the
checkpoint restores into a copy of the wrapper while the functions read the inner variable.
`tf.saved_model.load` rebinds the two, but a graph-mode loader (`saved_model_cli run`,
TensorFlow Serving) runs the MetaGraph as written and finds the functions' variables
uninitialised. ExportArchive saves exactly the tf.Variables the traced functions capture, so
both loaders restore what the functions read (docs/serving.md).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os

import tensorflow as tf

from kp_tf import animation, conventions, run_folder
from kp_tf.models.motion_generator import rollout
from kp_tf.training import loop

# Export order; the first is also `serving_default`. predict_video is the whole pipeline, so a
# request that names no signature gets image → video.
SIGNATURES = ("predict_video", "detect_keypoints", "generate_motion", "translate", "animate",
              "interpolate")


class VideoPredictor:
    """The serving computations over the trained networks, callable eagerly or traced.

    The methods are the signatures of the module docstring (inputs and outputs as named
    there); `input_signatures()` gives their specs and `archive(action_names)` the
    ExportArchive that `export_run` writes.

    Args:
      cfg: the run's kp_tf.config.Config (image_size S, num_keypoints K, latent_dim,
        num_actions A, sequence_length L).
      detector: image [B, S, S, 3] → keypoints [B, K, 2].
      image_encoder: image [B, S, S, 3] → appearance features.
      translator: [image, features, source keypoints, target keypoints] → {"output": ...}.
      motion_generator: a MotionGenerator (its `decode` is used; no sampler state: z comes
        from the caller or, in predict_video, from the seed alone).
    """

    def __init__(self, cfg, detector, image_encoder, translator, motion_generator):
        self.detector = detector
        self.image_encoder = image_encoder
        self.translator = translator
        self.motion_generator = motion_generator
        self._cfg = cfg

    def input_signatures(self) -> dict:
        """{signature name: [tf.TensorSpec per argument]}, in SIGNATURES order; the spec
        names are the signature's input keys."""
        s, k, lat = self._cfg.image_size, self._cfg.num_keypoints, self._cfg.latent_dim
        specs = {
            "predict_video": [tf.TensorSpec([s, s, 3], tf.float32, name="image"),
                              tf.TensorSpec([], tf.int32, name="action"),
                              tf.TensorSpec([], tf.int64, name="seed"),
                              tf.TensorSpec([], tf.int32, name="frames")],
            "detect_keypoints": [tf.TensorSpec([None, s, s, 3], tf.float32, name="image")],
            "generate_motion": [tf.TensorSpec([None, k, 2], tf.float32, name="k0"),
                                tf.TensorSpec([None], tf.int32, name="action"),
                                tf.TensorSpec([None, lat], tf.float32, name="z")],
            "translate": [tf.TensorSpec([None, s, s, 3], tf.float32, name="image"),
                          tf.TensorSpec([None, k, 2], tf.float32, name="source_kps"),
                          tf.TensorSpec([None, None, k, 2], tf.float32, name="target_kps")],
            "animate": [tf.TensorSpec([s, s, 3], tf.float32, name="image"),
                        tf.TensorSpec([None, s, s, 3], tf.float32, name="driving_video")],
            "interpolate": [tf.TensorSpec([s, s, 3], tf.float32, name="first"),
                            tf.TensorSpec([s, s, 3], tf.float32, name="last"),
                            tf.TensorSpec([], tf.int32, name="frames")],
        }
        return {name: specs[name] for name in SIGNATURES}

    @staticmethod
    def _checked(value, checks):
        """`value` once `checks` (assert ops) have passed: the work that reads it waits for
        them, so a refused request fails before, not after, rendering its frames."""
        with tf.control_dependencies(checks):
            return tf.identity(value)

    def _check_frames(self, frames, name="frames"):
        """`frames`, or an InvalidArgument error naming the limits unless 1 ≤ frames ≤
        MAX_FRAMES."""
        limit = conventions.MAX_FRAMES
        message = f"{name} must be in 1..{limit} (kp_tf.conventions.MAX_FRAMES)"
        return self._checked(frames, [tf.debugging.assert_positive(frames, message=message),
                                      tf.debugging.assert_less_equal(frames, limit,
                                                                     message=message)])

    def _check_actions(self, action):
        """`action`, or an InvalidArgument error unless every action is a class index of the
        model (0 alone for a model without classes, which ignores it). None stays None: the
        TFLite motion generator of a model without classes has no action input."""
        if action is None:
            return None
        count = max(self._cfg.num_actions, 1)
        message = f"action must be in 0..{count - 1} (the model's {count} action(s))"
        return self._checked(action, [tf.debugging.assert_non_negative(action, message=message),
                                      tf.debugging.assert_less(action, count, message=message)])

    def detect_keypoints(self, image):
        """image [B, S, S, 3] in [-1, 1] → {"keypoints": [B, K, 2]}."""
        return {"keypoints": self.detector(image, training=False)}

    def _one_hot(self, action):
        num_actions = self._cfg.num_actions
        return tf.one_hot(action, num_actions) if num_actions else None

    def generate_motion(self, k0, action, z):
        """k0 [B, K, 2], action int32 [B], z [B, latent] → {"keypoints": [B, L, K, 2]}."""
        action = self._check_actions(action)
        keypoints = self.motion_generator.decode(z, k0, self._one_hot(action))
        # float32 whatever the precision: a signature's output types are part of its contract.
        return {"keypoints": tf.cast(keypoints, tf.float32)}

    def translate(self, image, source_kps, target_kps):
        """image [B, S, S, 3], source_kps [B, K, 2], target_kps [B, T, K, 2]
        → {"video": [B, T, S, S, 3]} in [-1, 1]."""
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

    def predict_video(self, image, action, seed, frames):
        """image [S, S, 3], action int32 [], seed int64 [], frames int32 [] ≥ 1
        → {"video": [frames, S, S, 3], "keypoints": [frames, K, 2], "first_keypoints": [K, 2]}.

        z is a stateless draw from `seed`, so a seed gives the same video in every process
        and loader, and a served model keeps no random state between requests. Past L
        frames each chunk of the motion starts from the keypoints detected on the frame
        rendered with the previous chunk's last keypoints (rollout's restart): started from
        its own smoother output, the generator's motion fades chunk after chunk.
        """
        frames, action = self._check_frames(frames), self._check_actions(action)
        image = image[None]
        k0 = self.detector(image, training=False)
        z = tf.random.stateless_normal([1, self._cfg.latent_dim], tf.stack([seed, seed + 1]))
        one_hot = self._one_hot(action[None])

        def redetect(last):  # the next chunk starts from what the rendered frame shows
            frame = self.translate(image, k0, last[:, None])["video"][:, 0]
            return self.detector(frame, training=False)

        keypoints = rollout(lambda start: self.motion_generator.decode(z, start, one_hot), k0,
                            frames, self._cfg.sequence_length, restart=redetect)
        video = self.translate(image, k0, keypoints)["video"]
        return {"video": video[0], "keypoints": keypoints[0], "first_keypoints": k0[0]}

    def _chunked(self, fn, count, shape):
        """fn(start, end) → float32 [end − start, *shape] over consecutive ranges of
        animation.RENDER_CHUNK covering 0..count, concatenated: one network call per chunk in
        a TensorFlow loop, so that the activations' memory does not grow with `count`."""
        size = animation.RENDER_CHUNK
        chunks = (count + size - 1) // size
        array = tf.TensorArray(tf.float32, size=chunks, infer_shape=False,
                               element_shape=tf.TensorShape([None] + list(shape)))

        def body(i, array):
            start = i * size
            return i + 1, array.write(i, fn(start, tf.minimum(start + size, count)))

        _, array = tf.while_loop(lambda i, _: i < chunks, body, (0, array))
        return tf.ensure_shape(array.concat(), [None] + list(shape))

    def _render(self, image, source_kps, target_kps):
        """image [S, S, 3], source_kps [K, 2], target_kps [T, K, 2] → video [T, S, S, 3],
        `translate` a chunk of frames at a time."""
        s = self._cfg.image_size
        return self._chunked(
            lambda a, b: self.translate(image[None], source_kps[None],
                                        target_kps[None, a:b])["video"][0],
            tf.shape(target_kps)[0], [s, s, 3])

    def animate(self, image, driving_video):
        """image [S, S, 3], driving_video [T, S, S, 3] (T ≥ 2), both in [-1, 1]
        → {"video": [T, S, S, 3], "keypoints": [T, K, 2] (the driven keypoints),
        "source_keypoints": [K, 2], "driving_keypoints": [T, K, 2]}.

        Relative motion transfer with adapt_scale (animation.transfer_keypoints): frame t
        renders the image with its keypoints moved as the driving keypoints moved from frame 0,
        scaled by the ratio of the two figures' spreads. Absolute transfer needs no signature
        of its own: translate(image, detect_keypoints(image), detect_keypoints(driving)).
        """
        t = tf.shape(driving_video)[0]
        t = self._checked(self._check_frames(t, "the driving video's frames"), [
            tf.debugging.assert_greater_equal(t, 2, message="the driving video needs at least "
                                                            "2 frames")])
        source = self.detector(image[None], training=False)
        driving = self._chunked(
            lambda a, b: self.detector(driving_video[a:b], training=False), t,
            [self._cfg.num_keypoints, 2])
        keypoints = animation.transfer_keypoints(source, driving[None], driving[:1],
                                                 relative=True, adapt_scale=True)[0]
        return {"video": self._render(image, source[0], keypoints), "keypoints": keypoints,
                "source_keypoints": source[0], "driving_keypoints": driving}

    def interpolate(self, first, last, frames):
        """first, last [S, S, 3] in [-1, 1], frames int32 [] ≥ 1
        → {"video": [frames, S, S, 3], "keypoints": [frames, K, 2], "first_keypoints" and
        "last_keypoints": [K, 2]}.

        The keypoints of the two images joined as animation.INTERPOLATION_PATH says (a
        straight line, or the motion generator's nearest path), each frame rendered as
        animation.INTERPOLATION_RENDER says (kp_tf.animation.interpolate is the same in
        Python over the export).
        """
        frames = self._check_frames(frames)
        ends = self.detector(tf.stack([first, last]), training=False)
        weights = animation.interpolation_weights(frames)
        cfg = self._cfg
        if animation.INTERPOLATION_PATH == "motion":
            keypoints = animation.motion_path(
                lambda k, a, z: self.motion_generator.decode(z, k, self._one_hot(a)), ends[0],
                ends[1], frames, cfg.sequence_length, cfg.num_actions, cfg.latent_dim)
        else:
            keypoints = animation.interpolate_keypoints(ends[:1], ends[1:], weights)[0]
        render = animation.INTERPOLATION_RENDER
        from_first = self._render(first, ends[0], keypoints)
        from_last = residuals = None
        if render != "first":
            from_last = self._render(last, ends[1], keypoints)
        if render == "residual":
            residuals = (first - self._render(first, ends[0], ends[:1])[0],
                         last - self._render(last, ends[1], ends[1:])[0])
        video = animation.combine_renders(render, weights, from_first, from_last, residuals)
        return {"video": video, "keypoints": keypoints, "first_keypoints": ends[0],
                "last_keypoints": ends[1]}

    def _shape_checked(self, name, specs):
        """The method `name` with each input checked against its spec's shape first.

        A signature of a loaded SavedModel checks the dtypes of its inputs but not their
        shapes: without this, an image of the wrong size fails deep in the detector with an
        error naming a concat node. tf.ensure_shape's error names the input and both shapes.
        """
        method = getattr(self, name)
        shapes = {spec.name: spec.shape for spec in specs}

        @functools.wraps(method)
        def checked(*args, **kwargs):
            bound = inspect.signature(method).bind(*args, **kwargs)
            return method(**{key: tf.ensure_shape(value, shapes[key], name=key)
                             for key, value in bound.arguments.items()})

        return checked

    def archive(self, action_names):
        """A keras.export.ExportArchive with the endpoints of SIGNATURES and the string variables
        `action_names` [A] (or [""] without classes) and `config_json` []."""
        import keras

        archive = keras.export.ExportArchive()
        # No archive.track(model): tracking a model adds its Keras variable wrappers, which
        # the checkpoint stores beside the captured variables (every weight twice). The
        # endpoints' captured variables are tracked by write_out itself, and no model
        # holds a lookup table or other resource that only track() would find.
        for name, specs in self.input_signatures().items():
            archive.add_endpoint(name, self._shape_checked(name, specs), input_signature=specs)
        # Variables, not constants: only trackable state is saved. ExportArchive's public
        # way to add variables saves a list (add_variable_collection), but loaders read
        # `model.action_names` and `model.config_json` as tensors at the root, as from
        # earlier exports, so they go on the object that write_out saves.
        root = archive._tf_trackable
        root.action_names = tf.Variable(list(action_names) or [""], trainable=False,
                                        dtype=tf.string, name="action_names")
        root.config_json = tf.Variable(json.dumps(dataclasses.asdict(self._cfg)),
                                       trainable=False, name="config_json")
        return archive


def restore_models(cfg, stage1_checkpoint: str, stage2_checkpoint: str):
    """Inference networks restored from the two stages' checkpoints, built in
    `cfg.inference_precision` (the variables are float32 in either precision)."""
    with loop.dtype_policy(loop.resolve_precision(cfg.inference_precision)):
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


def write_export(cfg, models, names, out: str, info: dict | None = None) -> str:
    """Writes the SavedModel of `models` (detector, image_encoder, translator,
    motion_generator) to `out`, replacing it only once the new export is complete.

    Beside the SavedModel: assets.extra/actions.txt (one name a line), assets.extra/config.json
    and, when `info` is given, export_info.json (the checkpoints that made it).
    """
    predictor = VideoPredictor(cfg, *models)
    with run_folder.written_whole(out, "export") as tmp:
        predictor.archive(names).write_out(tmp, verbose=False)
        assets = os.path.join(tmp, "assets.extra")
        os.makedirs(assets, exist_ok=True)
        run_folder.write_action_names(assets, names)
        run_folder.write_config(cfg, assets)
        if info is not None:
            run_folder.write_export_info(tmp, info)
    return out


def export_run(cfg, out: str, force: bool = False) -> str:
    """Exports the newest checkpoints of a run; skipped when `out` already holds them."""
    info = dict(run_folder.newest_checkpoints_info(cfg),
                precision=loop.resolve_precision(cfg.inference_precision))
    if not force and run_folder.read_export_info(out) == info:
        return out
    models = restore_models(cfg, info["stage1_checkpoint"], info["stage2_checkpoint"])
    write_export(cfg, models, action_names(cfg), out, info)
    print(f"Exported {out} in {info['precision']} (stage 1: {info['stage1_checkpoint']}; "
          f"stage 2: {info['stage2_checkpoint']})", flush=True)
    return out
