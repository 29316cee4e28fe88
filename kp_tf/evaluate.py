"""Evaluates an exported model on a dataset's test split.

    python -m kp_tf.evaluate --model=EXPORT_DIR [--dataset=NAME] [--metrics=all] [--out=DIR]

(`kp-evaluate` once installed with pip.) Scores the model against the static (copy frame 0)
and keypoint-oracle baselines, each metric with N, T, the seed and the checkpoints
(kp_tf.evaluation.scores says what each one measures); writes report.json and report.md into
--out and prints the Markdown (kp_tf.evaluation.report).
"""

from absl import flags

from kp_tf import cli

flags.DEFINE_string("model", None, "Export folder (python -m kp_tf.export).")
flags.DEFINE_string("dataset", None, "Dataset name (default: the export's preset).")
flags.DEFINE_string("data_dir", None, "Converted TFRecords (default data/<dataset>).")
flags.DEFINE_string("metrics", "fvd,action,diversity,recon,keypoints,classes",
                    "Comma-separated subset of fvd, action, diversity, recon, keypoints, classes "
                    "(or 'all').")
flags.DEFINE_string("out", None, "Folder for report.json and report.md.")
flags.DEFINE_integer("samples", 5, "Model samples (seeds) per test clip.", lower_bound=1)
flags.DEFINE_integer("frames", 16, "T, generated frames scored per video.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "First sampling seed.")
flags.DEFINE_integer("max_videos", None, "Use at most this many test clips.", lower_bound=1)
flags.DEFINE_string("split", "test", "Split of the data folder.")
flags.DEFINE_enum("sampling", "stage2", ["stage2", "consecutive"],
                  "Which real frames are steps 0..T (kp_tf.evaluation.test_clips).")
flags.DEFINE_string("i3d", None, "I3D SavedModel folder, TF-Hub handle or arrays file "
                    "(default: found by kp_tf.pretrained's rule).")
flags.DEFINE_string("fvd_cache_dir", None, "Real-statistics cache (default $KP_TF_CACHE/fvd, "
                    "else ~/.cache/kp_tf/fvd).")
flags.DEFINE_integer("fvd_batch_size", 8, "Videos per I3D call.", lower_bound=1)
flags.DEFINE_string("classifier_dir", None, "Where the action classifiers are kept (default "
                    "<data_dir>/action_classifier).")
flags.DEFINE_integer("classifier_steps", None, "Training steps of a new action classifier.")
flags.DEFINE_float("classifier_seconds", None, "Time budget of a new action classifier.")
flags.DEFINE_integer("classifier_width", None, "Base width of a new action classifier.")
flags.DEFINE_integer("keypoint_train_clips", 300, "Training clips of the keypoint regression.")
flags.DEFINE_string("vgg_weights", "imagenet", "VGG19 weights of the moving-region perceptual "
                    "distance ('imagenet': found by kp_tf.pretrained's rule, or an .h5 path).")
flags.DEFINE_boolean("quiet", False, "No progress output (the Markdown is still printed).")
flags.mark_flag_as_required("model")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from kp_tf.evaluation import report

    classifier = {k: v for k, v in (("steps", FLAGS.classifier_steps),
                                    ("max_seconds", FLAGS.classifier_seconds),
                                    ("width", FLAGS.classifier_width)) if v is not None}
    try:
        result = report.evaluate(
            FLAGS.model, FLAGS.dataset, FLAGS.data_dir, metrics=FLAGS.metrics, out=FLAGS.out,
            samples=FLAGS.samples, frames=FLAGS.frames, seed=FLAGS.seed,
            max_videos=FLAGS.max_videos, split=FLAGS.split, sampling=FLAGS.sampling,
            i3d=FLAGS.i3d, fvd_cache_dir=FLAGS.fvd_cache_dir, fvd_batch_size=FLAGS.fvd_batch_size,
            classifier_dir=FLAGS.classifier_dir, classifier=classifier,
            keypoint_train_clips=FLAGS.keypoint_train_clips, vgg_weights=FLAGS.vgg_weights,
            verbose=not FLAGS.quiet)
    except FileNotFoundError as e:
        raise cli.UserError(str(e)) from e
    if FLAGS.quiet:
        from kp_tf.evaluation.markdown import format_markdown

        print(format_markdown(result))
    return 0


def console_main() -> None:
    """`kp-evaluate`."""
    cli.run(main)


if __name__ == "__main__":
    console_main()
