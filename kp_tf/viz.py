"""Drawing and video writing for summaries, predictions and evaluation.

Images are uint8 RGB [..., H, W, 3]; keypoints are (x, y) in [-1, 1] with the linspace
convention of `kp_tf.data.tfrecords` (-1/+1 at the first/last pixel centre).
"""

from __future__ import annotations

import colorsys
import contextlib
import os
import sys
import tempfile

import cv2
import numpy as np
from PIL import Image

from kp_tf.conventions import normalized_to_pixels, to_uint8

_SHIFT = 4  # fractional bits of the coordinates handed to cv2, for sub-pixel placement


def keypoint_colors(k: int) -> np.ndarray:
    """Distinct saturated colours, red → magenta like matplotlib's gist_rainbow: uint8 [k, 3]."""
    rgb = [colorsys.hsv_to_rgb(h, 1.0, 1.0) for h in np.linspace(0.0, 0.83, k)]
    return np.round(np.reshape(rgb, (k, 3)) * 255.0).astype(np.uint8)


def display_scale(height: int, width: int, min_side: int = 128) -> int:
    """The smallest integer factor that brings the shorter side to at least `min_side` pixels
    (1 for images already that large): 4 for 32×32, 2 for 64×64."""
    return max(1, -(-min_side // min(height, width)))


def enlarge(images, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of uint8 [..., H, W, C] by an integer factor."""
    images = np.asarray(images)
    if scale == 1:
        return images
    return images.repeat(scale, axis=-3).repeat(scale, axis=-2)


def draw_keypoints(images, keypoints, radius: int | None = None, colors=None,
                   scale: int = 1) -> np.ndarray:
    """Filled, outlined, anti-aliased dots at the keypoints, in `keypoint_colors(K)` order.

    Args:
      images: uint8 [..., H, W, 3].
      keypoints: float [..., K, 2], (x, y) in [-1, 1]; the leading dims match `images`'.
      radius: dot radius in pixels of the output; default grows with it (1 px at 64×64, 2 at
        128).
      colors: optional uint8 [K, 3]; default `keypoint_colors(K)`.
      scale: integer factor the images are enlarged by (`enlarge`) before drawing, with each
        dot at the centre of the enlarged pixel it falls on: at 32×32 a 1-pixel dot covers a
        limb and 48 of them hide the figure.

    Returns:
      A new uint8 array [..., H * scale, W * scale, 3].
    """
    images = enlarge(np.asarray(images, np.uint8), scale)
    h, w = images.shape[-3:-1]
    keypoints = np.asarray(keypoints, np.float32)
    if keypoints.shape[:-2] != images.shape[:-3]:
        raise ValueError(f"keypoints {keypoints.shape} do not match images {images.shape}")
    if radius is None:
        radius = max(1, min(h, w) // 48)
    if colors is None:
        colors = keypoint_colors(keypoints.shape[-2])
    colors = [c.tolist() for c in np.asarray(colors, np.uint8)]
    # Pixel i of the source covers enlarged pixels [s·i, s·i + s - 1]: its centre is s·i + (s-1)/2.
    pixels = normalized_to_pixels(keypoints, h // scale, w // scale) * scale + (scale - 1) / 2.0
    fixed = np.round(pixels * (1 << _SHIFT)).astype(np.int32)
    out = images.reshape(-1, h, w, 3).copy()
    for image, points in zip(out, fixed.reshape(len(out), -1, 2)):
        for (x, y), color in zip(points, colors):
            # The dark rim keeps light dots visible on light backgrounds.
            cv2.circle(image, (x, y), (radius + 1) << _SHIFT, (0, 0, 0), -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(image, (x, y), radius << _SHIFT, color, -1, cv2.LINE_AA, _SHIFT)
    return out.reshape(images.shape)


def image_grid(rows, pad: int = 2) -> np.ndarray:
    """One row per entry, one column per image, with white gutters.

    Args:
      rows: list of R uint8 arrays [N, H, W, 3], all the same shape.
      pad: gutter width in pixels, also around the border.

    Returns:
      uint8 [R * (H + pad) + pad, N * (W + pad) + pad, 3].
    """
    rows = [np.asarray(r, np.uint8) for r in rows]
    n, h, w, _ = rows[0].shape
    if any(r.shape != rows[0].shape for r in rows):
        raise ValueError(f"rows differ in shape: {[r.shape for r in rows]}")
    grid = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y:y + h, x:x + w] = image
    return grid


def side_by_side(a, b) -> np.ndarray:
    """Two videos uint8 [T, H, W, 3] (same T and H) → [T, H, W_a + W_b, 3]."""
    return np.concatenate([np.asarray(a), np.asarray(b)], axis=-2)


def keypoint_video(video, keypoints, min_side: int = 128, scale: int | None = None) -> np.ndarray:
    """A video beside itself with its keypoints drawn, both enlarged to at least `min_side`
    pixels (`display_scale`) so that small models' frames and dots stay readable.

    Args:
      video: uint8 [T, H, W, 3].
      keypoints: float [T, K, 2], (x, y) in [-1, 1].
      scale: a fixed integer factor instead of the one `min_side` asks for.

    Returns:
      uint8 [T, s·H, 2·s·W, 3] with s = `scale` or `display_scale(H, W, min_side)`.
    """
    video = np.asarray(video, np.uint8)
    scale = scale or display_scale(*video.shape[-3:-1], min_side)
    return side_by_side(enlarge(video, scale), draw_keypoints(video, keypoints, scale=scale))


def display_grid(images, overlays=(), min_side: int = 128) -> np.ndarray:
    """An `image_grid` for TensorBoard whose rows are enlarged to at least `min_side` pixels.

    Args:
      images: list of float [N, H, W, 3] batches in [-1, 1], one row each.
      overlays: list of (float [N, H, W, 3] in [-1, 1], keypoints [N, K, 2]) rows, drawn
        with `draw_keypoints` after the image rows.

    Returns:
      uint8 [R * (s·H + 2) + 2, N * (s·W + 2) + 2, 3], s = `display_scale(H, W, min_side)`.
    """
    shape = np.shape((list(images) + [o[0] for o in overlays])[0])
    scale = display_scale(*shape[1:3], min_side)
    rows = [enlarge(to_uint8(x), scale) for x in images]
    rows += [draw_keypoints(to_uint8(x), np.asarray(k), scale=scale) for x, k in overlays]
    return image_grid(rows)


@contextlib.contextmanager
def _atomic(path: str, suffix: str):
    """Yields a temporary path beside `path`, moved onto it only if the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix=".tmp-", dir=directory)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the final file private
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_gif(path: str, frames, fps: float = 10, scale: int = 1) -> None:
    """Writes an endlessly looping GIF that holds every frame, one median-cut palette per frame.

    Args:
      path: output file.
      frames: uint8 [T, H, W, 3].
      fps: frames per second; GIF delays are whole hundredths of a second, so the delay is
        round(100 / fps) of them (at least 1).
      scale: integer nearest-neighbour upscaling, for tiny frames.

    Pillow's GIF writer merges consecutive identical frames into one frame shown longer, and
    a reader that counts frames (most do, `kp_tf.data.readers.read_gif` reads the delays)
    would get a shorter video back wherever it stands still. So the file is put together here
    from Pillow's encoder for single frames: T frames, each a full frame with its own colour
    table and the same delay.
    """
    from PIL import GifImagePlugin

    frames = enlarge(np.asarray(frames, np.uint8), scale)
    images = [Image.fromarray(f).quantize(256, method=Image.Quantize.MEDIANCUT) for f in frames]
    delay_ms = 10 * max(1, round(100 / fps))
    header, _ = GifImagePlugin.getheader(images[0], info={"loop": 0, "duration": delay_ms})
    with _atomic(path, ".gif") as tmp:
        with open(tmp, "wb") as f:
            f.write(b"".join(header))
            for image in images:
                f.write(b"".join(GifImagePlugin.getdata(image, duration=delay_ms,
                                                        include_color_table=True)))
            f.write(b";")  # the GIF trailer


def write_mp4(path: str, frames, fps: float = 10) -> None:
    """Writes an MPEG-4 video (OpenCV's 'mp4v' codec).

    Args:
      path: output file, ending in .mp4.
      frames: uint8 [T, H, W, 3] RGB.
      fps: frames per second.

    Raises:
      IOError: if OpenCV cannot open a writer for the file.
    """
    frames = np.asarray(frames, np.uint8)
    h, w = frames.shape[1:3]
    with _atomic(path, ".mp4") as tmp:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
        if not writer.isOpened():
            raise IOError(f"cannot open an mp4v video writer for {path}")
        try:
            for frame in frames:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()


class VideoStream:
    """GIF and/or MP4 files written a chunk of frames at a time, so that a long video never
    sits in memory whole (`write_gif` and Pillow's multi-frame GIF save keep every frame).

    Use as a context manager: `with VideoStream(["a.gif", "a.mp4"], fps) as out:
    out.write(frames)` per chunk of uint8 [T, H, W, 3] RGB frames. Each file is written under
    a temporary name beside it and renamed when the block ends without an error (removed
    otherwise), like `write_gif`. GIF frames get their own median-cut palette, as in
    `write_gif`, but identical frames are not merged, so a reader counts every frame.

    Raises:
      ValueError: for a path that ends in neither .gif nor .mp4, frames of another size than
        the first chunk's, or leaving the block without any frame written.
      IOError: if OpenCV cannot open an MP4 writer.
    """

    def __init__(self, paths, fps: float = 10):
        self.paths = [str(p) for p in paths]
        bad = [p for p in self.paths if not p.lower().endswith((".gif", ".mp4"))]
        if bad:
            raise ValueError(f"{bad[0]}: a video stream writes .gif or .mp4 files")
        self.fps = float(fps)
        self.frames = 0
        self._stack = None
        self._files = {}  # final path → (temporary path, open file or cv2.VideoWriter)
        self._size = None

    def __enter__(self):
        self._stack = contextlib.ExitStack()
        for path in self.paths:
            tmp = self._stack.enter_context(_atomic(path, os.path.splitext(path)[1]))
            self._files[path] = [tmp, None]
        return self

    def write(self, frames) -> None:
        """Appends uint8 [T, H, W, 3] RGB frames to every file."""
        frames = np.asarray(frames, np.uint8)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames [T, H, W, 3], got {frames.shape}")
        if self._size is None:
            self._size = frames.shape[1:3]
        elif frames.shape[1:3] != self._size:
            raise ValueError(f"frames of {frames.shape[1:3]} after frames of {self._size}")
        for path, entry in self._files.items():
            if path.lower().endswith(".gif"):
                self._write_gif(entry, frames)
            else:
                self._write_mp4(path, entry, frames)
        self.frames += len(frames)

    def _write_gif(self, entry, frames) -> None:
        from PIL import GifImagePlugin

        duration = round(1000 / self.fps)
        if entry[1] is None:
            entry[1] = open(entry[0], "wb")
        for i, frame in enumerate(frames):
            image = Image.fromarray(frame).quantize(256, method=Image.Quantize.MEDIANCUT)
            if self.frames + i == 0:  # the file's header, with the first frame's palette
                header, _ = GifImagePlugin.getheader(image, info={"loop": 0,
                                                                  "duration": duration})
                entry[1].write(b"".join(header))
            entry[1].write(b"".join(GifImagePlugin.getdata(
                image, include_color_table=True, duration=duration)))

    def _write_mp4(self, path, entry, frames) -> None:
        if entry[1] is None:
            h, w = self._size
            entry[1] = cv2.VideoWriter(entry[0], cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                       (w, h))
            if not entry[1].isOpened():
                raise IOError(f"cannot open an mp4v video writer for {path}")
        for frame in frames:
            entry[1].write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def __exit__(self, kind, value, traceback):
        try:
            for path, (_, handle) in self._files.items():
                if handle is None:
                    continue
                if path.lower().endswith(".gif"):
                    handle.write(b";")  # the trailer
                    handle.close()
                else:
                    handle.release()
            if kind is None and self.frames == 0:
                raise ValueError(f"{self.paths[0]}: no frames were written")
        except BaseException:
            self._stack.__exit__(*sys.exc_info())
            raise
        return self._stack.__exit__(kind, value, traceback)
