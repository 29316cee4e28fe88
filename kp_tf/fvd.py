"""Fréchet Video Distance between two folders of videos, like pytorch-fid's command line.

    python -m kp_tf.fvd REAL GENERATED [--i3d=DIR] [--frames=16] [--batch_size=8] [--split=test]

(`kp-fvd` once installed with pip.) REAL and GENERATED are each a folder of videos (any
format `make_tfrecords` reads, or .npy arrays [T, H, W, 3]) or a converted data folder
(manifest.json), of which the clips of --split are used. The first --frames frames of every
video are scored (protocols §1; the FVD code itself resizes them, see
kp_tf/evaluation/frechet_video_distance.py). Videos shorter than that, and files that cannot
be read, are named and skipped. Prints the FVD and the number of videos used on each side.
The I3D is found by the project's rule for pretrained files (kp_tf.pretrained).
"""

from absl import flags

from kp_tf import cli

flags.DEFINE_string("i3d", None, "I3D: a SavedModel folder, a TF-Hub handle or the arrays file "
                    "i3d_kinetics400_rgb_scratch.npz (default: found by kp_tf.pretrained's rule).")
flags.DEFINE_integer("frames", 16, "Leading frames scored per video (at least 9).", lower_bound=9)
flags.DEFINE_integer("batch_size", 8, "Videos per I3D call.", lower_bound=1)
flags.DEFINE_string("split", "test", "Split of a data folder with manifest.json.")
flags.DEFINE_integer("max_videos", None, "Use at most this many videos per side.", lower_bound=1)
flags.DEFINE_string("real_cache", None, "Cache the real statistics as NAME.npz in kp_tf's cache "
                    "($KP_TF_CACHE/fvd, default ~/.cache/kp_tf/fvd); NAME must identify dataset, "
                    "split, frames and resolution.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) != 3:
        raise cli.UserError("give two folders: python -m kp_tf.fvd REAL GENERATED [--flags]")
    from kp_tf.evaluation import frechet_video_distance as fvd, video_folders

    try:
        real = video_folders.VideoSource(argv[1], FLAGS.frames, FLAGS.split)
        generated = video_folders.VideoSource(argv[2], FLAGS.frames, FLAGS.split)
        result = fvd.fvd(real, generated, i3d=FLAGS.i3d, batch_size=FLAGS.batch_size,
                         real_cache_name=FLAGS.real_cache, max_videos=FLAGS.max_videos)
    except (FileNotFoundError, ValueError) as e:
        raise cli.UserError(str(e)) from e
    print(f"FVD: {result.fvd:.4f}")
    print(f"videos: real {result.num_real}, generated {result.num_generated} "
          f"({FLAGS.frames} frames each; skipped: real {len(real.skipped)}, "
          f"generated {len(generated.skipped)})")
    return 0


def console_main() -> None:
    """`kp-fvd`."""
    cli.run(main, takes_arguments=True)


if __name__ == "__main__":
    console_main()
