"""Writes a trained run's SavedModel, or its TFLite models.

    python -m kp_tf.export --logdir=RUN [--format=saved_model|tflite] [--out=DIR]
                           [--precision=float32|mixed_bfloat16|auto]

(`kp-export` once installed with pip.) Both hold the newest checkpoints of both stages.
saved_model (the default; kp_tf.serving): one SavedModel, DIR defaults to RUN/export;
`python -m kp_tf.train --stage=export` does the same for a preset's run. tflite
(kp_tf.tflite_export, docs/tflite.md): detector, translator and motion generator as TFLite
files, float32 and, where their error stays within the stated bounds, float16 and
dynamic-range int8; DIR defaults to RUN/tflite.
"""

from absl import flags

from kp_tf import cli

FORMATS = ("saved_model", "tflite")
DEFAULT_OUT = {"saved_model": "export", "tflite": "tflite"}

flags.DEFINE_string("logdir", None, "Run folder made by kp_tf.train (holds keypoints/ and motion/).")
flags.DEFINE_enum("format", "saved_model", FORMATS,
                  "saved_model: one SavedModel for TensorFlow and TensorFlow Serving; tflite: "
                  "three TFLite models for phones and browsers (docs/tflite.md).")
flags.DEFINE_string("out", "", "Output folder (default LOGDIR/export, or LOGDIR/tflite with "
                    "--format=tflite).")
flags.DEFINE_enum("precision", None, ("float32", "mixed_bfloat16", "auto"),
                  "saved_model: the networks' precision (default: the run's "
                  "inference_precision, float32 unless set). mixed_bfloat16 computes in "
                  "bfloat16 with float32 weights, inputs and outputs: about twice as fast "
                  "on CPUs with AVX512-BF16 or AMX, emulated and slower elsewhere; auto "
                  "picks it where the exporting CPU has them (docs/performance.md).")
flags.mark_flag_as_required("logdir")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import os

    from kp_tf import run_folder

    stage_dir = os.path.join(FLAGS.logdir, "keypoints")
    if not os.path.exists(os.path.join(stage_dir, run_folder.CONFIG)):
        raise cli.UserError(f"{FLAGS.logdir}: no trained run here (no keypoints/config.json)")
    cfg = run_folder.read_config(stage_dir).replace(logdir=FLAGS.logdir)
    if FLAGS.precision:
        cfg = cfg.replace(inference_precision=FLAGS.precision)
    out = FLAGS.out or os.path.join(FLAGS.logdir, DEFAULT_OUT[FLAGS.format])
    try:
        if FLAGS.format == "tflite":
            from kp_tf import tflite_export

            tflite_export.export_run(cfg, out)
        else:
            from kp_tf import serving

            serving.export_run(cfg, out, force=True)
    except FileNotFoundError as e:
        raise cli.UserError(str(e)) from e


def console_main() -> None:
    """`kp-export`."""
    cli.run(main)


if __name__ == "__main__":
    console_main()
