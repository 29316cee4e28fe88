"""The evaluation of an exported model against the static and oracle baselines (protocols §4).

`evaluate(model_dir, ...)` reads the test clips (kp_tf.evaluation.test_clips), makes three
sets of T-frame videos from each clip's frame 0,

  static  the conditioning frame repeated T times;
  oracle  stage 1 alone: `translate(frame 0, its keypoints, keypoints detected on frames 1..T)`;
  model   `predict_video(frame 0, the clip's action, seed, T)`, `samples` seeds per clip, z from
          the prior: sample s of clip i uses seed = seed + i·samples + s;

runs the requested metrics of kp_tf.evaluation.scores on them (each recorded with N, T, the
seed and the export's checkpoint steps), and writes `report.json` and `report.md`
(kp_tf.evaluation.markdown) atomically.
"""

from __future__ import annotations

import json
import os
import time
from typing import Optional, Sequence

import numpy as np

from kp_tf.evaluation import scores
from kp_tf.evaluation.scores import SETS
from kp_tf.evaluation.test_clips import SAMPLINGS, EvaluationError

METRICS = tuple(scores.METRICS)


def parse_metrics(text: str | Sequence[str]) -> list[str]:
    names = [m.strip() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    if names == ["all"]:
        return list(METRICS)
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise EvaluationError(f"unknown metrics {unknown or names}; choose from {', '.join(METRICS)}")
    return names


def resolve_data_dir(exported, dataset: Optional[str], data_dir: Optional[str]) -> tuple:
    """(dataset, data folder, its manifest): data/<dataset> by default, else the folder the
    model was trained on; refuses data of another synthetic generator or other classes."""
    from kp_tf.data import datasets, synthetic, tfrecords

    dataset = dataset or exported.config.get("dataset")
    if not data_dir:
        data_dir = os.path.join("data", dataset)
        own = exported.config.get("data_dir")
        if not os.path.exists(data_dir) and own and exported.config.get("dataset") == dataset:
            data_dir = own
    manifest = tfrecords.load_manifest(data_dir)
    if datasets.generated_by_other_version(manifest):
        raise EvaluationError(
            f"{data_dir} was made by synthetic generator version "
            f"{manifest.get('generator_version')}; this code renders version "
            f"{synthetic.GENERATOR_VERSION}: regenerate it (python -m kp_tf.train "
            f"--dataset={manifest.get('dataset')} --stage=data --data_dir={data_dir})")
    class_names = list(manifest.get("class_names") or [])
    if exported.actions and class_names and exported.actions != class_names:
        raise EvaluationError(f"the model's actions {exported.actions} are not the classes of "
                              f"{data_dir} {class_names}")
    return dataset, data_dir, manifest


def plan(wanted: list, exported, manifest: dict, data_dir: str, frames: int, samples: int,
         log) -> tuple[list, dict]:
    """(the metrics that apply, {metric: why it is skipped}) for this export and data."""
    class_names = list(manifest.get("class_names") or [])
    facts = {"frames": frames, "samples": samples, "data_dir": data_dir,
             "has_classes": len(exported.actions) >= 2 and len(class_names) >= 2,
             "has_joints": bool(manifest.get("joint_names"))}
    skipped = {}
    for name in wanted:
        reason = scores.METRICS[name].skip_reason(facts)
        if reason:
            skipped[name] = reason
            log(f"skipping {name}: {reason}")
    return [m for m in wanted if m not in skipped], skipped


def generate_sets(exported, clips, labels, frames: int, samples: int, seed: int, videos: bool,
                  verbose: bool) -> dict:
    """Detected keypoints of every clip and, with `videos`, the real, static, oracle and model
    sets: {"detected", "sets", "model_videos", "model_keypoints"}."""
    from kp_tf.evaluation.test_clips import static_video

    from kp_tf.progress import Progress, plural

    detected, model_videos, model_keypoints = [], [], []
    sets = {name: [] for name in ("real",) + SETS}
    if verbose:
        s = exported.image_size
        what = (f"static / oracle / {plural(samples, 'model video')}" if videos
                else "detected keypoints")
        print(f"Generating {what} for {plural(len(clips), 'test clip')} "
              f"({plural(frames, 'frame')}, {s}×{s})", flush=True)
    # A bar with an ETA on a terminal, a line every 30 s in a log (kp_tf.progress).
    bar = Progress(len(clips), "clip", label="generation", seconds=30.0, enabled=verbose)
    for i, clip in enumerate(clips):
        video = clip["frames"]  # [T + 1, S, S, 3]
        kps = exported.detect(video)  # [T + 1, K, 2]
        detected.append(kps)
        if videos:
            sets["real"].append(video[1:])
            sets["static"].append(static_video(video[0], frames))
            sets["oracle"].append(exported.translate(video[0], kps[0], kps[1:]))
            made = [exported.predict(video[0], int(labels[i]), seed + i * samples + j, frames)
                    for j in range(samples)]
            model_videos.append(np.stack([v for v, _ in made]))
            model_keypoints.append(np.stack([k for _, k in made]))
            sets["model"].extend(v for v, _ in made)
        bar.update(i + 1)
    bar.close()
    return {"detected": detected, "sets": sets, "model_videos": model_videos,
            "model_keypoints": model_keypoints}


def evaluate(model_dir, dataset: Optional[str] = None, data_dir: Optional[str] = None, *,
             metrics: str | Sequence[str] = METRICS, out: Optional[str] = None, samples: int = 5,
             frames: int = 16, seed: int = 0, max_videos: Optional[int] = None,
             split: str = "test", sampling: str = "stage2", i3d=None, fvd_cache_dir=None,
             fvd_batch_size: int = 8, classifier_dir: Optional[str] = None,
             classifier: Optional[dict] = None, keypoint_train_clips: int = 300,
             keypoint_frame_stride: int = 4, vgg_weights: str = "imagenet",
             verbose: bool = True) -> dict:
    """Runs the evaluation; returns the report (also written to `out` when given).

    Args mirror the command line (kp_tf.evaluate); `model_dir` may also be a loaded
    `test_clips.Exported` (loading takes seconds, so callers that evaluate repeatedly reuse
    one); `classifier` holds `kp_tf.evaluation.action.ClassifierSettings` fields for a
    classifier that must be trained (e.g. {'steps': 300, 'max_seconds': 120}); `i3d` is a
    handle or an I3D extractor object (anything `get_extractor` accepts); `vgg_weights` those
    of the moving-region perceptual distance ("none": random, for tests).
    """
    from kp_tf.evaluation import test_clips

    started = time.perf_counter()
    log = print if verbose else (lambda *_a, **_k: None)
    if samples < 1 or frames < 1:
        raise EvaluationError(f"--samples and --frames must be >= 1 (got {samples}, {frames})")
    if sampling not in SAMPLINGS:
        raise EvaluationError(f"--sampling must be one of {SAMPLINGS}, got {sampling!r}")
    exported = test_clips.load_export(model_dir)
    dataset, data_dir, manifest = resolve_data_dir(exported, dataset, data_dir)
    class_names = list(manifest.get("class_names") or [])
    active, skipped = plan(parse_metrics(metrics), exported, manifest, data_dir, frames, samples,
                           log)
    if "fvd" in active:  # fail now, not after the generation
        from kp_tf.evaluation import frechet_video_distance as fvd_lib

        i3d = fvd_lib.get_extractor(i3d)
    need_videos = any(scores.METRICS[m].needs_videos for m in active)

    t0 = time.perf_counter()
    clips = test_clips.load_test_clips(exported, data_dir, split, frames, sampling, max_videos)
    labels = np.asarray([max(c["label"], 0) for c in clips], np.int32)
    made = generate_sets(exported, clips, labels, frames, samples, seed, need_videos, verbose)
    timings = {"generation_s": time.perf_counter() - t0}
    n = len(clips)
    report = {
        "model": os.path.abspath(exported.model_dir), "dataset": dataset,
        "data_dir": os.path.abspath(data_dir), "split": split,
        "image_size": exported.image_size, "frames": frames, "samples": samples, "seed": seed,
        "num_clips": n, "checkpoints": exported.steps,
        "sampling": {"name": sampling, "sequence_length": exported.sequence_length,
                     "rule": ("stage 2 test sampling: pipeline.sample_indices(n, L) with start 0, "
                              "frames gap = n // (L + 1) apart, steps 0..T (continued past L "
                              "with the same gap)") if sampling == "stage2"
                     else "consecutive frames 0..T",
                     "clips_with_repeated_frames":
                         int(sum(np.any(np.diff(c["indices"]) == 0) for c in clips))},
        "conditioning": "frame at step 0; every metric scores steps 1..T only",
        "model_seed_rule": "sample j of clip i: predict_video seed = seed + i * samples + j",
        "metrics": active, "skipped": skipped,
        "sets": {name: {"N": len(made["sets"][name])} for name in ("real",) + SETS},
    }
    ev = scores.Evaluation(
        exported=exported, data_dir=data_dir, manifest=manifest, dataset=dataset, split=split,
        frames=frames, samples=samples, seed=seed, sampling=sampling, class_names=class_names,
        clips=clips, labels=labels, detected=made["detected"], sets=made["sets"],
        model_videos=made["model_videos"], model_keypoints=made["model_keypoints"],
        options={"i3d": i3d, "fvd_cache_dir": fvd_cache_dir, "fvd_batch_size": fvd_batch_size,
                 "classifier_dir": classifier_dir, "classifier": classifier,
                 "keypoint_train_clips": keypoint_train_clips,
                 "keypoint_frame_stride": keypoint_frame_stride, "max_videos": max_videos,
                 "vgg_weights": vgg_weights},
        report=report, timings=timings, log=log, verbose=verbose)
    for name in active:
        scores.run(name, ev)
    _finish_timings(timings, started, n * (1 + samples) if need_videos else 0)
    report["timing"] = {k: round(v, 2) if isinstance(v, float) else v for k, v in timings.items()}
    return write(jsonable(report), out, log)


def _finish_timings(timings: dict, started: float, generated: int) -> None:
    timings["total_s"] = time.perf_counter() - started
    if generated:  # clip loading, detection, oracle and model videos, per 100 of them
        timings["generated_videos"] = generated
        timings["generation_s_per_100_videos"] = 100.0 * timings["generation_s"] / generated
    if timings.get("fvd_i3d_videos"):
        timings["fvd_s_per_100_videos"] = 100.0 * timings["fvd_s"] / timings["fvd_i3d_videos"]


def write(report: dict, out: Optional[str], log=print) -> dict:
    """Writes report.json and report.md into `out` (atomically), logs the Markdown."""
    from kp_tf.evaluation.markdown import format_markdown

    markdown = format_markdown(report)
    if out:
        os.makedirs(out, exist_ok=True)
        write_atomic(os.path.join(out, "report.json"), json.dumps(report, indent=2) + "\n")
        write_atomic(os.path.join(out, "report.md"), markdown)
    log(markdown)
    total = report.get("timing", {}).get("total_s")
    if total is not None:
        log(f"Evaluation took {total:.1f} s" + (f" (written to {out})" if out else ""))
    return report


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def jsonable(x):
    """A report made of JSON types: arrays to lists, NumPy scalars to Python, NaN/inf to None."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x
