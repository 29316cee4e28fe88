"""Shared fixtures: where ../shared is, and tiny configs."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent


def shared_dir() -> Path | None:
    """$KP_TF_SHARED, else ../shared beside the repository; None when absent."""
    env = os.environ.get("KP_TF_SHARED")
    path = Path(env) if env else REPO.parent / "shared"
    return path if path.is_dir() else None


def require_shared(relative: str) -> Path:
    """Path to a file under ../shared; skips when missing, but fails under CI=true."""
    base = shared_dir()
    path = base / relative if base else None
    if path is None or not path.exists():
        reason = (f"needs ../shared/{relative} (set KP_TF_SHARED to the shared folder); "
                  f"not found")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " and CI=true, where it must be present")
        pytest.skip(reason)
    return path


@pytest.fixture
def shared():
    return require_shared


@pytest.fixture
def tiny_config():
    from kp_tf import config
    return config.load_preset("tiny")
