"""Export sizes of each preset: `python tools/export_sizes.py [PRESET ...] [--check]
[--format=saved_model|tflite]`.

Builds each preset's inference networks with random weights (the size of an export does not
depend on training) and prints Markdown rows, sizes in MB of 10^6 bytes.

saved_model: writes them with `kp_tf.serving.write_export` into a temporary folder; one row
per preset: parameters, the whole folder, the weights (variables/) and the graph
(saved_model.pb). `--check` also loads each export from its MetaGraph in graph mode, as TensorFlow
Serving does, and runs every signature once on zeros, so a preset whose export only runs
under tf.saved_model.load is caught.

tflite: converts them with `kp_tf.tflite_export` (float32, float16, dynamic-range int8); one
row per file and quantisation: its size, its error against the Keras models on four
synthetic figures at the preset's size (random weights: a check of the conversion, not of
what quantising a trained model costs) and the median CPU latency of each signature on one
thread of tf.lite.Interpreter (XNNPack for float kernels, its default).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

# The checkout this file is in, whatever kp_tf the environment has installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from kp_tf import cli  # noqa: E402

PRESETS = ("synthetic", "weizmann", "penn", "mgif", "nemo", "tiny")
MB = 1e6

flags.DEFINE_boolean("check", False, "Also run every signature loaded in graph mode (as TF Serving does).")
flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite"],
                  "Which export to size (tflite adds each signature's CPU latency).")
FLAGS = flags.FLAGS


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def export_preset(name: str, out: str):
    """Writes preset `name`'s random-weight export to `out`; → (cfg, parameter count)."""
    from kp_tf import config, serving
    from kp_tf.models.networks import Stage1Networks, build_motion_models

    cfg = config.load_preset(name, vgg_weights="none")
    nets = Stage1Networks(cfg)
    generator, _ = build_motion_models(cfg)
    names = [f"action_{i}" for i in range(cfg.num_actions)]
    serving.write_export(cfg, (nets.detector, nets.image_encoder, nets.translator, generator),
                         names, out)
    inference = (nets.detector.weights + nets.image_encoder.weights + nets.translator.weights
                 + generator.decoder.weights)
    return cfg, sum(int(np.prod(w.shape)) for w in inference)


def zeros_inputs(signature, cfg) -> dict:
    """Zeros for every input of a SignatureDef, unknown dimensions set to 2 (the fewest frames
    a driving video may have), `frames` to L."""
    import tensorflow as tf

    inputs = {}
    for key, info in signature.inputs.items():
        shape = [d.size if d.size >= 0 else 2 for d in info.tensor_shape.dim]
        value = np.zeros(shape, tf.dtypes.as_dtype(info.dtype).as_numpy_dtype)
        if key == "frames":
            value = np.array(cfg.sequence_length, value.dtype)
        inputs[key] = value
    return inputs


def check_in_graph_mode(model_dir: str, cfg) -> None:
    """Runs every signature of the export once with `saved_model_cli run`, which loads the
    MetaGraph in graph mode as TensorFlow Serving does; raises on failure."""
    import subprocess

    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(model_dir, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    signatures = saved.meta_graphs[0].signature_def
    with tempfile.TemporaryDirectory() as tmp:
        for key, signature in signatures.items():
            if key.startswith("__"):
                continue
            paths = []
            for name, value in zeros_inputs(signature, cfg).items():
                np.save(os.path.join(tmp, f"{key}-{name}.npy"), value)
                paths.append(f"{name}={os.path.join(tmp, f'{key}-{name}.npy')}")
            out = os.path.join(tmp, key)
            run = subprocess.run(
                ["saved_model_cli", "run", "--dir", model_dir, "--tag_set", "serve",
                 "--signature_def", key, "--inputs", ";".join(paths), "--outdir", out],
                capture_output=True, text=True)
            if run.returncode != 0:
                raise RuntimeError(f"{model_dir}: saved_model_cli run {key} failed:\n"
                                   f"{run.stderr[-2000:]}")
            for name in os.listdir(out):
                if not np.all(np.isfinite(np.load(os.path.join(out, name)))):
                    raise RuntimeError(f"{model_dir}: {key} returned non-finite {name}")


def tflite_rows(name: str) -> list[str]:
    """Preset `name`'s TFLite files: one Markdown row per file and quantisation."""
    from kp_tf import config, conventions, tflite_export
    from kp_tf.data import synthetic
    from kp_tf.models.networks import Stage1Networks, build_motion_models

    cfg = config.load_preset(name, vgg_weights="none")
    nets = Stage1Networks(cfg)
    generator, _ = build_motion_models(cfg)
    predictor = tflite_export.LitePredictor(cfg, nets.detector, nets.image_encoder,
                                            nets.translator, generator)
    blobs = tflite_export.convert_all(predictor)
    images = np.stack([conventions.to_model(synthetic.generate_clip(
        i, split="test", size=cfg.image_size, num_frames=1).frames[0]) for i in range(4)])
    measured = tflite_export.measure(predictor, blobs, images)
    ref = tflite_export.reference(predictor, images[:1])
    rows = []
    for (stem, q), content in blobs.items():
        times = tflite_export.latencies(stem, content, ref)
        rows.append(f"| {name} | {stem} | {q} | {len(content) / MB:.2f} "
                    f"| {measured[stem][q]['error']:.2g} | "
                    + ", ".join(f"{k} {v:.1f}" for k, v in times.items()) + " |")
    return rows


def main(argv) -> int:
    """Markdown rows for the presets named in argv[1:] (default: all of PRESETS)."""
    from kp_tf import config

    presets = argv[1:] or list(PRESETS)
    unknown = [p for p in presets if p not in config.available_presets()]
    if unknown:
        raise cli.UserError(f"unknown preset{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(unknown)}; presets: "
                            f"{', '.join(config.available_presets())}")
    if FLAGS.format == "tflite":
        print("| preset | model | weights | MB | error vs Keras | CPU latency, ms (1 thread) |")
        print("|---|---|---|---|---|---|")
        for name in presets:
            start = time.perf_counter()
            rows = tflite_rows(name)
            print("\n".join(rows) + f"  <!-- {time.perf_counter() - start:.0f} s -->",
                  flush=True)
        return 0
    print("| preset | S | K | parameters | export MB | variables/ MB | saved_model.pb MB |"
          + (" graph-mode run |" if FLAGS.check else ""))
    print("|---|---|---|---|---|---|---|" + ("---|" if FLAGS.check else ""))
    with tempfile.TemporaryDirectory() as tmp:
        for name in presets:
            out = os.path.join(tmp, name)
            start = time.perf_counter()
            cfg, params = export_preset(name, out)
            row = (f"| {name} | {cfg.image_size} | {cfg.num_keypoints} | {params:,} "
                   f"| {folder_bytes(out) / MB:.1f} "
                   f"| {folder_bytes(os.path.join(out, 'variables')) / MB:.1f} "
                   f"| {os.path.getsize(os.path.join(out, 'saved_model.pb')) / MB:.1f} |")
            if FLAGS.check:
                check_in_graph_mode(out, cfg)
                row += " ok |"
            print(row + f"  <!-- {time.perf_counter() - start:.0f} s -->", flush=True)
    return 0


def console_main() -> None:
    """`python tools/export_sizes.py [PRESET ...] [--check]`."""
    cli.run(main, takes_arguments=True)


if __name__ == "__main__":
    console_main()
