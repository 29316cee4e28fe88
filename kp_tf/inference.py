"""Image + action → videos, from an exported SavedModel (the logic of `python -m kp_tf.predict`).

`predict_to_files` writes, per sample s: `sample_s.gif`, `sample_s.mp4`,
`sample_s_keypoints.gif` (video | its keypoints drawn), `sample_s_keypoints.npy` ([frames, K, 2], (x, y) in [-1, 1]) and one
`keypoints.json` for all samples. Any image size and channel count is accepted (alpha dropped,
grey → RGB, resized on its shorter side and centre-cropped to the model's resolution).
`--frames` beyond the generator's training length continues the motion by rolling it forward.
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np

from kp_tf import cli, conventions


# Images per detect_keypoints / translate call: the activations' memory stays bounded
# whatever the number of frames.
CHUNK = 32


class PredictError(cli.UserError):
    """A model folder, image or action that cannot be used; the message names it."""


def load_image(path: str, size: int) -> np.ndarray:
    """→ float32 [size, size, 3] in [-1, 1]; raises PredictError naming the file."""
    if not os.path.exists(path):
        raise PredictError(f"{path}: no such file")
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise PredictError(f"{path}: not a readable image (corrupt, empty or unsupported format)")
    if image.dtype == np.uint16:
        image = (image / 257).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    elif image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    else:
        raise PredictError(f"{path}: unsupported channel count {image.shape[2]}")
    return conventions.to_model(fit_frames(image, size))


def fit_frames(frames, size: int) -> np.ndarray:
    """uint8 RGB [..., H, W, 3] of any size → uint8 [..., size, size, 3]: resized so that the
    shorter side is `size` (cv2.INTER_AREA when shrinking, INTER_LINEAR when enlarging), then
    centre-cropped; the rule of `load_image`, for frames that are already decoded."""
    frames = np.asarray(frames, np.uint8)
    h, w = frames.shape[-3:-1]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    top, left = (nh - size) // 2, (nw - size) // 2
    if (h, w) == (size, size):
        return frames
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    flat = frames.reshape((-1, h, w, 3))
    out = np.stack([cv2.resize(f, (nw, nh), interpolation=interpolation)
                    [top:top + size, left:left + size] for f in flat])
    return out.reshape(frames.shape[:-3] + (size, size, 3))


class Predictor:
    """A loaded export: `predict(image, action, seed, frames)` → (video uint8, keypoints)."""

    def __init__(self, model_dir: str):
        import tensorflow as tf

        if not os.path.exists(os.path.join(model_dir, "saved_model.pb")):
            raise PredictError(f"{model_dir}: no SavedModel here (export one with "
                               f"python -m kp_tf.export --logdir=RUN --out={model_dir})")
        self._tf = tf
        self.model = tf.saved_model.load(model_dir)
        self.config = json.loads(self.model.config_json.numpy().decode())
        self.actions = [a.decode() for a in self.model.action_names.numpy() if a]
        self.image_size = int(self.config["image_size"])

    def action_index(self, name: str) -> int:
        if not self.actions:
            return 0  # a model without classes ignores the action
        if name not in self.actions:
            raise PredictError(f"unknown action {name!r}; this model knows: {', '.join(self.actions)}")
        return self.actions.index(name)

    def detect(self, images) -> np.ndarray:
        """float32 [N, S, S, 3] in [-1, 1] → keypoints [N, K, 2] (detect_keypoints,
        CHUNK images a call)."""
        tf, images = self._tf, np.asarray(images, np.float32)
        return np.concatenate([self.model.detect_keypoints(tf.constant(images[i:i + CHUNK]))
                               ["keypoints"].numpy() for i in range(0, len(images), CHUNK)])

    def translate(self, image, source_kps, target_kps) -> np.ndarray:
        """image [S, S, 3] in [-1, 1] with its keypoints [K, 2], target keypoints [T, K, 2] →
        float32 video [T, S, S, 3] in [-1, 1] (translate, CHUNK frames a call)."""
        tf = self._tf
        image = tf.constant(np.asarray(image, np.float32)[None])
        source = tf.constant(np.asarray(source_kps, np.float32)[None])
        target_kps = np.asarray(target_kps, np.float32)
        return np.concatenate([
            self.model.translate(image, source, tf.constant(target_kps[None, i:i + CHUNK]))
            ["video"].numpy()[0] for i in range(0, len(target_kps), CHUNK)])

    def predict(self, image: np.ndarray, action: int, seed: int, frames: int):
        tf = self._tf
        out = self.model.predict_video(tf.constant(image), tf.constant(action, tf.int32),
                                       tf.constant(seed, tf.int64), tf.constant(frames, tf.int32))
        video = conventions.to_uint8(out["video"].numpy())
        return video, out["keypoints"].numpy(), out["first_keypoints"].numpy()


def check_frames(frames: int, flag: str = "--frames") -> None:
    """PredictError unless 1 ≤ frames ≤ conventions.MAX_FRAMES, the export's own limits."""
    if not 1 <= frames <= conventions.MAX_FRAMES:
        raise PredictError(f"{flag} must be in 1..{conventions.MAX_FRAMES} (got {frames})")


def predict_to_files(model_dir, image_path, action, samples, frames, out_dir, seed=0, fps=10):
    from kp_tf import viz

    if samples < 1:
        raise PredictError(f"--samples must be ≥ 1 (got {samples})")
    check_frames(frames)
    predictor = Predictor(model_dir)
    index = predictor.action_index(action)
    image = load_image(image_path, predictor.image_size)
    os.makedirs(out_dir, exist_ok=True)
    record = {"model": model_dir, "image": image_path, "action": action, "frames": frames,
              "samples": []}
    for s in range(samples):
        video, keypoints, first = predictor.predict(image, index, seed + s, frames)
        stem = os.path.join(out_dir, f"sample_{s}")
        viz.write_gif(stem + ".gif", video, fps=fps)
        viz.write_mp4(stem + ".mp4", video, fps=fps)
        viz.write_gif(stem + "_keypoints.gif", viz.keypoint_video(video, keypoints), fps=fps)
        np.save(stem + "_keypoints.npy", keypoints)
        record["samples"].append({"seed": seed + s, "video": stem + ".gif",
                                  "first_keypoints": first.tolist(), "keypoints": keypoints.tolist()})
    with open(os.path.join(out_dir, "keypoints.json"), "w") as f:
        json.dump(record, f)
    return record
