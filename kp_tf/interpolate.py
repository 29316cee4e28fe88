"""Makes the frames between two images by interpolating their keypoints, with an exported model.

    python -m kp_tf.interpolate --model=EXPORT_DIR --first=IMAGE --last=IMAGE --frames=N --out=DIR

Writes `interpolation.gif` and `interpolation.mp4` (the first image, the N frames, the last),
`keypoints.npy` ([N, K, 2]) and `interpolation.json` (kp_tf.animation.interpolate_to_files).
"""

from absl import flags

from kp_tf import cli

flags.DEFINE_string("model", None, "Export folder (python -m kp_tf.export).")
flags.DEFINE_string("first", None, "The first image (any size; png, jpg, ...).")
flags.DEFINE_string("last", None, "The last image.")
flags.DEFINE_integer("frames", 8, "Frames to make between the two.", lower_bound=1)
flags.DEFINE_enum("path", "linear", ["linear", "motion"], "The keypoints' path: a straight "
                  "line, or the motion generator's path nearest the last image's keypoints "
                  "(better where the generator's motion fits the clip: docs/uses.md).")
flags.DEFINE_boolean("draw_keypoints", False, "Write each frame beside itself with its "
                     "keypoints, enlarged.")
flags.DEFINE_string("out", "interpolation", "Output folder.")
flags.DEFINE_integer("fps", 10, "Frames per second of the GIF/MP4 files.", lower_bound=1)
flags.mark_flags_as_required(["model", "first", "last"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from kp_tf.animation import interpolate_to_files

    record = interpolate_to_files(FLAGS.model, FLAGS.first, FLAGS.last, FLAGS.frames, FLAGS.out,
                                  path=FLAGS.path, draw=FLAGS.draw_keypoints, fps=FLAGS.fps)
    print(f"Wrote {record['frames']} frames between the two images to {FLAGS.out}")
    return 0


def console_main() -> None:
    """`kp-interpolate`."""
    cli.run(main)


if __name__ == "__main__":
    cli.run(main)
