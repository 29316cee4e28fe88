"""Shared fixtures: where ../shared is, and tiny configs."""

import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# Before any test module imports TensorFlow: kp_tf picks the CPU kernels (oneDNN) at import.
import kp_tf  # noqa: E402,F401

REPO = Path(__file__).resolve().parent.parent


def shared_dir() -> Path | None:
    """The shared folder by the project's rule ($KP_TF_SHARED, else ../shared); None if absent."""
    from kp_tf import pretrained

    return pretrained.shared_dir()


def command_env(**overrides) -> dict:
    """The environment of a command run as a user would: without TF_CPP_MIN_LOG_LEVEL (whose
    presence tells the commands that the user wants TensorFlow's C++ lines), with overrides."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(overrides)
    return env


# TensorFlow's C++ log lines, by a pattern broader than the commands' filter (kp_tf.cli): any
# severity, any source file, and the line Abseil prints before its logging is set up.
_TF_LOG_LINE = re.compile(r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]|WARNING: All log "
                          r"messages before absl::InitializeLog).*$", re.MULTILINE)


def tensorflow_log_lines(stderr: str) -> list:
    """The lines of TensorFlow's C++ logging in a command's stderr."""
    return [m.group(0) for m in _TF_LOG_LINE.finditer(stderr)]


def skip_or_fail(reason: str):
    """Skips a test that lacks a shared file, but fails it under CI=true."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + " and CI=true, where it must be present")
    pytest.skip(reason)


def require_shared(relative: str) -> Path:
    """Path to a file under ../shared; skips when missing, but fails under CI=true."""
    base = shared_dir()
    path = base / relative if base else None
    if path is None or not path.exists():
        skip_or_fail(f"needs ../shared/{relative} (set KP_TF_SHARED to the shared folder); "
                     f"not found")
    return path


@pytest.fixture
def shared():
    return require_shared


@pytest.fixture
def tiny_config():
    from kp_tf import config
    return config.load_preset("tiny")


I3D_WEIGHTS = "weights/i3d_kinetics400_rgb_scratch.npz"


@pytest.fixture(scope="session")
def i3d_handle():
    """The I3D found as every command finds it (kp_tf.pretrained: flag, caches, the shared
    arrays built once into kp_tf's cache, the download)."""
    from kp_tf import pretrained
    from kp_tf.evaluation.i3d import find_i3d

    try:
        return find_i3d()
    except pretrained.PretrainedFileError as e:
        skip_or_fail(str(e))
