"""Moves an image as a driving video moves (motion transfer), with an exported model.

    python -m kp_tf.animate --model=EXPORT_DIR --source=IMAGE --driving=VIDEO --out=DIR

The driving video may be any format kp_tf's conversion reads (GIF, .mp4/.avi/.mov, a folder
of frames, a horizontal strip of frames) and any length: it is read and rendered in chunks.
Writes `animation.gif` and `animation.mp4` (source | driving | result), `result.mp4`,
`keypoints.npz` and `animation.json` (kp_tf.animation.animate_to_files).
"""

from absl import flags

from kp_tf import cli

flags.DEFINE_string("model", None, "Export folder (python -m kp_tf.export).")
flags.DEFINE_string("source", None, "The image to move (any size; png, jpg, ...).")
flags.DEFINE_string("driving", None, "The driving video: GIF, mp4/avi/mov, a folder of frames "
                    "or a frame strip.")
flags.DEFINE_enum("mode", "relative", ["relative", "absolute"],
                  "relative: source keypoints + the driving keypoints' motion since its first "
                  "frame; absolute: the driving keypoints themselves.")
flags.DEFINE_boolean("adapt_scale", True, "Relative mode: scale the motion by the ratio of the "
                     "source's and the first driving frame's keypoint spreads.")
flags.DEFINE_boolean("draw_keypoints", False, "Draw the keypoints on the three panels.")
flags.DEFINE_string("out", "animation", "Output folder.")
flags.DEFINE_integer("fps", 10, "Frames per second of the GIF/MP4 files.", lower_bound=1)
flags.DEFINE_integer("chunk", 64, "Driving frames read and rendered at a time.", lower_bound=1)
flags.mark_flags_as_required(["model", "source", "driving"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from kp_tf.animation import animate_to_files

    record = animate_to_files(FLAGS.model, FLAGS.source, FLAGS.driving, FLAGS.out,
                              relative=FLAGS.mode == "relative", adapt_scale=FLAGS.adapt_scale,
                              draw=FLAGS.draw_keypoints, fps=FLAGS.fps, chunk=FLAGS.chunk)
    print(f"Wrote {record['frames']} frames ({record['mode']} motion) to {FLAGS.out}")
    return 0


def console_main() -> None:
    """`kp-animate`."""
    cli.run(main)


if __name__ == "__main__":
    cli.run(main)
