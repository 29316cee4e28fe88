"""TFLite models of a trained run, for phones and browsers: `python -m kp_tf.export
--logdir=RUN --format=tflite [--out=DIR]` writes DIR (default RUN/tflite):

  detector.tflite          detect_keypoints(image f32 [1, S, S, 3] in [-1, 1])
                             → keypoints [1, K, 2]
  translator.tflite        encode_image(image [1, S, S, 3]) → features [1, S/4, S/4, C]
                           render_frame(image [1, S, S, 3], features [1, S/4, S/4, C],
                                        source_keypoints [1, K, 2], target_keypoints [1, K, 2])
                             → frame [1, S, S, 3] in [-1, 1]
  motion_generator.tflite  generate_motion(k0 [1, K, 2], action i32 [1], z [1, latent])
                             → keypoints [1, L, K, 2]   (no `action` input when A = 0)
  NAME_float16.tflite, NAME_int8.tflite   the same with float16 or dynamic-range int8
                           weights, written only where their error is within BOUNDS
  actions.txt, config.json, tflite_report.json (each variant's size, error and whether it
                           was written), export_info.json (the checkpoints that made them)

Each file's signatures compute exactly what kp_tf.serving's do, one example at a time (batch
1: an app renders frame by frame). The translator is two signatures of one file, not one with
the encoder folded in: the image encoder depends on the reference image alone, so an app
encodes once per video and calls render_frame per frame, the same split as the SavedModel's
`translate` (its T frames share one encoding). Videos longer than L frames chain
generate_motion as kp_tf.models.motion_generator.rollout does: the same z and action, and
chunk t+1 starts from the last keypoints of chunk t (docs/tflite.md).

Every file runs on the builtin TFLite ops alone (no Flex / SELECT_TF_OPS): Keras 3's LSTM
converts to a WHILE loop of FULLY_CONNECTED and element-wise ops, and the warp translator's
bilinear sampling (keras.ops.take) to GATHER.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings

import numpy as np
import tensorflow as tf

from kp_tf import run_folder, serving

# {file stem: its signatures}, in the order the files are written.
FILES = {"detector": ("detect_keypoints",),
         "translator": ("encode_image", "render_frame"),
         "motion_generator": ("generate_motion",)}
QUANTIZATIONS = ("float32", "float16", "int8")  # int8: dynamic-range (int8 weights)

# The largest error against the Keras models that a variant may have and still be written
# (float32 is always written; tests hold it to far tighter bounds). Units: keypoints in pixels
# of the S × S frame (max over keypoints and inputs); frames as the mean |difference| of [0, 1]
# pixels (max over the rendered frames); motion in normalised units ([-1, 1], max over
# coordinates). Half a pixel leaves a keypoint on the same pixel, and 0.01 is 2.6 grey levels
# of 255 on average; 0.01 normalised is 0.32 px at S = 64.
BOUNDS = {"detector": 0.5, "translator": 0.01, "motion_generator": 0.01}
UNITS = {"detector": "max keypoint error, pixels",
         "translator": "max over frames of the mean L1 of [0, 1] pixels",
         "motion_generator": "max keypoint error, normalised units"}
REPORT = "tflite_report.json"


def file_name(stem: str, quantization: str) -> str:
    """detector, float32 → detector.tflite; detector, int8 → detector_int8.tflite."""
    return f"{stem}.tflite" if quantization == "float32" else f"{stem}_{quantization}.tflite"


class LitePredictor(serving.VideoPredictor):
    """The TFLite files' signatures (module docstring) over the trained networks.

    detect_keypoints and generate_motion are the SavedModel's own computations at batch 1;
    encode_image and render_frame split its `translate` in two, the encoder out of the
    per-frame call. Constructed as serving.VideoPredictor.
    """

    @property
    def config(self):
        return self._cfg

    def input_signatures(self) -> dict:
        """{signature name: [tf.TensorSpec per argument]}; the spec names are the inputs'."""
        c = self._cfg
        s, k = c.image_size, c.num_keypoints
        image = tf.TensorSpec([1, s, s, 3], tf.float32, name="image")
        features = self.image_encoder.output.shape[1:]
        motion = [tf.TensorSpec([1, k, 2], tf.float32, name="k0")]
        if c.num_actions:  # without classes there is no action to give
            motion.append(tf.TensorSpec([1], tf.int32, name="action"))
        motion.append(tf.TensorSpec([1, c.latent_dim], tf.float32, name="z"))
        return {"detect_keypoints": [image],
                "encode_image": [image],
                "render_frame": [image,
                                 tf.TensorSpec([1, *features], tf.float32, name="features"),
                                 tf.TensorSpec([1, k, 2], tf.float32, name="source_keypoints"),
                                 tf.TensorSpec([1, k, 2], tf.float32, name="target_keypoints")],
                "generate_motion": motion}

    def encode_image(self, image):
        """image [1, S, S, 3] → {"features": [1, S/4, S/4, C]}: once per reference image."""
        return {"features": self.image_encoder(image, training=False)}

    def render_frame(self, image, features, source_keypoints, target_keypoints):
        """image [1, S, S, 3], its features, source and target keypoints [1, K, 2]
        → {"frame": [1, S, S, 3]} in [-1, 1]: the image moved to the target keypoints."""
        out = self.translator([image, features, source_keypoints, target_keypoints],
                              training=False)
        return {"frame": tf.clip_by_value(out["output"], -1.0, 1.0)}

    def motion_signature(self):
        """generate_motion as the TFLite signature takes it (no action when A = 0)."""
        if self._cfg.num_actions:
            return self.generate_motion
        return lambda k0, z: self.generate_motion(k0, None, z)

    def write_saved_model(self, directory: str) -> None:
        """The four signatures as one SavedModel (keras.export.ExportArchive, for the reason
        kp_tf.serving gives): what the converter reads."""
        import keras

        archive = keras.export.ExportArchive()
        for name, specs in self.input_signatures().items():
            function = self.motion_signature() if name == "generate_motion" else getattr(self, name)
            archive.add_endpoint(name, function, input_signature=specs)
        archive.write_out(directory, verbose=False)


def convert(saved_model_dir: str, signatures, quantization: str) -> bytes:
    """The TFLite flatbuffer of `signatures` (names in the SavedModel) with float32,
    float16 or dynamic-range int8 weights; builtin ops only (a model needing Flex fails)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                         signature_keys=list(signatures))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != "float32":
        # Optimize.DEFAULT alone is dynamic-range quantisation: int8 weights (those of 1024
        # elements or more, the converter's threshold), float inputs and outputs, activations
        # quantised on the fly by the kernels that support it. With float16 as the supported
        # type it stores float16 weights instead, expanded to float32 at load on a CPU.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def interpreter(content: bytes, threads: int = 1):
    """A tf.lite.Interpreter on a flatbuffer, allocated. The class warns on every
    construction that LiteRT (ai_edge_litert) replaces it; it is what the tensorflow pip
    package ships, and the one an app without other packages has, so the warning is muted."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated")
        result = tf.lite.Interpreter(model_content=content, num_threads=threads)
    result.allocate_tensors()
    return result


def op_names(content: bytes) -> list[str]:
    """The distinct operators of every subgraph of a flatbuffer (builtin names; a Flex or
    custom op as CUSTOM:name), sorted: what an interpreter must provide."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    names = set()
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            number = max(code.builtinCode, code.deprecatedBuiltinCode)
            names.add(f"CUSTOM:{code.customCode.decode()}"
                      if number == schema.BuiltinOperator.CUSTOM else builtin[number])
    return sorted(names)


# --- measuring a variant against the Keras models -------------------------------------------

def reference(predictor: LitePredictor, images: np.ndarray, seed: int = 0) -> dict:
    """The Keras models' outputs on `images` [N, S, S, 3] (inputs of the measurement).

    Per image n: keypoints k0 [K, 2]; the action n mod A; z ~ N(0, I) from `seed`; the
    generated motion [L, K, 2]; and frames rendered at the first, middle and last generated
    keypoints. → dict images, keypoints [N, K, 2], actions [N], z [N, latent], motion
    [N, L, K, 2], targets [N, 3, K, 2], frames [N, 3, S, S, 3].
    """
    cfg = predictor.config
    n = len(images)
    images = np.asarray(images, np.float32)
    keypoints = predictor.detect_keypoints(tf.constant(images))["keypoints"].numpy()
    actions = (np.arange(n) % max(cfg.num_actions, 1)).astype(np.int32)
    z = np.random.default_rng(seed).standard_normal((n, cfg.latent_dim)).astype(np.float32)
    motion = predictor.generate_motion(tf.constant(keypoints), tf.constant(actions),
                                       tf.constant(z))["keypoints"].numpy()
    # The first, middle and last frames: a motion drifts away from k0 along the chunk.
    length = motion.shape[1]
    targets = motion[:, [0, length // 2, length - 1]]
    frames = predictor.translate(tf.constant(images), tf.constant(keypoints),
                                 tf.constant(targets))["video"].numpy()
    return {"images": images, "keypoints": keypoints, "actions": actions, "z": z,
            "motion": motion, "targets": targets, "frames": frames}


def run_lite(stem: str, content: bytes, ref: dict) -> np.ndarray:
    """The file `stem`'s outputs on the inputs of `reference`, one example a call: keypoints
    [N, K, 2], frames [N, 3, S, S, 3] or motion [N, L, K, 2]."""
    model = interpreter(content)
    out = []
    for i, image in enumerate(ref["images"]):
        image = image[None]
        if stem == "detector":
            out.append(model.get_signature_runner("detect_keypoints")(image=image)["keypoints"][0])
        elif stem == "translator":
            features = model.get_signature_runner("encode_image")(image=image)["features"]
            render = model.get_signature_runner("render_frame")
            out.append(np.stack([
                render(image=image, features=features, source_keypoints=ref["keypoints"][i:i + 1],
                       target_keypoints=target[None])["frame"][0]
                for target in ref["targets"][i]]))
        else:
            generate = model.get_signature_runner("generate_motion")
            inputs = {"k0": ref["keypoints"][i:i + 1], "z": ref["z"][i:i + 1]}
            if "action" in generate.get_input_details():
                inputs["action"] = ref["actions"][i:i + 1]
            out.append(generate(**inputs)["keypoints"][0])
    return np.stack(out)


def error(stem: str, lite: np.ndarray, ref: dict, image_size: int) -> float:
    """The error of a file's outputs against the Keras ones, in the unit of UNITS[stem]."""
    if stem == "detector":
        # Normalised → pixels: the [-1, 1] grid spans the S − 1 pixel steps between centres.
        return float(np.abs(lite - ref["keypoints"]).max() * (image_size - 1) / 2)
    if stem == "translator":
        # [-1, 1] → [0, 1] halves a difference.
        return float((np.abs(lite - ref["frames"]) / 2).mean(axis=(2, 3, 4)).max())
    return float(np.abs(lite - ref["motion"]).max())


def latency_ms(content: bytes, signature: str, inputs: dict, repeats: int = 20) -> float:
    """Median milliseconds of one call of `signature` on one CPU thread (after one call
    that is not timed: the first allocates and packs the weights)."""
    runner = interpreter(content).get_signature_runner(signature)
    runner(**inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner(**inputs)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def latencies(stem: str, content: bytes, ref: dict, repeats: int = 20) -> dict:
    """{signature: `latency_ms`} of file `stem` on the first example of `reference` (the
    translator's render_frame on its first target keypoints)."""
    image = ref["images"][:1]
    if stem == "detector":
        return {"detect_keypoints": latency_ms(content, "detect_keypoints", {"image": image},
                                               repeats)}
    if stem == "translator":
        features = interpreter(content).get_signature_runner("encode_image")(image=image)
        render = {"image": image, "features": features["features"],
                  "source_keypoints": ref["keypoints"][:1],
                  "target_keypoints": ref["targets"][:1, 0]}
        return {"encode_image": latency_ms(content, "encode_image", {"image": image}, repeats),
                "render_frame": latency_ms(content, "render_frame", render, repeats)}
    inputs = {"k0": ref["keypoints"][:1], "z": ref["z"][:1]}
    if "action" in interpreter(content).get_signature_runner("generate_motion").get_input_details():
        inputs["action"] = ref["actions"][:1]
    return {"generate_motion": latency_ms(content, "generate_motion", inputs, repeats)}


# --- writing the files ----------------------------------------------------------------------

def convert_all(predictor: LitePredictor, quantizations=QUANTIZATIONS, stems=tuple(FILES)) -> dict:
    """{(file stem, quantization): flatbuffer} for the files `stems` of FILES."""
    with tempfile.TemporaryDirectory(prefix="kp_tf-tflite-") as saved_model:
        predictor.write_saved_model(saved_model)
        return {(stem, q): convert(saved_model, FILES[stem], q)
                for stem in stems for q in quantizations}


def measure(predictor: LitePredictor, blobs: dict, images: np.ndarray, seed: int = 0) -> dict:
    """{stem: {quantization: {bytes, error, within_bound}}} of `convert_all`'s flatbuffers on
    `images` [N, S, S, 3] (module BOUNDS and UNITS)."""
    ref = reference(predictor, images, seed)
    size = predictor.config.image_size
    out = {}
    for (stem, q), content in blobs.items():
        value = error(stem, run_lite(stem, content, ref), ref, size)
        out.setdefault(stem, {})[q] = {"bytes": len(content), "error": value,
                                       "within_bound": value <= BOUNDS[stem]}
    return out


def write_tflite(cfg, models, names, out: str, images: np.ndarray, info: dict | None = None,
                 images_from: str = "") -> dict:
    """Converts `models` (detector, image_encoder, translator, motion_generator) and writes
    the files of the module docstring to `out`, replacing it only once all are written.

    Args:
      cfg: the run's Config; names: its action names.
      images: float32 [N, S, S, 3] in [-1, 1]: the inputs the quantised variants are measured
        on (the motion and frames follow from them, `reference`).
      info: the checkpoints that made the models (export_info.json), or None.
      images_from: where `images` came from, for the report.

    Returns: the report written to tflite_report.json: per file and quantization the size,
    the error against the Keras models and whether the file was written; the bounds, units
    and the operators each file needs.
    """
    predictor = LitePredictor(cfg, *models)
    blobs = convert_all(predictor)
    measured = measure(predictor, blobs, images)
    report = {"bounds": BOUNDS, "units": UNITS, "measured_on": images_from or
              f"{len(images)} images", "files": {}}
    with run_folder.written_whole(out, "tflite") as tmp:
        for (stem, q), content in blobs.items():
            entry = dict(measured[stem][q], file=file_name(stem, q),
                         signatures=list(FILES[stem]), ops=op_names(content))
            entry["written"] = q == "float32" or entry["within_bound"]
            if entry["written"]:
                with open(os.path.join(tmp, entry["file"]), "wb") as f:
                    f.write(content)
            report["files"].setdefault(stem, {})[q] = entry
        run_folder.write_action_names(tmp, names)
        run_folder.write_config(cfg, tmp)
        with open(os.path.join(tmp, REPORT), "w") as f:
            json.dump(report, f, indent=2)
        if info is not None:
            run_folder.write_export_info(tmp, info)
    return report


def measurement_images(cfg, count: int = 4) -> tuple[np.ndarray, str]:
    """The first frames of up to `count` test clips of the run's data (the train split when
    it has no test split): float32 [N, S, S, 3] in [-1, 1], and a description."""
    from kp_tf import conventions
    from kp_tf.data import tfrecords

    splits = tfrecords.load_manifest(cfg.resolved_data_dir).get("splits", {})
    split = "test" if "test" in splits else "train"
    images = []
    for shard in tfrecords.shard_paths(cfg.resolved_data_dir, split):
        for record in tf.data.TFRecordDataset(shard).take(count - len(images)):
            clip = tfrecords.parse_clip(record)
            frame = tfrecords.decode_frames(clip["frames_png"][:1]).numpy()[0]
            if frame.shape[:2] != (cfg.image_size, cfg.image_size):
                frame = tf.image.resize(frame, [cfg.image_size] * 2, antialias=True).numpy()
            images.append(conventions.to_model(frame))
        if len(images) == count:
            break
    return (np.stack(images),
            f"the first frames of {len(images)} {split} clips of {cfg.resolved_data_dir}")


def export_run(cfg, out: str) -> dict:
    """Writes the TFLite files of a run's newest checkpoints to `out` (`write_tflite`)."""
    info = run_folder.newest_checkpoints_info(cfg)
    models = serving.restore_models(cfg, info["stage1_checkpoint"], info["stage2_checkpoint"])
    images, images_from = measurement_images(cfg)
    report = write_tflite(cfg, models, serving.action_names(cfg), out, images, info, images_from)
    for stem, variants in report["files"].items():
        print(f"{stem}: " + ", ".join(
            f"{q} {v['bytes'] / 1e6:.2f} MB, error {v['error']:.3g}"
            + ("" if v["written"] else f" > {BOUNDS[stem]}, not written")
            for q, v in variants.items()), flush=True)
    print(f"Wrote {out} (stage 1: {info['stage1_checkpoint']}; stage 2: "
          f"{info['stage2_checkpoint']})", flush=True)
    return report
