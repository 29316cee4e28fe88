"""How far the warping translator's motion can go: the reference frame warped by the
nearest-keypoint motion alone (no network), driven by the dataset's true joints and by the
keypoints a run's detector finds, scored where things move.

    python tools/warp_ceiling.py --data_dir=data/synthetic [--logdir=runs/synthetic] \
        [--sigmas=0.05,0.1] [--background_logits=-2,-4] [--max_clips=60]

For every test clip, frame 0 is the reference and every `stride`-th later frame a target (as
`kp_tf.evaluation.reconstruction`). The motion is the warp translator's without its network:
K + 1 candidate translations (`SparseMotion`), mixed at full resolution by the softmax of
`NearestKeypointPrior` (each pixel follows the target keypoints within about 2σ of it, the
rest stays), then a bilinear warp of the reference. Rows: copying the reference; the joints
(the data's labels, e.g. synthetic's 14 or Penn Action's 13); with --logdir, its detector's
keypoints and its translator (what it renders with the same keypoints). Moving-region L1 as
`kp_tf.evaluation.metrics.moving_region` defines it, [0, 1] pixels.

A low joints row and a high detected row say the keypoints, not the motion model, hold the
warp back: the detector has not put keypoints where the parts move.
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import flags

from kp_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Converted dataset with joints (kp_tf.make_tfrecords).")
flags.DEFINE_string("logdir", None, "A run folder: also score its detector's keypoints and its "
                    "translator.")
flags.DEFINE_string("split", "test", "Split of the data folder.")
flags.DEFINE_integer("stride", 4, "Every n-th frame after frame 0 is a target.", lower_bound=1)
flags.DEFINE_integer("max_clips", 60, "At most this many clips.", lower_bound=1)
flags.DEFINE_list("sigmas", ["0.05", "0.1"], "σ of the nearest-keypoint prior, normalized units.")
flags.DEFINE_list("background_logits", ["-2", "-4"], "The identity's logit (the translator's: -2).")
flags.DEFINE_string("out", None, "Also write the rows as JSON here.")
flags.mark_flag_as_required("data_dir")


def clips_with_joints(data_dir: str, split: str, max_clips: int):
    """Yields (clip_id, frames [T, S, S, 3] in [-1, 1], joints [T, J, 2] in [-1, 1])."""
    import tensorflow as tf

    from kp_tf import conventions
    from kp_tf.data import tfrecords

    try:
        shards = tfrecords.shard_paths(data_dir, split)
    except (FileNotFoundError, ValueError) as e:
        raise cli.UserError(str(e)) from None
    for i, record in enumerate(tf.data.TFRecordDataset(shards)):
        if i >= max_clips:
            break
        clip = tfrecords.parse_clip(record)
        clip_id = clip["clip_id"].numpy().decode()
        joints = clip["joints"].numpy().astype(np.float32)
        if joints.shape[1] == 0:
            raise cli.UserError(f"{data_dir}: clip {clip_id} has no joints; this measure needs "
                                "a dataset with joint labels (synthetic, penn)")
        frames = tf.cast(tfrecords.decode_frames(clip["frames_png"]), tf.float32).numpy()
        yield clip_id, conventions.to_model(frames), joints


def measure(data_dir, split="test", stride=4, max_clips=60, sigmas=(0.05, 0.1),
            background_logits=(-2.0, -4.0), nets=None) -> dict:
    """{row name: mean moving-region L1} over the clips' (reference, target) pairs."""
    from kp_tf import conventions
    from kp_tf.evaluation import metrics
    from kp_tf.layers import prior_warp

    errors, pairs = {}, 0
    for _, frames, joints in clips_with_joints(data_dir, split, max_clips):
        idx = np.arange(stride, len(frames), stride)
        if not len(idx):
            continue
        reference = np.repeat(frames[:1], len(idx), axis=0)
        target = frames[idx]
        unit_target = conventions.model_to_unit(target)
        region = metrics.moving_region(conventions.model_to_unit(reference), unit_target)

        def add(name, images):
            l1 = metrics.region_metrics(conventions.model_to_unit(np.asarray(images)),
                                        unit_target, region)["l1"]
            errors.setdefault(name, []).append(l1)

        add("copy the reference", reference)
        keypoints = {"joints": (np.repeat(joints[:1], len(idx), 0), joints[idx])}
        if nets is not None:
            out = nets.translate(reference, target)
            add("translator (detected keypoints)", out["output"])
            keypoints["detected keypoints"] = (np.asarray(out["reference_keypoints"]),
                                               np.asarray(out["target_keypoints"]))
        for name, (ref_kp, tgt_kp) in keypoints.items():
            for sigma in sigmas:
                for background in background_logits:
                    add(f"warp by {name}, σ {sigma:g}, background {background:g}",
                        np.asarray(prior_warp(reference, ref_kp, tgt_kp, sigma, background)))
        pairs += len(idx)
    if not pairs:
        raise cli.UserError(f"{data_dir}: no clip of the {split} split has a frame past "
                            f"frame {stride}")
    # Frames without motion have no region (NaN) and are left out, as in the evaluation.
    return {"pairs": pairs, "moving_l1": {k: float(np.nanmean(np.concatenate(v)))
                                          for k, v in errors.items()}}


def main(argv):
    del argv
    nets = None
    if FLAGS.logdir:
        from kp_tf import run_folder

        stage = os.path.join(FLAGS.logdir, "keypoints")
        checkpoint = run_folder.latest_checkpoint(stage)
        if checkpoint is None:
            raise cli.UserError(f"{FLAGS.logdir}: no stage-1 checkpoint under {stage}")
        nets = run_folder.restore_stage1(run_folder.read_config(stage), checkpoint)
    result = measure(FLAGS.data_dir, FLAGS.split, FLAGS.stride, FLAGS.max_clips,
                     [float(s) for s in FLAGS.sigmas],
                     [float(b) for b in FLAGS.background_logits], nets)
    print(f"Moving-region L1 ([0, 1] pixels) over {result['pairs']} reference/target pairs:")
    for name, value in result["moving_l1"].items():
        print(f"  {value:.4f}  {name}")
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    cli.run(main)
