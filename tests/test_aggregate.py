"""Results over seeds: kp_tf.evaluation.aggregate summarises several runs' reports."""

import json
import subprocess
import sys

import pytest

from conftest import REPO, command_env
from kp_tf.evaluation import aggregate


def _report(fvd, motion, moving_l1, error, on_diagonal):
    return {"sets": {"model": {"fvd": {"value": fvd},
                               "action_motion": {"accuracy": motion,
                                                 "per_class": {"jack": motion, "bend": None}},
                               "recon": {"moving": {"l1": {"mean": moving_l1},
                                                    "per_action": {"jack": {"l1": moving_l1}}}}},
                     "static": {"fvd": {"value": 1000.0}}},
            "keypoints": {"model": {"error_pct_width": error}},
            "classes": {"class_mean": {"row_min_on_diagonal": on_diagonal}}}


def test_mean_min_max_and_spread_of_every_metric():
    reports = [_report(900.0, 0.5, 0.20, 3.0, [True, True, False]),
               _report(1000.0, 0.75, 0.10, 3.5, [True, True, True]),
               _report(1100.0, 1.0, 0.15, 4.0, [False, True, False])]
    summary = aggregate.aggregate(reports)
    fvd = summary["model fvd"]
    assert (fvd["mean"], fvd["min"], fvd["max"], fvd["spread"], fvd["N"]) == (1000, 900, 1100,
                                                                            200, 3)
    assert fvd["relative_spread"] == pytest.approx(0.2)
    assert summary["static fvd"]["spread"] == 0
    assert summary["model motion-only acc. jack"]["mean"] == pytest.approx(0.75)
    assert "model motion-only acc. bend" not in summary  # no clip of it: not a number
    assert summary["model moving L1 jack"]["min"] == pytest.approx(0.10)
    assert summary["keypoint error (% width)"]["max"] == 4.0
    assert summary["classes class_mean (rows on the diagonal)"]["values"] == [2, 3, 1]
    names = list(summary)
    assert names.index("static fvd") < names.index("model fvd")  # sets in the report's order


def test_command_writes_the_summary(tmp_path):
    folders = []
    for i, fvd in enumerate((800.0, 1200.0)):
        folder = tmp_path / f"run{i}"
        folder.mkdir()
        (folder / "report.json").write_text(json.dumps(_report(fvd, 0.5, 0.1, 3.0, [True])))
        folders.append(str(folder))
    result = subprocess.run([sys.executable, "-m", "kp_tf.evaluation.aggregate",
                             f"--reports={','.join(folders)}", f"--out={tmp_path / 'all'}"],
                            cwd=REPO, env=command_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "| model fvd | 2 | 1000 | 800 | 1200 | 400 | 40.0 % |" in result.stdout
    stored = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert stored["runs"] == folders and stored["metrics"]["model fvd"]["values"] == [800, 1200]
    missing = subprocess.run([sys.executable, "-m", "kp_tf.evaluation.aggregate",
                              f"--reports={tmp_path / 'nowhere'}"], cwd=REPO, env=command_env(),
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no report.json" in missing.stderr
