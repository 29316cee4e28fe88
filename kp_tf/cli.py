"""What every command shares: quiet TensorFlow, one-line errors, help that starts with the command.

`run(main)` is `absl.app.run` with these additions:

  * TensorFlow's C++ log lines are dropped from standard error for the whole run: the
    start-up notices (oneDNN, CUDA probing on a machine without a GPU, "All log messages
    before absl::InitializeLog() ..."), which TF 2.21 prints before TF_CPP_MIN_LOG_LEVEL is
    read, and the ones that come later (`TFRecordDataset buffer_size is unspecified`, grappler's
    `remapper failed`, TFLite's "Created TensorFlow Lite XNNPACK delegate"), which read like
    failures or noise to a user and are not. `-v 1` (or more), or
    TF_CPP_MIN_LOG_LEVEL set by the user, keeps them. See `StderrFilter` for how.
  * An error the user can fix (`UserError`: missing data, a missing model or pretrained file,
    a bad flag value or argument) is one `error: ...` line on stderr with exit status 2, not
    a traceback, followed by its indented `details` lines when it has some (a missing dataset:
    where to get it, the layout it needs, the command to run next); so is a write that a
    full disk or a file-size limit refused (`out_of_space_message`); Ctrl-C is one
    `interrupted` line with status 130. A bug still shows its
    traceback (status 1). 0 means the command did its work.
  * Log records (kp_tf's warnings, a library's) read `warning: message`, without absl's prefix
    of date, thread id and source line, which `-v 1` brings back with the debug messages.
  * `--help` prints the command's description (its module docstring) and its own flags, then
    the few common ones, on stdout with exit status 0; `--helpfull` adds every library's flags.

A command module imports nothing heavy at module level (TensorFlow comes in inside `main`), so
the filter is in place before TensorFlow starts. A library module that imports TensorFlow at
the top and has a `python -m` command calls `quiet_tensorflow_logs()` before that import when
it runs as `__main__`.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import subprocess
import sys
from typing import Callable, Optional, Sequence


class UserError(Exception):
    """A problem the user can fix; a command prints its message as one line and exits 2.

    `details`: lines printed as they are, indented, after the `error:` line, for a fix that
    needs more than a sentence (where to download a dataset and how to lay it out); the
    first line still names the problem on its own, for a log searched by `error:`.
    """

    def __init__(self, message, details=()):
        super().__init__(message)
        self.details = tuple(str(line) for line in details)


EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # what a shell reports for a process ended by SIGINT

# --- the standard-error filter ------------------------------------------------------------------

# A line of TensorFlow's C++ logging (Abseil's format): severity and date, time, thread id,
# source file and line (before absl::InitializeLog the "time" is 00:00:<seconds since 1970>).
# Python's absl logging writes the same prefix with a .py file; those
# lines are kp_tf's own warnings and stay. F (fatal) lines stay too: they explain an abort.
_TF_LOG_LINE = re.compile(rb"^[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+(?<!\.py):\d+\] ")
# The second line of cpu_feature_guard's notice, which TF writes as one message with a newline.
_TF_CONTINUATION = re.compile(rb"^To enable the following instructions: .*rebuild TensorFlow "
                              rb"with the appropriate compiler flags\.$")
_TF_PREAMBLE = (b"WARNING: All log messages before absl::InitializeLog() is called are written "
                b"to STDERR")
_TF_CONTINUATION_START = b"To enable the following instructions: "
# TFLite's runtime announces its default CPU delegate once per process, in its own format
# (kp_tf.tflite_export runs the models it converts): a notice, not a problem.
_TFLITE_DELEGATE = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
# The beginning of a TensorFlow line up to its source file, however short.
_TF_LOG_LINE_START = re.compile(rb"[IWE]\d{0,4}(?: [\d:.]*(?: +\d*(?: \S*)?)?)?")


def is_tensorflow_log_line(line: bytes) -> bool:
    """Whether one line (without its newline) is TensorFlow's C++ logging: the filter drops it."""
    return (bool(_TF_LOG_LINE.match(line)) or line in (_TF_PREAMBLE, _TFLITE_DELEGATE)
            or bool(_TF_CONTINUATION.match(line)))


def _may_become_tensorflow_line(partial: bytes) -> bool:
    """Whether a line still without its end could turn out to be one the filter drops."""
    return bool(_TF_LOG_LINE.match(partial) or _TF_LOG_LINE_START.fullmatch(partial)
                or _TF_PREAMBLE.startswith(partial) or _TFLITE_DELEGATE.startswith(partial)
                or partial.startswith(_TF_CONTINUATION_START)
                or _TF_CONTINUATION_START.startswith(partial))


def filter_stream(read_fd: int, write_fd: int) -> None:
    """Copies `read_fd` to `write_fd` until end of file, without TensorFlow's C++ log lines.

    Complete lines are filtered one by one; an incomplete line is forwarded at once unless it
    could still become a TensorFlow line, so prompts and progress displays are not held back.
    A closed or broken output does not stop the copying: the writer must never block.
    """
    pending = b""

    def emit(data: bytes) -> None:
        while data:
            try:
                data = data[os.write(write_fd, data):]
            except InterruptedError:
                continue
            except OSError:
                return

    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        out = b"".join(line + b"\n" for line in lines if not is_tensorflow_log_line(line))
        if pending and not _may_become_tensorflow_line(pending):
            out, pending = out + pending, b""
        emit(out)
    if pending and not is_tensorflow_log_line(pending):
        emit(pending)


class StderrFilter:
    """File descriptor 2 turned into a pipe read by `filter_stream` in a small child process.

    TensorFlow's C++ code writes to the descriptor directly, so only a filter below Python
    sees its lines. A child process rather than a thread: when the command ends by an abort
    (a TensorFlow check failure), os._exit or a signal, the child still sees the end of the
    pipe and writes out everything before it; a thread would die with the buffered lines.
    `close()` (also registered with atexit) restores the descriptor and waits for the child,
    so every line written before it, a traceback included, is out before the command exits.
    Child processes of the command inherit the pipe as their stderr and are filtered too.
    """

    def __init__(self):
        sys.stderr.flush()
        self._saved = os.dup(2)
        os.set_inheritable(self._saved, False)
        read_fd, write_fd = os.pipe()
        try:
            # -I -S: no site packages or environment to load; the child needs only os and re.
            # Its own process group (start_new_session): Ctrl-C at the terminal reaches the command, not the filter,
            # which must stay to pass the command's last words on.
            self._child = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), "--filter-stderr"],
                stdin=read_fd, stdout=self._saved, stderr=self._saved, close_fds=True,
                start_new_session=True)
        except BaseException:
            for fd in (write_fd, self._saved):
                os.close(fd)
            raise
        finally:
            os.close(read_fd)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self.active = True
        atexit.register(self.close)

    def close(self) -> None:
        if not self.active:
            return
        self.active = False
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os.dup2(self._saved, 2)  # drops the last write end this process holds: the child sees EOF
        os.close(self._saved)
        try:
            self._child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass  # a child process of the command still holds the pipe: it ends with it


_filter: Optional[StderrFilter] = None


def _verbosity_in(argv: Sequence[str]) -> int:
    """The -v / --verbosity value on a command line before absl has parsed it (0 if absent)."""
    value = 0
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--":
            break
        name, eq, text = arg.lstrip("-").partition("=")
        if not arg.startswith("-") or name not in ("v", "verbosity"):
            continue
        if not eq:
            text = args[i + 1] if i + 1 < len(args) else ""
        try:
            value = int(text)
        except ValueError:
            pass
    return value


def tensorflow_logs_wanted(argv: Optional[Sequence[str]] = None) -> bool:
    """Whether the user asked for TensorFlow's log lines: `-v 1` or more on the command line,
    or TF_CPP_MIN_LOG_LEVEL in the environment before kp_tf was imported."""
    import kp_tf

    argv = sys.argv[1:] if argv is None else argv
    return not kp_tf.TF_LOGS_QUIETED or _verbosity_in(argv) >= 1


def quiet_tensorflow_logs(argv: Optional[Sequence[str]] = None) -> None:
    """Starts the stderr filter for the rest of the process unless the user wants TensorFlow's
    lines (`tensorflow_logs_wanted`); a second call does nothing. Call it before TensorFlow
    is imported to catch its start-up lines too (`run` does)."""
    global _filter
    if _filter is None and not tensorflow_logs_wanted(argv):
        try:
            _filter = StderrFilter()
        except OSError:
            pass  # no process to spare: the command runs unfiltered rather than not at all


def _stop_filter() -> None:
    global _filter
    if _filter is not None:
        _filter.close()
        _filter = None


# --- a full disk --------------------------------------------------------------------------------

# How the kernel's ENOSPC, EFBIG and EDQUOT read in an OSError and in a TensorFlow error, which
# carries the C library's text rather than an errno.
_OUT_OF_SPACE = ("No space left on device", "File too large", "Disk quota exceeded")


def out_of_space_message(error: BaseException) -> Optional[str]:
    """One line for a write that the disk, a quota or a file-size limit refused (an OSError or
    a TensorFlow error); None for any other error."""
    import errno

    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        where, why = error.filename or "a file", error.strerror
    else:
        text = " ".join(str(getattr(error, "message", error)).split())
        why = next((m for m in _OUT_OF_SPACE if m in text), None)
        if why is None:
            return None
        # TensorFlow writes "...PATH; File too large", PATH last before the reason.
        head = text.split(why)[0].rstrip("; :")
        where = head.split()[-1] if head.split() else "a file"
    return (f"cannot write {where}: {why} (a full disk, a quota or a file-size limit). What "
            f"was complete before is kept; free some space and run the command again.")


# --- help ---------------------------------------------------------------------------------------

_COMMON_HELP = """\
common flags:
  -v,--verbosity: 1 or more also shows TensorFlow's own log lines and debug messages
    (hidden by default, as they are when TF_CPP_MIN_LOG_LEVEL is not set).
  --flagfile: a file of flags, one --name=value a line.
  -?,--help: this help; --helpfull: also the flags of the libraries.
"""


def _module_key(module) -> str:
    # absl files the flags of the module run as __main__ under sys.argv[0].
    return sys.argv[0] if module.__name__ == "__main__" else module.__name__


def _render_flags(flag_list) -> str:
    """absl's own rendering of `flag_list`, without the module headings it adds."""
    from absl import flags

    view = flags.FlagValues()
    for flag in flag_list:
        view[flag.name] = flag
    return view.get_help(prefix="  ", include_special_flags=False).strip("\n")


def help_text(module, full: bool = False) -> str:
    """What `--help` prints: `module`'s docstring, its own flags, flags of other modules it
    adopted as its own (absl's key flags, e.g. train's run settings from kp_tf.config), then
    the common flags; with `full`, then every other flag by module."""
    from absl import flags

    fv = flags.FLAGS
    key = _module_key(module)
    defined = fv.get_flags_for_module(key)
    adopted = [f for f in fv.get_key_flags_for_module(key) if f not in defined]
    parts = [(module.__doc__ or f"{os.path.basename(sys.argv[0])} [flags]").strip() + "\n"]
    if defined:
        parts.append("flags:\n" + _render_flags(defined) + "\n")
    by_module: dict[str, list] = {}
    for flag in adopted:
        by_module.setdefault(fv.find_module_defining_flag(flag.name, "other"), []).append(flag)
    for name, flag_list in by_module.items():
        parts.append(f"flags from {name}:\n" + _render_flags(flag_list) + "\n")
    parts.append(_COMMON_HELP)
    if full:
        shown = set(map(id, defined + adopted))
        for name, flag_list in sorted(fv.flags_by_module_dict().items()):
            rest = [f for f in flag_list if id(f) not in shown]
            if rest:
                parts.append(f"{name}:\n" + _render_flags(rest) + "\n")
    return "\n".join(parts)


# --- running a command --------------------------------------------------------------------------

class PlainFormatter(logging.Formatter):
    """`warning: message`: a log record in the words a user reads (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {super().format(record)}"


def _one_line(message) -> str:
    return " ".join(str(message).split())


def _parse_flags(argv: list) -> list:
    """absl's flag parsing with a flag error as one `error:` line and exit status 2."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {_one_line(e)} (see --help)", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR)


def command_with(flag: str, value: str, *, module: str, script: str,
                 argv: Optional[Sequence[str]] = None) -> str:
    """The command as the user typed it (`argv`, default sys.argv), with `--flag=value` last in
    place of any `--flag` it had: the command to run next, for a message to show.

    Args:
      flag, value: the flag to set; absl's `--flag VALUE` and `-flag` forms are replaced too.
      module: how the command is run with `python -m` (e.g. 'kp_tf.train').
      script: its console script (e.g. 'kp-train'), named when that is what was run.
    """
    import shlex

    argv = list(sys.argv if argv is None else argv)
    names = (f"--{flag}", f"-{flag}")
    args, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        elif not arg.startswith(tuple(n + "=" for n in names)):
            args.append(arg)
    program = script if os.path.basename(argv[0]) == script else f"python -m {module}"
    return f"{program} {shlex.join(args + [f'--{flag}={value}'])}"


def run(main: Callable[[list], Optional[int]], *, takes_arguments: bool = False,
        argv: Optional[list] = None) -> None:
    """Runs `main(argv)` as a command: absl.app.run with the additions of the module docstring.

    Args:
      main: the command; its module's docstring and flags make the help. Returns the exit
        status (None: 0) or raises UserError.
      takes_arguments: whether words other than flags are allowed (passed on in argv[1:]);
        otherwise any is an error.
      argv: the command line, default sys.argv.
    """
    from absl import app, flags
    from absl import logging as absl_logging

    argv = list(sys.argv if argv is None else argv)
    quiet_tensorflow_logs(argv[1:])
    module = sys.modules[main.__module__]
    asked = set(argv[1:])
    if asked & {"--help", "-help", "-h", "--helpshort", "-?", "--helpfull", "-helpfull"}:
        sys.stdout.write(help_text(module, full=bool(asked & {"--helpfull", "-helpfull"})))
        sys.stdout.flush()
        raise SystemExit(0)

    def wrapped(args):
        if flags.FLAGS["verbosity"].value >= 1:
            _stop_filter()  # -v given in a --flagfile: the lines are wanted after all
        else:
            absl_logging.set_verbosity(absl_logging.WARNING)  # libraries' INFO lines stay out
            absl_logging.get_absl_handler().setFormatter(PlainFormatter("%(message)s"))
        try:
            if len(args) > 1 and not takes_arguments:
                raise UserError(f"unexpected argument{'s' if len(args) > 2 else ''} "
                                f"{' '.join(args[1:])} (flags are written --name=value)")
            return main(args)
        except UserError as e:
            print(f"error: {_one_line(e)}", *(f"  {line}" for line in e.details), sep="\n",
                  file=sys.stderr, flush=True)
            return EXIT_USER_ERROR
        except app.UsageError as e:
            print(f"error: {_one_line(e)}", file=sys.stderr, flush=True)
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED
        except Exception as e:  # noqa: BLE001: only a refused write is turned into a line
            message = out_of_space_message(e)
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr, flush=True)
            return EXIT_USER_ERROR

    # The filter stays until atexit: TensorFlow's own exit handlers, registered after it, run
    # before it and may still log.
    app.run(wrapped, argv=argv, flags_parser=_parse_flags)


if __name__ == "__main__" and sys.argv[1:] == ["--filter-stderr"]:
    filter_stream(0, 1)
