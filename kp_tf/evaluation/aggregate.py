"""Results over several runs (seeds): mean, min and max of every metric of their reports.

    python -m kp_tf.evaluation.aggregate --reports=RUN_A/eval,RUN_B/eval,RUN_C/eval --out=DIR

One run per setting decides nothing (the same preset at three seeds has given Weizmann FVDs
from 886 to 1267), so the project's result tables come from several runs and this summary of
their `report.json` files (kp_tf.evaluation.report): for each scalar — FVD, action accuracies,
diversity, reconstruction over the whole frame and the moving region, keypoint error, the
class-consistency counts, per-action motion-only accuracy and moving-region L1 — the mean, min,
max and the spread (max − min, also relative to the mean) over the runs that have it.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Optional

import numpy as np

SETS = ("real", "static", "oracle", "model")
_SET_SCALARS = (("fvd", ("fvd", "value")),
                ("action acc.", ("action", "accuracy")),
                ("motion-only acc.", ("action_motion", "accuracy")),
                ("diversity kp", ("diversity", "keypoints", "mean")),
                ("diversity video", ("diversity", "video", "mean")),
                ("L1", ("recon", "l1", "mean")),
                ("PSNR", ("recon", "psnr", "mean")),
                ("SSIM", ("recon", "ssim", "mean")),
                ("moving L1", ("recon", "moving", "l1", "mean")),
                ("moving PSNR", ("recon", "moving", "psnr", "mean")),
                ("moving SSIM", ("recon", "moving", "ssim", "mean")),
                ("moving perceptual", ("recon", "moving", "perceptual", "mean")))
_CLASS_MATRICES = ("displacement", "class_mean", "motion_profile")


def _get(d, path):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def scalars(report: dict) -> dict:
    """{metric name: value} of one report (absent metrics left out)."""
    out = {}
    for name in SETS:
        row = report.get("sets", {}).get(name, {})
        for label, path in _SET_SCALARS:
            value = _get(row, path)
            if isinstance(value, (int, float)):
                out[f"{name} {label}"] = float(value)
        for action, value in (_get(row, ("action_motion", "per_class")) or {}).items():
            if value is not None:
                out[f"{name} motion-only acc. {action}"] = float(value)
        for action, values in (_get(row, ("recon", "moving", "per_action")) or {}).items():
            if values.get("l1") is not None:
                out[f"{name} moving L1 {action}"] = float(values["l1"])
    error = _get(report, ("keypoints", "model", "error_pct_width"))
    if error is not None:
        out["keypoint error (% width)"] = float(error)
    classes = report.get("classes") or {}
    for matrix in _CLASS_MATRICES + tuple(f"{m}_real_control" if m != "displacement"
                                          else "real_control" for m in _CLASS_MATRICES):
        rows = _get(classes, (matrix, "row_min_on_diagonal"))
        if rows:
            out[f"classes {matrix} (rows on the diagonal)"] = float(sum(rows))
    return out


def aggregate(reports: Iterable[dict]) -> dict:
    """{metric: {mean, min, max, spread, relative_spread, N, values}} over the reports."""
    per_run = [scalars(r) for r in reports]
    names = sorted({k for run in per_run for k in run}, key=_order)
    out = {}
    for name in names:
        values = np.asarray([run[name] for run in per_run if name in run], np.float64)
        mean = float(values.mean())
        spread = float(values.max() - values.min())
        out[name] = {"mean": mean, "min": float(values.min()), "max": float(values.max()),
                     "spread": spread, "relative_spread": spread / abs(mean) if mean else None,
                     "N": int(values.size), "values": values.tolist()}
    return out


def _order(name: str):
    for i, prefix in enumerate(SETS):
        if name.startswith(prefix + " "):
            return (i, name)
    return (len(SETS), name)


def load_reports(paths: Iterable[str]) -> list[dict]:
    """report.json of each path (a report file, or a folder holding one)."""
    reports = []
    for path in paths:
        file = os.path.join(path, "report.json") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            from kp_tf.cli import UserError

            raise UserError(f"{path}: no report.json (run python -m kp_tf.evaluate --out=DIR)")
        with open(file) as f:
            reports.append(json.load(f))
    return reports


def format_markdown(summary: dict, sources: list[str]) -> str:
    lines = [f"# Over {len(sources)} runs", "",
             "Runs: " + ", ".join(f"`{s}`" for s in sources), "",
             "| metric | N | mean | min | max | spread (max − min) | spread / mean |",
             "|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        rel = f"{100 * s['relative_spread']:.1f} %" if s["relative_spread"] is not None else "—"
        lines.append(f"| {name} | {s['N']} | {s['mean']:.4g} | {s['min']:.4g} | {s['max']:.4g} "
                     f"| {s['spread']:.4g} | {rel} |")
    return "\n".join(lines) + "\n"


def write(summary: dict, sources: list[str], out: Optional[str]) -> str:
    from kp_tf.evaluation.report import write_atomic

    markdown = format_markdown(summary, sources)
    if out:
        os.makedirs(out, exist_ok=True)
        write_atomic(os.path.join(out, "summary.json"),
                     json.dumps({"runs": sources, "metrics": summary}, indent=2) + "\n")
        write_atomic(os.path.join(out, "summary.md"), markdown)
    return markdown


def _define_flags():
    from absl import flags

    flags.DEFINE_list("reports", None, "Report folders (or report.json files) of the runs.")
    flags.DEFINE_string("out", None, "Folder for summary.json and summary.md.")
    flags.mark_flag_as_required("reports")


def main(argv):
    del argv
    from absl import flags

    sources = flags.FLAGS.reports
    print(write(aggregate(load_reports(sources)), sources, flags.FLAGS.out))
    return 0


def console_main() -> None:
    """Defines the flags and runs the command (`python -m kp_tf.evaluation.aggregate`)."""
    from kp_tf import cli

    _define_flags()
    cli.run(main)


if __name__ == "__main__":
    console_main()
