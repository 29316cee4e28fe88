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


# The groups of settings, in the order `--help` lists them.
GROUPS = ("data", "stage-1 networks", "stage-2 networks", "losses", "training", "run")

# Settings that no preset uses and no measurement has supported yet (docs/experiments.md says
# what was tried): kept for trials, listed apart by `--help`.
EXPERIMENTAL = frozenset({"plain_pair_detector", "detector_downsample", "warp_blend",
                          "warp_decoder_maps", "perceptual_scales", "kl_free_bits", "xla"})


def _f(default, group: str, help_text: str):
    return dataclasses.field(default=default, metadata={"help": help_text, "group": group})


def _data(default, text):
    return _f(default, "data", text)


def _stage1(default, text):
    return _f(default, "stage-1 networks", text)


def _stage2(default, text):
    return _f(default, "stage-2 networks", text)


def _loss(default, text):
    return _f(default, "losses", text)


def _train(default, text):
    return _f(default, "training", text)


def _run(default, text):
    return _f(default, "run", text)


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of a run; presets in flags/NAME.flags, sources in docs/differences.md."""

    dataset: str = _data("synthetic", "Preset name; also the default data and run folder names.")
    data_dir: str = _data("", "Folder with the TFRecords and manifest.json (default data/<dataset>).")
    src: str = _data("", "Raw copy of the dataset, converted into data_dir on first use (docs/datasets.md).")
    logdir: str = _data("", "Run folder: checkpoints, TensorBoard, export (default runs/<dataset>).")
    image_size: int = _data(128, "Square frame size the networks see.")
    num_actions: int = _data(0, "Action classes; 0 for data without classes (MGIF, UvA-NEMO).")
    pair_gap_min: int = _data(8, "Stage-1 pairs: smallest frame gap.")
    pair_gap_max: int = _data(11, "Stage-1 pairs: largest frame gap.")
    augment: bool = _data(True, "Stage-1 image and stage-2 keypoint augmentation.")
    target_shift: float = _data(0.0, "Stage-1 pairs: the target alone also shifts up to this (2 = width).")
    target_rotation: float = _data(0.0, "Stage-1 pairs: the target alone also rotates up to this (degrees).")
    target_scale: float = _data(0.0, "Stage-1 pairs: the target alone is also scaled by 1 ± up to this.")
    plain_pair_steps: int = _data(0, "The last this many stage-1 steps use pairs without the target jitter.")
    plain_pair_detector: bool = _data(True, "The detector keeps training in the plain-pair steps.")
    keypoint_flip: bool = _data(True, "Stage-2 keypoint augmentation mirrors x with p = 0.5.")
    stage2_random_start: bool = _data(True, "Stage-2 windows start at a random frame (else at 0).")
    pseudo_label_smoothing: float = _data(0.0, "σ (frames) of a Gaussian over time on the pseudo-labels.")

    num_keypoints: int = _stage1(40, "K, the number of learned keypoints.")
    encoder_filters: int = _stage1(32, "Base width of the conv encoders (doubles at each stride).")
    detector_filters: int = _stage1(128, "Width of the detector decoder's first block (halves per scale).")
    detector_downsample: int = _stage1(1, "The detector sees the frame average-pooled by this factor.")
    keypoint_softmax: str = _stage1("axis", "'axis' (per-axis softmax, the original) or 'spatial' (2-D).")
    heatmap_temperature: float = _stage1(1.0, "Softmax temperature of the detector's heatmaps.")
    translator: str = _stage1("paper", "'paper' (mask blend with the reference) or 'warp' (dense motion).")
    translator_filters: int = _stage1(256, "Width of the translator's first block (halves per scale).")
    gaussian_inv_std: float = _stage1(14.3, "Inverse std of the translator's keypoint Gaussian maps.")
    mask_bias_init: float = _stage1(0.0, "Initial bias of the translator's mask logit (0: mask 0.5).")
    warp_filters: int = _stage1(32, "Width of the warp translator's dense-motion network.")
    warp_motion_scale: int = _stage1(4, "The warp translator's dense motion runs at S / this (1, 2 or 4).")
    warp_prior_sigma: float = _stage1(0.1, "σ of the warp translator's nearest-keypoint mask prior (0: none).")
    warp_full_flow: bool = _stage1(False, "Warp translator: mix the candidate motions at S, not at the dense motion's size.")
    warp_decoder_maps: bool = _stage1(True, "Warp translator: the decoder also reads both keypoints' Gaussian maps.")
    warp_blend: str = _stage1("mask", "Warp translator's last blend: 'mask' or 'occlusion'.")
    discriminator_filters: int = _stage1(64, "Width of the image discriminator's first conv.")
    discriminator_layers: int = _stage1(6, "Stride-2 convs in the image discriminator.")
    batchnorm_momentum: float = _stage1(0.999, "BatchNorm moving-average decay.")
    perceptual_layers: str = _stage1(
        "block1_conv2,block2_conv2,block3_conv4,block4_conv4,block5_conv4",
        "VGG19 layers of the perceptual loss, equal weights.")
    perceptual_scales: str = _stage1(
        "1", "Pooling factors of the perceptual loss's image pyramid, e.g. '1,2,4' (1: eq. 4).")
    vgg_weights: str = _stage1("imagenet", "VGG19 weights: 'imagenet' (found by kp_tf.pretrained), a path, or 'none'.")

    lstm_units: int = _stage2(1024, "Units of each LSTM layer (cVAE and sequence discriminator).")
    lstm_layers: int = _stage2(2, "LSTM layers in the cVAE encoder, decoder and discriminator.")
    latent_dim: int = _stage2(64, "Size of the cVAE latent z.")
    sequence_length: int = _stage2(32, "Future keypoint frames the motion generator produces.")
    decoder_input_dim: int = _stage2(32, "Width of the decoder's conditioning projection.")
    motion_residual: bool = _stage2(False, "The decoder outputs k_0 + offsets (else absolute keypoints).")
    decoder_condition_every_step: bool = _stage2(False, "Feed [z, k_0, a] at every decoder step (else the first).")

    lambda_perceptual: float = _loss(1.0, "λ1, weight of the perceptual loss (eq. 4).")
    lambda_image_adv: float = _loss(1.0, "Weight of the stage-1 adversarial loss.")
    lambda_equivariance: float = _loss(0.0, "Weight of the stage-1 equivariance loss (0: none).")
    equivariance_shift: float = _loss(0.1, "Equivariance warp: translation bound per axis (2 = width).")
    equivariance_rotation: float = _loss(10.0, "Equivariance warp: rotation bound, degrees.")
    equivariance_scale: float = _loss(0.1, "Equivariance warp: the scale is 1 ± up to this.")
    lambda_separation: float = _loss(0.0, "Weight of the stage-1 keypoint separation loss (0: none).")
    separation_sigma: float = _loss(0.05, "σ of the separation loss (2 = width).")
    lambda_keypoint_motion: float = _loss(0.0, "Weight of the stage-1 keypoint motion loss (0: none).")
    keypoint_motion_sigma: float = _loss(0.1, "σ of the motion loss's nearest-keypoint prior (2 = width).")
    lambda_keypoint_coverage: float = _loss(0.0, "Weight of the stage-1 keypoint coverage loss (0: none).")
    lambda_l1: float = _loss(1000.0, "λ2, weight of the keypoint L1 loss (eq. 5).")
    lambda_sequence_adv: float = _loss(2.0, "λ3, weight of the stage-2 adversarial loss (eq. 5).")
    lambda_kl: float = _loss(1.0, "Weight of the KL term (eq. 5).")
    kl_free_bits: float = _loss(0.0, "Free bits: nats per latent dimension the KL stops pulling below.")

    batch_size: int = _train(32, "Global batch size of stage 1.")
    stage2_batch_size: int = _train(16, "Global batch size of stage 2.")
    learning_rate: float = _train(1e-4, "Adam learning rate of every optimizer.")
    beta1: float = _train(0.5, "Adam β1.")
    beta2: float = _train(0.999, "Adam β2.")
    lr_decay: float = _train(0.95, "Learning-rate factor per lr_decay_steps, applied smoothly.")
    lr_decay_steps: int = _train(20000, "Steps over which the learning rate decays by lr_decay.")
    stage1_steps: int = _train(100000, "Stage-1 training steps (one D and one G update each).")
    stage2_steps: int = _train(100000, "Stage-2 training steps.")
    precision: str = _train("float32", "Stage-1 precision: 'float32', 'mixed_bfloat16' or 'auto'.")
    xla: bool = _train(False, "Compile the training steps with XLA.")

    seed: int = _run(0, "Seeds everything random: initial weights, data order, augmentation, sampler.")
    deterministic: bool = _run(False, "TensorFlow op determinism: bit-for-bit repeats on one machine.")
    checkpoint_every: int = _run(1000, "Steps between checkpoints (also at the end and on Ctrl-C).")
    summary_every: int = _run(100, "Steps between scalar summaries.")
    image_summary_every: int = _run(1000, "Steps between image summaries.")
    inference_precision: str = _run("float32", "Precision of pseudo-labelling and of the export: "
                                    "'float32', 'mixed_bfloat16' or 'auto'.")

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

    @property
    def perceptual_scale_list(self) -> list[int]:
        try:
            return [int(s) for s in self.perceptual_scales.split(",") if s]
        except ValueError:
            raise ValueError(f"--perceptual_scales: expected pooling factors such as '1,2,4', "
                             f"got {self.perceptual_scales!r}") from None

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

def help_text(name: str) -> str:
    """A setting's one-line help, marked when it is experimental."""
    text = FIELDS[name].metadata["help"]
    return f"[experimental] {text}" if name in EXPERIMENTAL else text


def grouped_help() -> str:
    """The settings by group (GROUPS), experimental ones last: what `train --help` adds."""
    lines = ["Settings (a preset's values are the defaults; any of them can be given):"]
    for group in GROUPS + ("experimental",):
        names = [n for n, f in FIELDS.items()
                 if (f.metadata["group"] == group and n not in EXPERIMENTAL)
                 or (group == "experimental" and n in EXPERIMENTAL)]
        lines.append(f"\n  {group}:")
        lines += [f"    --{n}: {FIELDS[n].metadata['help']} (default: {FIELDS[n].default!r})"
                  for n in names]
    return "\n".join(lines)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines one absl flag per Config field (idempotent)."""
    for name, field in FIELDS.items():
        if name in flag_values:
            continue
        default, help_text = field.default, globals()["help_text"](name)
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
