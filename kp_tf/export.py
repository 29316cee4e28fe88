"""Writes a trained run's SavedModel.

    python -m kp_tf.export --logdir=RUN [--out=DIR]

(`kp-export` once installed with pip.) The export holds the newest checkpoints of both
stages (kp_tf.serving); DIR defaults to RUN/export. `python -m kp_tf.train --stage=export`
does the same for a preset's run.
"""

from absl import flags

from kp_tf import cli

flags.DEFINE_string("logdir", None, "Run folder made by kp_tf.train (holds keypoints/ and motion/).")
flags.DEFINE_string("out", "", "Export folder (default LOGDIR/export).")
flags.mark_flag_as_required("logdir")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import os

    from kp_tf import run_folder, serving

    stage_dir = os.path.join(FLAGS.logdir, "keypoints")
    if not os.path.exists(os.path.join(stage_dir, run_folder.CONFIG)):
        raise cli.UserError(f"{FLAGS.logdir}: no trained run here (no keypoints/config.json)")
    cfg = run_folder.read_config(stage_dir).replace(logdir=FLAGS.logdir)
    try:
        serving.export_run(cfg, FLAGS.out or os.path.join(FLAGS.logdir, "export"), force=True)
    except FileNotFoundError as e:
        raise cli.UserError(str(e)) from e


def console_main() -> None:
    """`kp-export`."""
    cli.run(main)


if __name__ == "__main__":
    console_main()
