"""Export the I3D Kinetics-400 network as a TF2 SavedModel usable in place of the TF-Hub module.

    python tools/export_i3d.py --weights=../shared/weights/i3d_kinetics400_rgb_scratch.npz \
        --out=/tmp/i3d_kinetics400

The result is called like `hub.load("https://tfhub.dev/deepmind/i3d-kinetics-400/1")`:
`hub.load(out).signatures["default"](videos)["default"]` → logits [N, 400] for float32 videos
[N, T, 224, 224, 3] in [-1, 1]. Point the FVD code at it with `export KP_TF_I3D=/tmp/i3d_kinetics400`
(or `--i3d=...` on `python -m kp_tf.fvd`). Without network access this is the only way to get
the network; with it, the official handle and this export give the same FVD.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True,
                        help="i3d_kinetics400_rgb_scratch.npz (230 arrays, original variable names)")
    parser.add_argument("--out", required=True, help="SavedModel folder to write")
    parser.add_argument("--check", action="store_true",
                        help="reload the export with tensorflow_hub and run one video through it")
    args = parser.parse_args(argv)

    from kp_tf.evaluation.i3d import export_savedmodel

    start = time.time()
    out = export_savedmodel(args.weights, args.out)
    print(f"wrote {out} ({time.time() - start:.1f} s)")
    if args.check:
        import numpy as np
        import tensorflow as tf
        import tensorflow_hub as hub

        logits = hub.load(out).signatures["default"](tf.zeros([1, 16, 224, 224, 3]))["default"]
        print(f"check: logits {tuple(logits.shape)}, argmax {int(np.argmax(logits.numpy()[0]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
