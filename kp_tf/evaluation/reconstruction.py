"""Stage-1 reconstruction on held-out frames (protocols §6): the translator against copying.

    python -m kp_tf.evaluation.reconstruction --logdir=runs/weizmann [--split=test] [--stride=4]

For every clip of the split, frame 0 is the reference and every `stride`-th later frame a
target. The translator renders each target from the reference and the keypoints detected on
both (eq. (3)); the baseline is the reference itself, which a static camera makes a strong
one. Reports L1 ([0, 1] pixels), PSNR (dB), SSIM and the training loss's perceptual term for
both, as JSON (stdout and `keypoints/reconstruction_<split>.json`), and writes an image grid
(reference | target | translation | mask | keypoints on the target) to TensorBoard under
`keypoints/<split>`.
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
from kp_tf.evaluation import metrics  # noqa: E402


def held_out_pairs(data_dir: str, split: str, image_size: int, stride: int,
                   max_clips: int | None = None):
    """Yields (clip_id, reference [S, S, 3], targets [T, S, S, 3]) in [-1, 1] per clip."""
    shards = sorted(glob.glob(os.path.join(data_dir, f"{split}-*.tfrecord")))
    if not shards:
        raise FileNotFoundError(f"no {split}-*.tfrecord shards in {data_dir}")
    for i, record in enumerate(tf.data.TFRecordDataset(shards)):
        if max_clips is not None and i >= max_clips:
            break
        clip = tfrecords.parse_clip(record)
        frames = tf.cast(tfrecords.decode_frames(clip["frames_png"]), tf.float32)
        if frames.shape[1] != image_size:
            frames = tf.image.resize(frames, [image_size, image_size], antialias=True)
        frames = conventions.to_model(frames.numpy())
        if len(frames) > 1:
            yield clip["clip_id"].numpy().decode(), frames[0], frames[stride::stride]


def evaluate_reconstruction(nets, perceptual, data_dir: str, split: str, image_size: int, *,
                            stride: int = 4, batch: int = 32, max_clips=None):
    """→ (report dict, grid rows for the first clip)."""
    translator_means, copy_means = metrics.RunningMeans(), metrics.RunningMeans()
    translate = tf.function(lambda r, t: nets.translate(r, t, training=False),
                            reduce_retracing=True)
    grid, clips = None, 0
    for _, reference, targets in held_out_pairs(data_dir, split, image_size, stride,
                                                      max_clips):
        clips += 1
        for start in range(0, len(targets), batch):
            target = targets[start:start + batch]
            ref = np.repeat(reference[None], len(target), axis=0)
            out = translate(tf.constant(ref), tf.constant(target))
            output = np.asarray(out["output"])
            region = metrics.moving_region(conventions.model_to_unit(ref),
                                           conventions.model_to_unit(target))
            for means, image in ((translator_means, output), (copy_means, ref)):
                means.update(metrics.image_metrics(conventions.model_to_unit(image),
                                                   conventions.model_to_unit(target)))
                means.update({"perceptual": np.asarray(perceptual.distances(image, target))})
                moving = metrics.region_metrics(conventions.model_to_unit(image),
                                                conventions.model_to_unit(target), region)
                keep = region[..., None]
                masked = [np.where(keep, x, -1.0) for x in (image, target)]
                means.update({"moving_l1": moving["l1"], "moving_psnr": moving["psnr"],
                              "moving_ssim": moving["ssim"],
                              "moving_perceptual": np.asarray(perceptual.distances(*masked))})
            if grid is None:
                grid = {k: np.asarray(v[:8]) for k, v in out.items()} | {
                    "reference": ref[:8], "target": target[:8]}
    if not clips:
        raise ValueError(f"no clip of {split} in {data_dir} has two frames or more")
    report = {"protocol": "protocols.md §6: reference frame 0, targets every "
                          f"{stride}th frame; pixels in [0, 1]; moving_*: within the pixels "
                          f"where the target differs from the reference by more than "
                          f"{metrics.MOVING_THRESHOLD:g} in a channel, dilated by "
                          f"{metrics.MOVING_DILATION} px (frames without motion are left out)",
              "split": split, "clips": clips, "translator": translator_means.result(),
              "copy_reference": copy_means.result()}
    return report, grid


def write_grid(logdir: str, grid: dict, step: int, tag: str) -> None:
    from kp_tf import viz

    image = viz.display_grid(
        [grid["reference"], grid["target"], np.clip(grid["output"], -1, 1),
         np.repeat(grid["mask"] * 2 - 1, 3, axis=-1)],
        [(grid["target"], grid["target_keypoints"])])
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default(step=step):
        tf.summary.image(tag, image[None])
    writer.flush()


def _define_flags() -> None:
    """The command's flags; only when run as __main__, so that importing this module beside
    another command's (tests, the evaluation) defines nothing."""
    from absl import flags

    flags.DEFINE_string("logdir", None, "Run folder (holds keypoints/).")
    flags.DEFINE_string("data_dir", "", "TFRecords (default: the run's data_dir).")
    flags.DEFINE_string("split", "test", "Held-out split.")
    flags.DEFINE_integer("stride", 4, "Every n-th frame after frame 0 is a target.",
                         lower_bound=1)
    flags.DEFINE_integer("max_clips", None, "At most this many clips.", lower_bound=1)
    flags.mark_flag_as_required("logdir")


def main(argv):
    del argv
    from absl import flags

    from kp_tf import losses
    from kp_tf import run_folder

    fv = flags.FLAGS
    stage_dir = os.path.join(fv.logdir, "keypoints")
    try:
        cfg = run_folder.read_stage_config(fv.logdir, "keypoints")
        checkpoint = run_folder.latest_checkpoint(stage_dir)
        if checkpoint is None:
            raise FileNotFoundError(f"no stage-1 checkpoint in {stage_dir}")
        nets = run_folder.restore_stage1(cfg, checkpoint)
        perceptual = losses.PerceptualLoss(cfg.perceptual_layer_list, weights=cfg.vgg_weights)
        data_dir = fv.data_dir or cfg.resolved_data_dir
        report, grid = evaluate_reconstruction(nets, perceptual, data_dir, fv.split,
                                               cfg.image_size, stride=fv.stride,
                                               max_clips=fv.max_clips)
    except (FileNotFoundError, ValueError) as e:  # no run, no shards, no clip long enough
        raise cli.UserError(str(e)) from e
    step = int(checkpoint.rsplit("-", 1)[-1])
    report.update(checkpoint=checkpoint, step=step)
    write_grid(os.path.join(stage_dir, fv.split), grid, step,
               "held_out/reference|target|translation|mask|kp(target)")
    text = json.dumps(report, indent=2)
    tmp = os.path.join(stage_dir, f"reconstruction_{fv.split}.json.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, tmp[:-4])
    print(text)
    return 0


def console_main() -> None:
    """Defines the flags and runs the command (`python -m kp_tf.evaluation.reconstruction`)."""
    _define_flags()
    cli.run(main)


if __name__ == "__main__":
    console_main()
