"""tools/bench.py runs and prints its figures (the figures themselves are read, not asserted)."""

import json
import re
import subprocess
import sys

from conftest import REPO, command_env, tensorflow_log_lines


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/bench.py", *args], cwd=REPO,
                          env=command_env(KERAS_BACKEND="tensorflow"), capture_output=True,
                          text=True, timeout=600)


def _figures(*args: str) -> tuple[list[tuple[str, float]], str]:
    """Runs `tools/bench.py ARGS`; returns its (name, ms) lines and its output after checking
    it succeeded."""
    proc = _bench(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not tensorflow_log_lines(proc.stderr), proc.stderr[-2000:]
    figures = [(name.strip(), float(ms))
               for name, ms in re.findall(r"^(.+?)\s+([0-9.]+) ms$", proc.stdout, re.MULTILINE)]
    assert figures and all(ms > 0 for _, ms in figures), proc.stdout
    return figures, proc.stdout


def test_bench_stage1_prints_every_part_with_set_overrides():
    figures, out = _figures("stage1", "--preset=tiny", "--calls=1", "--vgg_weights=none",
                            "--set=detector_downsample=2", "--set=num_keypoints=5")
    names = [name for name, _ in figures]
    assert names[0] == "whole step (G update + D update)" and len(names) == 8, names
    assert names[1] == "whole step, detector frozen (plain-pair phase)", names
    assert "K 5," in out and "detector downsample 2," in out, out.splitlines()[0]


def test_bench_set_rejects_an_unknown_setting_or_a_bad_value():
    proc = _bench("stage2", "--preset=tiny", "--set=lstm_unit=4")
    assert proc.returncode == 2 and "'lstm_unit=4'" in proc.stderr, proc.stderr[-500:]
    assert proc.stderr.count("\n") == 1, proc.stderr[-500:]
    proc = _bench("stage2", "--preset=tiny", "--set=lstm_units=many")
    assert proc.returncode == 2 and "'lstm_units=many'" in proc.stderr, proc.stderr[-500:]
    assert proc.stderr.count("\n") == 1, proc.stderr[-500:]


def test_bench_names_a_missing_benchmark_and_a_flag_of_another():
    proc = _bench("--preset=tiny")
    assert proc.returncode == 2 and proc.stderr == "error: name one benchmark: data, stage1, " \
                                                   "stage2, predict, convert\n", proc.stderr[-500:]
    proc = _bench("stage2", "--preset=tiny", "--vgg_weights=none", "--seconds=1")
    assert proc.returncode == 2, proc.stderr[-500:]
    assert proc.stderr == "error: --seconds, --vgg_weights are not flags of bench.py stage2 " \
                          "(see --help)\n"
    help_text = _bench("--help")
    assert help_text.returncode == 0 and help_text.stdout.startswith("Benchmarks, one subcommand")
    assert "--set: stage1, stage2, predict: override a preset setting" in help_text.stdout


def test_bench_stage2_prints_every_part():
    for preset in ("tiny", "mgif"):  # with action classes and without (k0-only conditioning)
        figures, _ = _figures("stage2", f"--preset={preset}", "--calls=1", "--batch_size=2")
        names = [name for name, _ in figures]
        assert names[0] == "whole step (G update + D update)" and len(names) == 3, names


def test_bench_predict_times_the_serving_video_in_each_precision(tmp_path):
    for precision, images in (("float32", 1), ("mixed_bfloat16", 2)):
        out = tmp_path / f"{precision}.json"
        figures, _ = _figures("predict", "--preset=tiny", "--calls=1", "--video_frames=10",
                              f"--images={images}", f"--precision={precision}", f"--json={out}")
        assert [name for name, _ in figures] == [f"image → 10-frame video, {images} image(s)"]
        assert json.loads(out.read_text())["precision"] == precision


def test_bench_convert_prints_the_rate_and_the_size_per_1000_clips():
    proc = _bench("convert", "--preset=penn", "--clips=2", "--frames=3")
    assert proc.returncode == 0 and not tensorflow_log_lines(proc.stderr), proc.stderr[-2000:]
    first, figures = proc.stdout.splitlines()
    assert first.startswith("bench convert: penn, 2 fake clips of 3 frames at 480x270 to "
                            "128x128"), first
    assert re.fullmatch(r"[0-9.]+ clips/s, \d+ frames/s; per 1,000 clips: [0-9.]+ min \([0-9.]+ "
                        r"min of CPU\), [0-9.]+ GiB \([0-9.]+ KiB a frame\)", figures), figures
