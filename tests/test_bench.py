"""tools/bench.py runs and prints its figures (the figures themselves are read, not asserted)."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_stage1_prints_every_part():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    proc = subprocess.run([sys.executable, "tools/bench.py", "stage1", "--preset=tiny",
                           "--calls=1", "--vgg_weights=none"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = re.findall(r"^(.+?)\s+([0-9.]+) ms$", proc.stdout, re.MULTILINE)
    names = [name.strip() for name, _ in figures]
    assert names[0] == "whole step (G update + D update)" and len(names) == 7, proc.stdout
    assert all(float(ms) > 0 for _, ms in figures)


def test_bench_stage2_prints_every_part():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    for preset in ("tiny", "mgif"):  # with action classes and without (K0-only conditioning)
        proc = subprocess.run([sys.executable, "tools/bench.py", "stage2", f"--preset={preset}",
                               "--calls=1", "--batch_size=2"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        figures = re.findall(r"^(.+?)\s+([0-9.]+) ms$", proc.stdout, re.MULTILINE)
        names = [name.strip() for name, _ in figures]
        assert names[0] == "whole step (G update + D update)" and len(names) == 3, proc.stdout
        assert all(float(ms) > 0 for _, ms in figures)
