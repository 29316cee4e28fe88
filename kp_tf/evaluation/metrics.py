"""Frame, diversity and class-consistency metrics for generated videos (protocols §4–§6).

Conventions (every function states its own):
  * images / videos: uint8 0..255 or float in [0, 1]; `to_unit` converts. L1 is the mean
    absolute difference of pixel values in [0, 1]; PSNR uses a peak of 1 (= 255 for uint8) and
    is capped at `PSNR_CAP_DB` (identical images give the cap instead of inf, so that means
    stay finite); SSIM is `tf.image.ssim` (Gaussian 11×11 window, σ = 1.5, k1 = 0.01,
    k2 = 0.03, as Wang et al. 2004) on [0, 1] RGB frames, averaged over the channels.
  * keypoints: (x, y) normalised to [-1, 1] (the export's convention).
  * "pairwise L1" of two sequences is the mean absolute difference per coordinate
    (mean over frames, keypoints and x/y), i.e. in normalised units, not a sum.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from kp_tf.conventions import to_unit

PSNR_CAP_DB = 100.0


# --- pixels --------------------------------------------------------------------------------

def _frames(x) -> np.ndarray:
    """[..., H, W, C] → [N, H, W, C] in [0, 1]."""
    x = to_unit(x)
    if x.ndim < 3:
        raise ValueError(f"expected images [..., H, W, C], got shape {x.shape}")
    return x.reshape((-1,) + x.shape[-3:])


def l1(x, y) -> np.ndarray:
    """Per-image mean absolute error in [0, 1] units: [..., H, W, C] pairs → [N]."""
    a, b = _frames(x), _frames(y)
    _same_shape(a, b)
    return np.abs(a - b).mean(axis=(1, 2, 3))


def psnr(x, y, cap_db: float = PSNR_CAP_DB) -> np.ndarray:
    """Per-image PSNR in dB with peak 1 ([0, 1] images): [..., H, W, C] pairs → [N].

    Identical images have MSE 0 (PSNR inf); the MSE is floored so the result is at most
    `cap_db` (100 dB ⇔ MSE 1e-10).
    """
    a, b = _frames(x), _frames(y)
    _same_shape(a, b)
    mse = np.square(a.astype(np.float64) - b).mean(axis=(1, 2, 3))
    return 10.0 * np.log10(1.0 / np.maximum(mse, 10.0 ** (-cap_db / 10.0)))


def ssim(x, y) -> np.ndarray:
    """Per-image SSIM (`tf.image.ssim`, max_val 1, 11×11 Gaussian window): → [N].

    Frames smaller than 11 pixels cannot use the 11×11 window and raise ValueError.
    """
    import tensorflow as tf

    a, b = _frames(x), _frames(y)
    _same_shape(a, b)
    if min(a.shape[1:3]) < 11:
        raise ValueError(f"SSIM's 11×11 window needs frames of at least 11×11, got {a.shape[1:3]}")
    out = []
    for start in range(0, len(a), 256):  # bounded memory for long videos
        out.append(tf.image.ssim(tf.constant(a[start:start + 256]), tf.constant(b[start:start + 256]),
                                 max_val=1.0).numpy())
    return np.concatenate(out) if out else np.zeros([0], np.float32)


def _same_shape(a, b):
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")


def image_metrics(x, y) -> dict:
    """Per-frame arrays {'l1', 'psnr', 'ssim'} between two image stacks of the same shape."""
    return {"l1": l1(x, y), "psnr": psnr(x, y), "ssim": ssim(x, y)}


# --- where the motion is ------------------------------------------------------------------

MOVING_THRESHOLD = 0.1  # a channel changes by more than a tenth of its range
MOVING_DILATION = 2     # pixels added around it on every side


def moving_region(reference, target, threshold: float = MOVING_THRESHOLD,
                  dilation: int = MOVING_DILATION) -> np.ndarray:
    """Where the motion is: the pixels at which the real target frame differs from the
    reference frame by more than `threshold` ([0, 1] units) in any colour channel, dilated by
    `dilation` pixels (a (2·dilation + 1)² square), so that the edges of a moving part and the
    background it uncovers count too.

    reference, target: [..., H, W, C] (reference broadcast against target) → bool [N, H, W].
    """
    from scipy import ndimage

    a, b = to_unit(reference), to_unit(target)
    changed = np.abs(np.broadcast_to(a, b.shape) - b).max(axis=-1) > threshold
    changed = changed.reshape((-1,) + changed.shape[-2:])
    if dilation > 0:
        size = (1, 2 * dilation + 1, 2 * dilation + 1)
        changed = ndimage.maximum_filter(changed, size=size, mode="constant")
    return changed


def ssim_map(x, y) -> np.ndarray:
    """Per-pixel SSIM ([0, 1] images, Gaussian window σ = 1.5 truncated at 11×11, k1 = 0.01,
    k2 = 0.03 as `tf.image.ssim`, edges reflected so the map covers the whole frame), averaged
    over the channels: [..., H, W, C] pairs → [N, H, W]."""
    from scipy import ndimage

    a, b = _frames(x), _frames(y)  # float32: a float64 map is twice as slow, no more exact
    _same_shape(a, b)

    def blur(v):
        return ndimage.gaussian_filter(v, sigma=(0, 1.5, 1.5, 0), truncate=3.5, mode="reflect")

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1)
                                                       * (var_a + var_b + c2))
    return value.mean(axis=-1)


def region_metrics(x, y, region) -> dict:
    """L1, PSNR and SSIM of each frame pair within a region (see `moving_region`), per frame:
    {'l1', 'psnr', 'ssim'} → [N], NaN for frames whose region is empty; 'pixels' [N] its size.

    L1 and PSNR average over the region's pixels and channels; SSIM averages `ssim_map`
    there. PSNR has the peak of 1 and the cap of `psnr`.
    """
    a, b = _frames(x), _frames(y)
    _same_shape(a, b)
    region = np.asarray(region, bool).reshape(a.shape[:3])
    pixels = region.sum(axis=(1, 2))
    count = np.maximum(pixels, 1)[:, None]
    diff = (a - b).reshape(len(a), -1, a.shape[-1])
    inside = region.reshape(len(a), -1)
    l1_values = (np.abs(diff).mean(-1) * inside).sum(1) / count[:, 0]
    mse = (np.square(diff.astype(np.float64)).mean(-1) * inside).sum(1) / count[:, 0]
    psnr_values = 10.0 * np.log10(1.0 / np.maximum(mse, 10.0 ** (-PSNR_CAP_DB / 10.0)))
    ssim_values = (ssim_map(a, b).reshape(len(a), -1) * inside).sum(1) / count[:, 0]
    empty = pixels == 0
    out = {"l1": l1_values, "psnr": psnr_values, "ssim": ssim_values}
    return {**{k: np.where(empty, np.nan, v) for k, v in out.items()}, "pixels": pixels}


class RunningMeans:
    """Accumulates per-item values of several named metrics; `result()` → {name: {mean, std,
    count}} over the finite values (a NaN marks an item the metric does not apply to)."""

    def __init__(self):
        self._values: dict[str, list] = {}

    def update(self, values: dict) -> "RunningMeans":
        for name, v in values.items():
            self._values.setdefault(name, []).append(np.asarray(v, np.float64).reshape(-1))
        return self

    def result(self) -> dict:
        out = {}
        for name, parts in self._values.items():
            v = np.concatenate(parts) if parts else np.zeros([0])
            v = v[np.isfinite(v)]
            out[name] = {"mean": float(v.mean()) if v.size else float("nan"),
                         "std": float(v.std()) if v.size else float("nan"),
                         "count": int(v.size)}
        return out


# --- diversity (protocols §5) -------------------------------------------------------------

def mean_pairwise_l1(samples) -> float:
    """Mean over all pairs i < j of mean |s_i − s_j| for S samples [S, ...] (S ≥ 2).

    0 exactly when all samples are identical.
    """
    s = np.asarray(samples, np.float64)
    if s.shape[0] < 2:
        raise ValueError(f"diversity needs at least 2 samples, got {s.shape[0]}")
    flat = s.reshape(s.shape[0], -1)
    pairs = [np.abs(flat[i] - flat[j]).mean() for i, j in itertools.combinations(range(len(flat)), 2)]
    return float(np.mean(pairs))


def keypoint_diversity(keypoints) -> float:
    """S keypoint sequences [S, T, K, 2] (normalised coordinates) of one input → mean pairwise L1."""
    k = np.asarray(keypoints)
    if k.ndim != 4 or k.shape[-1] != 2:
        raise ValueError(f"expected keypoints [S, T, K, 2], got {k.shape}")
    return mean_pairwise_l1(k)


def video_diversity(videos) -> float:
    """S videos [S, T, H, W, 3] (uint8 or [0, 1]) of one input → mean pairwise L1 in [0, 1] units."""
    v = to_unit(videos)
    if v.ndim != 5:
        raise ValueError(f"expected videos [S, T, H, W, 3], got {v.shape}")
    return mean_pairwise_l1(v)


# --- class consistency of generated keypoint sequences -----------------------------------

def class_distance_matrix(generated: Sequence, real: Sequence, relative: bool = True,
                          exclude_self: bool = False, to_class_mean: bool = False) -> np.ndarray:
    """D[a, b] = mean L1 between generated sequences requested as class a and real sequences of
    class b (every generated × real pair, mean absolute coordinate difference), or, with
    `to_class_mean`, between each generated sequence and the mean real sequence of class b.

    Every pair's distance includes the spread of class b's own sequences (their motion
    variety and keypoint noise), so a class whose real sequences are quiet is near every row;
    the class mean averages that spread out and leaves how far the motion is from the class's
    typical motion (the nearest-class-mean rule).

    Args:
      generated: A arrays [N_a, T, K, 2] (or [N_a, T + 1, K, 2] with the first frame, see
        `relative`): sequences generated for action a (typically from the same conditioning
        frames for every a).
      real: A arrays [M_b, T, K, 2]: real (pseudo-label / detected) sequences of class b.
        An empty array (no clip of that class) gives a NaN column.
      relative: subtract each sequence's first frame (compare motion, not where the figure
        stands); the first frame is then dropped, so give T + 1 frames to keep T steps.
      exclude_self: `generated` is `real` itself (the control of what the data allows): on the
        diagonal a sequence is not compared with itself (nor part of the class mean).
      to_class_mean: compare with the class's mean sequence instead of every sequence.
    Returns:
      float64 [A, A]; rows = requested class, columns = real class.
    """
    if len(generated) != len(real):
        raise ValueError(f"{len(generated)} generated classes vs {len(real)} real classes")
    prep = [_motion(g, relative) for g in generated], [_motion(r, relative) for r in real]
    num = len(generated)
    d = np.full([num, num], np.nan)
    for a, g in enumerate(prep[0]):
        for b, r in enumerate(prep[1]):
            if len(g) == 0 or len(r) == 0:
                continue
            if g.shape[1:] != r.shape[1:]:
                raise ValueError(f"class {a} sequences {g.shape[1:]} vs real class {b} {r.shape[1:]}")
            if to_class_mean:
                if exclude_self and a == b:
                    if len(g) < 2:
                        continue
                    # leave-one-out: the mean of the other sequences of the class
                    others = (r.sum(axis=0)[None] - g) / (len(r) - 1)
                    d[a, b] = float(np.abs(g - others).mean())
                else:
                    d[a, b] = float(np.abs(g - r.mean(axis=0)[None]).mean())
                continue
            # mean_{i,j} mean |g_i − r_j|, one generated sequence at a time (bounded memory)
            if exclude_self and a == b:
                if len(g) < 2:
                    continue
                d[a, b] = float(np.mean([np.delete(np.abs(gi[None] - r).mean(axis=(1, 2, 3)), i).mean()
                                         for i, gi in enumerate(g)]))
            else:
                d[a, b] = float(np.mean([np.abs(gi[None] - r).mean() for gi in g]))
    return d


def motion_profiles(sequences) -> np.ndarray:
    """How much each keypoint coordinate moves: its standard deviation over time.

    [N, T, K, 2] → [N, 1, K, 2] (a one-step "sequence", for `class_distance_matrix` with
    relative=False). Unlike the sequences themselves it does not depend on the phase of a
    periodic motion, so two waves that start at different points of their cycle match.
    """
    x = np.asarray(sequences, np.float64)
    if x.ndim != 4 or x.shape[-1] != 2:
        raise ValueError(f"expected sequences [N, T, K, 2], got {x.shape}")
    return x.std(axis=1, keepdims=True)


def motion_amplitude(sequences) -> float:
    """How far the keypoints move from where they start: the mean Euclidean |k_t − k_0| over
    sequences, steps t ≥ 1 and keypoints (NaN for no sequences).

    [N, T + 1, K, 2] → a float in the sequences' units. The ratio of a generator's amplitude to
    the real one says how much an L1-trained model damps a class's motion toward its median,
    which the distance matrices cannot tell apart from a motion of the wrong kind.
    """
    x = _motion(sequences, relative=True)
    return float(np.linalg.norm(x, axis=-1).mean()) if x.size else float("nan")


def _motion(x, relative: bool) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return x.reshape((0,) + x.shape[1:]) if x.ndim > 1 else x
    if x.ndim != 4 or x.shape[-1] != 2:
        raise ValueError(f"expected sequences [N, T, K, 2], got {x.shape}")
    return x[:, 1:] - x[:, :1] if relative else x


def diagonal_minimum(matrix) -> dict:
    """Whether each row's minimum lies on the diagonal (the generated motion of class a is closer
    to real class a than to any other). NaN entries are ignored; a row without values is False."""
    m = np.asarray(matrix, np.float64)
    rows = []
    for a, row in enumerate(m):
        finite = np.where(np.isfinite(row), row, np.inf)
        rows.append(bool(np.isfinite(finite[a]) and finite[a] <= finite.min()))
    return {"row_min_on_diagonal": rows, "fraction": float(np.mean(rows)) if rows else float("nan")}
