"""Exports the I3D Kinetics-400 network as a TF2 SavedModel usable in place of the TF-Hub module.

    python tools/export_i3d.py --weights=../shared/weights/i3d_kinetics400_rgb_scratch.npz --out=/tmp/i3d_kinetics400

The result is called like `hub.load("https://tfhub.dev/deepmind/i3d-kinetics-400/1")`:
`hub.load(out).signatures["default"](videos)["default"]` → logits [N, 400] for float32 videos
[N, T, 224, 224, 3] in [-1, 1]. Point the FVD code at it with `export KP_TF_I3D=/tmp/i3d_kinetics400`
(or `--i3d=...` on `python -m kp_tf.fvd`). Without network access this is the only way to get
the network; with it, the official handle and this export give the same FVD.
"""

from __future__ import annotations

import os
import sys

# The checkout this file is in, whatever kp_tf the environment has installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from kp_tf import cli  # noqa: E402

flags.DEFINE_string("weights", None, "i3d_kinetics400_rgb_scratch.npz (230 arrays, original "
                    "variable names).")
flags.DEFINE_string("out", None, "SavedModel folder to write.")
flags.DEFINE_boolean("check", False, "Reload the export with tensorflow_hub and run one video "
                     "through it.")
flags.mark_flags_as_required(["weights", "out"])
FLAGS = flags.FLAGS


def main(argv) -> int:
    del argv
    import time

    from kp_tf.evaluation.i3d import export_savedmodel

    if not os.path.isfile(FLAGS.weights):
        raise cli.UserError(f"{FLAGS.weights}: no such weights file")
    start = time.time()
    out = export_savedmodel(FLAGS.weights, FLAGS.out)
    print(f"wrote {out} ({time.time() - start:.1f} s)")
    if FLAGS.check:
        import numpy as np
        import tensorflow as tf
        import tensorflow_hub as hub

        logits = hub.load(out).signatures["default"](tf.zeros([1, 16, 224, 224, 3]))["default"]
        print(f"check: logits {tuple(logits.shape)}, argmax {int(np.argmax(logits.numpy()[0]))}")
    return 0


def console_main() -> None:
    """`python tools/export_i3d.py --weights=NPZ --out=DIR`."""
    cli.run(main)


if __name__ == "__main__":
    console_main()
