"""An embedded video dataset: procedurally rendered humanoid figures doing six actions.

Every clip is a 3-D stick-and-blob figure (14 joints, per-clip proportions, colours, limb
thickness, yaw, size and position) animated by a class-specific periodic motion with random
period and amplitude, starting at the action's onset (as Penn Action's clips do), projected
orthographically and rendered with anti-aliasing (drawn at `_SUPERSAMPLE`× and
box-downsampled). A clip is a pure function of (seed, split, index, size, num_frames,
background), so the dataset needs no download and its ground-truth joints are exact.

Run `python -m kp_tf.data.synthetic --out=DIR [--count=N]` to write GIF previews: each clip
beside itself with its joints drawn.
"""

from __future__ import annotations

import os
from typing import Iterator

import cv2
import numpy as np

from kp_tf.data.clip import Clip

ACTIONS = ("wave1", "wave2", "jack", "squat", "march", "kick")

JOINT_NAMES = (
    "head", "neck",
    "r_shoulder", "r_elbow", "r_wrist",
    "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle",
    "l_hip", "l_knee", "l_ankle",
)
_J = {name: i for i, name in enumerate(JOINT_NAMES)}

BACKGROUNDS = ("plain", "cluttered")

# Bumped whenever the same arguments render different clips; conversions record it, and a
# data folder made by another version is regenerated. 2: thicker limbs, taller figures.
# 3: clips start at the action's onset and periods are 16-22 frames (were a random phase and
# 12-24): with random phases even real sequences were no nearer their own class than others
# (class-matrix control 1/6 on true joints), so the action was not recoverable from k_0 and
# the motion, and the L1-best future hardly depended on it; now 6/6.
GENERATOR_VERSION = 3

# Second entry of each clip's seed sequence: clips of different splits never share a stream.
SPLIT_SEED_OFFSETS = {"train": 0, "val": 1, "test": 2}

# Drawn at 4× and averaged down: thin limbs then get smooth, sub-pixel-accurate edges.
_SUPERSAMPLE = 4
_SHIFT = 4  # fractional bits of the coordinates handed to cv2's drawing functions
_PAD_PX = 1.0  # the figure's outline keeps at least this far from the frame border

# (name, joint a, joint b, colour key, thickness key) of every segment drawn as a thick line.
_SEGMENTS = (
    ("neck", "neck", "head", "torso", "arm"),
    ("r_upper_arm", "r_shoulder", "r_elbow", "upper_arm", "arm"),
    ("r_forearm", "r_elbow", "r_wrist", "forearm", "arm"),
    ("l_upper_arm", "l_shoulder", "l_elbow", "upper_arm", "arm"),
    ("l_forearm", "l_elbow", "l_wrist", "forearm", "arm"),
    ("r_thigh", "r_hip", "r_knee", "thigh", "leg"),
    ("r_shin", "r_knee", "r_ankle", "shin", "leg"),
    ("l_thigh", "l_hip", "l_knee", "thigh", "leg"),
    ("l_shin", "l_knee", "l_ankle", "shin", "leg"),
)
_SEG_IDX = np.array([[_J[a], _J[b]] for _, a, b, _, _ in _SEGMENTS])
_TORSO_IDX = np.array([_J["r_shoulder"], _J["l_shoulder"], _J["l_hip"], _J["r_hip"]])

# Rest-pose body in units of roughly the figure's height, each length jittered ±15 % per clip.
_BODY = {
    "torso": 0.30, "neck": 0.07, "head_radius": 0.065, "shoulder_width": 0.10,
    "hip_width": 0.06, "upper_arm": 0.16, "forearm": 0.15, "thigh": 0.23, "shin": 0.23,
}


def _luma(rgb) -> float:
    r, g, b = np.asarray(rgb, np.float64) / 255.0
    return 0.299 * r + 0.587 * g + 0.114 * b


def _color(rng: np.random.Generator, lo: float, hi: float, saturation=(0.5, 1.0)) -> list[int]:
    """A random RGB colour with luma in [lo, hi], blended towards its grey by `saturation`.

    Blending keeps the luma, so contrast guarantees hold for muted colours too.
    """
    while True:
        c = rng.integers(0, 256, size=3)
        luma = _luma(c)
        if lo <= luma <= hi:
            c = 255.0 * luma + rng.uniform(*saturation) * (c - 255.0 * luma)
            return [int(v) for v in np.clip(np.round(c), 0, 255)]


def _direction(abduction, flexion, side):
    """Unit vectors [T, 3] of a limb from its angles in radians.

    The limb hangs down (+y, image convention) at zero; `flexion` swings it forward
    (+z, towards the camera), `abduction` out to the figure's side (side +1: right, which
    is image-left for a figure facing the camera; -1: left). 180° abduction points up.
    """
    abduction, flexion = np.broadcast_arrays(abduction, flexion)
    return np.stack([-side * np.sin(abduction) * np.cos(flexion),
                     np.cos(abduction) * np.cos(flexion),
                     np.sin(flexion)], axis=-1)


def _motion(action: str, phase: np.ndarray, amp: float, rng: np.random.Generator) -> dict:
    """Joint angles (degrees, each [T] or scalar) of one action over time.

    Keys: {r,l}_{upper_arm,forearm,thigh,shin}_{abd,flex}, lean, jump (body units upwards).
    Limbs left out keep the rest pose.
    """
    s = np.sin(phase)
    up = 0.5 - 0.5 * np.cos(phase)  # 0 → 1 → 0 once per period
    rest_arm = rng.uniform(6.0, 14.0)
    m = {}
    for side in "rl":
        m[f"{side}_upper_arm_abd"] = rest_arm
        m[f"{side}_forearm_abd"] = rest_arm
        m[f"{side}_forearm_flex"] = 12.0
        m[f"{side}_thigh_abd"] = m[f"{side}_shin_abd"] = 3.0
    if action in ("wave1", "wave2"):
        for side in ("r", "l") if action == "wave2" else ("r",):
            m[f"{side}_upper_arm_abd"] = 145.0 + 12.0 * amp * s
            m[f"{side}_forearm_abd"] = 170.0 + 45.0 * amp * s
            m[f"{side}_forearm_flex"] = 0.0
    elif action == "jack":
        for side in "rl":
            m[f"{side}_upper_arm_abd"] = rest_arm + 150.0 * amp * up
            m[f"{side}_forearm_abd"] = m[f"{side}_upper_arm_abd"] + 10.0 * up
            m[f"{side}_thigh_abd"] = m[f"{side}_shin_abd"] = 3.0 + 22.0 * amp * up
        m["jump"] = 0.05 * amp * np.abs(s)
    elif action == "squat":
        for side in "rl":
            m[f"{side}_thigh_flex"] = 95.0 * amp * up
            m[f"{side}_shin_flex"] = -35.0 * amp * up
            m[f"{side}_upper_arm_flex"] = m[f"{side}_forearm_flex"] = 85.0 * amp * up
        m["lean"] = 25.0 * amp * up
    elif action == "march":
        for side, sign in (("r", 1.0), ("l", -1.0)):
            lift = 75.0 * amp * np.maximum(0.0, sign * s)
            m[f"{side}_thigh_flex"] = lift
            m[f"{side}_shin_flex"] = -0.3 * lift
            # Arms swing against the same-side leg.
            m[f"{side}_upper_arm_flex"] = -25.0 * amp * sign * s
            m[f"{side}_forearm_flex"] = m[f"{side}_upper_arm_flex"] + 20.0
    elif action == "kick":
        kick = np.maximum(0.0, s) ** 2
        sideways = rng.uniform(0.0, 45.0)  # forward kick … diagonal kick
        m["r_thigh_flex"] = 85.0 * amp * kick
        m["r_thigh_abd"] = 3.0 + sideways * amp * kick
        # The knee bends while the leg swings up and down and straightens at the top.
        m["r_shin_flex"] = m["r_thigh_flex"] - 200.0 * kick * (1.0 - kick)
        m["r_shin_abd"] = m["r_thigh_abd"]
        for side in "rl":  # arms out for balance, slightly counter-swinging
            m[f"{side}_upper_arm_abd"] = 50.0 + 10.0 * amp * kick
            m[f"{side}_forearm_abd"] = m[f"{side}_upper_arm_abd"] + 15.0
    else:
        raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")
    return m


def _skeleton(body: dict, motion: dict, num_frames: int, yaw: float):
    """Poses the 3-D figure, turns it by `yaw` (radians) and projects it orthographically.

    Returns:
      (xy [T, 14, 2] in body units, y down; depth [T, 14], larger is nearer the camera).
    """
    t = num_frames
    get = lambda key: np.broadcast_to(np.radians(motion.get(key, 0.0)), (t,))
    joints = np.zeros((t, len(JOINT_NAMES), 3))
    lean = get("lean")
    up = np.stack([np.zeros(t), -np.cos(lean), np.sin(lean)], -1)  # pelvis → neck, leaning forward
    joints[:, _J["neck"]] = body["torso"] * up
    joints[:, _J["head"]] = joints[:, _J["neck"]] + (body["neck"] + body["head_radius"]) * up
    for side, sign in (("r", 1.0), ("l", -1.0)):
        shoulder = joints[:, _J["neck"]] + [-sign * body["shoulder_width"], 0.02, 0.0]
        limb = lambda part: body[part] * _direction(
            get(f"{side}_{part}_abd"), get(f"{side}_{part}_flex"), sign)
        elbow = shoulder + limb("upper_arm")
        wrist = elbow + limb("forearm")
        hip = np.array([-sign * body["hip_width"], 0.0, 0.0])
        knee = hip + limb("thigh")
        ankle = knee + limb("shin")
        for name, value in (("shoulder", shoulder), ("elbow", elbow), ("wrist", wrist),
                            ("hip", hip), ("knee", knee), ("ankle", ankle)):
            joints[:, _J[f"{side}_{name}"]] = value
    # The lower foot stays planted at the rest ankle's height and depth: squats then sink
    # the body, a march or kick lifts only the moving leg; a jack's jump goes on top.
    ankles = joints[:, [_J["r_ankle"], _J["l_ankle"]]]
    stance = ankles[np.arange(t), np.argmax(ankles[:, :, 1], axis=1)]
    joints[:, :, 1] += (body["thigh"] + body["shin"] - stance[:, 1])[:, None]
    joints[:, :, 1] -= np.broadcast_to(motion.get("jump", 0.0), (t,))[:, None]
    joints[:, :, 2] -= stance[:, None, 2]
    x = joints[..., 0] * np.cos(yaw) + joints[..., 2] * np.sin(yaw)
    depth = -joints[..., 0] * np.sin(yaw) + joints[..., 2] * np.cos(yaw)
    return np.stack([x, joints[..., 1]], -1), depth


def _background(rng: np.random.Generator, kind: str, hi_size: int):
    """A static background for `kind` in BACKGROUNDS.

    Returns:
      (uint8 [hi_size, hi_size, 3] image, (lo, hi) luma range the figure must avoid).
    """
    if kind == "plain":
        lum = rng.uniform(0.05, 0.3) if rng.random() < 0.5 else rng.uniform(0.7, 0.95)
        color = _color(rng, lum - 0.03, lum + 0.03, (0.0, 0.7))
        image = np.empty((hi_size, hi_size, 3), np.uint8)
        image[:] = color
        return image, (_luma(color) - 0.2, _luma(color) + 0.2)
    lo = rng.uniform(0.25, 0.45)
    hi = lo + 0.3
    palette = np.array([_color(rng, lo, hi, (0.2, 0.6)) for _ in range(8)], np.float32)
    # Low-frequency colour wash + a floor band + static shapes + speckle: busy everywhere
    # (like Penn Action's rooms and gyms) while staying inside the luma band.
    wash = palette[rng.integers(0, 8, size=(4, 4))]
    image = cv2.resize(wash, (hi_size, hi_size), interpolation=cv2.INTER_CUBIC)
    floor = int(hi_size * rng.uniform(0.6, 0.85))
    image[floor:] = 0.5 * image[floor:] + 0.5 * palette[rng.integers(0, 8)]
    s = 1 << _SHIFT
    for _ in range(rng.integers(10, 18)):
        color = palette[rng.integers(0, 8)].tolist()
        p, q = (rng.uniform(-0.1, 1.1, size=(2, 2)) * hi_size * s).astype(int)
        shape = rng.integers(0, 3)
        if shape == 0:
            cv2.rectangle(image, tuple(p), tuple(q), color, -1, cv2.LINE_AA, _SHIFT)
        elif shape == 1:
            axes = tuple((np.abs(q - p) // 2 + s).tolist())
            cv2.ellipse(image, tuple(p), axes, float(rng.uniform(0, 180)), 0, 360,
                        color, -1, cv2.LINE_AA, _SHIFT)
        else:
            cv2.line(image, tuple(p), tuple(q), color, int(rng.integers(2, 4) * _SUPERSAMPLE),
                     cv2.LINE_AA, _SHIFT)
    speckle = rng.normal(0.0, 18.0, size=(hi_size // 8, hi_size // 8, 1)).astype(np.float32)
    image += cv2.resize(speckle, (hi_size, hi_size), interpolation=cv2.INTER_LINEAR)[..., None]
    image = cv2.GaussianBlur(image, (0, 0), _SUPERSAMPLE * 0.5)
    # Shapes and speckle may stray from the band; pull luma back so the figure keeps contrast.
    luma = image @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
    target = np.clip(luma, lo, hi)
    image += ((target - luma) * 255.0)[..., None]
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), (lo, hi)


def _figure_colors(rng: np.random.Generator, avoid: tuple[float, float]) -> dict:
    """Part colours with luma at least 0.15 outside `avoid` (all darker or all lighter)."""
    lo, hi = avoid
    dark = (lo - 0.15 >= 0.05) and (hi + 0.15 > 0.95 or rng.random() < 0.5)
    band = (0.0, lo - 0.15) if dark else (hi + 0.15, 1.0)
    parts = ("head", "torso", "upper_arm", "forearm", "thigh", "shin")
    return {part: _color(rng, *band) for part in parts}


def generate_clip(index: int, *, split: str = "train", seed: int = 0, size: int = 64,
                  num_frames: int = 48, background: str = "plain") -> Clip:
    """Renders clip `index` of `split`.

    Args:
      index: clip number; the action is `ACTIONS[index % 6]`, so every 6 consecutive
        clips hold each class once.
      split: a key of `SPLIT_SEED_OFFSETS`.
      seed: dataset seed.
      size: frame height and width in pixels.
      num_frames: T.
      background: one of `BACKGROUNDS`.

    Returns:
      A Clip with frames uint8 [T, size, size, 3] RGB, label in [0, 6), joints float32
      [T, 14, 2] (x, y) in pixels (pixel centres at integers) in `JOINT_NAMES` order, all
      visible, and meta with the action and every random figure parameter.
    """
    if split not in SPLIT_SEED_OFFSETS:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(SPLIT_SEED_OFFSETS)}")
    if background not in BACKGROUNDS:
        raise ValueError(f"unknown background {background!r}; expected one of {BACKGROUNDS}")
    stream = [int(seed), SPLIT_SEED_OFFSETS[split], int(index)]
    # Separate streams: the same clip gets the same figure and motion on either background.
    rng = np.random.default_rng(stream)
    bg_rng = np.random.default_rng(stream + [1])
    label = index % len(ACTIONS)
    action = ACTIONS[label]

    body = {k: float(v * rng.uniform(0.85, 1.15)) for k, v in _BODY.items()}
    thickness = {"arm": float(rng.uniform(0.065, 0.085)), "leg": float(rng.uniform(0.08, 0.105))}
    period = float(rng.uniform(16.0, 22.0))
    amp = float(rng.uniform(0.7, 1.0))
    phase0 = float(rng.uniform(-0.2, 0.2))  # near the onset: the rest pose for most actions
    yaw = float(rng.uniform(-40.0, 40.0))
    height_frac = float(rng.uniform(0.7, 0.9))
    phase = 2.0 * np.pi * np.arange(num_frames) / period + phase0
    xy, depth = _skeleton(body, _motion(action, phase, amp, rng), num_frames, np.radians(yaw))

    # Scale to the sampled height, shrunk if the motion's extent (plus the head's and limbs'
    # half widths) would leave the frame, then place randomly where everything fits.
    margin = max(body["head_radius"], thickness["leg"] / 2.0)
    lo_xy, hi_xy = xy.min(axis=(0, 1)) - margin, xy.max(axis=(0, 1)) + margin
    standing = body["thigh"] + body["shin"] + body["torso"] + body["neck"] + 2 * body["head_radius"]
    room = size - 1 - 2 * _PAD_PX
    scale = min(height_frac * size / standing, *(room / (hi_xy - lo_xy)))
    slack = np.maximum(room - (hi_xy - lo_xy) * scale, 0.0)  # ≥ 0 up to rounding
    offset = (_PAD_PX - lo_xy * scale + rng.uniform(0.0, 1.0, size=2) * slack).tolist()
    joints = (xy * scale + offset).astype(np.float32)

    bg, avoid = _background(bg_rng, background, size * _SUPERSAMPLE)
    colors = _figure_colors(rng, avoid)
    frames = _render(bg, joints, depth, colors, scale * body["head_radius"],
                     {k: scale * v for k, v in thickness.items()}, size)
    meta = {
        "action": action, "seed": int(seed), "split": split, "index": int(index),
        "background": background, "size": int(size), "num_frames": int(num_frames),
        "period": period, "amplitude": amp, "phase": phase0, "yaw_deg": yaw,
        "height_fraction": height_frac, "scale_px": float(scale), "offset_px": offset,
        "body": body, "thickness": thickness, "colors": colors,
    }
    return Clip(clip_id=f"{split}_{index:06d}", frames=frames, label=label, joints=joints,
                visibility=np.ones(joints.shape[:2], np.float32), meta=meta)


def _render(bg: np.ndarray, joints: np.ndarray, depth: np.ndarray, colors: dict,
            head_radius: float, thickness: dict, size: int) -> np.ndarray:
    """Paints the figure on every frame, far parts first.

    Args:
      bg: uint8 [S*size, S*size, 3] supersampled background.
      joints: [T, 14, 2] pixel coordinates in the output frame.
      depth: [T, 14], larger is nearer the camera.

    Returns:
      uint8 [T, size, size, 3].
    """
    # Output pixel centre p sits at S*(p + 0.5) - 0.5 in the supersampled canvas.
    fixed = np.round((_SUPERSAMPLE * (joints + 0.5) - 0.5) * (1 << _SHIFT)).astype(np.int32)
    seg_depth = depth[:, _SEG_IDX].mean(-1)
    torso_depth = depth[:, _TORSO_IDX].mean(-1)
    head_depth = depth[:, _J["head"]] + 1e-3  # the head covers its own neck
    line_px = {k: max(1, int(round(v * _SUPERSAMPLE))) for k, v in thickness.items()}
    head_fixed = int(round(head_radius * _SUPERSAMPLE * (1 << _SHIFT)))
    out = np.empty((len(joints), size, size, 3), np.uint8)
    for t in range(len(joints)):
        canvas = bg.copy()
        p = fixed[t]
        items = [(seg_depth[t, i], i) for i in range(len(_SEGMENTS))]
        items += [(torso_depth[t], -1), (head_depth[t], -2)]
        for _, i in sorted(items):
            if i == -1:
                poly = p[_TORSO_IDX]
                cv2.fillConvexPoly(canvas, poly, colors["torso"], cv2.LINE_AA, _SHIFT)
                cv2.polylines(canvas, [poly], True, colors["torso"], line_px["arm"], cv2.LINE_AA, _SHIFT)
            elif i == -2:
                cv2.circle(canvas, tuple(p[_J["head"]]), head_fixed, colors["head"], -1,
                           cv2.LINE_AA, _SHIFT)
            else:
                _, _, _, color, width = _SEGMENTS[i]
                a, b = _SEG_IDX[i]
                cv2.line(canvas, tuple(p[a]), tuple(p[b]), colors[color], line_px[width],
                         cv2.LINE_AA, _SHIFT)
        out[t] = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    return out


def generate_split(split: str, count: int, *, seed: int = 0, size: int = 64, num_frames: int = 48,
                   background: str = "plain") -> Iterator[Clip]:
    """Clips 0 … count-1 of `split` (see `generate_clip`), lazily."""
    for index in range(count):
        yield generate_clip(index, split=split, seed=seed, size=size, num_frames=num_frames,
                            background=background)


def write_previews(out: str, count: int = 6, *, split: str = "train", seed: int = 0,
                   size: int = 64, num_frames: int = 48, background: str = "plain",
                   scale: int = 3) -> list[str]:
    """Writes `count` GIF previews into `out`, each clip beside the same clip with its joints
    drawn, `scale` times enlarged; returns their paths (`<clip_id>_<action>.gif`)."""
    from kp_tf import viz
    from kp_tf.conventions import pixels_to_normalized

    os.makedirs(out, exist_ok=True)
    paths = []
    for clip in generate_split(split, count, seed=seed, size=size, num_frames=num_frames,
                               background=background):
        keypoints = pixels_to_normalized(clip.joints, size, size)
        video = viz.keypoint_video(clip.frames, keypoints, scale=scale)
        paths.append(os.path.join(out, f"{clip.clip_id}_{clip.meta['action']}.gif"))
        viz.write_gif(paths[-1], video, fps=12)
    return paths


def _define_flags() -> None:
    """The preview command's flags; only when run as __main__ (see `console_main`)."""
    from absl import flags

    flags.DEFINE_string("out", None, "Folder for the GIFs.")
    flags.DEFINE_integer("count", 6, "Clips to write (6 = one per action).", lower_bound=1)
    flags.DEFINE_enum("split", "train", list(SPLIT_SEED_OFFSETS), "Split the clips come from.")
    flags.DEFINE_integer("seed", 0, "Dataset seed.")
    flags.DEFINE_integer("size", 64, "Frame size in pixels.", lower_bound=8)
    flags.DEFINE_integer("num_frames", 48, "Frames per clip.", lower_bound=1)
    flags.DEFINE_enum("background", "plain", list(BACKGROUNDS), "Background kind.")
    flags.DEFINE_integer("scale", 3, "Integer upscaling of the GIFs.", lower_bound=1)
    flags.mark_flag_as_required("out")


def main(argv) -> int:
    """Writes the previews the flags ask for and prints their paths."""
    del argv
    from absl import flags

    fv = flags.FLAGS
    for path in write_previews(fv.out, fv.count, split=fv.split, seed=fv.seed, size=fv.size,
                               num_frames=fv.num_frames, background=fv.background,
                               scale=fv.scale):
        print(path)
    return 0


def console_main() -> None:
    """Defines the flags and runs the preview command (`python -m kp_tf.data.synthetic`)."""
    from kp_tf import cli

    _define_flags()
    cli.run(main)


if __name__ == "__main__":
    console_main()
