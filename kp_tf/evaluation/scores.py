"""The evaluation's metrics, one function each, and their registry (`METRICS`).

Each metric reads the generated sets of an `Evaluation` (kp_tf.evaluation.report builds it)
and writes its part of the report; `Metric.skip_reason` says when it cannot apply.

  fvd        protocols §1: generated frames 1..T only vs the real frames 1..T of the same
             clips, at the data's resolution; the real statistics (and the static set's, which
             also depend on the data only) are cached under a key naming dataset, split, T, S,
             sampling, N and the shards' checksums. A "real control" row scores N other real
             clips (the training split's first N) against the same test clips: where real
             video sits on this scale with this N.
  action     protocols §3: accuracy of a (2+1)-D conv classifier trained on real training
             clips (kp_tf.evaluation.action; stored with the data and reused) on the real
             frames 1..T (the ceiling) and on each generated set (the clip's action is the
             target), overall and per action; and of the same network reading only x_t − x_0
             ("action_motion"), which a still video cannot fool.
  diversity  protocols §5 (model only): mean pairwise L1 between the S samples of one clip, of
             the keypoint sequences (normalised coordinates) and of the videos ([0, 1] pixels).
  recon      L1 ([0, 1] pixels), PSNR (dB, capped at 100) and SSIM of every generated frame
             against the real frame, over the whole frame and over the moving region (where
             the real frame t differs from frame 0: metrics.moving_region), with a VGG19
             perceptual distance there too; per action for the moving region. The oracle is
             stage 1's reconstruction (protocols §6), static the copy of frame 0.
  keypoints  protocols §2: linear regression of the export's detected keypoints to the ground-
             truth joints (datasets with joints only), kp_tf.evaluation.keypoints.
  classes    class consistency of the motion generator: for each test clip's first keypoints
             and one z (that of its sample 0), a keypoint sequence for every action; distance
             matrices to the real sequences of each class (displacements, absolute, class means,
             phase-free motion profiles), each with its control on real sequences, and each
             class's motion amplitude, generated against real.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Optional

import numpy as np

from kp_tf.evaluation import metrics as M

SETS = ("static", "oracle", "model")
FVD_MIN_FRAMES = 9  # I3D needs at least 9 frames (its temporal pooling)
PERCEPTUAL_FRAME_STRIDE = 2
PERCEPTUAL_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv4", "block4_conv4",
                     "block5_conv4")  # eq. (4)'s, whatever the preset trained with


@dataclasses.dataclass
class Evaluation:
    """Everything the metrics read, and the report they fill."""

    exported: object  # test_clips.Exported
    data_dir: str
    manifest: dict
    dataset: str
    split: str
    frames: int
    samples: int
    seed: int
    sampling: str
    class_names: list
    clips: list  # test_clips.load_test_clips
    labels: np.ndarray  # [N] int32
    detected: list  # per clip [T + 1, K, 2]
    sets: dict  # name → list of uint8 videos [T, S, S, 3] ("real", "static", "oracle", "model")
    model_videos: list  # per clip [samples, T, S, S, 3]
    model_keypoints: list  # per clip [samples, T, K, 2]
    options: dict  # i3d, fvd_cache_dir, fvd_batch_size, classifier_dir, classifier,
    #                keypoint_train_clips, keypoint_frame_stride, max_videos
    report: dict
    timings: dict
    log: Callable = print
    verbose: bool = True

    @property
    def image_size(self) -> int:
        return self.exported.image_size

    @property
    def stamp(self) -> dict:
        steps = self.exported.steps
        return {"frames": self.frames, "seed": self.seed,
                "steps": {"stage1": steps["stage1"], "stage2": steps["stage2"]}}

    def set_labels(self, name: str) -> np.ndarray:
        return np.repeat(self.labels, self.samples) if name == "model" else self.labels

    def progress(self, items: list, label: str):
        """`items`, with a bar (terminal) or a line every 30 s (log) when verbose."""
        from kp_tf.progress import Progress

        bar = Progress(len(items), "video", label=label, seconds=30.0, enabled=self.verbose)
        for i, item in enumerate(items):
            yield item
            bar.update(i + 1)
        bar.close()


def mean_std(values) -> dict:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return {"mean": float(v.mean()), "std": float(v.std())} if v.size else {"mean": None, "std": None}


# --- the metrics ------------------------------------------------------------------------------

def _fvd(ev: Evaluation) -> None:
    from kp_tf.evaluation import frechet_video_distance as fvd_lib
    from kp_tf.evaluation import test_clips

    extractor = fvd_lib.get_extractor(ev.options.get("i3d"))
    n, s, exported = len(ev.clips), ev.image_size, ev.exported
    key = (f"{ev.dataset}-{ev.split}-T{ev.frames}-S{s}-{ev.sampling}"
           + (f"-L{exported.sequence_length}" if ev.sampling == "stage2" else "")
           + f"-N{n}-{test_clips.data_fingerprint(ev.manifest, ev.split)}")
    cache_dir = ev.options.get("fvd_cache_dir")
    cache_dir = cache_dir if cache_dir is not None else fvd_lib.default_cache_dir()
    batch = ev.options.get("fvd_batch_size", 8)
    i3d_videos = 0

    def statistics(label, videos, cache_key=None):
        """I3D statistics of a set; those that depend on the data only are cached."""
        nonlocal i3d_videos
        stream = ev.progress(videos, f"FVD: {label} (I3D)")
        if cache_key is None:
            stats, hit = fvd_lib.compute_statistics(stream, extractor, batch), False
        else:
            hit = fvd_lib.cache_path(cache_key, cache_dir).exists()
            stats = fvd_lib.cached_statistics(cache_key, stream, i3d=extractor,
                                              batch_size=batch, cache_dir=cache_dir)
        i3d_videos += 0 if hit else stats.count
        return stats, hit

    common = {"protocol": "protocols.md §1 (I3D Kinetics-400 logits, legacy bilinear 224², "
                          "generated frames 1..T vs real frames 1..T)",
              "i3d": getattr(extractor, "handle", type(extractor).__name__),
              "real_statistics_cache": key, **ev.stamp}
    real_stats, real_cached = statistics("real frames 1..T", ev.sets["real"], key)
    for name in SETS:
        stats, hit = statistics(name, ev.sets[name], key + "-static" if name == "static" else None)
        ev.report["sets"][name]["fvd"] = {
            "value": fvd_lib.statistics_distance(real_stats, stats), "N": stats.count,
            "N_real": real_stats.count, "real_statistics_from_cache": real_cached,
            **({"statistics_from_cache": hit} if name == "static" else {}), **common}
    control = _real_control_videos(ev)
    if control:
        stats, hit = statistics("other real clips", control, key + "-real-control")
        ev.report["sets"]["real"]["fvd"] = {
            "value": fvd_lib.statistics_distance(real_stats, stats), "N": stats.count,
            "N_real": real_stats.count, "statistics_from_cache": hit,
            "what": "real control: the first N clips of the training split (frames 1..T, the "
                    "same sampling) against the test clips", **common}
    ev.timings["fvd_i3d_videos"] = i3d_videos  # videos run through I3D (not from the cache)


def _real_control_videos(ev: Evaluation) -> list:
    """Frames 1..T of as many training clips as there are test clips (fewer if the training
    split is smaller), sampled as the test clips are; [] for data without a training split."""
    from kp_tf.evaluation import test_clips

    if "train" not in ev.manifest.get("splits", {}) or ev.split == "train":
        return []
    clips = test_clips.load_test_clips(ev.exported, ev.data_dir, "train", ev.frames,
                                       ev.sampling, len(ev.clips))
    return [c["frames"][1:] for c in clips]


def _action(ev: Evaluation) -> None:
    from kp_tf.evaluation import action as action_lib

    s, directory = ev.image_size, ev.options.get("classifier_dir")
    # The protocol's classifier on frames, and one on x_t − x_0 that a still video cannot fool.
    for key, motion_only in (("action", False), ("action_motion", True)):
        clf = action_lib.load_or_train(ev.data_dir, frames=ev.frames, image_size=s,
                                       directory=directory, log=ev.log,
                                       **{**(ev.options.get("classifier") or {}),
                                          "motion_only": motion_only})
        info = {k: clf.info.get(k) for k in ("what", "settings", "num_parameters", "steps",
                                             "train_seconds", "stopped_by_time_budget",
                                             "test_accuracy")}
        info["path"] = action_lib.classifier_paths(
            directory or os.path.join(ev.data_dir, action_lib.CLASSIFIER_DIR), ev.frames, s,
            motion_only)[0]
        ev.report["classifier" if key == "action" else "classifier_motion"] = info
        for name in ("real",) + SETS:
            result = clf.accuracy(np.stack(ev.sets[name]), ev.set_labels(name))
            ev.report["sets"][name][key] = {**result, **ev.stamp}


def _diversity(ev: Evaluation) -> None:
    kp_div = [M.keypoint_diversity(k) for k in ev.model_keypoints]
    vid_div = [M.video_diversity(v) for v in ev.model_videos]
    ev.report["sets"]["model"]["diversity"] = {
        "keypoints": mean_std(kp_div), "video": mean_std(vid_div), "N": len(ev.clips),
        "samples_per_clip": ev.samples, **ev.stamp,
        "units": "mean pairwise L1 between the samples of one clip, averaged over clips; "
                 "keypoints in normalised [-1, 1] coordinates, videos in [0, 1] pixels"}


def _recon(ev: Evaluation) -> None:
    from kp_tf.losses import PerceptualLoss

    real = np.stack(ev.sets["real"])  # [N, T, S, S, 3]
    first = np.stack([c["frames"][0] for c in ev.clips])  # [N, S, S, 3]
    region = M.moving_region(first[:, None], real).reshape(real.shape[:4])  # [N, T, S, S]
    vgg = PerceptualLoss(PERCEPTUAL_LAYERS, weights=ev.options.get("vgg_weights", "imagenet"))
    for name in SETS:
        videos = np.stack(ev.sets[name])
        repeat = ev.samples if name == "model" else 1
        target, where = np.repeat(real, repeat, 0), np.repeat(region, repeat, 0)
        whole = M.image_metrics(videos, target)
        moving = M.region_metrics(videos, target, where)
        # VGG19 costs most of the evaluation's time: the perceptual distance reads every
        # PERCEPTUAL_FRAME_STRIDE-th frame and, of the model, each clip's first sample.
        first = slice(None, None, repeat)
        perceptual = _region_perceptual(vgg, videos[first], target[first], where[first])
        labels = ev.set_labels(name)
        per_action = {}
        for a, action in enumerate(ev.class_names):
            rows = np.repeat(labels == a, ev.frames)
            sparse = np.repeat(labels[first] == a, len(perceptual) // len(labels[first]))
            if rows.any():
                per_action[action] = {"l1": mean_std(moving["l1"][rows])["mean"],
                                      "perceptual": mean_std(perceptual[sparse])["mean"]}
        ev.report["sets"][name]["recon"] = {
            **{k: mean_std(v) for k, v in whole.items()},
            "moving": {**{k: mean_std(moving[k]) for k in ("l1", "psnr", "ssim")},
                       "perceptual": mean_std(perceptual),
                       "pixels_fraction": float(where.mean()), "per_action": per_action},
            "N": int(len(videos)), "N_frames": int(whole["l1"].size), **ev.stamp,
            "units": "L1: mean |Δ| of [0, 1] pixels; PSNR: dB, peak 1, capped at "
                     f"{M.PSNR_CAP_DB:g}; SSIM: on [0, 1] RGB (whole frame: tf.image.ssim; "
                     "moving region: the mean of the SSIM map there)",
            "moving_region": f"pixels where the real frame t differs from frame 0 by more than "
                             f"{M.MOVING_THRESHOLD:g} in a channel ([0, 1] units), dilated by "
                             f"{M.MOVING_DILATION} px; perceptual: eq. (4)'s VGG19 distance "
                             f"(layers {', '.join(PERCEPTUAL_LAYERS)}) between the two frames "
                             f"with everything outside the region set to black, on every "
                             f"{PERCEPTUAL_FRAME_STRIDE}nd frame (and the model's first sample "
                             f"of each clip)"}


def _region_perceptual(vgg, videos, target, region, batch: int = 128) -> np.ndarray:
    """eq. (4)'s VGG19 distance between the frames masked to the region, for every
    PERCEPTUAL_FRAME_STRIDE-th frame of each video: [N · T / stride]."""
    import tensorflow as tf

    from kp_tf import conventions

    pick = slice(PERCEPTUAL_FRAME_STRIDE - 1, None, PERCEPTUAL_FRAME_STRIDE)
    x = videos[:, pick].reshape((-1,) + videos.shape[-3:])
    y = target[:, pick].reshape(x.shape)
    keep = region[:, pick].reshape(x.shape[:3])[..., None]
    distances = tf.function(vgg.distances, reduce_retracing=True)
    out = []
    for start in range(0, len(x), batch):
        sl = slice(start, start + batch)
        masked = [np.where(keep[sl], conventions.to_model(v[sl]), -1.0).astype(np.float32)
                  for v in (x, y)]
        out.append(np.asarray(distances(*masked)))
    return np.concatenate(out) if out else np.zeros([0])


def _keypoints(ev: Evaluation) -> None:
    from kp_tf.evaluation import keypoints as kp_lib

    ev.log("Keypoint regression to the ground-truth joints ...")
    result = kp_lib.evaluate_keypoints(ev.exported.detector, ev.data_dir, ev.image_size,
                                       max_train_clips=ev.options.get("keypoint_train_clips", 300),
                                       max_test_clips=ev.options.get("max_videos"),
                                       frame_stride=ev.options.get("keypoint_frame_stride", 4))
    result.pop("_regressor", None)
    ev.report["keypoints"] = {**result, "N": result["test_frames"], **ev.stamp}


def _classes(ev: Evaluation) -> None:
    n, num, frames = len(ev.clips), len(ev.class_names), ev.frames
    det = np.stack(ev.detected)  # [N, T + 1, K, 2]
    k0 = np.repeat(det[:, 0], num, 0)
    actions = np.tile(np.arange(num), n)
    seeds = np.repeat([ev.seed + i * ev.samples for i in range(n)], num)
    # past L frames rolled out as predict_video does: each chunk from re-detected keypoints
    first = np.repeat(np.stack([c["frames"][0] for c in ev.clips]), num, 0)
    generated = ev.exported.generate(k0, actions, seeds, frames, images=first)  # [N·A, T, K, 2]
    generated = np.concatenate([k0[:, None], generated], 1).reshape(n, num, frames + 1, -1, 2)
    gen_by_class = [generated[:, a] for a in range(num)]
    real_by_class = [det[ev.labels == b] for b in range(num)]
    matrices = {}
    for mode, relative in (("displacement", True), ("absolute", False)):
        d = M.class_distance_matrix(gen_by_class, real_by_class, relative=relative)
        matrices[mode] = {"matrix": d, **M.diagonal_minimum(d)}
    # What the data itself allows: real sequences of class a against those of class b.
    control = M.class_distance_matrix(real_by_class, real_by_class, relative=True,
                                      exclude_self=True)
    matrices["real_control"] = {"matrix": control, **M.diagonal_minimum(control)}
    # Against each class's mean real displacement: free of the columns' own spread.
    for name, rows, exclude in (("class_mean", gen_by_class, False),
                                ("class_mean_real_control", real_by_class, True)):
        d = M.class_distance_matrix(rows, real_by_class, relative=True, exclude_self=exclude,
                                    to_class_mean=True)
        matrices[name] = {"matrix": d, **M.diagonal_minimum(d)}
    # The phase-free comparison: how much each keypoint moves (std over time).
    gen_profiles = [M.motion_profiles(g) for g in gen_by_class]
    real_profiles = [M.motion_profiles(r) if len(r) else r[:, :1] for r in real_by_class]
    for name, rows, exclude in (("motion_profile", gen_profiles, False),
                                ("motion_profile_real_control", real_profiles, True)):
        d = M.class_distance_matrix(rows, real_profiles, relative=False, exclude_self=exclude)
        matrices[name] = {"matrix": d, **M.diagonal_minimum(d)}
    # Damping: each class's generated motion against the real motion of its clips, in pixels
    # of the model's resolution (coordinates span 2).
    s = ev.image_size
    gen_amp = [M.motion_amplitude(g) * s / 2 for g in gen_by_class]
    real_amp = [M.motion_amplitude(r) * s / 2 for r in real_by_class]
    amplitude = {"generated_px": gen_amp, "real_px": real_amp,
                 "ratio": [g / r if r > 0 else float("nan") for g, r in zip(gen_amp, real_amp)],
                 "units": "mean Euclidean |k_t − k_0| over frames 1..T and keypoints, pixels"}
    ev.report["classes"] = {
        "class_names": ev.class_names, **matrices, "amplitude": amplitude, "N": n,
        "N_real_per_class": [int(len(r)) for r in real_by_class], **ev.stamp,
        "rows": "requested action (generated from each test clip's first keypoints, z of "
                "its sample 0)", "columns": "real class (keypoints detected on test clips)",
        "units": "mean |Δ| of normalised coordinates over frames 1..T; 'displacement' "
                 "compares k_t − k_0, 'absolute' the positions"}


# --- the registry -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Metric:
    """A metric: `run(ev)` fills its part of the report; `needs_videos`: it reads the generated
    sets; `skip_reason(ev_args)` → why it cannot apply, or None."""

    run: Callable
    needs_videos: bool
    skip_reason: Callable = lambda args: None


def _needs_classes(args) -> Optional[str]:
    return None if args["has_classes"] else "the model or the dataset has no action classes"


METRICS = {
    "fvd": Metric(_fvd, True, lambda a: (f"I3D needs at least {FVD_MIN_FRAMES} frames "
                                         f"(--frames={a['frames']})")
                  if a["frames"] < FVD_MIN_FRAMES else None),
    "action": Metric(_action, True, _needs_classes),
    "diversity": Metric(_diversity, True,
                        lambda a: "needs --samples >= 2" if a["samples"] < 2 else None),
    "recon": Metric(_recon, True),
    "keypoints": Metric(_keypoints, False,
                        lambda a: None if a["has_joints"] else f"{a['data_dir']} has no "
                                                                 f"ground-truth joints"),
    "classes": Metric(_classes, False, _needs_classes),
}


def run(name: str, ev: Evaluation) -> None:
    """Runs one metric and records its time as `<name>_s`."""
    started = time.perf_counter()
    METRICS[name].run(ev)
    ev.timings[f"{name}_s"] = time.perf_counter() - started
