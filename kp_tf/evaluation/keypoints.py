"""Keypoint quality by regression to ground-truth joints (protocols §2).

Detect the K learned keypoints on frames of the train split, fit a linear map with bias
(least squares) from the 2K learned coordinates to the 2J ground-truth ones, apply it on
the test split and report the mean Euclidean joint error in pixels and in % of the image
width, and the fraction of joints within 6 px at 128×128 (scaled to the image size: Shih et
al.'s accuracy). The reference is the error of always predicting the train split's mean pose.

    python -m kp_tf.evaluation.keypoints --logdir=RUN [--data_dir=DIR] [--gif=PATH]

prints the report as JSON (the run's stage-1 detector on its data, or on --data_dir).
"""

from __future__ import annotations

import glob
import json
import os

from kp_tf import cli

if __name__ == "__main__":
    cli.quiet_tensorflow_logs()  # before TensorFlow is imported: its start-up lines too

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kp_tf import conventions  # noqa: E402
from kp_tf.data import tfrecords  # noqa: E402


def detect_split(detector, data_dir: str, split: str, image_size: int, *,
                 max_clips: int | None = None, frame_stride: int = 1, batch: int = 64):
    """→ learned [N, K, 2], joints [N, J, 2], visibility [N, J] (all in [-1, 1]), clip index [N].

    Uses every `frame_stride`-th frame of up to `max_clips` clips that have joints.
    """
    shards = sorted(glob.glob(os.path.join(data_dir, f"{split}-*.tfrecord")))
    if not shards:
        raise FileNotFoundError(f"no {split} shards in {data_dir}")
    frames, joints, vis, clip_index = [], [], [], []
    dataset = tf.data.TFRecordDataset(shards).map(tfrecords.parse_clip)
    for i, clip in enumerate(dataset):
        if max_clips is not None and i >= max_clips:
            break
        if clip["joints"].shape[1] == 0:
            raise ValueError(f"{data_dir}: split {split} has no ground-truth joints")
        picks = np.arange(0, int(clip["num_frames"]), frame_stride)
        frames.append(tfrecords.decode_frames(tf.gather(clip["frames_png"], picks)).numpy())
        joints.append(clip["joints"].numpy()[picks])
        vis.append(clip["visibility"].numpy()[picks])
        clip_index.append(np.full(len(picks), i))
    frames = np.concatenate(frames)
    learned = []
    for start in range(0, len(frames), batch):
        x = tf.cast(frames[start:start + batch], tf.float32)
        if x.shape[1] != image_size:
            x = tf.image.resize(x, [image_size, image_size], antialias=True)
        learned.append(np.asarray(detector(conventions.to_model(x), training=False)))
    return (np.concatenate(learned), np.concatenate(joints), np.concatenate(vis),
            np.concatenate(clip_index))


def fit_regressor(learned: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Least-squares W [2K + 1, 2J] mapping [flattened keypoints, 1] → flattened joints."""
    x = np.concatenate([learned.reshape(len(learned), -1), np.ones((len(learned), 1))], 1)
    w, *_ = np.linalg.lstsq(x.astype(np.float64), joints.reshape(len(joints), -1), rcond=None)
    return w


def apply_regressor(w: np.ndarray, learned: np.ndarray, num_joints: int) -> np.ndarray:
    x = np.concatenate([learned.reshape(len(learned), -1), np.ones((len(learned), 1))], 1)
    return (x @ w).reshape(len(learned), num_joints, 2)


def joint_errors(predicted, joints, visibility, image_size: int, joint_names=()) -> dict:
    """Mean visible-joint error in px and % width, and accuracy within 6 px at 128×128.

    With `joint_names` (one per joint), also each joint's mean error in px.
    """
    px = (np.asarray(predicted) - joints) * (image_size - 1) / 2.0
    dist = np.linalg.norm(px, axis=-1)
    visible = visibility > 0.5
    threshold = 6.0 * image_size / 128.0
    report = {"error_px": float(dist[visible].mean()),
              "error_pct_width": float(100.0 * dist[visible].mean() / image_size),
              "accuracy_within_6px_at_128": float((dist[visible] <= threshold).mean()),
              "threshold_px": threshold}
    if len(joint_names):
        report["per_joint_px"] = {name: round(float(dist[:, j][visible[:, j]].mean()), 3)
                                  for j, name in enumerate(joint_names) if visible[:, j].any()}
    return report


def evaluate_keypoints(detector, data_dir: str, image_size: int, *, max_train_clips=300,
                       max_test_clips=None, frame_stride=4) -> dict:
    """The protocol end to end; returns the model's and the mean-pose baseline's errors."""
    tr_kp, tr_j, _, _ = detect_split(detector, data_dir, "train", image_size,
                                     max_clips=max_train_clips, frame_stride=frame_stride)
    te_kp, te_j, te_v, _ = detect_split(detector, data_dir, "test", image_size,
                                        max_clips=max_test_clips, frame_stride=frame_stride)
    w = fit_regressor(tr_kp, tr_j)
    predicted = apply_regressor(w, te_kp, te_j.shape[1])
    mean_pose = np.broadcast_to(tr_j.mean(0), te_j.shape)
    names = tfrecords.load_manifest(data_dir).get("joint_names", [])
    names = names if len(names) == te_j.shape[1] else ()
    return {"protocol": "protocols.md §2 (linear regression with bias, train→test)",
            "train_frames": int(len(tr_kp)), "test_frames": int(len(te_kp)),
            "frame_stride": frame_stride, "image_size": image_size,
            "model": joint_errors(predicted, te_j, te_v, image_size, names),
            "mean_pose_baseline": joint_errors(mean_pose, te_j, te_v, image_size, names),
            "_regressor": w}


def write_overlay_gif(detector, w, data_dir: str, image_size: int, path: str, clips: int = 4):
    """Test clips side by side: learned keypoints | regressed joints (white) vs truth (black)."""
    from kp_tf import viz

    kp, joints, _, index = detect_split(detector, data_dir, "test", image_size, max_clips=clips)
    shards = sorted(glob.glob(os.path.join(data_dir, "test-*.tfrecord")))
    videos = [tfrecords.decode_frames(c["frames_png"]).numpy()
              for c in tf.data.TFRecordDataset(shards).map(tfrecords.parse_clip).take(clips)]
    frames = np.concatenate(videos)
    predicted = apply_regressor(w, kp, joints.shape[1])
    s = viz.display_scale(*frames.shape[1:3], min_side=192)
    left = viz.draw_keypoints(frames, kp, scale=s)
    j = joints.shape[1]
    # One call, truth first: the regressed joints are drawn over it.
    right = viz.draw_keypoints(frames, np.concatenate([joints, predicted], axis=1), scale=s,
                               colors=np.repeat(np.array([[0], [255]], np.uint8), j, axis=0)
                               .repeat(3, axis=1))
    viz.write_gif(path, viz.side_by_side(left, right), fps=10)
    return path


def _define_flags() -> None:
    """The command's flags; only when run as __main__, so that importing this module beside
    another command's (tests, the evaluation) defines nothing."""
    from absl import flags

    flags.DEFINE_string("logdir", None, "Run folder (holds keypoints/).")
    flags.DEFINE_string("data_dir", "", "TFRecords with joints (default: the run's data_dir).")
    flags.DEFINE_integer("max_train_clips", 300, "Train clips used to fit the regressor.",
                         lower_bound=1)
    flags.DEFINE_integer("frame_stride", 4, "Use every n-th frame.", lower_bound=1)
    flags.DEFINE_string("gif", "", "Write a keypoint-overlay GIF here.")
    flags.mark_flag_as_required("logdir")


def main(argv):
    del argv
    from absl import flags

    from kp_tf import run_folder

    fv = flags.FLAGS
    stage_dir = os.path.join(fv.logdir, "keypoints")
    try:
        cfg = run_folder.read_stage_config(fv.logdir, "keypoints")
        checkpoint = run_folder.latest_checkpoint(stage_dir)
        if checkpoint is None:
            raise FileNotFoundError(f"no stage-1 checkpoint in {stage_dir}")
        detector = run_folder.restore_detector(cfg, checkpoint)
        data_dir = fv.data_dir or cfg.resolved_data_dir
        report = evaluate_keypoints(detector, data_dir, cfg.image_size,
                                    max_train_clips=fv.max_train_clips,
                                    frame_stride=fv.frame_stride)
    except (FileNotFoundError, ValueError) as e:  # no run, no shards, no joints in the data
        raise cli.UserError(str(e)) from e
    w = report.pop("_regressor")
    report["checkpoint"] = checkpoint
    print(json.dumps(report, indent=2))
    if fv.gif:
        print("overlay:", write_overlay_gif(detector, w, data_dir, cfg.image_size, fv.gif))
    return 0


def console_main() -> None:
    """Defines the flags and runs the command (`python -m kp_tf.evaluation.keypoints`)."""
    _define_flags()
    cli.run(main)


if __name__ == "__main__":
    console_main()
