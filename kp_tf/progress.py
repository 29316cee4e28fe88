"""Progress of long commands: a bar with an ETA on a terminal, a plain line now and then in a log.

`Progress(total, unit)` follows a count of units (clips, steps, videos) towards `total`:

  * on a terminal (the stream is a tty) one line is redrawn in place, at most ten times a
    second, e.g. `train  120/1000 clips  12% [##--------]  3.2 clips/s  ETA 4 min 35 s`;
  * anywhere else (CI, nohup, `> log`) a plain line is printed when `every` units or `seconds`
    seconds have passed since the previous one, and at the end, e.g.
    `train: 120/1000 clips (12%), 3.2 clips/s, ETA 4 min 35 s`. A carriage-return bar in a
    redirected log is one line that grows by every redraw (megabytes over a training run).

While the work goes on, the rate, and so the ETA, counts from the first update on: the time
before the first unit (TensorFlow tracing its functions, the first shuffle-buffer fill) says
nothing about the next ones. The last line gives the rate over the whole time and how long it
took. `plural` and `duration` are the words every message uses.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Mapping, Optional, TextIO


def plural(count: int, word: str, plural_word: Optional[str] = None) -> str:
    """'1 video', '2 videos', '0 videos'; `plural_word` for the irregular ones ('classes')."""
    return f"{count} {word if count == 1 else (plural_word or word + 's')}"


def duration(seconds: Optional[float]) -> str:
    """'12 s', '4 min 35 s', '2 h 05 min'; '?' when not known yet."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(max(seconds, 0.0)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def rate_text(rate: float, unit: str) -> str:
    """'3.2 clips/s', or '4.1 s/step' below one unit a second (slow training steps)."""
    if rate >= 1.0:
        return f"{rate:.1f} {unit}s/s"
    return f"{1.0 / rate:.1f} s/{unit}"


class Progress:
    """A count of units towards `total`, shown as a bar on a terminal and as lines in a log.

    Args:
      total: units expected; None when not known (no percentage and no ETA then).
      unit: singular name of a unit ('clip', 'step').
      start: the count already done (a resumed training run).
      label: what is counted, at the start of every line ('train', 'keypoints').
      every: in a log, a line at least every this many units ...
      seconds: ... or this many seconds, whichever comes first.
      stream: where to write; default sys.stdout (read at construction).
      terminal: force the bar (True) or the lines (False); default: `stream.isatty()`.
      enabled: False makes every method a no-op, for a caller's quiet mode.
      clock: time source (tests pass a fake one).
    """

    def __init__(self, total: Optional[int], unit: str, *, start: int = 0, label: str = "",
                 every: Optional[int] = None, seconds: float = 30.0,
                 stream: Optional[TextIO] = None, terminal: Optional[bool] = None,
                 enabled: bool = True, clock=time.monotonic):
        self.total = int(total) if total is not None else None
        self.unit, self.label = unit, label
        self.every, self.seconds = every, float(seconds)
        self.stream = stream or sys.stdout
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.terminal = bool(isatty()) if terminal is None else bool(terminal)
        self.enabled = enabled
        self._clock = clock
        self._created = clock()
        self.start = self.done = int(start)
        self._first: Optional[tuple[float, int]] = None  # (time, count) of the first update
        self._last_line: Optional[tuple[float, int]] = None
        self._last_draw = -1.0
        self._drawn = False
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    # --- figures ----------------------------------------------------------------------------

    def rate(self, overall: bool = False) -> Optional[float]:
        """Units per second since the first update (`overall`: since construction); None
        until it can be told."""
        if self._first is None:
            return None
        t0, n0 = (self._created, self.start) if overall else self._first
        elapsed = self._clock() - t0
        if self.done <= n0 or elapsed <= 0:
            return None
        return (self.done - n0) / elapsed

    def eta(self) -> Optional[float]:
        """Seconds left at the current rate; None without a total or a rate."""
        rate = self.rate()
        if self.total is None or not rate:
            return None
        return max(self.total - self.done, 0) / rate

    def _count_text(self) -> str:
        if self.total is None:
            return plural(self.done, self.unit)
        return f"{self.done}/{plural(self.total, self.unit)}"

    def _values_text(self) -> str:
        means = {k: self._sums[k] / self._counts[k] for k in self._sums}
        return ", ".join(f"{k} {v:.4g}" for k, v in means.items())

    def _timing(self, final: bool) -> list[str]:
        """[rate, ETA] while the work goes on; [overall rate, time taken] at the end."""
        if final:
            rate = self.rate(overall=True)
            took = f"took {duration(self._clock() - self._created)}"
            return [rate_text(rate, self.unit), took] if rate else [took]
        rate = self.rate()
        if not rate:
            return []
        if self.total is not None and self.done < self.total:
            return [rate_text(rate, self.unit), f"ETA {duration(self.eta())}"]
        return [rate_text(rate, self.unit)]

    def line(self, final: bool = False) -> str:
        """The log line for the current state; `final`: the one `close` prints."""
        parts = [self._count_text()]
        if self.total:
            parts[0] += f" ({100.0 * self.done / self.total:.0f}%)"
        values = self._values_text()
        if values:
            parts.append(values)
        parts.extend(self._timing(final))
        return (f"{self.label}: " if self.label else "") + ", ".join(parts)

    def _bar_text(self, width: int, final: bool = False) -> str:
        head = (f"{self.label}  " if self.label else "") + self._count_text()
        tail = "".join(f"  {part}" for part in self._timing(final))
        values = self._values_text()
        if values:
            tail += f"  {values}"
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            cells = 20
            filled = int(round(fraction * cells))
            head += f"  {100.0 * fraction:3.0f}% [{'#' * filled}{'-' * (cells - filled)}]"
        return (head + tail)[:max(width - 1, 10)]

    # --- output -----------------------------------------------------------------------------

    def update(self, done: int, values: Optional[Mapping[str, float]] = None) -> None:
        """Sets the count to `done`; `values` (e.g. losses) are averaged until shown."""
        if not self.enabled:
            return
        now = self._clock()
        self.done = int(done)
        first = self._first is None
        if first:
            self._first = (now, self.done)
        for k, v in (values or {}).items():
            self._sums[k] = self._sums.get(k, 0.0) + float(v)
            self._counts[k] = self._counts.get(k, 0) + 1
        finished = self.total is not None and self.done >= self.total
        if self.terminal:
            if finished or now - self._last_draw >= 0.1:
                self._draw(now)
            return
        if first:  # a log shows at once that the work has started, and its first values
            due = True
        else:
            t_line, n_line = self._last_line
            due = (now - t_line >= self.seconds
                   or (self.every is not None and self.done - n_line >= self.every))
        if due and not finished:  # the final line is close()'s
            self._print_line(now)

    def _draw(self, now: float, final: bool = False) -> None:
        width = shutil.get_terminal_size((100, 24)).columns
        self.stream.write("\r" + self._bar_text(width, final) + "\033[K")
        self.stream.flush()
        self._drawn, self._last_draw = True, now
        self._reset_values()

    def _print_line(self, now: float, final: bool = False) -> None:
        print(self.line(final), file=self.stream, flush=True)
        self._last_line = (now, self.done)
        self._reset_values()

    def _reset_values(self) -> None:
        self._sums.clear()
        self._counts.clear()

    def clear(self) -> None:
        """Erases the bar on a terminal so that a message can be printed on a clean line; the
        next update draws it again. Nothing to do in a log."""
        if self.enabled and self.terminal and self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._drawn = False

    def close(self) -> None:
        """Ends the bar with a newline on a terminal; prints the final line in a log."""
        if not self.enabled:
            return
        now = self._clock()
        if self.terminal:
            self._draw(now, final=True)
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
        elif self._last_line is None or self._last_line[1] != self.done or self._sums:
            self._print_line(now, final=True)
        self.enabled = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
