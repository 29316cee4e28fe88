"""Fréchet Video Distance, numerically as the reference, streaming and in eager TF2.

Reference: Unterthiner et al., "Towards Accurate Generative Models of Video: A New Metric &
Challenges", 2018; code google-research/frechet_video_distance (`frechet_video_distance.py`).
What the reference does, and what this module reproduces (see also protocols.md §1):
  1. videos [N, T, H, W, 3] with values 0..255;
  2. every frame resized straight to 224×224 with TF1's bilinear resize
     (`tf.compat.v1.image.resize_bilinear`, align_corners=False, half_pixel_centers=False);
  3. scaled by `2 * x / 255 - 1`;
  4. embedded by the TF-Hub module `deepmind/i3d-kinetics-400/1`: the 400 Kinetics logits
     averaged over time;
  5. the Fréchet distance between Gaussians fitted to both feature sets, in float64, with the
     unbiased (N - 1) covariance: |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).
The reference wants exactly 16 videos per batch in graph mode and keeps all features in
memory; here any number of videos streams through in batches of any size, only the running
sums are kept (float64), and the real-video statistics can be cached on disk.

Golden value: 16 videos of 15 all-zero 64×64 frames vs 16 of all-255 frames → 133.9.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

logger = logging.getLogger(__name__)

IMAGE_SIZE = 224
NUM_FEATURES = 400


def default_i3d_handle() -> str:
    """The I3D by the project's rule for pretrained files (kp_tf.evaluation.i3d.find_i3d)."""
    from kp_tf.evaluation.i3d import find_i3d

    return find_i3d()


def default_cache_dir() -> Path:
    """Where real-video statistics are cached: `fvd/` in kp_tf's cache ($KP_TF_CACHE, else
    ~/.cache/kp_tf)."""
    from kp_tf import pretrained

    return pretrained.cache_dir() / "fvd"


# --- preprocessing ----------------------------------------------------------------------------

def preprocess(videos, image_size: int = IMAGE_SIZE):
    """Reference FVD preprocessing: legacy bilinear resize to 224×224, then [0, 255] → [-1, 1].

    Args:
      videos: uint8 or float [N, T, H, W, 3] with values 0..255 (a single video [T, H, W, 3]
        is also accepted and gets a batch axis).
    Returns:
      float32 tf.Tensor [N, T, 224, 224, 3] in [-1, 1].
    """
    import tensorflow as tf

    videos = tf.convert_to_tensor(videos)
    if videos.shape.rank == 4:
        videos = videos[tf.newaxis]
    if videos.shape.rank != 5 or videos.shape[-1] != 3:
        raise ValueError(f"videos must be [N, T, H, W, 3], got shape {videos.shape}")
    shape = tf.shape(videos)
    frames = tf.reshape(tf.cast(videos, tf.float32), tf.concat([[-1], shape[2:]], 0))
    # TF1's resize (corner-aligned sampling grid, no half-pixel offset), as in the reference;
    # tf.image.resize (TF2) uses half-pixel centres and changes the FVD.
    tf_logger = tf.get_logger()
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)  # its one-time deprecation notice is noise here
    try:
        frames = tf.compat.v1.image.resize_bilinear(
            frames, [image_size, image_size], align_corners=False, half_pixel_centers=False)
    finally:
        tf_logger.setLevel(level)
    videos = tf.reshape(frames, tf.concat([shape[:2], [image_size, image_size, 3]], 0))
    return 2.0 * videos / 255.0 - 1.0  # same operation order as the reference


# --- the network ------------------------------------------------------------------------------

class I3DFeatures:
    """The FVD feature extractor: I3D Kinetics-400 logits averaged over time, through `hub.load`.

    Works unchanged with the official TF-Hub handle (TF1 hub format, needs network access the
    first time) and with a local SavedModel written by `tools/export_i3d.py`: both are called
    as `module.signatures["default"](videos)["default"]`.

    Args:
      handle: TF-Hub handle, local folder or the arrays file; default: the project's rule
        for pretrained files (kp_tf.pretrained).

    Call:
      videos: float32 [N, T, 224, 224, 3] in [-1, 1], T >= 9.
    Returns:
      float32 np.ndarray [N, 400].
    """

    def __init__(self, handle: Optional[str] = None):
        import tensorflow_hub as hub

        from kp_tf import pretrained
        from kp_tf.evaluation.i3d import find_i3d

        self.handle = find_i3d(None if handle is None else str(handle))
        try:
            self.module = hub.load(self.handle)
        except Exception as e:  # noqa: BLE001 - re-raised in one line with the remedy
            reason = (str(e).splitlines() or [""])[0][:200]
            raise pretrained.PretrainedFileError(
                f"could not load the I3D network from {self.handle} ({type(e).__name__}: "
                f"{reason}); pass --i3d=DIR with a SavedModel, or the arrays file "
                f"{pretrained.I3D_ARRAYS.filename}") from e
        try:
            self._fn = self.module.signatures["default"]
        except (AttributeError, KeyError) as e:
            raise RuntimeError(f"{self.handle!r} has no 'default' signature; is it the I3D "
                               f"Kinetics-400 module?") from e
        # Both the TF1 hub module and our export take the video as the single signature input;
        # call it by its declared name so that no assumption about positional calls is needed.
        try:
            kwargs = self._fn.structured_input_signature[1]
        except (AttributeError, IndexError, TypeError):
            kwargs = {}
        self._input_key = next(iter(kwargs)) if len(kwargs) == 1 else None

    def __call__(self, videos) -> np.ndarray:
        import tensorflow as tf

        videos = tf.convert_to_tensor(videos, tf.float32)
        lo, hi = float(tf.reduce_min(videos)), float(tf.reduce_max(videos))
        if lo < -1.001 or hi > 1.001:  # the reference asserts the same bounds
            raise ValueError(f"I3D input must be in [-1, 1], got [{lo:.3f}, {hi:.3f}]; use "
                             f"`embed` for 0..255 videos")
        if self._input_key is not None:
            out = self._fn(**{self._input_key: videos})
        else:
            out = self._fn(videos)
        return out["default"].numpy()

    def embed(self, videos) -> np.ndarray:
        """0..255 videos [N, T, H, W, 3] (any size) → features [N, 400]."""
        return self(preprocess(videos))


_EXTRACTORS: dict = {}


def get_extractor(i3d: Union[None, str, os.PathLike, I3DFeatures] = None) -> I3DFeatures:
    """An `I3DFeatures` for a handle (loaded once per handle and process); an extractor
    object (anything callable on [-1, 1] batches, e.g. an `I3DFeatures`) is returned as is."""
    if i3d is not None and not isinstance(i3d, (str, os.PathLike)):
        return i3d
    from kp_tf.evaluation.i3d import find_i3d

    handle = find_i3d(None if i3d is None else str(i3d))
    if handle not in _EXTRACTORS:
        _EXTRACTORS[handle] = I3DFeatures(handle)
    return _EXTRACTORS[handle]


# --- statistics -------------------------------------------------------------------------------

class FeatureStatistics:
    """Streaming mean and covariance of feature vectors, in float64.

    Keeps the count, the sum and the sum of outer products of the features minus a fixed shift
    (the first feature vector seen): the shift removes the large common offset of the logits,
    so `sum_xx / n - mean mean^T` does not cancel catastrophically, and since it does not depend
    on how the stream is cut into batches, neither does the result (beyond float noise).

    Attributes:
      count: number of feature vectors seen.
      mean: [D] float64.
      cov: [D, D] float64 unbiased covariance (divides by count - 1, like the reference).
    """

    def __init__(self, dim: int = NUM_FEATURES):
        self.dim = int(dim)
        self.count = 0
        self._shift = None
        self._sum = np.zeros([self.dim], np.float64)
        self._sum_outer = np.zeros([self.dim, self.dim], np.float64)

    def update(self, features) -> "FeatureStatistics":
        """Adds a batch of features [B, D] (or one [D])."""
        f = np.asarray(features, np.float64)
        if f.ndim == 1:
            f = f[None]
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise ValueError(f"features must be [B, {self.dim}], got {f.shape}")
        if not np.all(np.isfinite(f)):
            raise ValueError("features contain NaN or inf")
        if f.shape[0] == 0:
            return self
        if self._shift is None:
            self._shift = f[0].copy()
        d = f - self._shift
        self._sum += d.sum(axis=0)
        self._sum_outer += d.T @ d
        self.count += f.shape[0]
        return self

    @property
    def mean(self) -> np.ndarray:
        if self.count == 0:
            raise ValueError("no features")
        return self._shift + self._sum / self.count

    @property
    def cov(self) -> np.ndarray:
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 videos, got {self.count}")
        centred = self._sum / self.count
        cov = (self._sum_outer - self.count * np.outer(centred, centred)) / (self.count - 1)
        return (cov + cov.T) / 2.0  # exactly symmetric

    @classmethod
    def from_features(cls, features) -> "FeatureStatistics":
        features = np.asarray(features)
        return cls(features.shape[-1]).update(features)

    def save(self, path, **metadata) -> None:
        """Writes mu, sigma and count (and string metadata) to a .npz, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        meta = {f"meta_{k}": np.asarray(str(v)) for k, v in metadata.items()}
        np.savez(tmp, mu=self.mean, sigma=self.cov, count=np.asarray(self.count), **meta)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path) -> "FeatureStatistics":
        """Reads a .npz written by `save` (mu, sigma, count)."""
        with np.load(path, allow_pickle=False) as f:
            mu, sigma, count = f["mu"], f["sigma"], int(f["count"])
        stats = cls(mu.shape[0])
        # Rebuild the sums around the mean as shift: mean and cov come back exactly.
        stats._shift = mu.astype(np.float64)
        stats.count = count
        stats._sum_outer = sigma.astype(np.float64) * (count - 1)
        return stats


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    d = |mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2)). As in the FID/FVD
    implementations: when the matrix square root of the product is not finite (singular
    product), eps is added to the diagonals; a complex result (round-off on a near-singular
    product) is replaced by its real part.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # sqrtm warns about near-singular input; the fallback below handles the bad case.
        warnings.simplefilter("ignore", RuntimeWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.all(np.isfinite(covmean)):
            logger.warning("FVD: sqrtm of the covariance product is not finite; adding %g to "
                           "the diagonals", eps)
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.max(np.abs(np.diagonal(covmean).imag)) if covmean.size else 0.0
        if imag > 1e-3:
            logger.warning("FVD: sqrtm has a large imaginary component (%g); using the real part",
                           imag)
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def statistics_distance(a: FeatureStatistics, b: FeatureStatistics) -> float:
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


# --- streaming over videos --------------------------------------------------------------------

def iter_batches(videos: Iterable, batch_size: int):
    """Regroups an iterable of 0..255 videos [T, H, W, 3] and/or batches [B, T, H, W, 3] into
    preprocessed batches of `batch_size` videos (the last one may be smaller): np.ndarray
    float32 [b, T, 224, 224, 3] in [-1, 1].

    Videos may differ in H and W (each is resized to 224×224) but not in T: the FVD of a set
    mixes no clip lengths.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pending, num_frames = [], None
    for item in videos:
        item = item.numpy() if hasattr(item, "numpy") else np.asarray(item)
        if item.ndim == 4:
            item = item[None]
        if item.ndim != 5 or item.shape[-1] != 3:
            raise ValueError(f"expected videos [T, H, W, 3] or batches [B, T, H, W, 3], "
                             f"got shape {item.shape}")
        if num_frames is None:
            num_frames = item.shape[1]
        elif item.shape[1] != num_frames:
            raise ValueError(f"all videos of a set must have the same number of frames: "
                             f"{num_frames} then {item.shape[1]}")
        # Resize here, per input item, so that items of different frame sizes can share a batch.
        for start in range(0, item.shape[0], batch_size):
            pending.append(preprocess(item[start:start + batch_size]).numpy())
            while sum(p.shape[0] for p in pending) >= batch_size:
                batch = np.concatenate(pending, axis=0)
                yield batch[:batch_size]
                pending = [batch[batch_size:]] if batch.shape[0] > batch_size else []
    if pending:
        batch = np.concatenate(pending, axis=0)
        if batch.shape[0]:
            yield batch


def compute_statistics(videos: Iterable, i3d: Union[None, str, os.PathLike, I3DFeatures] = None,
                       batch_size: int = 8, max_videos: Optional[int] = None) -> FeatureStatistics:
    """Streams videos (values 0..255) through I3D and accumulates the feature statistics.

    Args:
      videos: iterable of videos [T, H, W, 3] and/or batches [B, T, H, W, 3] (np / tf arrays,
        an array [N, T, H, W, 3], a tf.data.Dataset ...), values 0..255.
      i3d: handle, or an extractor such as `I3DFeatures`; default `default_i3d_handle()`.
      batch_size: videos per I3D call (memory only; the result does not depend on it).
      max_videos: stop after this many videos.
    """
    extractor = get_extractor(i3d)
    stats = FeatureStatistics(NUM_FEATURES)
    for batch in iter_batches(videos, batch_size):
        if max_videos is not None:
            batch = batch[:max_videos - stats.count]
            if batch.shape[0] == 0:
                break
        stats.update(extractor(batch))
        if max_videos is not None and stats.count >= max_videos:
            break
    return stats


def cache_path(name: str, cache_dir) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._=+-]+", "_", str(name)).strip("._")
    if not safe:
        raise ValueError(f"unusable cache name {name!r}")
    return Path(cache_dir).expanduser() / f"{safe}.npz"


def cached_statistics(name: Optional[str], videos: Iterable, *, i3d=None, batch_size: int = 8,
                      cache_dir=None, max_videos: Optional[int] = None,
                      refresh: bool = False) -> FeatureStatistics:
    """`compute_statistics`, cached as `<cache_dir>/<name>.npz` when a name is given.

    The name is the whole key: it must say everything that changes the statistics (dataset,
    split, protocol including the number of frames and the resolution, number of videos).
    `videos` is not touched when the cache file exists (it can be a lazy iterable).
    """
    if name is None:
        return compute_statistics(videos, i3d, batch_size, max_videos)
    path = cache_path(name, cache_dir if cache_dir is not None else default_cache_dir())
    if path.exists() and not refresh:
        logger.info("FVD: real-video statistics from %s", path)
        return FeatureStatistics.load(path)
    extractor = get_extractor(i3d)
    stats = compute_statistics(videos, extractor, batch_size, max_videos)
    stats.save(path, name=name, i3d=getattr(extractor, "handle", type(extractor).__name__))
    logger.info("FVD: cached real-video statistics (%d videos) in %s", stats.count, path)
    return stats


@dataclasses.dataclass
class FVDResult:
    """fvd: the distance; num_real / num_generated: videos on each side."""

    fvd: float
    num_real: int
    num_generated: int
    real: FeatureStatistics = dataclasses.field(repr=False)
    generated: FeatureStatistics = dataclasses.field(repr=False)

    def __float__(self):
        return self.fvd


def fvd(real_videos: Iterable, generated_videos: Iterable, *, i3d=None, batch_size: int = 8,
        real_cache_name: Optional[str] = None, cache_dir=None,
        max_videos: Optional[int] = None) -> FVDResult:
    """Fréchet Video Distance between two sets of videos with values 0..255.

    Args:
      real_videos, generated_videos: iterables of videos [T, H, W, 3] and/or batches
        [B, T, H, W, 3] (uint8 or float 0..255; any H, W; same T within a set, >= 9).
      i3d: TF-Hub handle, local SavedModel folder or `I3DFeatures`; default: the project's
        rule for pretrained files (kp_tf.pretrained).
      batch_size: videos per I3D call.
      real_cache_name: when given, the real statistics are read from / written to
        `<cache_dir>/<real_cache_name>.npz` (see `cached_statistics`).
      cache_dir: default `default_cache_dir()`.
      max_videos: use at most this many videos per side.

    Returns:
      FVDResult (float(result) is the FVD).
    """
    extractor = get_extractor(i3d)
    real = cached_statistics(real_cache_name, real_videos, i3d=extractor, batch_size=batch_size,
                             cache_dir=cache_dir, max_videos=max_videos)
    generated = compute_statistics(generated_videos, extractor, batch_size, max_videos)
    return FVDResult(statistics_distance(real, generated), real.count, generated.count,
                     real, generated)
