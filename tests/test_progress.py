"""kp_tf.progress: plurals, durations, and progress as a bar on a terminal or lines in a log."""

import io

import pytest

from kp_tf import progress
from kp_tf.progress import Progress


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_plural_and_duration():
    assert progress.plural(1, "video") == "1 video"
    assert progress.plural(0, "video") == "0 videos"
    assert progress.plural(2, "class", "classes") == "2 classes"
    assert [progress.duration(s) for s in (0, 12.4, 59.6, 61, 3599, 3600, 7530)] == [
        "0 s", "12 s", "1 min 00 s", "1 min 01 s", "59 min 59 s", "1 h 00 min", "2 h 05 min"]
    assert progress.duration(None) == progress.duration(float("inf")) == "?"
    assert progress.rate_text(3.21, "clip") == "3.2 clips/s"
    assert progress.rate_text(0.25, "step") == "4.0 s/step"


def _log_progress(total=10, **kwargs):
    stream, clock = io.StringIO(), FakeClock()
    return Progress(total, "step", label="keypoints", stream=stream, terminal=False,
                    clock=clock, **kwargs), stream, clock


def test_log_lines_every_n_units_with_mean_values_rate_and_eta():
    bar, stream, clock = _log_progress(total=10, every=4, seconds=1e9)
    for step in range(1, 11):
        clock.now += 2.0  # 2 s a step
        bar.update(step, {"loss": float(step)})
    bar.close()
    lines = stream.getvalue().splitlines()
    # The first update at once (no rate yet), then every 4 steps, then the end.
    assert lines == [
        "keypoints: 1/10 steps (10%), loss 1",
        "keypoints: 5/10 steps (50%), loss 3.5, 2.0 s/step, ETA 10 s",
        "keypoints: 9/10 steps (90%), loss 7.5, 2.0 s/step, ETA 2 s",
        "keypoints: 10/10 steps (100%), loss 10, 2.0 s/step, took 20 s",
    ]


def test_log_lines_every_few_seconds_and_no_duplicate_final_line():
    bar, stream, clock = _log_progress(total=None, seconds=5.0)
    for n in range(1, 7):
        clock.now += 2.0
        bar.update(n)
    bar.close()
    bar.close()  # a second close prints nothing
    # 2 s apart: a line at n=1, then when 5 s have passed (n=4), and the end (n=6).
    assert stream.getvalue().splitlines() == [
        "keypoints: 1 step", "keypoints: 4 steps, 2.0 s/step",
        "keypoints: 6 steps, 2.0 s/step, took 12 s"]


def test_rate_leaves_out_the_wait_for_the_first_unit_but_the_last_line_counts_it():
    """Training: step 1 traces for 30 s, then 1 s a step. The ETA follows the steps; the last
    line gives the rate over the whole run, from a resumed step 10 on."""
    bar, stream, clock = _log_progress(total=20, start=10, every=5, seconds=1e9)
    clock.now += 30.0
    bar.update(11)
    for step in range(12, 21):
        clock.now += 1.0
        bar.update(step)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines == ["keypoints: 11/20 steps (55%)",
                     "keypoints: 16/20 steps (80%), 1.0 steps/s, ETA 4 s",
                     "keypoints: 20/20 steps (100%), 3.9 s/step, took 39 s"]


def test_terminal_bar_is_redrawn_in_place_and_ends_with_a_newline():
    stream, clock = io.StringIO(), FakeClock()
    bar = Progress(4, "clip", label="train", stream=stream, terminal=True, clock=clock)
    for n in range(1, 5):
        clock.now += 1.0
        bar.update(n)
    bar.clear()
    text = stream.getvalue()
    assert "\n" not in text and text.count("\r") == 5  # four draws and the clear
    assert "train  3/4 clips   75% [###############-----]  1.0 clips/s  ETA 1 s" in text
    assert text.endswith("\r\033[K")
    bar.close()
    assert stream.getvalue().endswith("100% [####################]  1.0 clips/s  took 4 s"
                                      "\033[K\n")


def test_terminal_bar_is_redrawn_at_most_ten_times_a_second():
    stream, clock = io.StringIO(), FakeClock()
    bar = Progress(1000, "step", stream=stream, terminal=True, clock=clock)
    for n in range(1, 101):
        clock.now += 0.01
        bar.update(n)
    assert 9 <= stream.getvalue().count("\r") <= 11


@pytest.mark.parametrize("terminal", [True, False])
def test_disabled_progress_writes_nothing(terminal):
    stream = io.StringIO()
    bar = Progress(3, "clip", stream=stream, terminal=terminal, enabled=False)
    bar.update(1)
    bar.clear()
    bar.close()
    assert stream.getvalue() == ""
