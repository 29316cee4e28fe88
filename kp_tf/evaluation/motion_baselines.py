"""What motion a deterministic predictor could reach on a run's pseudo-labels (the class-consistency matrix).

The class matrix of `evaluate --metrics=classes` asks whether keypoint motion generated for
action a is nearer the real motion of class a than of any other class. Before blaming the
motion generator for a failing row, this module measures two predictors that need no training
and no latent code, built from the *training* pseudo-labels:

  class_mean  k_0 + the mean displacement (k_t − k_0) of the training clips of class a;
  class_median  k_0 + their per-coordinate median: what an L1 loss drives a generator to
              when k_0 does not tell it which keypoints move (the L1-best constant is the
              median), e.g. when only some figures' keypoints follow a limb;
  nearest_k0  k_0 + the displacement of the training clip of class a whose first keypoints
              (centred on their mean) are nearest k_0 (mean L1): it follows where each
              keypoint sits on this figure, as a conditional model could.

and, as `evaluate` does, the real test sequences against leave-one-out class means (the
control). If a row fails for both predictors, the pseudo-labels do not carry that class's
motion consistently across clips (e.g. different keypoints follow the legs on different
figures), and no generator conditioned on k_0 and the action alone is expected to pass it.

Run: `python -m kp_tf.evaluation.motion_baselines --logdir=runs/synthetic [--frames=16]`.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from kp_tf.evaluation import metrics


def load_sequences(cfg, pseudo_label_dir: str, split: str, smoothing: float):
    """Every clip's test window (frame 0 on, `pipeline.sample_indices` without a seed) →
    (float64 [N, L + 1, K, 2], int labels [N])."""
    from kp_tf.data import pipeline

    c = cfg.replace(pseudo_label_smoothing=smoothing, augment=False)
    firsts, seqs, labels = [], [], []
    for batch in pipeline.stage2_sequences(c, pseudo_label_dir, split, training=False,
                                           batch_size=256):
        firsts.append(batch["first"].numpy())
        seqs.append(batch["sequence"].numpy())
        labels.append(batch["label"].numpy())
    if not labels:
        raise ValueError(f"{pseudo_label_dir}: no {split} pseudo-labels")
    seq = np.concatenate([np.concatenate(firsts)[:, None], np.concatenate(seqs)], 1)
    return seq.astype(np.float64), np.concatenate(labels)


def predict(train, train_labels, test_first, num_classes: int) -> dict:
    """{predictor name: [A arrays [N_test, T + 1, K, 2]]}: the motion each predictor gives every
    test clip's first keypoints (`test_first` [N, K, 2]) for every class a (rows of the matrix)."""
    train_disp = train[:, 1:] - train[:, :1]
    centred = lambda k: k - k.mean(axis=1, keepdims=True)  # noqa: E731
    test_c, train_c = centred(test_first), centred(train[:, 0])
    out = {"class_mean": [], "class_median": [], "nearest_k0": []}
    for a in range(num_classes):
        idx = np.flatnonzero(train_labels == a)
        if len(idx) == 0:
            raise ValueError(f"no training clip of class {a}")
        mean_disp = train_disp[idx].mean(axis=0)
        median_disp = np.median(train_disp[idx], axis=0)
        dist = np.abs(test_c[:, None] - train_c[idx][None]).mean(axis=(2, 3))
        nearest = train_disp[idx[np.argmin(dist, axis=1)]]
        for name, disp in (("class_mean", np.broadcast_to(mean_disp, nearest.shape)),
                           ("class_median", np.broadcast_to(median_disp, nearest.shape)),
                           ("nearest_k0", nearest)):
            out[name].append(np.concatenate([test_first[:, None], test_first[:, None] + disp], 1))
    return out


def baselines(train, train_labels, test, test_labels, num_classes: int) -> dict:
    """Nearest-class-mean matrices (rows: predicted or real class a, columns: real class b)
    of both predictors and of the real test sequences themselves (leave-one-out)."""
    real = [test[test_labels == b] for b in range(num_classes)]
    predicted = predict(train, train_labels, test[:, 0], num_classes)
    report = {}
    for name, rows in predicted.items():
        d = metrics.class_distance_matrix(rows, real, relative=True, to_class_mean=True)
        report[name] = {"matrix": d.tolist(), **metrics.diagonal_minimum(d)}
    d = metrics.class_distance_matrix(real, real, relative=True, exclude_self=True,
                                      to_class_mean=True)
    report["real_control"] = {"matrix": d.tolist(), **metrics.diagonal_minimum(d)}
    own = np.stack([predicted["nearest_k0"][c][i] for i, c in enumerate(test_labels)])
    report["nearest_k0_l1_to_own_future"] = float(np.abs(own[:, 1:] - test[:, 1:]).mean())
    report["repeat_k0_l1"] = float(np.abs(test[:, 1:] - test[:, :1]).mean())
    disp = lambda x: x[:, 1:] - x[:, :1]  # noqa: E731
    report["mean_abs_displacement"] = {
        "real": [float(np.abs(disp(r)).mean()) if len(r) else float("nan") for r in real],
        "class_mean_predictor": [float(np.abs(disp(train[train_labels == a]).mean(0)).mean())
                                 for a in range(num_classes)]}
    return report


def run(logdir: str, frames: Optional[int] = 16) -> dict:
    """The report of `baselines` on a run's pseudo-labels, with the run and the counts.

    Raises:
      FileNotFoundError: the run has no trained stage 2 (motion/config.json).
      ValueError: a split without pseudo-labels, a class without training clips.
    """
    from kp_tf import run_folder

    cfg = run_folder.read_stage_config(logdir, "motion")
    labels_dir = os.path.join(logdir, "pseudo_labels")
    # Training clips as stage 2 reads them (smoothed); test clips as detected, as evaluate does.
    train, train_labels = load_sequences(cfg, labels_dir, "train", cfg.pseudo_label_smoothing)
    test, test_labels = load_sequences(cfg, labels_dir, "test", 0.0)
    if frames:
        train, test = train[:, :frames + 1], test[:, :frames + 1]
    report = baselines(train, train_labels, test, test_labels, cfg.num_actions)
    report.update({"logdir": logdir, "frames": int(train.shape[1] - 1),
                   "N_train": int(len(train)), "N_test": int(len(test))})
    return report


def format_report(report: dict) -> str:
    """The lines the command prints: each matrix's rows on the diagonal, the L1 to the clip's
    own future, and the mean displacement per class."""
    lines = []
    for name in ("class_mean", "class_median", "nearest_k0", "real_control"):
        rows = report[name]["row_min_on_diagonal"]
        lines.append(f"{name:>12}: {sum(rows)}/{len(rows)} rows on the diagonal {rows}")
    lines.append(f"nearest_k0 L1 to the clip's own future "
                 f"{report['nearest_k0_l1_to_own_future']:.4f} "
                 f"(repeating k_0: {report['repeat_k0_l1']:.4f})")
    disp = report["mean_abs_displacement"]
    lines.append(f"mean |k_t − k_0| per class: real {np.round(disp['real'], 4).tolist()} "
                 f"| class-mean predictor {np.round(disp['class_mean_predictor'], 4).tolist()}")
    return "\n".join(lines)


def _define_flags() -> None:
    """The command's flags; only when run as __main__, so that importing this module beside
    another command's (tests, the evaluation) defines nothing."""
    from absl import flags

    flags.DEFINE_string("logdir", None, "A run with motion/config.json and pseudo_labels/.")
    flags.DEFINE_integer("frames", 16, "T, steps after k_0 (evaluate's default).", lower_bound=1)
    flags.mark_flag_as_required("logdir")


def main(argv) -> int:
    del argv
    from absl import flags

    from kp_tf import cli

    fv = flags.FLAGS
    try:
        report = run(fv.logdir, fv.frames)
    except (FileNotFoundError, ValueError) as e:
        raise cli.UserError(str(e)) from e
    print(format_report(report))
    return 0


def console_main() -> None:
    """Defines the flags and runs the command (`python -m kp_tf.evaluation.motion_baselines`)."""
    from kp_tf import cli

    _define_flags()
    cli.run(main)


if __name__ == "__main__":
    console_main()
