"""Where the pretrained files come from: one rule for every command and test.

The project uses two pretrained networks: VGG19 ImageNet weights (the perceptual loss, eq. (4))
and I3D Kinetics-400 (the FVD feature extractor). Each is looked for, in this order:

  1. the explicit flag: `--vgg_weights=PATH`, `--i3d=DIR` (or `$KP_TF_I3D`);
  2. the framework's own cache: `$KERAS_HOME/models` (default `~/.keras/models`) for VGG19;
     `$TFHUB_CACHE_DIR` (default `<tmp>/tfhub_modules`) and the I3D that kp_tf built earlier
     in its cache (`$KP_TF_CACHE/i3d`, default `~/.cache/kp_tf/i3d`);
  3. the project's shared folder: `$KP_TF_SHARED/weights`, else `../shared/weights` beside the
     repository (the I3D arrays there are built once into a SavedModel in kp_tf's cache);
  4. the download (from `$KP_TF_DOWNLOAD_ORIGIN` instead of the public host when set: a mirror);
  5. else `PretrainedFileError`, whose message is one line naming the file, every place looked
     and the flag to pass; commands print it and exit non-zero.

Every file found is checked before use (its size and sha256 against the published values), so
a truncated or wrong copy gets one line naming it instead of an h5py or protobuf traceback.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

from kp_tf.cli import UserError

ORIGIN_ENV = "KP_TF_DOWNLOAD_ORIGIN"
SHARED_ENV = "KP_TF_SHARED"
CACHE_ENV = "KP_TF_CACHE"
I3D_ENV = "KP_TF_I3D"
TFHUB_I3D = "https://tfhub.dev/deepmind/i3d-kinetics-400/1"


class PretrainedFileError(UserError):
    """A pretrained file that is missing everywhere, or a copy that fails its check."""


@dataclasses.dataclass(frozen=True)
class KnownFile:
    """A published file: its name, size and sha256, where it downloads from, which flag names it."""

    filename: str
    size: int
    sha256: str
    url: str
    flag: str
    what: str


VGG19 = KnownFile(
    filename="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", size=80_134_624,
    sha256="bde7da0dfd621cbf86e11ce04e4946a9a42634c2cfd21318bba090d860699e35",
    url="https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
        "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
    flag="--vgg_weights", what="VGG19 ImageNet weights")

I3D_ARRAYS = KnownFile(
    filename="i3d_kinetics400_rgb_scratch.npz", size=50_902_326,
    sha256="b0fd6e3c48f8a01e5a24e3341bb98c6ae9dfaacbfec9ab6f7ef624fb9079ff2f",
    url=TFHUB_I3D, flag="--i3d", what="I3D Kinetics-400 network for FVD")


# --- places -----------------------------------------------------------------------------------

def _shared_candidate() -> Path:
    env = os.environ.get(SHARED_ENV)
    return Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared"


def shared_dir() -> Optional[Path]:
    """$KP_TF_SHARED, else `../shared` beside the repository; None when it is not a folder."""
    path = _shared_candidate()
    return path if path.is_dir() else None


def no_shared_folder() -> str:
    """How a missing shared folder reads in the list of places looked."""
    return f"{_shared_candidate() / 'weights'} (no shared folder; set ${SHARED_ENV})"


def cache_dir() -> Path:
    """kp_tf's own cache: $KP_TF_CACHE, else ~/.cache/kp_tf (FVD statistics, the built I3D)."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/kp_tf").expanduser()


def keras_models_dir() -> Path:
    """Keras' weight cache, `$KERAS_HOME/models` (KERAS_HOME defaults to ~/.keras)."""
    return Path(os.environ.get("KERAS_HOME") or "~/.keras").expanduser() / "models"


def tfhub_dir() -> Path:
    """TF-Hub's module cache ($TFHUB_CACHE_DIR, else <tmp>/tfhub_modules, as `hub.load`)."""
    return Path(os.environ.get("TFHUB_CACHE_DIR")
                or os.path.join(tempfile.gettempdir(), "tfhub_modules"))


def download_url(url: str) -> str:
    """The URL with scheme and host replaced by $KP_TF_DOWNLOAD_ORIGIN when that is set."""
    origin = os.environ.get(ORIGIN_ENV)
    if not origin:
        return url
    parts = urllib.parse.urlsplit(url)
    return origin.rstrip("/") + parts.path


# --- checks -----------------------------------------------------------------------------------

_VERIFIED: dict = {}


def check_file(path, known: KnownFile) -> Optional[str]:
    """None when `path` is the published file, else why not (one short phrase)."""
    path = Path(path)
    if not path.is_file():
        return "no such file"
    stat = path.stat()
    if stat.st_size != known.size:
        return (f"{stat.st_size:,} bytes where {known.size:,} are expected "
                f"({'truncated' if stat.st_size < known.size else 'not the published file'})")
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:  # hashing 80 MB takes a fraction of a second: once per process
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        _VERIFIED[key] = digest.hexdigest() == known.sha256
    return None if _VERIFIED[key] else "sha256 differs from the published file (corrupt copy)"


def not_found(known: KnownFile, looked: list[str]) -> PretrainedFileError:
    """The one-line error for a file found nowhere: every place looked, and the flag."""
    return PretrainedFileError(
        f"{known.filename} ({known.what}) not found; looked in: {'; '.join(looked)}. "
        f"Copy the file into one of these places or pass {known.flag}=PATH.")


def _download(known: KnownFile, dest: Path) -> Optional[str]:
    """Downloads `known` to `dest` (atomically, checked); None on success, else why not."""
    url = download_url(known.url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 22)
    except (OSError, ValueError) as e:  # URLError, timeouts, refused connections, bad URLs
        tmp.unlink(missing_ok=True)
        return f"download from {url} failed ({getattr(e, 'reason', None) or e})"
    problem = check_file(tmp, known)
    if problem:
        tmp.unlink(missing_ok=True)
        return f"download from {url} gave a bad file ({problem})"
    os.replace(tmp, dest)
    return None


# --- VGG19 ------------------------------------------------------------------------------------

def vgg19_weights(flag: str = "imagenet") -> Optional[str]:
    """The checked path of the VGG19 ImageNet h5 for `--vgg_weights=flag`.

    `flag` is "imagenet" (find it by the rule above), a path (used if it checks out), or
    "none" (random weights, for tests: returns None).
    """
    if flag in (None, "", "none"):
        return None
    if flag != "imagenet":
        problem = check_file(flag, VGG19)
        if problem:
            raise PretrainedFileError(f"--vgg_weights={flag}: {problem}; expected "
                                      f"{VGG19.filename} ({VGG19.size:,} bytes)")
        return str(flag)
    looked = []
    candidates = [keras_models_dir() / VGG19.filename]
    shared = shared_dir()
    if shared is not None:
        candidates.append(shared / "weights" / VGG19.filename)
    else:
        looked.append(no_shared_folder())
    for path in candidates:
        problem = check_file(path, VGG19)
        if problem is None:
            return str(path)
        looked.append(f"{path} ({problem})")
    problem = _download(VGG19, candidates[0])
    if problem is None:
        return str(candidates[0])
    looked.append(problem)
    raise not_found(VGG19, looked)
