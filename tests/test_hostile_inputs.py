"""Hostile inputs: `tools/hostile_inputs.py --subset=ci` on the tiny run's export. The whole
set (docs/reliability.md has its table) takes minutes; this subset covers each kind of
outcome: files that make_tfrecords skips with their reason or uses, malformed labels.csv rows,
an image predict refuses and one it uses, --frames outside its limits, a driving video
animate refuses."""

import re
import subprocess
import sys

from _tiny_run import tiny_run  # noqa: F401  (a fixture)
from conftest import REPO, command_env


def test_hostile_inputs_are_named_or_used_and_none_crashes(tiny_run, tmp_path):  # noqa: F811
    result = subprocess.run(
        [sys.executable, "tools/hostile_inputs.py", f"--model={tiny_run.export_dir}",
         "--subset=ci", f"--work={tmp_path}", "--timeout=300"],
        cwd=REPO, env=command_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    rows = dict(re.findall(r"^\| (\w+) \| (\d+ \| \d+ \| \d+ \| \d+) \|$", result.stdout,
                           re.MULTILINE))
    counts = {k: [int(n) for n in v.split(" | ")] for k, v in rows.items()}
    # tried, ran, named, crashed
    assert counts["make_tfrecords"] == [27, 11, 16, 0], result.stdout
    assert counts["predict"] == [4, 1, 3, 0], result.stdout
    assert counts["animate"] == [1, 0, 1, 0], result.stdout
    # A refusal names the file and the problem.
    assert re.search(r"garbage\.png: not a readable image", result.stdout), result.stdout
    assert "labels.csv:5: frames column 'abc' is not a count" in result.stdout, result.stdout
