"""Predicts videos of an action from one image, with an exported model.

    python -m kp_tf.predict --model=EXPORT_DIR --image=PATH --action=NAME --out=DIR

(`kp-predict` once installed with pip.) Writes per sample s `sample_s.gif`, `sample_s.mp4`,
`sample_s_keypoints.gif`, `sample_s_keypoints.npy` and one `keypoints.json`
(kp_tf.inference.predict_to_files).
"""

from absl import flags

from kp_tf import cli

flags.DEFINE_string("model", None, "Export folder (python -m kp_tf.export).")
flags.DEFINE_string("image", None, "Input image (any size; png, jpg, ...).")
flags.DEFINE_string("action", "", "Action name (an unknown name lists the model's actions).")
flags.DEFINE_integer("samples", 5, "Videos to sample (different z).", lower_bound=1)
flags.DEFINE_integer("frames", 32, "Frames per video; past the training length the motion is "
                     "rolled forward.", lower_bound=1)
flags.DEFINE_string("out", "predictions", "Output folder.")
flags.DEFINE_integer("seed", 0, "Seed of the first sample; sample s uses seed + s.")
flags.DEFINE_integer("fps", 10, "Frames per second of the GIF/MP4 files.", lower_bound=1)
flags.mark_flags_as_required(["model", "image"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from kp_tf.inference import predict_to_files

    record = predict_to_files(FLAGS.model, FLAGS.image, FLAGS.action, FLAGS.samples,
                              FLAGS.frames, FLAGS.out, FLAGS.seed, FLAGS.fps)
    from kp_tf.progress import plural

    print(f"Wrote {plural(len(record['samples']), 'video')} of "
          f"{plural(FLAGS.frames, 'frame')} to {FLAGS.out}")
    return 0


def console_main() -> None:
    """`kp-predict`."""
    cli.run(main)


if __name__ == "__main__":
    console_main()
