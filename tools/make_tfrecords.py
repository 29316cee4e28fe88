"""Converts a raw video dataset (or generates the synthetic one) into TFRecord shards.

  python tools/make_tfrecords.py --dataset=weizmann --src=../shared/data/weizmann64 --out=data/weizmann
  python tools/make_tfrecords.py --dataset=synthetic            # 1000 train / 100 test clips
  python tools/make_tfrecords.py --dataset=folder --src=DIR --resolution=64

Writes `{split}-{i:05d}-of-{n:05d}.tfrecord` and `manifest.json` into --out (default
data/<dataset>), prints the skipped files, a summary, the manifest and the throughput. Exits 0
when at least one clip was converted, 1 with a message when nothing was. The work is done by
`kp_tf.data.datasets.convert`.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kp_tf.data import datasets  # noqa: E402  (after the TF log level is set)


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the tool's flags on `fv` (tests pass a fresh FlagValues to run it in-process)."""
    flags.DEFINE_enum("dataset", None, list(datasets.DATASETS), "Dataset to convert.", flag_values=fv)
    flags.DEFINE_string("src", "", "Root folder of the raw dataset (not needed for synthetic).",
                        flag_values=fv)
    flags.DEFINE_string("out", "", "Output folder (default data/<dataset>).", flag_values=fv)
    flags.DEFINE_integer("resolution", None, "Square frame size (default: the dataset's).",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("clips_per_shard", 64, "Clips per TFRecord shard.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_list("splits", list(datasets.SPLITS), "Splits to convert.", flag_values=fv)
    flags.DEFINE_integer("num_train", 1000, "Synthetic: training clips.", lower_bound=0,
                         flag_values=fv)
    flags.DEFINE_integer("num_test", 100, "Synthetic: test clips.", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("num_frames", 48, "Synthetic: frames per clip.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Synthetic: dataset seed.", flag_values=fv)
    flags.DEFINE_boolean("print_manifest", True, "Print the manifest JSON after the summary.",
                         flag_values=fv)
    flags.mark_flag_as_required("dataset", flag_values=fv)


def main(argv, fv: flags.FlagValues = flags.FLAGS) -> int:
    """Runs the conversion for the parsed flags in `fv`; returns the exit status."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    out = fv.out or os.path.join("data", fv.dataset)
    start = time.perf_counter()
    try:
        manifest = datasets.convert(
            fv.dataset, fv.src or None, out, resolution=fv.resolution,
            clips_per_shard=fv.clips_per_shard, splits=fv.splits,
            num_train=fv.num_train, num_test=fv.num_test, num_frames=fv.num_frames,
            seed=fv.seed)
    except (datasets.ConversionError, FileNotFoundError, ValueError) as e:
        print(f"make_tfrecords: error: {e}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    # Only the splits converted now (the manifest may keep others from an earlier run).
    done = [manifest["splits"][s] for s in manifest["options"]["splits"]]
    clips = sum(s["clips"] for s in done)
    frames = sum(s["frames"] for s in done)
    print()
    print(datasets.format_summary(manifest, out))
    if fv.print_manifest:
        print(json.dumps(manifest, indent=2, ensure_ascii=False))
    print(f"elapsed {elapsed:.1f} s: "
          f"{clips / max(elapsed, 1e-9):.1f} clips/s, {frames / max(elapsed, 1e-9):.0f} frames/s; "
          f"wrote {os.path.join(out, 'manifest.json')}")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
