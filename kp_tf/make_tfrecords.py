"""Converts a raw video dataset (or generates the synthetic one) into TFRecord shards.

    python -m kp_tf.make_tfrecords --dataset=weizmann --src=../shared/data/weizmann64 --out=data/weizmann
    python -m kp_tf.make_tfrecords --dataset=synthetic            # 1000 train / 100 test clips
    python -m kp_tf.make_tfrecords --dataset=folder --src=DIR --resolution=64

(`kp-make-tfrecords` once installed with pip; `python tools/make_tfrecords.py` in a checkout.)
Writes `{split}-{i:05d}-of-{n:05d}.tfrecord` and `manifest.json` into --out (default
data/<dataset>), shows the progress, prints the skipped files, a summary (with the frames
added by reading GIFs by their frame delays), the manifest and the throughput. Exits 0 when at
least one clip was converted, 2 with one `error:` line when nothing was. The work is done by
`kp_tf.data.datasets.convert`.
"""

from __future__ import annotations

from absl import flags

from kp_tf import cli
from kp_tf.data import datasets

flags.DEFINE_enum("dataset", None, list(datasets.DATASETS), "Dataset to convert.")
flags.DEFINE_string("src", "", "Root folder of the raw dataset (not needed for synthetic).")
flags.DEFINE_string("out", "", "Output folder (default data/<dataset>).")
flags.DEFINE_integer("resolution", None, "Square frame size (default: the dataset's).",
                     lower_bound=1)
flags.DEFINE_integer("clips_per_shard", 64, "Clips per TFRecord shard.", lower_bound=1)
flags.DEFINE_list("splits", list(datasets.SPLITS), "Splits to convert.")
flags.DEFINE_integer("num_train", 1000, "Synthetic: training clips.", lower_bound=0)
flags.DEFINE_integer("num_test", 100, "Synthetic: test clips.", lower_bound=0)
flags.DEFINE_integer("num_frames", 48, "Synthetic: frames per clip.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Synthetic: dataset seed.")
flags.DEFINE_boolean("print_manifest", True, "Print the manifest JSON after the summary.")
flags.mark_flag_as_required("dataset")
FLAGS = flags.FLAGS


def main(argv) -> int:
    """Runs the conversion the flags ask for; prints what it did."""
    del argv
    import json
    import os
    import time

    out = FLAGS.out or os.path.join("data", FLAGS.dataset)
    start = time.perf_counter()
    try:
        manifest = datasets.convert(
            FLAGS.dataset, FLAGS.src or None, out, resolution=FLAGS.resolution,
            clips_per_shard=FLAGS.clips_per_shard, splits=FLAGS.splits,
            num_train=FLAGS.num_train, num_test=FLAGS.num_test, num_frames=FLAGS.num_frames,
            seed=FLAGS.seed)
    except (datasets.ConversionError, FileNotFoundError, ValueError) as e:
        raise cli.UserError(str(e)) from e
    elapsed = time.perf_counter() - start
    # Only the splits converted now (the manifest may keep others from an earlier run).
    done = [manifest["splits"][s] for s in manifest["options"]["splits"]]
    clips = sum(s["clips"] for s in done)
    frames = sum(s["frames"] for s in done)
    print()
    print(datasets.format_summary(manifest, out))
    if FLAGS.print_manifest:
        print(json.dumps(manifest, indent=2, ensure_ascii=False))
    print(f"elapsed {elapsed:.1f} s: "
          f"{clips / max(elapsed, 1e-9):.1f} clips/s, {frames / max(elapsed, 1e-9):.0f} frames/s; "
          f"wrote {os.path.join(out, 'manifest.json')}")
    return 0


def console_main() -> None:
    """`kp-make-tfrecords` (and tools/make_tfrecords.py)."""
    cli.run(main)


if __name__ == "__main__":
    console_main()
