"""The pictures in the README and docs/, made from exports and test clips.

    python tools/figures.py overview --model=runs/synthetic/export --data_dir=data/synthetic \
        --out=docs/overview.png
    python tools/figures.py rendering --models=A/export,B/export --labels=paper,warp \
        --data_dir=data/synthetic --actions=squat,kick --out=docs/rendering.png

`overview`: one test clip's first frame, its keypoints, and the video predicted for every
action (one row per action). `rendering`: for a few test clips, the real frames and, per
export, the keypoint oracle (each frame translated from the first one with the keypoints the
export detects on the real frame): how each translator renders the parts that move.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
from absl import flags

from kp_tf import cli, viz

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "overview: the export to predict with.")
flags.DEFINE_list("models", [], "rendering: the exports to compare, one row each.")
flags.DEFINE_list("labels", [], "rendering: a label per export (default: the folder names).")
flags.DEFINE_string("data_dir", None, "The converted dataset whose test clips are used.")
flags.DEFINE_integer("clip", 0, "overview: the test clip whose first frame is predicted from.")
flags.DEFINE_list("actions", [], "rendering: the first test clip of each of these actions.")
flags.DEFINE_integer("frames", 16, "Predicted frames; every `every`-th is shown.")
flags.DEFINE_integer("every", 2, "Show every n-th frame.")
flags.DEFINE_integer("seed", 0, "The motion sampler's seed (overview).")
flags.DEFINE_integer("scale", 2, "Integer enlargement of every image.")
flags.DEFINE_string("out", None, "The PNG to write.")
flags.DEFINE_integer("colors", 0, "Write a palette PNG of this many colours (2–256): a file a "
                     "fifth the size, for a docs/ page; 0: full colour.")
flags.mark_flags_as_required(["data_dir", "out"])


def _label(image: np.ndarray, text: str) -> np.ndarray:
    """`image` with a white band on the left carrying `text` (one row's caption)."""
    band = np.full((image.shape[0], 96, 3), 255, np.uint8)
    cv2.putText(band, text, (4, image.shape[0] // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, image], axis=1)


def _strip(frames: np.ndarray, scale: int) -> np.ndarray:
    """uint8 [N, H, W, 3] → one row [s·H + 4, N·(s·W + 2) + 2, 3] with white gutters."""
    return viz.image_grid([viz.enlarge(frames, scale)])


def _clips(exported, frames: int, count=None, skip: int = 0) -> list:
    from kp_tf.evaluation import test_clips

    return test_clips.load_test_clips(exported, FLAGS.data_dir, "test", frames, "stage2",
                                      max_videos=count, skip=skip)


def overview(exported, index: int) -> np.ndarray:
    clip = _clips(exported, FLAGS.frames, 1, skip=index)[0]
    first = clip["frames"][0]
    k0 = exported.detect(first[None])[0]
    marked = viz.draw_keypoints(first, k0, scale=FLAGS.scale)
    rows = []
    for action, name in enumerate(exported.actions):
        video, _ = exported.predict(first, action, FLAGS.seed, FLAGS.frames)
        shown = np.concatenate([first[None], video[FLAGS.every - 1::FLAGS.every]])
        row = _strip(shown, FLAGS.scale)
        head = viz.image_grid([marked[None]])
        rows.append(_label(np.concatenate([head[:, :-2], row], axis=1), name))
    return np.concatenate(rows, axis=0)


def rendering(exports, labels, actions) -> np.ndarray:
    clips, rows = _clips(exports[0], FLAGS.frames), []
    for action in actions:
        if action not in exports[0].actions:
            raise cli.UserError(f"{action!r} is not an action of {exports[0].model_dir} "
                                f"({', '.join(exports[0].actions)})")
        label = exports[0].actions.index(action)
        clip = next((c for c in clips if c["label"] == label), None)
        if clip is None:
            raise cli.UserError(f"{FLAGS.data_dir}: no test clip of {action!r}")
        real = clip["frames"]
        shown = slice(0, None, FLAGS.every)
        rows.append(_label(_strip(real[shown], FLAGS.scale), f"real {action}"))
        for exported, label in zip(exports, labels):
            keypoints = exported.detect(real)
            video = exported.translate(real[0], keypoints[0], keypoints)
            rows.append(_label(_strip(video[shown], FLAGS.scale), label))
    return np.concatenate(rows, axis=0)


def main(argv):
    from kp_tf.evaluation import test_clips  # TensorFlow after cli.run has quietened its logs

    if FLAGS.colors and not 2 <= FLAGS.colors <= 256:
        raise cli.UserError(f"--colors={FLAGS.colors}: a palette has 2 to 256 colours")

    if argv[1:] == ["overview"]:
        if not FLAGS.model:
            raise cli.UserError("overview needs --model=EXPORT")
        image = overview(test_clips.load_export(FLAGS.model), FLAGS.clip)
    elif argv[1:] == ["rendering"]:
        if not FLAGS.models:
            raise cli.UserError("rendering needs --models=EXPORT[,EXPORT…]")
        labels = FLAGS.labels or [os.path.basename(os.path.dirname(m.rstrip("/")))
                                  for m in FLAGS.models]
        exports = [test_clips.load_export(m) for m in FLAGS.models]
        image = rendering(exports, labels, FLAGS.actions)
    else:
        raise cli.UserError("say which figure: overview or rendering")
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    if FLAGS.colors:
        from PIL import Image
        palette = Image.fromarray(image).quantize(FLAGS.colors, method=Image.Quantize.FASTOCTREE,
                                                  dither=Image.Dither.NONE)
        try:
            palette.save(FLAGS.out, optimize=True)
        except OSError as e:
            raise cli.UserError(f"{FLAGS.out}: could not write the PNG ({e})") from None
    elif not cv2.imwrite(FLAGS.out, cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                         [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise cli.UserError(f"{FLAGS.out}: could not write the PNG")
    print(f"wrote {FLAGS.out} ({image.shape[1]}×{image.shape[0]}, "
          f"{os.path.getsize(FLAGS.out) / 1e3:.0f} kB)")


if __name__ == "__main__":
    cli.run(main, takes_arguments=True)
