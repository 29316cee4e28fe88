"""The whole pipeline in order: data → stage 1 → pseudo-labels → stage 2 → export → samples.

Under MultiWorkerMirrored every worker runs this, and the chief alone writes: the data, the
pseudo-labels (the others wait for both), the stages' configs, checkpoints and summaries
(kp_tf.training.loop), the export and the samples (docs/reliability.md).

Each step is skipped when its output exists and is complete: the data when its manifest
exists, a training stage when its checkpoint has reached the configured steps (a shorter
one resumes), pseudo-labels when they were made by the newest stage-1 checkpoint, the export
when it was made from the newest checkpoints of both stages.
"""

from __future__ import annotations

import os

from absl import logging

from kp_tf import conventions, run_folder
from kp_tf.progress import plural
from kp_tf.run_folder import latest_checkpoint, paths
from kp_tf.training import loop

STAGES = ("data",) + run_folder.STEPS


def on_chief(strategy, fn, *args) -> None:
    """fn(*args) on the chief alone, then every worker waits until it is done (loop.barrier):
    the data and the pseudo-labels are written once, by the chief, and read by all."""
    if loop.is_chief(strategy):
        fn(*args)
    loop.barrier(strategy)


def prepare_data(cfg) -> str:
    """Returns the data folder, made on first use: a real dataset converted from `cfg.src`
    (the conversion and manifest of `kp_tf.make_tfrecords`), a generated one generated.

    An existing conversion of the right dataset and resolution is used as it is, whatever
    its clip counts, so a user's own (e.g. larger) synthetic set is never regenerated, unless
    an older version of the generator made it; `kp_tf.data.sources.existing_conversion` says
    what is refused (a --src other than the recorded one, a folder of another conversion).
    """
    from kp_tf.data import datasets, sources

    data_dir = cfg.resolved_data_dir
    if sources.existing_conversion(cfg.dataset, data_dir, cfg.src, cfg.image_size) is not None:
        return data_dir
    if not datasets.get_spec(cfg.dataset).has_source:
        datasets.ensure_converted(cfg.dataset, data_dir, resolution=cfg.image_size)
        return data_dir
    print(f"Converting {cfg.dataset} from {cfg.src} into {data_dir} (once; later runs reuse it) "
          f"...", flush=True)
    manifest = datasets.convert(cfg.dataset, cfg.src, data_dir, resolution=cfg.image_size)
    print(datasets.format_summary(manifest, data_dir), flush=True)
    return data_dir


def train_keypoints(cfg, strategy) -> str:
    from kp_tf.data import pipeline
    from kp_tf.training.keypoint_trainer import KeypointTrainer

    on_chief(strategy, prepare_data, cfg)
    out = paths(cfg)["keypoints"]
    if loop.is_chief(strategy):
        run_folder.write_config(cfg, out)
    with strategy.scope():
        trainer = KeypointTrainer(cfg)
    # Two phases when the preset jitters the targets: jittered pairs teach the keypoints, then
    # plain pairs let the translator copy the static parts of the reference again. The second
    # fit resumes from the first's final checkpoint, so a killed run resumes in either phase.
    # Each phase: (final step, data config, whether the detector trains).
    phases = [(cfg.stage1_steps, cfg, True)]
    if cfg.plain_pair_steps > 0:
        plain = cfg.replace(target_shift=0.0, target_rotation=0.0, target_scale=0.0)
        if not cfg.plain_pair_detector:  # a frozen detector needs no warped references
            plain = plain.replace(lambda_equivariance=0.0)
        phases = [(cfg.stage1_steps - cfg.plain_pair_steps, cfg, True),
                  (cfg.stage1_steps, plain, cfg.plain_pair_detector)]
    first_step = 0
    for phase, (steps, data_cfg, train_detector) in enumerate(phases):
        if steps <= first_step:
            continue
        trainer.train_detector = train_detector
        # Each phase reads its own seeded stream from its first step; a resumed run skips the
        # pairs it has trained on, so it sees what an uninterrupted run would.
        loop.fit(trainer,
                 lambda start, c=data_cfg, p=phase, first=first_step: pipeline.stage1_pairs(
                     c, "train", training=True, seed=loop.derived_seed(c.seed, 1, p),
                     skip=(start - first) * c.batch_size),
                 steps=steps, logdir=out, strategy=strategy,
                 checkpoint_every=cfg.checkpoint_every, summary_every=cfg.summary_every,
                 image_summary_every=cfg.image_summary_every, xla=cfg.xla)
        first_step = steps
    return latest_checkpoint(out)


def pseudo_labels(cfg) -> str:
    from kp_tf.training import pseudo_labels as pl

    checkpoint = latest_checkpoint(paths(cfg)["keypoints"])
    if checkpoint is None:
        raise FileNotFoundError(f"no stage-1 checkpoint in {paths(cfg)['keypoints']}: "
                                f"train the keypoints first (--stage=keypoints)")
    out = paths(cfg)["pseudo_labels"]
    precision = loop.resolve_precision(cfg.inference_precision)
    if pl.is_current(out, checkpoint, precision):
        return out
    print(f"Pseudo-labelling every frame with {checkpoint} ...", flush=True)
    with loop.dtype_policy(precision):
        detector = run_folder.restore_detector(cfg, checkpoint)
    summary = pl.make_pseudo_labels(detector, cfg,
                                    cfg.resolved_data_dir, out, checkpoint, verbose=True)
    made = ", ".join(f"{split} {plural(info['clips'], 'clip')} "
                     f"({plural(info['frames'], 'frame')})"
                     for split, info in summary["splits"].items())
    print(f"Pseudo-labels in {out}: {made or 'no clips'}, {summary['seconds']:.1f} s", flush=True)
    return out


def train_motion(cfg, strategy) -> str:
    from kp_tf.data import pipeline
    from kp_tf.training.motion_trainer import MotionTrainer

    on_chief(strategy, pseudo_labels, cfg)
    labels = paths(cfg)["pseudo_labels"]
    out = paths(cfg)["motion"]
    if loop.is_chief(strategy):
        run_folder.write_config(cfg, out)
    with strategy.scope():
        trainer = MotionTrainer(cfg)
    loop.fit(trainer,
             lambda start: pipeline.stage2_sequences(
                 cfg, labels, "train", training=True, seed=loop.derived_seed(cfg.seed, 2),
                 skip=start * cfg.stage2_batch_size),
             steps=cfg.stage2_steps, logdir=out, strategy=strategy,
             checkpoint_every=cfg.checkpoint_every, summary_every=cfg.summary_every,
             image_summary_every=cfg.image_summary_every, xla=cfg.xla)
    return latest_checkpoint(out)


def export(cfg) -> str:
    from kp_tf import serving

    out = paths(cfg)["export"]
    serving.export_run(cfg, out)
    return out


def first_frame_per_label(cfg, data_dir: str, split: str, num_actions: int) -> dict:
    """{label: first frame of the first clip of that label}, float32 [S, S, 3] in [-1, 1];
    reads until every label in [0, num_actions) is found (one clip if 0)."""
    from kp_tf.data import pipeline

    frames = {}
    for clip in pipeline.clip_sequences(cfg, data_dir, split, frames=1):
        frames.setdefault(int(clip["label"]), conventions.to_model(clip["frames"][0].numpy()))
        if len(frames) >= max(num_actions, 1):
            break
    return frames


def samples(cfg, frames: int = 32, per_action: int = 2) -> str:
    """GIFs of the exported model: for each action, videos from the first frame of the first
    test clip of that action (as the evaluation conditions: a frame of a clip of the requested
    action; the first test clip when the action has none), each beside its keypoints
    (`samples/<action>_<i>.gif`)."""
    import numpy as np

    from kp_tf import viz
    from kp_tf.inference import Predictor

    out = paths(cfg)["samples"]
    made_from = run_folder.read_export_info(paths(cfg)["export"])
    if run_folder.read_export_info(out) == made_from:
        return out  # already made from this export
    os.makedirs(out, exist_ok=True)
    predictor = Predictor(paths(cfg)["export"])
    first_frames = first_frame_per_label(cfg, cfg.resolved_data_dir, "test",
                                         len(predictor.actions))
    fallback = next(iter(first_frames.values()))
    for index, action in enumerate(predictor.actions or ["unconditional"]):
        first = first_frames.get(index, fallback)
        for i in range(per_action):
            video, keypoints, _ = predictor.predict(first.astype(np.float32), index, i, frames)
            viz.write_gif(os.path.join(out, f"{action}_{i}.gif"),
                          viz.keypoint_video(video, keypoints), fps=8)
    run_folder.write_export_info(out, made_from)
    print(f"Sample videos in {out}", flush=True)
    return out


def run(cfg, stage: str = "all", strategy=None):
    """Runs one stage or, with stage='all', every stage in order."""
    if stage != "all" and stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose all or one of {STAGES}")
    strategy = strategy or loop.make_strategy()
    loop.configure_determinism(cfg.deterministic)
    steps = STAGES if stage == "all" else (stage,)
    if "data" in steps or "keypoints" in steps:
        from kp_tf.data import sources

        # Missing data or a bad --src is found in seconds, before the VGG weights are looked
        # for (or downloaded) and before a conversion that may take an hour.
        sources.existing_conversion(cfg.dataset, cfg.resolved_data_dir, cfg.src, cfg.image_size)
    if "keypoints" in steps and not run_folder.stage_finished(paths(cfg)["keypoints"], cfg.stage1_steps):
        from kp_tf import pretrained

        pretrained.vgg19_weights(cfg.vgg_weights)  # fail now, not after preparing the data
    # One `train` per run folder: two would interleave checkpoints, pseudo-labels and exports.
    # Other workers of a multi-worker run share the chief's folder and write none of it.
    lock = run_folder.RunLock(cfg.resolved_logdir)
    if loop.is_chief(strategy):
        lock.acquire()
    try:
        for name in steps:
            _run_step(cfg, name, strategy)
        # The workers leave together: one that ends while the chief still exports makes
        # TensorFlow's coordination service report the task as crashed.
        loop.barrier(strategy)
    finally:
        lock.release()


def _run_step(cfg, name: str, strategy) -> None:
    logging.info("stage %s", name)
    if name == "data":
        on_chief(strategy, prepare_data, cfg)
    elif name == "keypoints":
        train_keypoints(cfg, strategy)
    elif name == "pseudo_labels":
        on_chief(strategy, pseudo_labels, cfg)
    elif name == "motion":
        train_motion(cfg, strategy)
    elif not loop.is_chief(strategy):
        return  # the export and the samples are the chief's; nobody waits for them
    elif name == "export":
        export(cfg)
    elif name == "samples":
        samples(cfg)
