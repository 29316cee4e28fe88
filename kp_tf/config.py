"""Hyper-parameters: one dataclass, presets as absl flagfiles in `flags/NAME.flags`.

A preset file holds `--field=value` lines, each preceded by a comment line that says where
the value comes from; `load_preset` reads it without touching global flags, and every
command line (`python -m kp_tf.train --dataset=NAME --batch_size=8`) takes the preset as
its defaults and the flags given explicitly as overrides. The same files also work as
plain `--flagfile=flags/NAME.flags`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional

from absl import flags


def _f(default, help_text):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class Config:
    # --- data
    dataset: str = _f("synthetic", "Preset name; also the default data and log folder names.")
    data_dir: str = _f("", "Folder with the TFRecords and manifest.json (default data/<dataset>).")
    logdir: str = _f("", "Run folder for checkpoints, TensorBoard and exports (default runs/<dataset>).")
    image_size: int = _f(128, "Square frame size the networks see.")
    num_actions: int = _f(0, "Action classes; 0 for datasets without classes (MGIF, UvA-NEMO).")
    pair_gap_min: int = _f(8, "Stage-1 pairs: smallest frame gap (original code: 8).")
    pair_gap_max: int = _f(11, "Stage-1 pairs: largest frame gap (original code: 11).")
    augment: bool = _f(True, "Stage-1 image and stage-2 keypoint augmentation.")
    target_shift: float = _f(0.0, "Stage-1 pairs: the target alone is also shifted by up to this much (normalized units, 2 = the width); 0 as the paper. Jakab et al.'s synthetic warps: the reference cannot simply be copied.")
    target_rotation: float = _f(0.0, "Stage-1 pairs: the target alone is also rotated by up to this many degrees (0 as the paper).")
    target_scale: float = _f(0.0, "Stage-1 pairs: the target alone is also scaled by 1 ± up to this (0 as the paper).")
    plain_pair_steps: int = _f(0, "The last this many stage-1 steps train on pairs without the target jitter, so that the translator learns to copy what does not move (the jitter teaches it never to).")
    plain_pair_detector: bool = _f(True, "Keep training the keypoint detector during the plain-pair steps (as before session 12). False freezes it there (inference-mode keypoints, no detector gradient, no equivariance or separation term): those steps took 324 instead of 511 ms at the synthetic preset, but its one main-command run came out at the low end of the preset's range (README, Measured).")
    # --- stage 1 networks
    num_keypoints: int = _f(40, "K, the number of learned keypoints.")
    encoder_filters: int = _f(32, "Base width of the shared conv encoder (doubles at each stride).")
    detector_filters: int = _f(128, "Width of the detector decoder's first block (halves per scale).")
    detector_downsample: int = _f(1, "The detector sees the frame average-pooled by this factor (original: 1; FOMM: 4 at 256×256): its convolutions' work falls with the square.")
    translator_filters: int = _f(256, "Width of the translator's first block (halves per scale).")
    translator: str = _f("paper", "'paper' (the paper's mask blend with the reference) or 'warp' (a keypoint-driven dense motion first moves the reference's features and pixels; beyond the paper).")
    warp_filters: int = _f(32, "Width of the warp translator's dense-motion network.")
    warp_prior_sigma: float = _f(0.1, "σ (normalized units) of the warp translator's nearest-keypoint prior on its motion masks (0: none).")
    warp_blend: str = _f("mask", "Warp translator's last step: 'mask' (the decoder's mask blends the warped reference) or 'occlusion' (the dense motion's occlusion map does).")
    discriminator_filters: int = _f(64, "Width of the image discriminator's first conv (doubles per conv).")
    discriminator_layers: int = _f(6, "Stride-2 convs in the image discriminator.")
    keypoint_softmax: str = _f("axis", "'axis' (original code: per-axis softmax of averaged logits) or 'spatial' (2-D).")
    heatmap_temperature: float = _f(1.0, "Softmax temperature of the detector's heatmaps (original: 1; FOMM: 0.1).")
    mask_bias_init: float = _f(0.0, "Initial bias of the translator's mask logit: 0 (mask 0.5) as the original; negative starts by generating instead of copying the reference.")
    gaussian_inv_std: float = _f(14.3, "Inverse std of the keypoint Gaussian maps (original: 14.3 = 1/0.07).")
    batchnorm_momentum: float = _f(0.999, "BatchNorm moving-average decay (original: 0.999, epsilon 1e-5).")
    perceptual_layers: str = _f(
        "block1_conv2,block2_conv2,block3_conv4,block4_conv4,block5_conv4",
        "VGG19 layers of the perceptual loss (eq. 4), equal weights.")
    vgg_weights: str = _f("imagenet", "VGG19 weights: 'imagenet' (Keras' cache in $KERAS_HOME/models, else a download) or an .h5 path.")
    # --- stage 2 networks
    lstm_units: int = _f(1024, "Units of each LSTM layer in the cVAE and sequence discriminator.")
    lstm_layers: int = _f(2, "LSTM layers in the cVAE encoder, decoder and discriminator.")
    latent_dim: int = _f(64, "Size of the cVAE latent z.")
    sequence_length: int = _f(32, "Future keypoint frames the motion generator produces.")
    decoder_input_dim: int = _f(32, "Width of the decoder's first-step conditioning projection.")
    motion_residual: bool = _f(False, "Decoder outputs k_0 + offsets instead of absolute keypoints (original: absolute).")
    decoder_condition_every_step: bool = _f(False, "Feed [z, k_0, a] to the decoder LSTM at every step (original: first step only, zeros after).")
    # --- losses
    lambda_perceptual: float = _f(1.0, "λ1, weight of the perceptual loss (paper and code: 1).")
    lambda_image_adv: float = _f(1.0, "Weight of the stage-1 adversarial loss (paper and code: 1).")
    lambda_equivariance: float = _f(0.0, "Weight of the stage-1 equivariance loss (0 as the paper; FOMM uses 10): L1 between the keypoints of a randomly warped reference and the reference's keypoints moved by the same warp.")
    equivariance_shift: float = _f(0.1, "Equivariance warp: translation bound per axis, normalized units.")
    equivariance_rotation: float = _f(10.0, "Equivariance warp: rotation bound, degrees.")
    equivariance_scale: float = _f(0.1, "Equivariance warp: the scale is 1 ± up to this.")
    lambda_separation: float = _f(0.0, "Weight of the stage-1 separation loss (0 as the paper; Zhang et al. 2018): mean over keypoint pairs of exp(-d²/2σ²), so keypoints do not pile up on each other.")
    separation_sigma: float = _f(0.05, "σ of the separation loss, normalized units (2 = the width).")
    keypoint_flip: bool = _f(True, "Stage-2 keypoint augmentation mirrors x with p = 0.5 (the original); false for datasets whose actions name a side (the synthetic wave1 is the right arm, kick the right leg): a mirrored wave1 moves the other arm, as half a wave2, and a mirrored march starts with the other leg.")
    stage2_random_start: bool = _f(True, "Stage-2 training windows start at a random frame (the original); false: at frame 0, as the test windows do (for clips that begin at the action's onset).")
    pseudo_label_smoothing: float = _f(0.0, "σ (frames) of a Gaussian over time applied to each clip's pseudo-labels when stage 2 reads them (0: as detected, the original).")
    lambda_l1: float = _f(1000.0, "λ2, weight of the keypoint L1 loss (paper and code: 1000).")
    lambda_sequence_adv: float = _f(2.0, "λ3, weight of the stage-2 adversarial loss (paper: 2; code: 1).")
    lambda_kl: float = _f(1.0, "Weight of the KL term (paper and code: 1).")
    kl_free_bits: float = _f(0.0, "Free bits: nats per latent dimension below which the KL term stops pulling (0: the plain KL, as the paper).")
    # --- optimisation
    batch_size: int = _f(32, "Global batch size (paper: 32; released code: 16).")
    stage2_batch_size: int = _f(16, "Global batch size of stage 2 (original config: 16).")
    learning_rate: float = _f(1e-4, "Adam learning rate of every optimizer.")
    beta1: float = _f(0.5, "Adam β1.")
    beta2: float = _f(0.999, "Adam β2.")
    lr_decay: float = _f(0.95, "Learning rate factor per lr_decay_steps, applied smoothly.")
    lr_decay_steps: int = _f(20000, "Steps over which the learning rate decays by lr_decay.")
    stage1_steps: int = _f(100000, "Stage-1 training steps (one D and one G update each).")
    stage2_steps: int = _f(100000, "Stage-2 training steps.")
    # --- run
    seed: int = _f(0, "Seeds everything random in a run: initial weights (set anew at each stage), data order, augmentation, the motion sampler.")
    deterministic: bool = _f(False, "TensorFlow op determinism: bit-for-bit repeats of a run on one machine (docs/results.md: its cost per step).")
    checkpoint_every: int = _f(1000, "Steps between checkpoints (also saved at the end and on Ctrl-C).")
    summary_every: int = _f(100, "Steps between scalar summaries.")
    image_summary_every: int = _f(1000, "Steps between image summaries.")
    xla: bool = _f(False, "Compile the training steps with XLA (slower for convolutions on CPU).")
    precision: str = _f("float32", "Stage-1 training precision: 'float32', 'mixed_bfloat16' (bfloat16 convolutions, float32 variables, keypoint heads and losses) or 'auto' (mixed_bfloat16 on a CPU with native bfloat16 instructions and no GPU, else float32). Inference, pseudo-labels and exports are float32.")

    @property
    def resolved_data_dir(self) -> str:
        return self.data_dir or os.path.join("data", self.dataset)

    @property
    def resolved_logdir(self) -> str:
        return self.logdir or os.path.join("runs", self.dataset)

    @property
    def feature_size(self) -> int:
        """Resolution of the translator's input features and Gaussian maps (32 at 128×128)."""
        return self.image_size // 4

    @property
    def perceptual_layer_list(self) -> list[str]:
        return [s for s in self.perceptual_layers.split(",") if s]

    def replace(self, **kwargs) -> "Config":
        return dataclasses.replace(self, **kwargs)


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def flags_dir() -> Path:
    """The preset folder: $KP_TF_FLAGS, else `flags/` beside the package (editable install)."""
    env = os.environ.get("KP_TF_FLAGS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "flags"


def available_presets() -> list[str]:
    return sorted(p.stem for p in flags_dir().glob("*.flags"))


def parse_setting(text: str) -> tuple[str, object]:
    """`name=value` → (name, typed value); ValueError naming the problem otherwise."""
    name, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"expected --name=value, got {text!r}")
    if name not in FIELDS:
        raise ValueError(f"unknown setting --{name}")
    try:
        return name, _parse_value(name, value)
    except ValueError as e:
        raise ValueError(f"--{name}: {e}") from None


def _parse_value(name: str, text: str):
    kind = type(FIELDS[name].default)
    if kind is bool:
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"expected true/false, got {text!r}")
    return kind(text)


def read_flagfile(path: Path) -> dict:
    """`--name=value` lines → {name: typed value}; `#` and `//` lines are comments."""
    values = {}
    for lineno, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "//")):
            continue
        if not line.startswith("--"):
            raise ValueError(f"{path}:{lineno}: expected --name=value, got {raw!r}")
        try:
            name, value = parse_setting(line[2:])
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: {e}") from None
        values[name] = value
    return values


def load_preset(name: str, **overrides) -> Config:
    """The named preset from `flags/NAME.flags`, with keyword overrides."""
    path = flags_dir() / f"{name}.flags"
    if not path.exists():
        raise ValueError(f"unknown preset {name!r} ({path} not found); presets: {available_presets()}")
    values = read_flagfile(path)
    values.setdefault("dataset", name)
    values.update(overrides)
    return Config(**values)


# --- command-line integration -----------------------------------------------------------

def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines one absl flag per Config field (idempotent)."""
    for name, field in FIELDS.items():
        if name in flag_values:
            continue
        default, help_text = field.default, field.metadata["help"]
        if isinstance(default, bool):
            flags.DEFINE_boolean(name, default, help_text, flag_values=flag_values)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, help_text, flag_values=flag_values)
        elif isinstance(default, float):
            flags.DEFINE_float(name, default, help_text, flag_values=flag_values)
        else:
            flags.DEFINE_string(name, default, help_text, flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS,
                      preset: Optional[str] = None) -> Config:
    """Preset `--dataset` (or `preset`) as defaults, explicitly given flags on top."""
    name = preset or flag_values["dataset"].value
    explicit = {n: flag_values[n].value for n in FIELDS if flag_values[n].present}
    explicit.pop("dataset", None)
    return load_preset(name, **explicit)
