"""Shared fixtures: where ../shared is, and tiny configs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Before any test module imports TensorFlow: kp_tf picks the CPU kernels (oneDNN) at import.
import kp_tf  # noqa: E402,F401

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


I3D_WEIGHTS = "weights/i3d_kinetics400_rgb_scratch.npz"


@pytest.fixture(scope="session")
def i3d_handle(tmp_path_factory):
    """$KP_TF_I3D when it is an existing folder (.ci/run builds it once), else an export of the
    shared weights into this session's temp dir, made once with tools/export_i3d.py."""
    env = os.environ.get("KP_TF_I3D")
    if env and Path(env).is_dir():
        return env
    weights = require_shared(I3D_WEIGHTS)
    out = tmp_path_factory.getbasetemp() / "i3d_kinetics400_savedmodel"
    if not (out / "saved_model.pb").exists():
        subprocess.run([sys.executable, str(REPO / "tools" / "export_i3d.py"),
                        f"--weights={weights}", f"--out={out}"], check=True, cwd=REPO)
    return str(out)
