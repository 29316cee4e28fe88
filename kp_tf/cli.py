"""What every command shares: TensorFlow's start-up noise hidden, and one line for a user's error.

`run(main)` is `absl.app.run` with two additions:
  * an error the user can fix (`UserError` and its subclasses: missing data, a missing
    pretrained file, a bad flag value) is printed as one `error: ...` line on stderr with exit
    status 2 instead of a traceback;
  * TensorFlow's C++ start-up lines (oneDNN notices, CUDA probing on a machine without a GPU,
    "All log messages before absl::InitializeLog() ...") are hidden. TF 2.21 prints them through
    Abseil logging before its log level is set up, so TF_CPP_MIN_LOG_LEVEL does not silence
    them; they come while TensorFlow is imported and its devices are listed, so standard error
    is sent to /dev/null for exactly that. `-v 1` (absl's verbosity flag), or
    TF_CPP_MIN_LOG_LEVEL set by the user, keeps them.
"""

from __future__ import annotations

import contextlib
import os
import sys


class UserError(Exception):
    """A problem the user can fix; a command prints its message as one line and exits 2."""


@contextlib.contextmanager
def _stderr_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and lists its devices with the C++ start-up lines hidden (see the
    module docstring); a second call does nothing."""
    if "tensorflow" in sys.modules:
        return
    with _stderr_to_devnull():
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe logs here, once


def _main_with_one_line_errors(main):
    def wrapped(argv):
        from absl import flags, logging

        import kp_tf

        if flags.FLAGS["verbosity"].value <= 0 and kp_tf.TF_LOGS_QUIETED:
            import_tensorflow_quietly()
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)  # libraries' INFO lines (TF-Hub's) stay out
        try:
            return main(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 2
    return wrapped


def run(main) -> None:
    """absl.app.run(main) with one-line errors and quiet start-up (see the module docstring).

    `--help` (or `-h`, `--helpshort`) prints the command's description and its own flags,
    `--helpfull` every flag, both on stdout with exit status 0 (absl's own exit with 1).
    """
    from absl import app

    asked = set(sys.argv[1:])
    if asked & {"--help", "-h", "--helpshort", "-?", "--helpfull"}:
        app.usage(shorthelp="--helpfull" not in asked, writeto_stdout=True, exitcode=0)
    app.run(_main_with_one_line_errors(main))
