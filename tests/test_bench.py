"""tools/bench.py runs and prints its figures (the figures themselves are read, not asserted)."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _figures(*args: str) -> list[tuple[str, float]]:
    """Runs `tools/bench.py ARGS`; returns its (name, ms) lines after checking it succeeded."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    proc = subprocess.run([sys.executable, "tools/bench.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = [(name.strip(), float(ms))
               for name, ms in re.findall(r"^(.+?)\s+([0-9.]+) ms$", proc.stdout, re.MULTILINE)]
    assert figures and all(ms > 0 for _, ms in figures), proc.stdout
    return figures


def test_bench_stage1_prints_every_part():
    names = [name for name, _ in _figures("stage1", "--preset=tiny", "--calls=1",
                                          "--vgg_weights=none")]
    assert names[0] == "whole step (G update + D update)" and len(names) == 7, names


def test_bench_stage2_prints_every_part():
    for preset in ("tiny", "mgif"):  # with action classes and without (k0-only conditioning)
        names = [name for name, _ in _figures("stage2", f"--preset={preset}", "--calls=1",
                                              "--batch_size=2")]
        assert names[0] == "whole step (G update + D update)" and len(names) == 3, names
