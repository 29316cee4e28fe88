"""The protocols of the model's further uses (docs/uses.md), one function each.

  transfer       motion transfer as First Order Motion Model's reconstruction benchmark:
                 every test clip drives its own frame 0 (kp_tf.animation, the path of
                 `python -m kp_tf.animate`); L1, PSNR and SSIM of every driven frame against
                 the real one, AKD (the detector's keypoints on generated against real frames)
                 and, on data with joints, the error of the joints regressed from them; beside
                 the static video (frame 0 repeated). Cross-identity GIFs on request.
  interpolation  frames 0 and N + 1 of each test clip given, the N between them made by
                 keypoint interpolation (`python -m kp_tf.interpolate`) and by two baselines,
                 a pixel cross-fade and frame 0 repeated; L1, PSNR, SSIM on the N frames, FVD.
  long_range     `predict --frames=128`: drift of the generated keypoints per 16-frame window
                 (spread, keypoints outside the image, motion amplitude per class), FVD and the
                 motion-only classifier's accuracy on frames 1–16 and 97–112, with and without
                 re-detection between the generator's chunks; the static video beside them.

`python -m kp_tf.evaluation.uses --model=EXPORT --protocols=transfer,interpolation,long_range
--out=DIR` writes DIR/uses.json and DIR/uses.md.

Pixels: metrics on [0, 1] images (kp_tf.evaluation.metrics). Keypoint distances are in pixels
of the model's resolution S: normalised coordinates times (S − 1) / 2, the linspace
convention of kp_tf.conventions.
"""

from __future__ import annotations

import json
import os
import time
from typing import Optional, Sequence

import numpy as np

from kp_tf import conventions
from kp_tf.evaluation import metrics as M
from kp_tf.evaluation.scores import FVD_MIN_FRAMES, mean_std
from kp_tf.evaluation.test_clips import EvaluationError

PROTOCOLS = ("transfer", "interpolation", "long_range")
RESTARTS = ("none", "redetect")
# Interpolation methods, PATH_RENDER (kp_tf.animation): keypoints on the straight line at
# constant speed or on a smoothstep schedule (slow at both ends), or the motion generator's
# nearest path; rendered from the first image, from both ends blended, or blended with the
# ends' reconstruction errors added back (residual); and the two baselines.
INTERPOLATIONS = ("linear_first", "linear_blend", "linear_residual", "smoothstep_first",
                  "motion_blend", "motion_residual", "crossfade", "repeat_first")


def _px(exported) -> float:
    """Pixels per unit of normalised coordinates at the export's resolution."""
    return (exported.image_size - 1) / 2.0


def keypoint_spread(keypoints) -> np.ndarray:
    """Root-mean-square distance of the keypoints from their centroid: [..., K, 2] → [...]."""
    k = np.asarray(keypoints, np.float64)
    centred = k - k.mean(axis=-2, keepdims=True)
    return np.sqrt(np.square(centred).sum(-1).mean(-1))


def _real_key(exported, dataset: str, manifest: dict, frames: int, n: int,
              sampling: str) -> str:
    """The cache key of the real test frames 1..T (T = frames), `kp_tf.evaluate`'s, so that
    the two share the statistics."""
    from kp_tf.evaluation import test_clips

    return (f"{dataset}-test-T{frames}-S{exported.image_size}-{sampling}"
            + (f"-L{exported.sequence_length}" if sampling == "stage2" else "")
            + f"-N{n}-{test_clips.data_fingerprint(manifest, 'test')}")


def _fvd_statistics(i3d, cache_dir, batch: int):
    """statistics(videos, cache_key=None) → I3D feature statistics (cached under the key)."""
    from kp_tf.evaluation import frechet_video_distance as fvd_lib

    extractor = fvd_lib.get_extractor(i3d)
    cache_dir = cache_dir if cache_dir is not None else fvd_lib.default_cache_dir()

    def statistics(videos, cache_key=None):
        if cache_key is None:
            return fvd_lib.compute_statistics(videos, extractor, batch)
        return fvd_lib.cached_statistics(cache_key, videos, i3d=extractor, batch_size=batch,
                                         cache_dir=cache_dir)
    return statistics


def whole_test_clips(exported, data_dir: str, max_videos: Optional[int] = None):
    """Every frame of the test clips, fitted to the model: dicts of frames uint8
    [n, S, S, 3], label, clip_id and, when the data has them at the model's resolution,
    joints [n, J, 2] in [-1, 1] and visibility [n, J]."""
    import tensorflow as tf

    from kp_tf.data import tfrecords
    from kp_tf.inference import fit_frames

    s, clips = exported.image_size, []
    for serialized in tf.data.TFRecordDataset(tfrecords.shard_paths(data_dir, "test")):
        if max_videos is not None and len(clips) >= max_videos:
            break
        clip = tfrecords.parse_clip(serialized)
        frames = tfrecords.decode_frames(clip["frames_png"]).numpy()
        entry = {"frames": fit_frames(frames, s), "label": int(clip["label"]),
                 "clip_id": clip["clip_id"].numpy().decode()}
        if clip["joints"].shape[1] and frames.shape[1:3] == (s, s):
            entry["joints"] = clip["joints"].numpy()
            entry["visibility"] = clip["visibility"].numpy()
        clips.append(entry)
    if not clips:
        raise EvaluationError(f"{data_dir}: split 'test' has no clips")
    return clips


def _frame_scores(generated, real, generated_kps, real_kps, px) -> dict:
    """Per-frame L1, PSNR, SSIM ([0, 1] pixels) and AKD (mean keypoint distance, pixels)."""
    scores = M.image_metrics(generated, real)
    scores["akd_px"] = np.linalg.norm(generated_kps - real_kps, axis=-1).mean(-1) * px
    return scores


def _joint_regressor(exported, data_dir: str, train_clips: int):
    """kp_tf.evaluation.keypoints' linear map from detected keypoints to joints, fitted on
    the training split."""
    from kp_tf.evaluation import keypoints as kp_lib

    learned, joints, _, _ = kp_lib.detect_split(exported.detector, data_dir, "train",
                                                exported.image_size, max_clips=train_clips,
                                                frame_stride=4)
    return kp_lib.fit_regressor(learned, joints)


def transfer(model_dir, data_dir: Optional[str] = None, *, max_videos: Optional[int] = None,
             joint_train_clips: int = 300, cross_identity: int = 0, out: Optional[str] = None,
             log=print) -> dict:
    """The motion-transfer protocol (module docstring) → its report.

    Every test clip, whole, drives its own frame 0 through kp_tf.animation.animate (relative
    with adapt_scale, the export's `animate`; with the source the driving video's first frame
    the scale is 1 and relative equals absolute). Frames 1..n − 1 are scored; the static set
    repeats frame 0. With `cross_identity` > 0 and `out`, that many GIFs (source | driving |
    result) of clip i's frame 0 driven by a clip of another action are written to `out`.

    Returns {"N", "N_frames", "sets": {"transfer" | "static" | "real": {metric: {mean, std}}},
    "gifs": [...]} (the "real" set: the detector's joints error on the real frames).
    """
    from kp_tf import animation
    from kp_tf.evaluation import keypoints as kp_lib
    from kp_tf.evaluation import report as report_lib
    from kp_tf.evaluation import test_clips

    started = time.perf_counter()
    exported = test_clips.load_export(model_dir)
    _, data_dir, manifest = report_lib.resolve_data_dir(exported, None, data_dir)
    clips = whole_test_clips(exported, data_dir, max_videos)
    px, predictor = _px(exported), exported.predictor
    with_joints = all("joints" in c for c in clips)
    w = _joint_regressor(exported, data_dir, joint_train_clips) if with_joints else None
    log(f"Transfer: {len(clips)} test clips drive their own first frame ...")
    sets = {"transfer": M.RunningMeans(), "static": M.RunningMeans(), "real": M.RunningMeans()}
    for clip in clips:
        frames = clip["frames"]
        made = animation.animate(predictor, conventions.to_model(frames[0]), frames)
        generated = conventions.to_uint8(made["video"][1:])
        real_kps = made["driving_keypoints"]
        static = np.repeat(frames[:1], len(frames) - 1, 0)
        found = {"transfer": (generated, exported.detect(generated)),
                 "static": (static, np.repeat(real_kps[:1], len(static), 0))}
        for name, (video, kps) in found.items():
            sets[name].update(_frame_scores(video, frames[1:], kps, real_kps[1:], px))
        if w is not None:
            for name, kps in (("transfer", found["transfer"][1]), ("static", found["static"][1]),
                              ("real", real_kps[1:])):
                predicted = kp_lib.apply_regressor(w, kps, clip["joints"].shape[1])
                visible = clip["visibility"][1:] > 0.5
                error = np.linalg.norm(predicted - clip["joints"][1:], axis=-1) * px
                sets[name].update({"joint_error_px": np.where(visible, error, np.nan).reshape(-1)})
    gifs = _cross_identity_gifs(predictor, clips, cross_identity, out) if out else []
    result = {"protocol": "transfer", "N": len(clips),
              "N_frames": int(sum(len(c["frames"]) - 1 for c in clips)),
              "checkpoints": exported.steps, "mode": "relative, adapt_scale",
              "sets": {k: v.result() for k, v in sets.items()},
              "joint_regressor": {"train_clips": joint_train_clips, "frame_stride": 4}
              if with_joints else None, "gifs": gifs,
              "units": "L1 of [0, 1] pixels; PSNR dB; SSIM; AKD and joint error in pixels at "
                       f"{exported.image_size}×{exported.image_size}"}
    result["timing"] = {"total_s": round(time.perf_counter() - started, 1)}
    return result


def _cross_identity_gifs(predictor, clips, count: int, out: str) -> list:
    """GIFs of clip i's frame 0 driven by the next clip of another action."""
    from kp_tf import animation, viz

    written = []
    for i, clip in enumerate(clips):
        if len(written) >= count:
            break
        others = [j for j in range(len(clips)) if clips[j]["label"] != clip["label"]]
        if not others:
            break
        driver = clips[min(others, key=lambda j: (j - i) % len(clips))]
        image = conventions.to_model(clip["frames"][0])
        made = animation.animate(predictor, image, driver["frames"])
        part = {**made, "driving": driver["frames"]}
        scale = viz.display_scale(*image.shape[:2])
        path = os.path.join(out, f"cross_identity_{clip['clip_id']}_by_{driver['clip_id']}.gif")
        os.makedirs(out, exist_ok=True)
        viz.write_gif(path, animation._panels(conventions.to_uint8(image), part, True, scale))
        written.append(path)
    return written


def _interpolated(predictor, method: str, clip_frames, gap: int) -> np.ndarray:
    """The `gap` frames between a clip's frames 0 and gap + 1 by `method` (INTERPOLATIONS):
    uint8 [gap, S, S, 3]."""
    from kp_tf import animation

    first, last = clip_frames[0], clip_frames[gap + 1]
    w = np.arange(1, gap + 1, dtype=np.float32) / (gap + 1)
    if method == "crossfade":
        mixed = (1 - w[:, None, None, None]) * first.astype(np.float32) \
            + w[:, None, None, None] * last.astype(np.float32)
        return np.clip(np.round(mixed), 0, 255).astype(np.uint8)
    if method == "repeat_first":
        return np.repeat(first[None], gap, 0)
    path, render = method.split("_")
    weights = 3 * w ** 2 - 2 * w ** 3 if path == "smoothstep" else w
    made = animation.interpolate(predictor, conventions.to_model(first),
                                 conventions.to_model(last), gap, render, weights,
                                 "motion" if path == "motion" else "linear")
    return conventions.to_uint8(made["video"])


def interpolation(model_dir, data_dir: Optional[str] = None, *, gaps: Sequence[int] = (8, 16),
                  methods: Sequence[str] = INTERPOLATIONS, max_videos: Optional[int] = None,
                  i3d=None, fvd_batch_size: int = 8, fvd_cache_dir=None, log=print) -> dict:
    """The interpolation protocol (module docstring) → its report.

    For each N in `gaps`: the test clips' consecutive frames 0..N + 1 (clips shorter than
    that repeat their last frame, as kp_tf.evaluate's sampling does; the report counts them);
    frames 0 and N + 1 given, the N between made by each method. L1, PSNR, SSIM on the N
    frames; FVD on the N + 2 frames with the two given ones (I3D needs at least 9 frames, and
    the ends are the same real frames for every method), against the real N + 2.

    Returns {"gaps": {"N": {"N_clips", "methods": {method: {"l1", "psnr", "ssim" (mean,
    std), "fvd"}}}}}.
    """
    from kp_tf.evaluation import report as report_lib
    from kp_tf.evaluation import test_clips
    from kp_tf.evaluation.frechet_video_distance import statistics_distance

    started = time.perf_counter()
    unknown = [m for m in methods if m not in INTERPOLATIONS]
    if unknown:
        raise EvaluationError(f"unknown interpolation {unknown[0]!r}; choose from "
                              f"{', '.join(INTERPOLATIONS)}")
    exported = test_clips.load_export(model_dir)
    dataset, data_dir, manifest = report_lib.resolve_data_dir(exported, None, data_dir)
    result = {"protocol": "interpolation", "checkpoints": exported.steps, "gaps": {}}
    for gap in gaps:
        clips = test_clips.load_test_clips(exported, data_dir, "test", gap + 1, "consecutive",
                                           max_videos)
        real = [c["frames"] for c in clips]  # [N + 2, S, S, 3] each
        fvd_frames = gap + 2
        if fvd_frames >= FVD_MIN_FRAMES:
            statistics = _fvd_statistics(i3d, fvd_cache_dir, fvd_batch_size)
            # frames 0..N + 1, not evaluate's 1..T: a key of its own
            real_stats = statistics(real, _real_key(exported, dataset, manifest, gap + 1,
                                                    len(clips), "consecutive") + "-from0")
        entry = {"N_clips": len(clips), "clips_with_repeated_frames":
                 int(sum(np.any(np.diff(c["indices"]) == 0) for c in clips)), "methods": {}}
        for method in methods:
            log(f"Interpolation: N = {gap}, {method} ...")
            made = [_interpolated(exported.predictor, method, f, gap) for f in real]
            scores = M.image_metrics(np.stack(made), np.stack([f[1:gap + 1] for f in real]))
            entry["methods"][method] = {k: mean_std(v) for k, v in scores.items()}
            if fvd_frames >= FVD_MIN_FRAMES:
                whole = [np.concatenate([f[:1], m, f[gap + 1:gap + 2]]) for f, m in zip(real, made)]
                entry["methods"][method]["fvd"] = statistics_distance(real_stats,
                                                                      statistics(whole))
        result["gaps"][str(gap)] = entry
    result["timing"] = {"total_s": round(time.perf_counter() - started, 1)}
    return result


def _window_stats(sequences, labels, class_names, start: int, end: int, px: float) -> dict:
    """Drift of keypoint sequences [N, T + 1, K, 2] (step 0 the conditioning frame) in the
    window of steps start..end (1-based, inclusive), measured from step start − 1."""
    window = sequences[:, start:end + 1]
    before = sequences[:, start - 1:start]
    amplitude = np.linalg.norm(window - before, axis=-1).mean(axis=(1, 2)) * px  # [N]
    speed = np.linalg.norm(np.diff(sequences[:, start - 1:end + 1], axis=1), axis=-1)
    return {"frames": [start, end],
            "spread_px": float(keypoint_spread(window).mean() * px),
            "outside_fraction": float((np.abs(window).max(-1) > 1.0).mean()),
            "amplitude_px": float(amplitude.mean()),
            "speed_px": float(speed.mean() * px),
            "amplitude_px_per_class": {name: float(amplitude[labels == a].mean())
                                       for a, name in enumerate(class_names)
                                       if np.any(labels == a)}}


def _long_range_entry(exported, first, sequences, labels, class_names, window: int, scored,
                      fvd, clf) -> dict:
    """One restart rule's part of the long-range report: drift per window of the keypoint
    sequences [N, frames + 1, K, 2] (step 0: k0), and for the windows starting at `scored`
    the FVD (`fvd(videos)`) and the classifier's accuracy of the frames rendered from
    `first` (uint8 [N, S, S, 3])."""
    px, frames = _px(exported), sequences.shape[1] - 1
    entry = {"windows": [_window_stats(sequences, labels, class_names, a, a + window - 1, px)
                         for a in range(1, frames - window + 2, window)], "scored": {}}
    # The step from the last frame of a chunk to the first of the next, against the others:
    # where a restart would show as a jump.
    steps = np.linalg.norm(np.diff(sequences, axis=1), axis=-1).mean(-1) * px  # [N, frames]
    length = exported.sequence_length
    boundary = np.zeros(frames, bool)
    boundary[length:frames:length] = True  # step t → t + 1 with t a multiple of L, t > 0
    if boundary.any():
        entry["chunk_boundary_step_px"] = float(steps[:, boundary].mean())
        entry["other_step_px"] = float(steps[:, ~boundary].mean())
    for a in scored:
        videos = [exported.translate(first[i], sequences[i, 0], sequences[i, a:a + window])
                  for i in range(len(first))]
        entry["scored"][f"{a}-{a + window - 1}"] = {
            "fvd": fvd(videos), "motion_accuracy": clf.accuracy(np.stack(videos),
                                                                labels)["accuracy"]}
    values = list(entry["scored"].values())
    entry["fvd_ratio"] = values[-1]["fvd"] / values[0]["fvd"]
    entry["accuracy_ratio"] = (values[-1]["motion_accuracy"] / values[0]["motion_accuracy"]
                               if values[0]["motion_accuracy"] else None)
    return entry


def long_range(model_dir, data_dir: Optional[str] = None, *, frames: int = 128,
               window: int = 16, scored: Sequence[int] = (1, 97),
               restarts: Sequence[str] = RESTARTS, seed: int = 0,
               max_videos: Optional[int] = None, i3d=None, fvd_batch_size: int = 8,
               fvd_cache_dir=None, classifier_dir: Optional[str] = None,
               classifier: Optional[dict] = None, log=print) -> dict:
    """The long-range protocol (module docstring) → its report.

    Each test clip's frame 0 and action (sampling: stage 2's, as kp_tf.evaluate), z of seed
    `seed + i` for clip i (predict_video's draw), keypoints rolled out to `frames` steps with
    each restart rule of `restarts` ("none": the next chunk starts from the last keypoints;
    "redetect": from those detected on the frame rendered with them, as predict_video does).
    Drift statistics for every `window`-frame window; for the windows that start at `scored`
    the frames are rendered from frame 0 and scored by FVD against the real frames 1..window
    of the same clips and by the motion-only action classifier (kp_tf.evaluation.action,
    trained or reused under `classifier_dir`).

    Returns {"N", "frames", "window", "real": {...}, "static": {...}, "restarts": {name:
    {"windows": [...], "scored": {"a-b": {"fvd", "motion_accuracy"}}, "fvd_ratio",
    "accuracy_ratio"}}, "timing": {...}}.
    """
    from kp_tf.evaluation import action as action_lib
    from kp_tf.evaluation import report as report_lib
    from kp_tf.evaluation import test_clips
    from kp_tf.evaluation.frechet_video_distance import statistics_distance

    started = time.perf_counter()
    if frames < max(scored) + window - 1:
        raise EvaluationError(f"--frames={frames} ends before the last scored window "
                              f"{max(scored)}–{max(scored) + window - 1}")
    unknown = [r for r in restarts if r not in RESTARTS]
    if unknown:
        raise EvaluationError(f"unknown restart {unknown[0]!r}; choose from {', '.join(RESTARTS)}")
    exported = test_clips.load_export(model_dir)
    dataset, data_dir, manifest = report_lib.resolve_data_dir(exported, None, data_dir)
    class_names = list(manifest.get("class_names") or [])
    clips = test_clips.load_test_clips(exported, data_dir, "test", window, "stage2", max_videos)
    n, px = len(clips), _px(exported)
    labels = np.asarray([max(c["label"], 0) for c in clips], np.int32)
    first = np.stack([c["frames"][0] for c in clips])
    real = [c["frames"][1:] for c in clips]
    real_kp = np.stack([exported.detect(c["frames"]) for c in clips])  # [N, window + 1, K, 2]
    k0 = real_kp[:, 0]
    key = _real_key(exported, dataset, manifest, window, n, "stage2")
    statistics = _fvd_statistics(i3d, fvd_cache_dir, fvd_batch_size)
    log(f"Long range: {n} test clips, {frames} frames; FVD of real frames 1–{window} ...")
    real_stats = statistics(real, key)
    clf = action_lib.load_or_train(data_dir, frames=window, image_size=exported.image_size,
                                   directory=classifier_dir, log=log,
                                   **{**(classifier or {}), "motion_only": True})
    static = [test_clips.static_video(f, window) for f in first]
    result = {
        "protocol": "long_range", "N": n, "frames": frames, "window": window, "seed": seed,
        "seed_rule": "clip i: predict_video's z for seed + i", "checkpoints": exported.steps,
        "real": {**_window_stats(real_kp, labels, class_names, 1, window, px),
                 "motion_accuracy": clf.accuracy(np.stack(real), labels)["accuracy"]},
        "static": {"fvd": statistics_distance(real_stats, statistics(static, key + "-static")),
                   "motion_accuracy": clf.accuracy(np.stack(static), labels)["accuracy"]},
        "classifier": {k: clf.info.get(k) for k in ("what", "test_accuracy", "steps")},
        "restarts": {}}
    for name in restarts:
        log(f"Long range: roll-out with restart {name!r} ...")
        kps = exported.generate(k0, labels, [seed + i for i in range(n)], frames,
                                images=first if name == "redetect" else None)
        result["restarts"][name] = _long_range_entry(
            exported, first, np.concatenate([k0[:, None], kps], 1), labels, class_names,
            window, scored, lambda videos: statistics_distance(real_stats, statistics(videos)),
            clf)
    result["timing"] = {"total_s": round(time.perf_counter() - started, 1)}
    return result


# --- the report ---------------------------------------------------------------------------

def provenance() -> dict:
    """{"date", "commit"}: today (UTC) and the checkout's commit (None outside a git
    checkout; "+changes" when the package's files differ from it)."""
    import datetime
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "kp_tf"], cwd=root,
                               text=True, capture_output=True).stdout.strip()
        commit += "+changes" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "commit": commit}


def _f(x, digits=3):
    return "—" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def _m(d, key, digits=3):
    return _f(((d or {}).get(key) or {}).get("mean"), digits)


def format_markdown(report: dict) -> str:
    """The protocols' tables (the report of `run`) as Markdown."""
    lines = [f"Model: `{report.get('model')}`; data: `{report.get('data_dir')}`; "
             f"{report.get('date')}, commit {report.get('commit')}.", ""]
    t = report.get("transfer")
    if t:
        lines += [f"### Motion transfer (reconstruction): N = {t['N']} clips, "
                  f"{t['N_frames']} driven frames", "",
                  "| set | L1 ↓ | PSNR ↑ | SSIM ↑ | AKD px ↓ | joint error px ↓ |",
                  "|---|---|---|---|---|---|"]
        for name in ("transfer", "static", "real"):
            d = t["sets"].get(name, {})
            lines.append(f"| {name} | {_m(d, 'l1', 4)} | {_m(d, 'psnr', 2)} | {_m(d, 'ssim')} | "
                         f"{_m(d, 'akd_px')} | {_m(d, 'joint_error_px')} |")
        lines.append("")
    i = report.get("interpolation")
    if i:
        for gap, entry in i["gaps"].items():
            lines += [f"### Interpolation, N = {gap}: {entry['N_clips']} clips", "",
                      "| method | L1 ↓ | PSNR ↑ | SSIM ↑ | FVD ↓ |", "|---|---|---|---|---|"]
            for name, d in entry["methods"].items():
                lines.append(f"| {name} | {_m(d, 'l1', 4)} | {_m(d, 'psnr', 2)} | "
                             f"{_m(d, 'ssim')} | {_f(d.get('fvd'), 1)} |")
            lines.append("")
    lines += _long_range_markdown(report.get("long_range"))
    return "\n".join(lines) + "\n"


def _long_range_markdown(r) -> list:
    if not r:
        return []
    first, last = list(next(iter(r["restarts"].values()))["scored"])[:2] if r["restarts"] \
        else ("", "")
    lines = [f"### Long range: N = {r['N']} clips, {r['frames']} frames", "",
             f"| restart | FVD {first} | FVD {last} | ratio | motion acc. {first} | "
             f"motion acc. {last} | ratio |", "|---|---|---|---|---|---|---|"]
    for name, e in r["restarts"].items():
        a, b = e["scored"][first], e["scored"][last]
        lines.append(f"| {name} | {_f(a['fvd'], 1)} | {_f(b['fvd'], 1)} | {_f(e['fvd_ratio'], 2)} "
                     f"| {_f(a['motion_accuracy'])} | {_f(b['motion_accuracy'])} | "
                     f"{_f(e['accuracy_ratio'], 2)} |")
    lines += [f"| static | {_f(r['static']['fvd'], 1)} | | | "
              f"{_f(r['static']['motion_accuracy'])} | | |",
              f"| real (frames 1–{r['window']}) | | | | {_f(r['real']['motion_accuracy'])} | | |",
              "", "| restart | frames | spread px | outside | amplitude px | speed px/frame |",
              "|---|---|---|---|---|---|"]
    rows = [("real", r["real"])] + [(name, w) for name, e in r["restarts"].items()
                                    for w in e["windows"]]
    for name, w in rows:
        lines.append(f"| {name} | {w['frames'][0]}–{w['frames'][1]} | {_f(w['spread_px'], 2)} | "
                     f"{_f(w['outside_fraction'], 4)} | {_f(w['amplitude_px'])} | "
                     f"{_f(w['speed_px'])} |")
    lines += ["", "| restart | step across a chunk boundary px | other steps px |", "|---|---|---|"]
    lines += [f"| {name} | {_f(e.get('chunk_boundary_step_px'))} | {_f(e.get('other_step_px'))} |"
              for name, e in r["restarts"].items()]
    classes = list(r["real"]["amplitude_px_per_class"])
    lines += ["", "Amplitude per class (px):", "",
              "| restart | frames | " + " | ".join(classes) + " |",
              "|---|---|" + "---|" * len(classes)]
    for name, w in rows:
        lines.append(f"| {name} | {w['frames'][0]}–{w['frames'][1]} | " + " | ".join(
            _f(w["amplitude_px_per_class"].get(c), 2) for c in classes) + " |")
    return lines + [""]


def run(model_dir, protocols: Sequence[str] = PROTOCOLS, out: Optional[str] = None,
        data_dir: Optional[str] = None, log=print, **options) -> dict:
    """Runs the protocols on one export; writes `uses.json` and `uses.md` into `out`.

    `options` are the protocols' keyword arguments, each passed to those that take it
    (max_videos, i3d, fvd_cache_dir, fvd_batch_size: all; cross_identity: transfer; gaps,
    methods: interpolation; frames, restarts, classifier_dir, classifier, seed: long_range).
    """
    import inspect

    from kp_tf.evaluation import report as report_lib
    from kp_tf.evaluation import test_clips

    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise EvaluationError(f"unknown protocols {unknown or list(protocols)}; choose from "
                              f"{', '.join(PROTOCOLS)}")
    exported = test_clips.load_export(model_dir)
    _, data_dir, _ = report_lib.resolve_data_dir(exported, None, data_dir)
    result = {"model": os.path.abspath(exported.model_dir), "data_dir": os.path.abspath(data_dir),
              **provenance()}
    functions = {"transfer": transfer, "interpolation": interpolation, "long_range": long_range}
    for name in protocols:
        fn = functions[name]
        accepted = inspect.signature(fn).parameters
        kwargs = {k: v for k, v in options.items() if k in accepted and v is not None}
        if name == "transfer" and out:
            kwargs["out"] = os.path.join(out, "transfer_gifs")
        result[name] = fn(exported, data_dir, log=log, **kwargs)
    result = report_lib.jsonable(result)
    markdown = format_markdown(result)
    if out:
        os.makedirs(out, exist_ok=True)
        report_lib.write_atomic(os.path.join(out, "uses.json"),
                                json.dumps(result, indent=1) + "\n")
        report_lib.write_atomic(os.path.join(out, "uses.md"), markdown)
    log(markdown)
    return result


def main(argv):
    del argv
    from absl import flags

    f = flags.FLAGS
    classifier = {k: v for k, v in (("steps", f.classifier_steps),
                                    ("max_seconds", f.classifier_seconds)) if v is not None}
    try:
        run(f.model, [p.strip() for p in f.protocols.split(",") if p.strip()], f.out,
            f.data_dir, max_videos=f.max_videos, i3d=f.i3d, cross_identity=f.cross_identity,
            gaps=[int(g) for g in f.gaps.split(",")], frames=f.frames,
            methods=[m.strip() for m in f.methods.split(",") if m.strip()],
            restarts=[r.strip() for r in f.restarts.split(",")],
            classifier_dir=f.classifier_dir, classifier=classifier or None, seed=f.seed)
    except FileNotFoundError as e:
        raise EvaluationError(str(e)) from e
    return 0


if __name__ == "__main__":
    from absl import flags

    from kp_tf import cli

    flags.DEFINE_string("model", None, "Export folder (python -m kp_tf.export).")
    flags.DEFINE_string("data_dir", None, "Converted TFRecords (default: as kp_tf.evaluate).")
    flags.DEFINE_string("protocols", ",".join(PROTOCOLS), "Comma-separated subset of "
                        + ", ".join(PROTOCOLS) + ".")
    flags.DEFINE_string("out", None, "Folder for uses.json, uses.md and the transfer GIFs.")
    flags.DEFINE_integer("max_videos", None, "Use at most this many test clips.", lower_bound=1)
    flags.DEFINE_string("i3d", None, "I3D for FVD (default: kp_tf.pretrained's rule).")
    flags.DEFINE_integer("cross_identity", 4, "Transfer: cross-identity GIFs to write.")
    flags.DEFINE_string("gaps", "8,16", "Interpolation: the N frames between the given two.")
    flags.DEFINE_string("methods", ",".join(INTERPOLATIONS), "Interpolation: the methods.")
    flags.DEFINE_integer("frames", 128, "Long range: frames to predict.", lower_bound=1)
    flags.DEFINE_string("restarts", ",".join(RESTARTS), "Long range: chunk restart rules.")
    flags.DEFINE_string("classifier_dir", None, "Where the motion-only action classifier is "
                        "kept (default <data_dir>/action_classifier).")
    flags.DEFINE_integer("classifier_steps", None, "Training steps of a new classifier.")
    flags.DEFINE_float("classifier_seconds", None, "Time budget of a new classifier.")
    flags.DEFINE_integer("seed", 0, "Long range: the first clip's seed.")
    flags.mark_flag_as_required("model")
    cli.run(main)
