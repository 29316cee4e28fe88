"""The evaluation report as Markdown (`report.md`): one table per part, from `report.json`."""

from __future__ import annotations

SET_ROWS = ("real", "static", "oracle", "model")


def _fmt(x, digits=3, pct=False):
    """digits after the point; small values (< 0.01) with `digits` significant digits."""
    if x is None:
        return "—"
    if pct:
        return f"{100.0 * x:.1f} %"
    if x != 0 and abs(x) < 0.01:
        return f"{x:.{digits}g}"
    return f"{x:.{digits}f}"


def _table(header, rows) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _matrix_cells(row) -> list[str]:
    """A matrix row as Markdown cells, its minimum starred."""
    finite = [v for v in row if v is not None]
    low = min(finite) if finite else None
    return [_fmt(v, 4) + ("*" if v is not None and v == low else "") for v in row]


def _mean(d, *keys):
    for k in keys:
        d = (d or {}).get(k)
    return d


def _sets_table(r) -> list[str]:
    header = ["set", "N", "FVD", "action acc.", "action acc. (motion)", "diversity kp",
              "diversity video", "L1", "PSNR (dB)", "SSIM", "moving L1", "moving PSNR",
              "moving SSIM", "moving perceptual"]
    rows = []
    for name in SET_ROWS:
        row = r["sets"].get(name, {})
        rec = row.get("recon", {})
        label = {"real": "real (ceiling; FVD: other real clips)"}.get(name, name)
        rows.append([label, row.get("N", "—"), _fmt(_mean(row, "fvd", "value"), 1),
                     _fmt(_mean(row, "action", "accuracy"), pct=True),
                     _fmt(_mean(row, "action_motion", "accuracy"), pct=True),
                     _fmt(_mean(row, "diversity", "keypoints", "mean"), 4),
                     _fmt(_mean(row, "diversity", "video", "mean"), 4),
                     _fmt(_mean(rec, "l1", "mean"), 4), _fmt(_mean(rec, "psnr", "mean"), 2),
                     _fmt(_mean(rec, "ssim", "mean"), 3),
                     _fmt(_mean(rec, "moving", "l1", "mean"), 4),
                     _fmt(_mean(rec, "moving", "psnr", "mean"), 2),
                     _fmt(_mean(rec, "moving", "ssim", "mean"), 3),
                     _fmt(_mean(rec, "moving", "perceptual", "mean"), 3)])
    return _table(header, rows)


def _notes(r) -> list[str]:
    sets, notes = r["sets"], []
    if "fvd" in sets.get("model", {}):
        f = sets["model"]["fvd"]
        notes.append(f"FVD: protocols §1, against the real frames 1..T of the same {f['N_real']} "
                     f"clips (real statistics cached as `{f['real_statistics_cache']}`).")
    if "fvd" in sets.get("real", {}):
        notes.append(f"Real row's FVD: {sets['real']['fvd']['what']} (N = "
                     f"{sets['real']['fvd']['N']}).")
    if "classifier" in r:
        c = r["classifier"]
        notes.append(f"Action accuracy: (2+1)-D conv classifier trained on real training clips "
                     f"({c.get('steps')} steps, {c.get('train_seconds')} s); the target is the "
                     f"clip's own action; the real row is its ceiling on these frames.")
    if "classifier_motion" in r:
        c = r["classifier_motion"]
        notes.append(f"Action accuracy (motion): the same network reading x_t − x_0 only "
                     f"({c.get('steps')} steps, {c.get('train_seconds')} s), with a class "
                     f"'still' for videos without motion (which counts as wrong).")
    if "recon" in sets.get("oracle", {}):
        rec = sets["oracle"]["recon"]
        notes.append("L1 / PSNR / SSIM: every generated frame vs the real frame at the same step "
                     "([0, 1] pixels); oracle = stage-1 reconstruction, static = copying frame 0. "
                     f"Moving region: {rec['moving_region']} "
                     f"({100 * rec['moving']['pixels_fraction']:.1f} % of the pixels).")
    if "diversity" in sets.get("model", {}):
        notes.append("Diversity: mean pairwise L1 between a clip's samples (keypoints in "
                     "normalised coordinates, videos in [0, 1] pixels).")
    return [""] + [f"- {n}" for n in notes]


def _per_action(r) -> list[str]:
    """Per action: the moving-region L1 of each set and the motion-only accuracy."""
    sets = r["sets"]
    actions = list(_mean(sets.get("oracle"), "recon", "moving", "per_action") or {})
    if not actions:
        return []
    rows = []
    for action in actions:
        row = [action]
        for name in ("static", "oracle", "model"):
            row.append(_fmt(_mean(sets.get(name), "recon", "moving", "per_action", action, "l1"), 4))
        for name in ("real", "static", "oracle", "model"):
            per_class = _mean(sets.get(name), "action_motion", "per_class") or {}
            row.append(_fmt(per_class.get(action), pct=True))
        rows.append(row)
    return ["", "## Per action", "",
            "Moving-region L1 of each set, and the motion-only classifier's accuracy.", ""] + _table(
        ["action", "moving L1 static", "oracle", "model", "motion acc. real", "static",
         "oracle", "model"], rows)


def _keypoint_table(k) -> list[str]:
    rows = [[label, _fmt(k[name]["error_px"], 2), _fmt(k[name]["error_pct_width"], 2),
             _fmt(k[name]["accuracy_within_6px_at_128"], pct=True)]
            for name, label in (("model", "learned keypoints → joints"),
                                ("mean_pose_baseline", "mean pose (baseline)"))]
    return (["", "## Keypoint regression to ground-truth joints (protocols §2)", "",
             f"{k['train_frames']} train / {k['test_frames']} test frames (every "
             f"{k['frame_stride']}th), {k['image_size']}×{k['image_size']}.", ""]
            + _table(["", "error (px)", "error (% width)", "within 6 px @128"], rows))


_CLASS_TABLES = (
    ("real_control", "real \\ real", "Control, the same distance between real test sequences "
     "(a sequence is not compared with itself)"),
    ("class_mean", "requested \\ real", "Nearest class mean: mean L1 between each generated "
     "displacement sequence and the mean real one of the column's class"),
    ("class_mean_real_control", "real \\ real", "Its control on real test sequences "
     "(leave-one-out class means)"),
    ("motion_profile", "requested \\ real", "Phase-free: mean L1 between motion profiles (each "
     "keypoint coordinate's standard deviation over frames 0..T), generated vs real"),
    ("motion_profile_real_control", "real \\ real", "Its control on real test sequences"))


def _class_tables(c) -> list[str]:
    names = c["class_names"]
    d = c["displacement"]
    lines = ["", "## Class consistency of generated motion", "",
             f"Mean L1 between keypoint displacements (k_t − k_0) generated for the row's action "
             f"and those detected on real test clips of the column's class (N = {c['N']} "
             f"conditioning clips; real clips per class {c['N_real_per_class']}). * = row "
             f"minimum; rows with the minimum on the diagonal: "
             f"{sum(d['row_min_on_diagonal'])}/{len(names)}.", ""]
    lines += _table(["requested \\ real"] + names,
                    [[names[a]] + _matrix_cells(row) for a, row in enumerate(d["matrix"])])
    for key, corner, title in _CLASS_TABLES:
        m = c.get(key)
        if not m:
            continue
        lines += ["", f"{title}: rows with the minimum on the diagonal: "
                  f"{sum(m['row_min_on_diagonal'])}/{len(names)}.", ""]
        lines += _table([corner] + names,
                        [[names[a]] + _matrix_cells(row) for a, row in enumerate(m["matrix"])])
    amp = c.get("amplitude")
    if amp:
        lines += ["", "Motion amplitude: mean |k_t − k_0| over frames 1..T and keypoints, "
                  "generated for the class (from every clip's first keypoints) vs detected on "
                  "its real clips; a ratio below 1 is motion damped toward the median.", ""]
        lines += _table(["class", "generated (px)", "real (px)", "generated / real"],
                        [[n, _fmt(g, 2), _fmt(r, 2), _fmt(q, 2)] for n, g, r, q in
                         zip(names, amp["generated_px"], amp["real_px"], amp["ratio"])])
    return lines


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
    lines += _sets_table(r) + _notes(r) + _per_action(r)
    if "keypoints" in r:
        lines += _keypoint_table(r["keypoints"])
    if "classes" in r:
        lines += _class_tables(r["classes"])
    if r.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in r["skipped"].items())]
    t = r["timing"]
    lines += ["", f"Time: {t['total_s']:.1f} s in all"
              + (f"; generation {t['generation_s_per_100_videos']:.1f} s per 100 videos"
                 if "generation_s_per_100_videos" in t else "")
              + (f"; I3D {t['fvd_s_per_100_videos']:.1f} s per 100 videos"
                 if "fvd_s_per_100_videos" in t else "") + "."]
    return "\n".join(lines) + "\n"
