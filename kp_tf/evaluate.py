"""Evaluate an exported model on a dataset's test split against the static and oracle baselines.

    python -m kp_tf.evaluate --model=EXPORT_DIR --dataset=NAME [--data_dir=DIR] \
        --metrics=fvd,keypoints,action,diversity,recon,classes --out=DIR \
        [--samples=5] [--frames=16] [--seed=0] [--max_videos=N] [--i3d=HANDLE]

For every test clip (at most --max_videos, in file order) the conditioning frame is step 0 and
the real future is steps 1..T (T = --frames) of the clip, taken with stage 2's test sampling
(`--sampling=stage2`, the default): the model's motion steps are frames `gap` apart with
gap = ⌊n / (L + 1)⌋ (L = the export's sequence_length, n = the clip's frames), i.e. exactly
`pipeline.sample_indices(n, L)` (test: start 0) for T ≤ L, continued with the same gap past
L (repeating the last frame of clips that end first; the report counts them). Short clips
(gap 0) use that function's evenly spread steps (nearest real frame). `--sampling=consecutive`
takes frames 0..T instead. Three sets of T-frame videos are made (protocols §4):

  static  the conditioning frame repeated T times;
  oracle  stage 1 alone: `translate(frame 0, its keypoints, keypoints detected on frames 1..T)`;
  model   `predict_video(frame 0, the clip's action, seed, T)`, --samples seeds per clip, z from
          the prior: sample s of clip i uses seed = --seed + i·samples + s.

Metrics (--metrics; each is recorded with N, T, the seed and the export's checkpoint steps):
  fvd        protocols §1: generated frames 1..T only vs the real frames 1..T of the same clips,
             at the data's resolution; the real statistics (and the static set's, which also
             depend on the data only) are cached (fvd.cached_statistics) under a key naming
             dataset, split, T, S, sampling, N and the shards' checksums.
  action     protocols §3: accuracy of a (2+1)-D conv classifier trained on real training clips
             (kp_tf.evaluation.action; stored with the data and reused) on the real frames 1..T
             (the ceiling) and on each generated set (the clip's action is the target); and
             of the same network reading only x_t − x_0 ("action_motion"), which a still video
             cannot fool (the frames alone can name the action, see kp_tf.evaluation.action).
  diversity  protocols §5 (model only): mean pairwise L1 between the S samples of one clip, of
             the keypoint sequences (normalised coordinates) and of the videos ([0, 1] pixels),
             averaged over clips.
  recon      L1 ([0, 1] pixels), PSNR (dB, capped at 100) and SSIM of every generated frame vs
             the real frame: the oracle is stage 1's reconstruction (protocols §6), static the
             copy-the-reference comparison, model the (stochastic) prediction.
  keypoints  protocols §2: linear regression of the export's detected keypoints to the ground-
             truth joints (datasets with joints only), kp_tf.evaluation.keypoints.
  classes    class consistency of the motion generator: for each test clip's first keypoints and
             one z (that of its sample 0), a keypoint sequence for every action a; D[a, b] = mean
             L1 between the displacements (k_t − k_0) of the sequences generated for a and of the
             real sequences of class b (detected on the test clips' frames 0..T). A row whose
             minimum is on the diagonal generates motion closest to the requested class. Also
             against each class's mean real displacement (`class_mean`: every pair's distance
             includes the column class's own spread, the class mean does not), the phase-free
             motion profiles, and each matrix's control on real sequences; and each class's
             motion amplitude (mean |k_t − k_0|), generated against real, to show damping.

Writes `report.json` and `report.md` into --out (atomically), prints the Markdown and the time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from typing import Iterable, Optional, Sequence

import numpy as np

from kp_tf import run_folder

METRICS = ("fvd", "action", "diversity", "recon", "keypoints", "classes")
SETS = ("static", "oracle", "model")
SAMPLINGS = ("stage2", "consecutive")
FVD_MIN_FRAMES = 9  # I3D needs at least 9 frames (its temporal pooling)


class EvaluationError(ValueError):
    pass


# --- the export -----------------------------------------------------------------------------

class ExportedDetector:
    """The export's `detect_keypoints` as a callable `detector(x, training=False)` → [B, K, 2],
    for code written against the Keras detector (kp_tf.evaluation.keypoints)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x, training: bool = False):
        import tensorflow as tf

        del training  # the export is always in inference mode
        return self.model.detect_keypoints(tf.convert_to_tensor(x, tf.float32))["keypoints"]


class Exported:
    """A loaded export (kp_tf.inference.Predictor) with batched helpers on uint8 frames."""

    def __init__(self, model_dir: str):
        from kp_tf.inference import PredictError, Predictor

        try:
            self.predictor = Predictor(model_dir)
        except PredictError as e:
            raise EvaluationError(str(e)) from e
        self.model_dir = model_dir
        self.model = self.predictor.model
        self.config = self.predictor.config
        self.actions = self.predictor.actions
        self.image_size = self.predictor.image_size
        self.sequence_length = int(self.config["sequence_length"])
        self.latent_dim = int(self.config["latent_dim"])
        self.detector = ExportedDetector(self.model)
        self.steps = run_folder.export_steps(model_dir)

    def detect(self, frames_uint8) -> np.ndarray:
        """uint8 [N, S, S, 3] → keypoints [N, K, 2]."""
        return np.asarray(self.detector(_to_float(frames_uint8)))

    def translate(self, image_uint8, source_kps, target_kps) -> np.ndarray:
        """One image [S, S, 3], its keypoints [K, 2], targets [T, K, 2] → uint8 video [T, S, S, 3]."""
        import tensorflow as tf

        out = self.model.translate(tf.constant(_to_float(image_uint8)[None]),
                                   tf.constant(source_kps[None], tf.float32),
                                   tf.constant(target_kps[None], tf.float32))
        return _to_uint8(out["video"].numpy()[0])

    def predict(self, image_uint8, action: int, seed: int, frames: int):
        """→ uint8 video [T, S, S, 3], keypoints [T, K, 2] (predict_video)."""
        video, keypoints, _ = self.predictor.predict(_to_float(image_uint8), action, seed, frames)
        return video, keypoints

    def generate(self, k0, actions, seeds, frames: int) -> np.ndarray:
        """Keypoint sequences [B, frames, K, 2] from k0 [B, K, 2] and actions [B], z drawn as
        predict_video does for `seeds` [B] (stateless normal, seed pair (s, s + 1)) and rolled
        out past the generator's length as predict_video does (motion_generator.rollout)."""
        import tensorflow as tf

        from kp_tf.models.motion_generator import rollout

        z = tf.concat([tf.random.stateless_normal([1, self.latent_dim],
                                                  tf.constant([s, s + 1], tf.int64))
                       for s in seeds], 0)
        actions = tf.constant(actions, tf.int32)
        return rollout(lambda start: self.model.generate_motion(start, actions, z)["keypoints"],
                       k0, frames, self.sequence_length).numpy()


def _to_float(frames_uint8) -> np.ndarray:
    return np.asarray(frames_uint8, np.float32) / 127.5 - 1.0


def _to_uint8(x) -> np.ndarray:
    return np.clip((np.asarray(x) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def static_video(frame, frames: int) -> np.ndarray:
    """The static baseline: `frame` [S, S, 3] repeated → [frames, S, S, 3]."""
    frame = np.asarray(frame)
    return np.repeat(frame[None], frames, axis=0)


# --- test clips -------------------------------------------------------------------------------

def frame_indices(num_frames, frames: int, length: int, sampling: str = "stage2"):
    """int32 [frames + 1]: the frames of a test clip at steps 0..T (see module docstring)."""
    import tensorflow as tf

    from kp_tf.data import pipeline

    n = tf.cast(num_frames, tf.int32)
    steps = tf.range(frames + 1, dtype=tf.int32)
    if sampling == "consecutive":
        return tf.minimum(steps, n - 1)
    if sampling != "stage2":
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if frames <= length:
        return pipeline.sample_indices(n, length).nearest()[:frames + 1]
    gap = n // (length + 1)
    position = tf.cast(steps, tf.float32) * (tf.cast(n - 1, tf.float32) / max(length, 1))
    spread = tf.cast(tf.round(position), tf.int32)  # the short-clip rule, continued
    return tf.minimum(tf.where(gap >= 1, gap * steps, spread), n - 1)


def load_test_clips(exported: Exported, data_dir: str, split: str, frames: int, sampling: str,
                    max_videos: Optional[int]) -> list[dict]:
    """Test clips as dicts: frames uint8 [T + 1, S, S, 3], indices, num_frames, label, clip_id,
    joints."""
    from kp_tf import config as config_lib
    from kp_tf.data import pipeline

    cfg = config_lib.Config(**{k: v for k, v in exported.config.items()
                               if k in config_lib.FIELDS})
    ds = pipeline.clip_sequences(
        cfg, data_dir, split,
        frames=lambda n: frame_indices(n, frames, exported.sequence_length, sampling))
    clips = []
    for element in ds:
        if max_videos is not None and len(clips) >= max_videos:
            break
        clips.append({"frames": element["frames"].numpy(),
                      "indices": element["frame_indices"].numpy(),
                      "num_frames": int(element["num_frames"]),
                      "label": int(element["label"]),
                      "clip_id": element["clip_id"].numpy().decode()})
    if not clips:
        raise EvaluationError(f"{data_dir}: split {split!r} has no clips")
    return clips


def _data_fingerprint(manifest: dict, split: str) -> str:
    shards = manifest.get("splits", {}).get(split, {}).get("shards", [])
    digest = hashlib.sha256("".join(s.get("sha256", "") for s in shards).encode())
    return digest.hexdigest()[:10]


# --- helpers ----------------------------------------------------------------------------------

def _progbar(total: int, label: str, verbose: bool):
    if not verbose:
        return None
    import keras

    print(label, flush=True)
    return keras.utils.Progbar(total, unit_name="video")


def _mean_std(values) -> dict:
    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()), "std": float(v.std())} if v.size else {"mean": None, "std": None}


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


# --- the evaluation ---------------------------------------------------------------------------

def parse_metrics(text: str | Sequence[str]) -> list[str]:
    names = [m.strip() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    if names == ["all"]:
        return list(METRICS)
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise EvaluationError(f"unknown metrics {unknown or names}; choose from {', '.join(METRICS)}")
    return names


def evaluate(model_dir, dataset: Optional[str] = None, data_dir: Optional[str] = None, *,
             metrics: str | Sequence[str] = METRICS, out: Optional[str] = None, samples: int = 5,
             frames: int = 16, seed: int = 0, max_videos: Optional[int] = None,
             split: str = "test", sampling: str = "stage2", i3d=None, fvd_cache_dir=None,
             fvd_batch_size: int = 8, classifier_dir: Optional[str] = None,
             classifier: Optional[dict] = None, keypoint_train_clips: int = 300,
             keypoint_frame_stride: int = 4, verbose: bool = True) -> dict:
    """Runs the evaluation; returns the report (also written to `out` when given).

    Args mirror the command line (see module docstring); `model_dir` may also be a loaded
    `Exported` (loading takes seconds, so callers that evaluate repeatedly reuse one);
    `classifier` holds `kp_tf.evaluation.action.ClassifierSettings` fields for a classifier
    that must be trained (e.g. {'steps': 300, 'max_seconds': 120}); `i3d` is a handle or an
    I3D extractor object (anything `fvd.get_extractor` accepts).
    """
    from kp_tf.data import tfrecords
    from kp_tf.evaluation import metrics as M

    started = time.perf_counter()
    log = print if verbose else (lambda *_a, **_k: None)
    wanted = parse_metrics(metrics)
    if samples < 1 or frames < 1:
        raise EvaluationError(f"--samples and --frames must be >= 1 (got {samples}, {frames})")
    if sampling not in SAMPLINGS:
        raise EvaluationError(f"--sampling must be one of {SAMPLINGS}, got {sampling!r}")
    exported = model_dir if isinstance(model_dir, Exported) else Exported(model_dir)
    model_dir = exported.model_dir
    dataset = dataset or exported.config.get("dataset")
    if not data_dir:
        data_dir = os.path.join("data", dataset)
        own = exported.config.get("data_dir")
        if not os.path.exists(data_dir) and own and exported.config.get("dataset") == dataset:
            data_dir = own  # the folder the model was trained on
    manifest = tfrecords.load_manifest(data_dir)
    from kp_tf.data import datasets, synthetic

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
    has_classes = len(exported.actions) >= 2 and len(class_names) >= 2
    s = exported.image_size
    steps = exported.steps
    stamp = {"frames": frames, "seed": seed,
             "steps": {"stage1": steps["stage1"], "stage2": steps["stage2"]}}
    skipped = {}

    def skip(metric, reason):
        if metric in wanted:
            skipped[metric] = reason
            log(f"skipping {metric}: {reason}")

    extractor = None
    if "fvd" in wanted:
        if frames < FVD_MIN_FRAMES:
            skip("fvd", f"I3D needs at least {FVD_MIN_FRAMES} frames (--frames={frames})")
        else:
            from kp_tf.evaluation import frechet_video_distance as fvd_lib

            extractor = fvd_lib.get_extractor(i3d)  # fails now, not after the generation
    if not has_classes:
        skip("action", "the model or the dataset has no action classes")
        skip("classes", "the model or the dataset has no action classes")
    if samples < 2:
        skip("diversity", "needs --samples >= 2")
    if "keypoints" in wanted and not manifest.get("joint_names"):
        skip("keypoints", f"{data_dir} has no ground-truth joints")
    active = [m for m in wanted if m not in skipped]
    need_videos = bool({"fvd", "action", "recon", "diversity"} & set(active))
    timings = {}

    # 1. generation --------------------------------------------------------------------------
    t0 = time.perf_counter()
    clips = load_test_clips(exported, data_dir, split, frames, sampling, max_videos)
    n = len(clips)
    labels = np.asarray([max(c["label"], 0) for c in clips], np.int32)
    real, static, oracle, model_videos, model_kps, detected = [], [], [], [], [], []
    bar = _progbar(n, f"Generating static / oracle / {samples} model videos for {n} test clips "
                      f"({frames} frames, {s}×{s})", verbose)
    for i, clip in enumerate(clips):
        video = clip["frames"]  # [T + 1, S, S, 3]
        kps = exported.detect(video)  # [T + 1, K, 2]
        detected.append(kps)
        if need_videos:
            real.append(video[1:])
            static.append(static_video(video[0], frames))
            oracle.append(exported.translate(video[0], kps[0], kps[1:]))
            per_clip_v, per_clip_k = [], []
            for j in range(samples):
                v, k = exported.predict(video[0], int(labels[i]), seed + i * samples + j, frames)
                per_clip_v.append(v)
                per_clip_k.append(k)
            model_videos.append(np.stack(per_clip_v))
            model_kps.append(np.stack(per_clip_k))
        if bar is not None:
            bar.update(i + 1)
    timings["generation_s"] = time.perf_counter() - t0
    generated_count = n * (1 + samples) if need_videos else 0  # oracle + model (static is free)
    sets = {"real": real, "static": static, "oracle": oracle,
            "model": [v for per in model_videos for v in per]}
    set_labels = {"real": labels, "static": labels, "oracle": labels,
                  "model": np.repeat(labels, samples)}
    repeated_end = int(sum(np.any(np.diff(c["indices"]) == 0) for c in clips))
    report = {
        "model": os.path.abspath(model_dir), "dataset": dataset, "data_dir": os.path.abspath(data_dir),
        "split": split, "image_size": s, "frames": frames, "samples": samples, "seed": seed,
        "num_clips": n, "checkpoints": steps,
        "sampling": {"name": sampling, "sequence_length": exported.sequence_length,
                     "rule": ("stage 2 test sampling: pipeline.sample_indices(n, L) with start 0, "
                              "frames gap = n // (L + 1) apart, steps 0..T (continued past L "
                              "with the same gap)") if sampling == "stage2"
                     else "consecutive frames 0..T",
                     "clips_with_repeated_frames": repeated_end},
        "conditioning": "frame at step 0; every metric scores steps 1..T only",
        "model_seed_rule": "sample j of clip i: predict_video seed = seed + i * samples + j",
        "metrics": active, "skipped": skipped,
        "sets": {name: {"N": len(sets[name]) if need_videos else 0} for name in ("real",) + SETS},
    }

    # 2. recon --------------------------------------------------------------------------------
    if "recon" in active:
        t0 = time.perf_counter()
        reference = np.stack(real)  # [N, T, S, S, 3]
        for name in SETS:
            videos = np.stack(sets[name])
            target = np.repeat(reference, samples, 0) if name == "model" else reference
            values = M.image_metrics(videos, target)
            report["sets"][name]["recon"] = {
                **{k: _mean_std(v) for k, v in values.items()},
                "N": int(len(videos)), "N_frames": int(values["l1"].size), **stamp,
                "units": "L1: mean |Δ| of [0, 1] pixels; PSNR: dB, peak 1, capped at "
                         f"{M.PSNR_CAP_DB:g}; SSIM: tf.image.ssim on [0, 1] RGB"}
        timings["recon_s"] = time.perf_counter() - t0

    # 3. diversity ----------------------------------------------------------------------------
    if "diversity" in active:
        kp_div = [M.keypoint_diversity(k) for k in model_kps]
        vid_div = [M.video_diversity(v) for v in model_videos]
        report["sets"]["model"]["diversity"] = {
            "keypoints": _mean_std(kp_div), "video": _mean_std(vid_div),
            "N": n, "samples_per_clip": samples, **stamp,
            "units": "mean pairwise L1 between the samples of one clip, averaged over clips; "
                     "keypoints in normalised [-1, 1] coordinates, videos in [0, 1] pixels"}

    # 4. action -------------------------------------------------------------------------------
    if "action" in active:
        from kp_tf.evaluation import action as action_lib

        t0 = time.perf_counter()
        # The protocol's classifier on frames, and one on x_t − x_0 that a still video cannot fool.
        for key, motion_only in (("action", False), ("action_motion", True)):
            clf = action_lib.load_or_train(data_dir, frames=frames, image_size=s,
                                           directory=classifier_dir, log=log,
                                           **{**(classifier or {}), "motion_only": motion_only})
            info = {k: clf.info.get(k) for k in ("what", "settings", "num_parameters", "steps",
                                                 "train_seconds", "stopped_by_time_budget",
                                                 "test_accuracy")}
            info["path"] = action_lib.classifier_paths(
                classifier_dir or os.path.join(data_dir, action_lib.CLASSIFIER_DIR), frames, s,
                motion_only)[0]
            report["classifier" if key == "action" else "classifier_motion"] = info
            for name in ("real",) + SETS:
                result = clf.accuracy(np.stack(sets[name]), set_labels[name])
                report["sets"][name][key] = {**result, **stamp}
        timings["action_s"] = time.perf_counter() - t0

    # 5. FVD ----------------------------------------------------------------------------------
    if "fvd" in active:
        from kp_tf.evaluation import frechet_video_distance as fvd_lib

        t0 = time.perf_counter()
        key = (f"{dataset}-{split}-T{frames}-S{s}-{sampling}"
               + (f"-L{exported.sequence_length}" if sampling == "stage2" else "")
               + f"-N{n}-{_data_fingerprint(manifest, split)}")
        cache_dir = fvd_cache_dir if fvd_cache_dir is not None else fvd_lib.default_cache_dir()
        i3d_videos = 0

        def statistics(name, videos, cache_key=None):
            """I3D statistics of a set; the real and static sets depend on the data only, so
            they are cached (`<cache_dir>/<key>.npz`)."""
            nonlocal i3d_videos
            label = "real frames 1..T" if name == "real" else name
            stream = _progress(videos, f"FVD: {label} (I3D)", verbose)
            if cache_key is None:
                stats, hit = fvd_lib.compute_statistics(stream, extractor, fvd_batch_size), False
            else:
                hit = fvd_lib._cache_path(cache_key, cache_dir).exists()  # noqa: SLF001
                stats = fvd_lib.cached_statistics(cache_key, stream, i3d=extractor,
                                                  batch_size=fvd_batch_size, cache_dir=cache_dir)
            i3d_videos += 0 if hit else stats.count
            return stats, hit

        real_stats, real_cached = statistics("real", real, key)
        for name in SETS:
            stats, hit = statistics(name, sets[name], key + "-static" if name == "static" else None)
            report["sets"][name]["fvd"] = {
                "value": fvd_lib.statistics_distance(real_stats, stats),
                "N": stats.count, "N_real": real_stats.count, **stamp,
                "real_statistics_cache": key, "real_statistics_from_cache": real_cached,
                **({"statistics_from_cache": hit} if name == "static" else {}),
                "protocol": "protocols.md §1 (I3D Kinetics-400 logits, legacy bilinear 224², "
                            "generated frames 1..T vs real frames 1..T)",
                "i3d": getattr(extractor, "handle", type(extractor).__name__)}
        timings["fvd_s"] = time.perf_counter() - t0
        timings["fvd_i3d_videos"] = i3d_videos  # videos run through I3D (not from the cache)

    # 6. keypoints ----------------------------------------------------------------------------
    if "keypoints" in active:
        from kp_tf.evaluation import keypoints as kp_lib

        t0 = time.perf_counter()
        log("Keypoint regression to the ground-truth joints ...")
        result = kp_lib.evaluate_keypoints(exported.detector, data_dir, s,
                                           max_train_clips=keypoint_train_clips,
                                           max_test_clips=max_videos,
                                           frame_stride=keypoint_frame_stride)
        result.pop("_regressor", None)
        report["keypoints"] = {**result, "N": result["test_frames"], **stamp}
        timings["keypoints_s"] = time.perf_counter() - t0

    # 7. class matrix -------------------------------------------------------------------------
    if "classes" in active:
        t0 = time.perf_counter()
        num = len(class_names)
        det = np.stack(detected)  # [N, T + 1, K, 2]
        k0 = np.repeat(det[:, 0], num, 0)
        actions = np.tile(np.arange(num), n)
        seeds = np.repeat([seed + i * samples for i in range(n)], num)
        generated = exported.generate(k0, actions, seeds, frames)  # [N·A, T, K, 2]
        generated = np.concatenate([k0[:, None], generated], 1).reshape(n, num, frames + 1, -1, 2)
        gen_by_class = [generated[:, a] for a in range(num)]
        real_by_class = [det[labels == b] for b in range(num)]
        matrices = {}
        for mode, relative in (("displacement", True), ("absolute", False)):
            d = M.class_distance_matrix(gen_by_class, real_by_class, relative=relative)
            matrices[mode] = {"matrix": d, **M.diagonal_minimum(d)}
        # What the data itself allows: real sequences of class a against those of class b.
        # Periodic motions with random phase are far apart even within a class, so a small
        # motion can be nearer to every class than the class's own sequences are.
        control = M.class_distance_matrix(real_by_class, real_by_class, relative=True,
                                          exclude_self=True)
        matrices["real_control"] = {"matrix": control, **M.diagonal_minimum(control)}
        # Against each class's mean real displacement: free of the columns' own spread.
        for name, rows, exclude in (("class_mean", gen_by_class, False),
                                    ("class_mean_real_control", real_by_class, True)):
            d = M.class_distance_matrix(rows, real_by_class, relative=True,
                                        exclude_self=exclude, to_class_mean=True)
            matrices[name] = {"matrix": d, **M.diagonal_minimum(d)}
        # The phase-free comparison: how much each keypoint moves (std over time).
        gen_profiles = [M.motion_profiles(g) for g in gen_by_class]
        real_profiles = [M.motion_profiles(r) if len(r) else r[:, :1] for r in real_by_class]
        for name, rows, exclude in (("motion_profile", gen_profiles, False),
                                    ("motion_profile_real_control", real_profiles, True)):
            d = M.class_distance_matrix(rows, real_profiles, relative=False, exclude_self=exclude)
            matrices[name] = {"matrix": d, **M.diagonal_minimum(d)}
        # Damping: each class's generated motion (from every test clip's k_0) against the real
        # motion of its clips, in pixels of the model's resolution (coordinates span 2).
        gen_amp = [M.motion_amplitude(g) * s / 2 for g in gen_by_class]
        real_amp = [M.motion_amplitude(r) * s / 2 for r in real_by_class]
        amplitude = {"generated_px": gen_amp, "real_px": real_amp,
                     "ratio": [g / r if r > 0 else float("nan") for g, r in zip(gen_amp, real_amp)],
                     "units": "mean Euclidean |k_t − k_0| over frames 1..T and keypoints, pixels"}
        report["classes"] = {
            "class_names": class_names, **matrices, "amplitude": amplitude, "N": n,
            "N_real_per_class": [int(len(r)) for r in real_by_class], **stamp,
            "rows": "requested action (generated from each test clip's first keypoints, z of "
                    "its sample 0)", "columns": "real class (keypoints detected on test clips)",
            "units": "mean |Δ| of normalised coordinates over frames 1..T; 'displacement' "
                     "compares k_t − k_0, 'absolute' the positions"}
        timings["classes_s"] = time.perf_counter() - t0

    total = time.perf_counter() - started
    timings["total_s"] = total
    if generated_count:
        timings["generated_videos"] = generated_count
        # clip loading, detection, oracle and model videos, per 100 oracle + model videos
        timings["generation_s_per_100_videos"] = 100.0 * timings["generation_s"] / generated_count
    if timings.get("fvd_i3d_videos"):
        timings["fvd_s_per_100_videos"] = 100.0 * timings["fvd_s"] / timings["fvd_i3d_videos"]
    report["timing"] = {k: round(v, 2) if isinstance(v, float) else v for k, v in timings.items()}
    report = _jsonable(report)
    markdown = format_markdown(report)
    if out:
        os.makedirs(out, exist_ok=True)
        _write_atomic(os.path.join(out, "report.json"), json.dumps(report, indent=2) + "\n")
        _write_atomic(os.path.join(out, "report.md"), markdown)
    log(markdown)
    log(f"Evaluation took {total:.1f} s" + (f" (written to {out})" if out else ""))
    return report


def _progress(videos: list, label: str, verbose: bool) -> Iterable:
    bar = _progbar(len(videos), label, verbose)
    for i, v in enumerate(videos):
        yield v
        if bar is not None:
            bar.update(i + 1)


# --- Markdown ---------------------------------------------------------------------------------

def _fmt(x, digits=3, pct=False):
    """digits after the point; small values (< 0.01) with `digits` significant digits."""
    if x is None:
        return "—"
    if pct:
        return f"{100.0 * x:.1f} %"
    if x != 0 and abs(x) < 0.01:
        return f"{x:.{digits}g}"
    return f"{x:.{digits}f}"


def _matrix_cells(row) -> str:
    """A matrix row as Markdown cells, its minimum starred."""
    finite = [v for v in row if v is not None]
    low = min(finite) if finite else None
    return " | ".join(_fmt(v, 4) + ("*" if v is not None and v == low else "") for v in row)


def format_markdown(report: dict) -> str:
    r = report
    steps = r["checkpoints"]
    lines = [f"# Evaluation: {r['dataset']} / {r['split']}", "",
             f"Model `{r['model']}` (stage 1 step {steps.get('stage1')}, stage 2 step "
             f"{steps.get('stage2')}); data `{r['data_dir']}`.",
             f"{r['num_clips']} test clips, T = {r['frames']} generated frames (1..T; the "
             f"conditioning frame is never scored), {r['image_size']}×{r['image_size']}, "
             f"{r['samples']} model samples per clip, seed {r['seed']}; sampling: "
             f"{r['sampling']['rule']}.", ""]
    sets = r["sets"]
    header = ["set", "N", "FVD", "action acc.", "action acc. (motion)", "diversity kp",
              "diversity video", "L1", "PSNR (dB)", "SSIM"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in ("real",) + SETS:
        row = sets.get(name, {})
        fvd = row.get("fvd", {}).get("value") if "fvd" in row else None
        act = row.get("action", {}).get("accuracy")
        act_motion = row.get("action_motion", {}).get("accuracy")
        div = row.get("diversity", {})
        rec = row.get("recon", {})
        label = "real (ceiling)" if name == "real" else name
        lines.append("| " + " | ".join([
            label, str(row.get("N", "—")), _fmt(fvd, 1), _fmt(act, pct=True),
            _fmt(act_motion, pct=True),
            _fmt(div.get("keypoints", {}).get("mean"), 4), _fmt(div.get("video", {}).get("mean"), 4),
            _fmt(rec.get("l1", {}).get("mean"), 4), _fmt(rec.get("psnr", {}).get("mean"), 2),
            _fmt(rec.get("ssim", {}).get("mean"), 3)]) + " |")
    notes = []
    if "fvd" in sets.get("model", {}):
        f = sets["model"]["fvd"]
        notes.append(f"FVD: protocols §1, against the real frames 1..T of the same {f['N_real']} "
                     f"clips (real statistics cached as `{f['real_statistics_cache']}`).")
    if "classifier" in r:
        c = r["classifier"]
        notes.append(f"Action accuracy: (2+1)-D conv classifier trained on real training clips "
                     f"({c.get('steps')} steps, {c.get('train_seconds')} s); the target is the "
                     f"clip's own action; the real row is its ceiling on these frames.")
    if "classifier_motion" in r:
        c = r["classifier_motion"]
        notes.append(f"Action accuracy (motion): the same network reading x_t − x_0 only "
                     f"({c.get('steps')} steps, {c.get('train_seconds')} s): a still video is "
                     f"all zeros to it, so the static baseline gets one class for every clip.")
    if "recon" in sets.get("oracle", {}):
        notes.append("L1 / PSNR / SSIM: every generated frame vs the real frame at the same step "
                     "([0, 1] pixels); oracle = stage-1 reconstruction, static = copying frame 0.")
    if "diversity" in sets.get("model", {}):
        notes.append("Diversity: mean pairwise L1 between a clip's samples (keypoints in "
                     "normalised coordinates, videos in [0, 1] pixels).")
    lines += [""] + [f"- {n}" for n in notes]
    if "keypoints" in r:
        k = r["keypoints"]
        lines += ["", "## Keypoint regression to ground-truth joints (protocols §2)", "",
                  f"{k['train_frames']} train / {k['test_frames']} test frames (every "
                  f"{k['frame_stride']}th), {k['image_size']}×{k['image_size']}.", "",
                  "| | error (px) | error (% width) | within 6 px @128 |", "|---|---|---|---|"]
        for name, label in (("model", "learned keypoints → joints"),
                            ("mean_pose_baseline", "mean pose (baseline)")):
            e = k[name]
            lines.append(f"| {label} | {_fmt(e['error_px'], 2)} | {_fmt(e['error_pct_width'], 2)} "
                         f"| {_fmt(e['accuracy_within_6px_at_128'], pct=True)} |")
    if "classes" in r:
        c = r["classes"]
        names = c["class_names"]
        d = c["displacement"]
        lines += ["", "## Class consistency of generated motion", "",
                  f"Mean L1 between keypoint displacements (k_t − k_0) generated for the row's "
                  f"action and those detected on real test clips of the column's class "
                  f"(N = {c['N']} conditioning clips; real clips per class "
                  f"{c['N_real_per_class']}). * = row minimum; rows with the minimum on the "
                  f"diagonal: {sum(d['row_min_on_diagonal'])}/{len(names)}.", "",
                  "| requested \\ real | " + " | ".join(names) + " |",
                  "|" + "---|" * (len(names) + 1)]
        for a, row in enumerate(d["matrix"]):
            lines.append(f"| {names[a]} | " + _matrix_cells(row) + " |")
        tables = (
            ("real_control", "real \\ real", "Control, the same distance between real test "
             "sequences (a sequence is not compared with itself)"),
            ("class_mean", "requested \\ real", "Nearest class mean: mean L1 between each "
             "generated displacement sequence and the mean real one of the column's class"),
            ("class_mean_real_control", "real \\ real", "Its control on real test sequences "
             "(leave-one-out class means)"),
            ("motion_profile", "requested \\ real", "Phase-free: mean L1 between motion profiles "
             "(each keypoint coordinate's standard deviation over frames 0..T), generated vs real"),
            ("motion_profile_real_control", "real \\ real", "Its control on real test sequences"))
        for key, corner, title in tables:
            m = c.get(key)
            if not m:
                continue
            lines += ["", f"{title}: rows with the minimum on the diagonal: "
                      f"{sum(m['row_min_on_diagonal'])}/{len(names)}.", "",
                      f"| {corner} | " + " | ".join(names) + " |",
                      "|" + "---|" * (len(names) + 1)]
            for a, row in enumerate(m["matrix"]):
                lines.append(f"| {names[a]} | " + _matrix_cells(row) + " |")
        amp = c.get("amplitude")
        if amp:
            lines += ["", "Motion amplitude: mean |k_t − k_0| over frames 1..T and keypoints, "
                      "generated for the class (from every clip's first keypoints) vs detected on "
                      "its real clips; a ratio below 1 is motion damped toward the median.", "",
                      "| class | generated (px) | real (px) | generated / real |", "|---|---|---|---|"]
            for name, gen, real, ratio in zip(names, amp["generated_px"], amp["real_px"],
                                              amp["ratio"]):
                lines.append(f"| {name} | {_fmt(gen, 2)} | {_fmt(real, 2)} | {_fmt(ratio, 2)} |")
    if r.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in r["skipped"].items())]
    t = r["timing"]
    lines += ["", f"Time: {t['total_s']:.1f} s in all"
              + (f"; generation {t['generation_s_per_100_videos']:.1f} s per 100 videos"
                 if "generation_s_per_100_videos" in t else "")
              + (f"; I3D {t['fvd_s_per_100_videos']:.1f} s per 100 videos"
                 if "fvd_s_per_100_videos" in t else "") + "."]
    return "\n".join(lines) + "\n"


# --- command line -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kp_tf.evaluate",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="export folder (python -m kp_tf.export)")
    p.add_argument("--dataset", default=None, help="dataset name (default: the export's preset)")
    p.add_argument("--data_dir", default=None, help="converted TFRecords (default data/<dataset>)")
    p.add_argument("--metrics", default=",".join(METRICS),
                   help=f"comma-separated subset of {','.join(METRICS)} (or 'all')")
    p.add_argument("--out", default=None, help="folder for report.json and report.md")
    p.add_argument("--samples", type=int, default=5, help="model samples (seeds) per test clip")
    p.add_argument("--frames", type=int, default=16, help="T, generated frames scored per video")
    p.add_argument("--seed", type=int, default=0, help="first sampling seed")
    p.add_argument("--max_videos", type=int, default=None, help="use at most this many test clips")
    p.add_argument("--split", default="test")
    p.add_argument("--sampling", default="stage2", choices=SAMPLINGS,
                   help="which real frames are steps 0..T (see the module docstring)")
    p.add_argument("--i3d", default=None, help="I3D SavedModel folder, TF-Hub handle or arrays "
                                               "file (default: kp_tf.pretrained's rule)")
    p.add_argument("--fvd_cache_dir", default=None, help="real-statistics cache (default $KP_TF_CACHE/fvd "
                                                         "or ~/.cache/kp_tf/fvd)")
    p.add_argument("--fvd_batch_size", type=int, default=8)
    p.add_argument("--classifier_dir", default=None,
                   help="where the action classifier is kept (default <data_dir>/action_classifier)")
    p.add_argument("--classifier_steps", type=int, default=None, help="training steps of a new classifier")
    p.add_argument("--classifier_seconds", type=float, default=None, help="time budget of a new classifier")
    p.add_argument("--classifier_width", type=int, default=None, help="base width of a new classifier")
    p.add_argument("--keypoint_train_clips", type=int, default=300)
    p.add_argument("--quiet", action="store_true", help="no progress output (the Markdown is still printed)")
    return p


def main(argv=None) -> int:
    from kp_tf.cli import UserError

    args = build_parser().parse_args(argv)
    classifier = {k: v for k, v in (("steps", args.classifier_steps),
                                    ("max_seconds", args.classifier_seconds),
                                    ("width", args.classifier_width)) if v is not None}
    try:
        report = evaluate(args.model, args.dataset, args.data_dir, metrics=args.metrics,
                          out=args.out, samples=args.samples, frames=args.frames, seed=args.seed,
                          max_videos=args.max_videos, split=args.split, sampling=args.sampling,
                          i3d=args.i3d, fvd_cache_dir=args.fvd_cache_dir,
                          fvd_batch_size=args.fvd_batch_size, classifier_dir=args.classifier_dir,
                          classifier=classifier, keypoint_train_clips=args.keypoint_train_clips,
                          verbose=not args.quiet)
    except (EvaluationError, FileNotFoundError, UserError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.quiet:
        print(format_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
