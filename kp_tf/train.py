"""Trains a model: data, stage 1, pseudo-labels, stage 2, export and sample videos, in order.

    python -m kp_tf.train --dataset=NAME [--src=DIR] [--stage=all|data|keypoints|pseudo_labels|motion|export|samples]

(`kp-train` once installed with pip.) --dataset picks the preset flags/NAME.flags; any setting
below overrides it. A real dataset is converted from --src on first use (docs/datasets.md:
where to get each one and its layout); later runs reuse the conversion without --src.
Re-running continues where it stopped: finished steps are skipped, an interrupted stage resumes.
"""

from absl import flags

from kp_tf import cli, config

__doc__ += "\n" + config.grouped_help() + "\n"
config.define_flags()
flags.DEFINE_enum("stage", "all", ["all", "data", "keypoints", "pseudo_labels", "motion", "export", "samples"],
                  "Which step to run; 'all' runs them in order, skipping finished ones.")
flags.DEFINE_enum("strategy", "auto", ["auto", "default", "mirrored", "multiworker"],
                  "tf.distribute strategy; 'auto' picks from the devices and TF_CONFIG.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from kp_tf import run_folder, stages
    from kp_tf.data import datasets, sources
    from kp_tf.training import loop

    try:
        cfg = config.config_from_flags(FLAGS)
    except ValueError as e:  # an unknown preset, a preset file with a bad line
        raise cli.UserError(str(e)) from e
    try:
        stages.run(cfg, FLAGS.stage, loop.make_strategy(FLAGS.strategy))
    except sources.SourceError as e:
        # No data yet, or a --src laid out otherwise: where to get it, its layout, and the
        # command to run next, after the one-line problem.
        details = list(e.details)
        if details:
            command = cli.command_with("src", e.suggested_src or "DIR", module="kp_tf.train",
                                       script="kp-train")
            details.insert(-1, f"Then run: {command}")
        raise cli.UserError(str(e), details) from e
    except (FileNotFoundError, datasets.ConversionError, loop.NonFiniteLossError,
            run_folder.RunLockedError) as e:
        # Missing data or checkpoints, nothing convertible, a diverged run, a run folder in
        # use: each message says what to do; a ValueError or anything else is a bug and keeps
        # its traceback.
        raise cli.UserError(str(e)) from e


def console_main() -> None:
    """`kp-train`."""
    cli.run(main)


if __name__ == "__main__":
    console_main()
