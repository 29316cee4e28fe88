"""Moving an image with keypoints from elsewhere: a driving video (motion transfer) or a
second image (keypoint interpolation); the logic of `python -m kp_tf.animate` and
`python -m kp_tf.interpolate`.

The keypoint rules are TensorFlow ops on tensors or arrays, shared by the Python path below
and the export's `animate` and `interpolate` signatures (kp_tf.serving):

  transfer_keypoints     absolute: the driving keypoints themselves; relative (First Order
                         Motion Model's): source + (driving_t − driving_0), optionally times
                         spread(source) / spread(driving_0) (FOMM's --adapt_scale, with the
                         root-mean-square distance from the centroid as the spread where FOMM
                         takes the square root of the convex hull's area: both are lengths,
                         and this one is a few tensor ops, defined for any K).
  interpolate_keypoints  the straight line: k_first + w·(k_last − k_first), w = i / (N + 1).
  motion_path            the motion generator's path from k_first nearest k_last (the
                         command's --path=motion; docs/uses.md has the measurements).
  combine_renders        the frames from renders of the path: from the first image, from both
                         ends blended, or blended with the ends' reconstruction errors added
                         back (the default).

The Python path runs a loaded export (kp_tf.inference.Predictor) through its
detect_keypoints and translate signatures only, so it also works on exports written before
the animate and interpolate signatures existed. A driving video is read, fitted to the model's
size (`inference.fit_frames`, the rule of an input image), detected, rendered and written a
chunk at a time (readers.iter_clip_frames, viz.VideoStream), so memory does not grow with its
length. Images are float32 in [-1, 1], keypoints (x, y) in [-1, 1] (kp_tf.conventions).
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Iterator

import numpy as np

from kp_tf import conventions
from kp_tf.inference import CHUNK, PredictError, Predictor, check_frames, fit_frames, load_image

RENDER_CHUNK = CHUNK  # frames per detector / translator call (the signatures use it too)
MODES = ("relative", "absolute")
PATHS = ("linear", "motion")
RENDERS = ("first", "blend", "residual")
# The interpolation of the command and of the export's signature alike (docs/uses.md has the
# measurements that chose them: the generator's path is far better on `synthetic` and worse
# on Weizmann; the straight line beats the pixel cross-fade on both).
INTERPOLATION_PATH = "linear"
INTERPOLATION_RENDER = "residual"
# The motion generator's candidate paths: this many z per action, drawn from a fixed seed so
# that an interpolation is the same in every process and loader.
PATH_DRAWS = 64
PATH_SEED = (0, 1)


# --- the keypoint rules (TensorFlow) --------------------------------------------------------

def keypoint_spread(keypoints):
    """Root-mean-square distance of the keypoints from their centroid: [..., K, 2] → [...]."""
    import tensorflow as tf

    k = tf.convert_to_tensor(keypoints, tf.float32)
    centred = k - tf.reduce_mean(k, axis=-2, keepdims=True)
    return tf.sqrt(tf.reduce_mean(tf.reduce_sum(tf.square(centred), -1), -1))


def transfer_keypoints(source, driving, driving_first, relative=True, adapt_scale=True):
    """The keypoints that move the source image as the driving video moves.

    Args:
      source: [B, K, 2] keypoints of the source image.
      driving: [B, T, K, 2] keypoints of the driving frames.
      driving_first: [B, K, 2] keypoints of the driving video's first frame.
      relative: a bool (or a scalar bool tensor): source + (driving_t − driving_0);
        otherwise the driving keypoints themselves (absolute).
      adapt_scale: relative mode only: the displacements times spread(source) /
        spread(driving_0), so that a small figure driven by a large one moves in proportion.

    Returns: float32 [B, T, K, 2]; with source = driving_first, relative mode gives `driving`
    exactly (scale 1), as absolute mode does.
    """
    import tensorflow as tf

    source = tf.convert_to_tensor(source, tf.float32)
    driving = tf.convert_to_tensor(driving, tf.float32)
    driving_first = tf.convert_to_tensor(driving_first, tf.float32)
    scale = keypoint_spread(source) / tf.maximum(keypoint_spread(driving_first), 1e-6)
    scale = tf.where(tf.convert_to_tensor(adapt_scale, tf.bool), scale, tf.ones_like(scale))
    moved = source[:, None] + (driving - driving_first[:, None]) * scale[:, None, None, None]
    return tf.where(tf.convert_to_tensor(relative, tf.bool), moved, driving)


def interpolation_weights(frames):
    """w_i = i / (N + 1), i = 1..N, for N = frames (an int or a scalar tensor ≥ 1):
    float32 [N], the N frames strictly between the two ends, evenly spaced in time."""
    import tensorflow as tf

    frames = tf.cast(frames, tf.float32)
    return tf.range(1.0, frames + 1.0) / (frames + 1.0)


def interpolate_keypoints(first, last, weights):
    """Keypoints on the straight line between two sets: first, last [B, K, 2], weights [N]
    → float32 [B, N, K, 2] = first + w·(last − first)."""
    import tensorflow as tf

    first = tf.convert_to_tensor(first, tf.float32)
    last = tf.convert_to_tensor(last, tf.float32)
    w = tf.convert_to_tensor(weights, tf.float32)[None, :, None, None]
    return first[:, None] + w * (last - first)[:, None]


def motion_path(decode, first, last, frames, length: int, num_actions: int, latent_dim: int):
    """The path the motion generator would take from one keypoint set to the other.

    Candidates: from `first`, the generator's motion for every action and PATH_DRAWS z each
    (motion_generator.rollout past its L frames); the one whose keypoints at step N + 1 are
    nearest `last` (mean |Δ|) is kept, and the remaining miss is spread linearly over the
    path, so that it ends on `last`: k_t = g_t + w_t·(last − g_{N+1}), w_t = t / (N + 1).
    Limbs then swing on the arcs the generator learnt instead of cutting across.

    Args:
      decode: (k0 [C, K, 2], action int32 [C], z [C, latent_dim]) → [C, L, K, 2] (the
        export's generate_motion, or the generator's decode).
      first, last: [K, 2]; frames: N, an int or a scalar int tensor ≥ 1; length: L.
      num_actions: A (0: a generator without classes, one candidate set).

    Returns: float32 [N, K, 2].
    """
    import tensorflow as tf

    from kp_tf.models.motion_generator import rollout

    first = tf.convert_to_tensor(first, tf.float32)
    last = tf.convert_to_tensor(last, tf.float32)
    actions = max(1, num_actions)
    z = tf.tile(tf.random.stateless_normal([PATH_DRAWS, latent_dim], PATH_SEED), [actions, 1])
    action = tf.repeat(tf.range(actions, dtype=tf.int32), PATH_DRAWS)
    starts = tf.tile(first[None], [actions * PATH_DRAWS, 1, 1])
    frames = tf.cast(frames, tf.int32)
    paths = rollout(lambda start: decode(start, action, z), starts, frames + 1, length)
    best = tf.argmin(tf.reduce_mean(tf.abs(paths[:, frames] - last), axis=[1, 2]))
    path = tf.gather(paths, best)  # [N + 1, K, 2]: steps 1..N + 1
    w = interpolation_weights(frames)[:, None, None]
    return path[:frames] + w * (last - path[frames])


def blend(from_first, from_last, weights):
    """(1 − w)·from_first + w·from_last per frame: videos [N, S, S, 3], weights [N]."""
    import tensorflow as tf

    w = tf.convert_to_tensor(weights, tf.float32)[:, None, None, None]
    return (1.0 - w) * tf.convert_to_tensor(from_first, tf.float32) + w * tf.convert_to_tensor(
        from_last, tf.float32)


def combine_renders(render: str, weights, from_first, from_last=None, residuals=None):
    """The interpolated frames from the renders of the path (videos [N, S, S, 3] in [-1, 1]).

    render: "first": `from_first`; "blend": `blend(from_first, from_last, weights)`;
      "residual": the blend with each end's reconstruction error added back, residuals =
      (first − its render with its own keypoints, the same for last) [S, S, 3] each, so
      that what the translator loses (texture, background) comes from the given frames and
      only the motion from the renders: where nothing moves, this is the pixel cross-fade.
    Returns float32 [N, S, S, 3] in [-1, 1].
    """
    import tensorflow as tf

    if render == "first":
        return tf.convert_to_tensor(from_first, tf.float32)
    if render == "residual":
        from_first = from_first + tf.convert_to_tensor(residuals[0], tf.float32)[None]
        from_last = from_last + tf.convert_to_tensor(residuals[1], tf.float32)[None]
    return tf.clip_by_value(blend(from_first, from_last, weights), -1.0, 1.0)


# --- motion transfer, the Python path ----------------------------------------------------------

def _driving_chunks(path: str, size: int, chunk: int) -> Iterator[np.ndarray]:
    """The driving video's frames fitted to the model: uint8 [≤ chunk, size, size, 3] chunks.

    Raises PredictError naming the file for an unreadable video and for one of a single frame
    (there is no motion to transfer).
    """
    from kp_tf.data import readers

    try:
        chunks = readers.iter_clip_frames(path, chunk)
        first = next(chunks)
        if len(first) == 1:
            second = next(chunks, None)
            if second is None:
                raise PredictError(f"{path}: the driving video has 1 frame; motion transfer "
                                   f"needs at least 2")
            first = np.concatenate([first, second])
        yield fit_frames(first, size)
        for frames in chunks:
            yield fit_frames(frames, size)
    except readers.ClipReadError as e:
        raise PredictError(str(e)) from e


def drive(predictor: Predictor, image, chunks: Iterable, relative: bool = True,
          adapt_scale: bool = True) -> Iterator[dict]:
    """Motion transfer, one chunk of the driving video at a time.

    Args:
      predictor: a loaded export.
      image: float32 [S, S, 3] in [-1, 1], the source.
      chunks: uint8 [C, S, S, 3] driving frames per chunk (at least 2 frames in all).
      relative, adapt_scale: as `transfer_keypoints`.

    Yields per chunk: {"driving": the uint8 frames, "video": float32 [C, S, S, 3] in [-1, 1],
    "keypoints": the driven keypoints [C, K, 2], "driving_keypoints": [C, K, 2],
    "source_keypoints": [K, 2]}.
    """
    source = predictor.detect(np.asarray(image, np.float32)[None])
    driving_first = None
    for frames in chunks:
        driving = predictor.detect(conventions.to_model(frames))
        if driving_first is None:
            driving_first = driving[:1]
        keypoints = np.asarray(transfer_keypoints(source, driving[None], driving_first,
                                                  relative, adapt_scale))[0]
        yield {"driving": frames, "video": predictor.translate(image, source[0], keypoints),
               "keypoints": keypoints, "driving_keypoints": driving,
               "source_keypoints": source[0]}


def animate(predictor: Predictor, image, driving_frames, relative: bool = True,
            adapt_scale: bool = True, chunk: int = RENDER_CHUNK) -> dict:
    """`drive` over a whole driving video uint8 [T, S, S, 3] (T ≥ 2), concatenated:
    {"video" [T, S, S, 3] float32, "keypoints" [T, K, 2], "driving_keypoints" [T, K, 2],
    "source_keypoints" [K, 2]}: what the export's `animate` signature computes."""
    frames = np.asarray(driving_frames, np.uint8)
    if len(frames) < 2:
        raise PredictError(f"the driving video has {len(frames)} frame(s); motion transfer "
                           f"needs at least 2")
    parts = list(drive(predictor, image, (frames[i:i + chunk] for i in range(0, len(frames),
                                                                               chunk)),
                       relative, adapt_scale))
    out = {k: np.concatenate([p[k] for p in parts]) for k in ("video", "keypoints",
                                                             "driving_keypoints")}
    out["source_keypoints"] = parts[0]["source_keypoints"]
    return out


def _panels(image_uint8, part: dict, draw: bool, scale: int) -> np.ndarray:
    """source | driving | result, enlarged `scale` times, keypoints drawn with `draw`."""
    from kp_tf import viz

    n = len(part["driving"])
    source = np.repeat(image_uint8[None], n, 0)
    result = conventions.to_uint8(part["video"])
    if draw:
        source_kps = np.repeat(part["source_keypoints"][None], n, 0)
        panels = [viz.draw_keypoints(source, source_kps, scale=scale),
                  viz.draw_keypoints(part["driving"], part["driving_keypoints"], scale=scale),
                  viz.draw_keypoints(result, part["keypoints"], scale=scale)]
    else:
        panels = [viz.enlarge(v, scale) for v in (source, part["driving"], result)]
    return np.concatenate(panels, axis=-2)


def animate_to_files(model_dir: str, source_path: str, driving_path: str, out_dir: str, *,
                     relative: bool = True, adapt_scale: bool = True, draw: bool = False,
                     fps: float = 10, chunk: int = 64) -> dict:
    """Writes `animation.gif` and `animation.mp4` (source | driving | result, enlarged to at
    least 128 px; keypoints drawn with `draw`), `result.mp4` (the result alone, at the model's
    size), `keypoints.npz` (source_keypoints [K, 2], driving_keypoints and keypoints
    [T, K, 2]) and `animation.json` into `out_dir`; returns the JSON's record.

    The driving video streams through in chunks of `chunk` frames. Raises PredictError for a
    missing model, an unreadable image or video, a 1-frame video, or chunk < 1.
    """
    from kp_tf import viz

    if chunk < 1:
        raise PredictError(f"--chunk must be ≥ 1 (got {chunk})")
    predictor = Predictor(model_dir)
    image = load_image(source_path, predictor.image_size)
    image_uint8 = conventions.to_uint8(image)
    scale = viz.display_scale(predictor.image_size, predictor.image_size)
    chunks = _driving_chunks(driving_path, predictor.image_size, chunk)
    first = next(chunks)  # the driving video's errors before any output file is made
    os.makedirs(out_dir, exist_ok=True)
    keys = ("keypoints", "driving_keypoints")
    kept = {k: [] for k in keys}
    paths = [os.path.join(out_dir, name) for name in ("animation.gif", "animation.mp4",
                                                     "result.mp4")]
    with viz.VideoStream(paths[:2], fps) as panels, viz.VideoStream(paths[2:], fps) as result:
        for part in drive(predictor, image, _prepend(first, chunks), relative, adapt_scale):
            panels.write(_panels(image_uint8, part, draw, scale))
            result.write(conventions.to_uint8(part["video"]))
            for k in keys:
                kept[k].append(part[k])
    arrays = {k: np.concatenate(v) for k, v in kept.items()}
    source_kps = part["source_keypoints"]
    np.savez(os.path.join(out_dir, "keypoints.npz"), source_keypoints=source_kps, **arrays)
    scale = float(keypoint_spread(source_kps)) / max(
        float(keypoint_spread(arrays["driving_keypoints"][0])), 1e-6)
    record = {"model": model_dir, "source": source_path, "driving": driving_path,
              "mode": "relative" if relative else "absolute",
              "adapt_scale": bool(adapt_scale and relative), "frames": result.frames,
              "scale": scale if relative and adapt_scale else 1.0,
              "files": [os.path.basename(p) for p in paths] + ["keypoints.npz"]}
    with open(os.path.join(out_dir, "animation.json"), "w") as f:
        json.dump(record, f, indent=1)
    return record


def _prepend(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


# --- interpolation, the Python path ------------------------------------------------------------

def interpolate(predictor: Predictor, first, last, frames: int,
                render: str = INTERPOLATION_RENDER, weights=None,
                path: str = INTERPOLATION_PATH) -> dict:
    """The `frames` images between two, by keypoint interpolation.

    Args:
      predictor: a loaded export.
      first, last: float32 [S, S, 3] in [-1, 1].
      frames: N ≥ 1, the frames strictly between the two.
      render: as `combine_renders` ("first", "blend" or "residual"; "blend" and "residual"
        render the path from both ends, each image with its own keypoints).
      weights: "linear" path only: optional [N] positions along the line in (0, 1) (default
        `interpolation_weights(N)`, constant speed).
      path: "linear": `interpolate_keypoints`; "motion": `motion_path` through the export's
        generate_motion.

    Returns: {"video": float32 [N, S, S, 3] in [-1, 1], "keypoints": [N, K, 2],
    "first_keypoints", "last_keypoints": [K, 2]}.
    """
    if frames < 1:
        raise PredictError(f"--frames must be ≥ 1 (got {frames})")
    if render not in RENDERS or path not in PATHS:
        raise PredictError(f"render must be one of {', '.join(RENDERS)} and path one of "
                           f"{', '.join(PATHS)}, got {render!r}, {path!r}")
    ends = predictor.detect(np.stack([first, last]).astype(np.float32))
    w = np.asarray(interpolation_weights(frames), np.float32)
    if path == "motion":
        config = predictor.config
        keypoints = np.asarray(motion_path(
            lambda k, a, z: predictor.model.generate_motion(k, a, z)["keypoints"], ends[0],
            ends[1], frames, int(config["sequence_length"]), int(config["num_actions"]),
            int(config["latent_dim"])))
    else:
        along = w if weights is None else np.asarray(weights, np.float32)
        keypoints = np.asarray(interpolate_keypoints(ends[:1], ends[1:], along))[0]
    from_first = predictor.translate(first, ends[0], keypoints)
    from_last = residuals = None
    if render != "first":
        from_last = predictor.translate(last, ends[1], keypoints)
    if render == "residual":
        residuals = (first - predictor.translate(first, ends[0], ends[:1])[0],
                     last - predictor.translate(last, ends[1], ends[1:])[0])
    video = np.asarray(combine_renders(render, w, from_first, from_last, residuals))
    return {"video": video, "keypoints": keypoints, "first_keypoints": ends[0],
            "last_keypoints": ends[1]}


def interpolate_to_files(model_dir: str, first_path: str, last_path: str, frames: int,
                         out_dir: str, *, render: str = INTERPOLATION_RENDER,
                         path: str = INTERPOLATION_PATH, draw: bool = False,
                         fps: float = 10) -> dict:
    """Writes `interpolation.gif` and `interpolation.mp4` (first, the N frames, last; with
    `draw`, beside the same frames with their keypoints, enlarged to at least 128 px),
    `keypoints.npy` ([N, K, 2]) and `interpolation.json` into `out_dir`; returns the record.
    `render` and `path` as `interpolate`."""
    from kp_tf import viz

    check_frames(frames)
    predictor = Predictor(model_dir)
    first = load_image(first_path, predictor.image_size)
    last = load_image(last_path, predictor.image_size)
    out = interpolate(predictor, first, last, frames, render, path=path)
    video = conventions.to_uint8(np.concatenate([first[None], out["video"], last[None]]))
    keypoints = np.concatenate([out["first_keypoints"][None], out["keypoints"],
                                out["last_keypoints"][None]])
    os.makedirs(out_dir, exist_ok=True)
    shown = viz.keypoint_video(video, keypoints) if draw else video
    # VideoStream, not write_gif: that merges identical frames, and a still interpolation
    # (the same image twice) must still have N + 2 frames.
    with viz.VideoStream([os.path.join(out_dir, f"interpolation.{ext}") for ext in ("gif", "mp4")],
                         fps) as stream:
        stream.write(shown)
    np.save(os.path.join(out_dir, "keypoints.npy"), out["keypoints"])
    record = {"model": model_dir, "first": first_path, "last": last_path, "frames": frames,
              "render": render, "path": path, "written_frames": int(len(video)),
              "first_keypoints": out["first_keypoints"].tolist(),
              "last_keypoints": out["last_keypoints"].tolist()}
    with open(os.path.join(out_dir, "interpolation.json"), "w") as f:
        json.dump(record, f, indent=1)
    return record
