"""I3D (Inception-v1 inflated to 3-D, RGB stream) as a Keras 3 model, and its SavedModel export.

This is the network behind the TF-Hub module `deepmind/i3d-kinetics-400/1`, the feature
extractor of the reference Fréchet Video Distance (google-research `frechet_video_distance`).
The architecture follows DeepMind's Sonnet original (`kinetics-i3d/i3d.py`) layer for layer, so
that the checkpoint `rgb_scratch` (stored as `i3d_kinetics400_rgb_scratch.npz`, 230 arrays under
their original variable names) loads by name and the logits match the hub module.

Reference:
  Carreira & Zisserman, "Quo Vadis, Action Recognition? A New Model and the Kinetics Dataset",
  CVPR 2017. https://arxiv.org/abs/1705.07750 ; https://github.com/deepmind/kinetics-i3d

Facts that matter for exact numbers (all from the Sonnet code):
  * every unit is Conv3D without bias, SAME padding (TF semantics: for stride 2 the extra
    padding goes to the end; Keras' `padding="same"` on the TF backend calls the same TF op),
    BatchNorm with epsilon 1e-3, an offset (beta) but **no scale**, inference statistics, ReLU;
  * max pools use SAME padding (TF pads with -inf, i.e. ignores the padding);
  * in Mixed_5b the second conv of branch 2 is called `Conv3d_0a_3x3` (a typo in the original
    that the checkpoint keeps; everywhere else it is `Conv3d_0b_3x3`);
  * logits: average pool (2, 7, 7) stride 1 VALID, dropout (identity at inference), 1×1×1 conv
    with bias to 400 channels, squeeze of the spatial axes, **mean over time**
    (`RGB/inception_i3d/Mean:0` in the hub module).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import keras
import numpy as np
from keras import ops

from kp_tf import pretrained

SCOPE = "RGB/inception_i3d"
NUM_WEIGHT_ARRAYS = 230
NUM_CLASSES = 400
IMAGE_SIZE = 224
MIN_FRAMES = 9  # temporal stride 8 before the (2, 7, 7) VALID average pool

# Output channels of the four branches of every Mixed block:
# (1x1, (1x1 reduce, 3x3), (1x1 reduce, 3x3), pool projection 1x1), as in the Sonnet code.
MIXED_CHANNELS = {
    "Mixed_3b": (64, (96, 128), (16, 32), 32),
    "Mixed_3c": (128, (128, 192), (32, 96), 64),
    "Mixed_4b": (192, (96, 208), (16, 48), 64),
    "Mixed_4c": (160, (112, 224), (24, 64), 64),
    "Mixed_4d": (128, (128, 256), (24, 64), 64),
    "Mixed_4e": (112, (144, 288), (32, 64), 64),
    "Mixed_4f": (256, (160, 320), (32, 128), 128),
    "Mixed_5b": (256, (160, 320), (32, 128), 128),
    "Mixed_5c": (384, (192, 384), (48, 128), 128),
}


@keras.saving.register_keras_serializable(package="kp_tf")
class Unit3D(keras.layers.Layer):
    """Sonnet's `Unit3D`: Conv3D (+ BatchNorm without scale) (+ ReLU).

    Args:
      filters: output channels.
      kernel_size: 3-tuple (t, h, w).
      strides: 3-tuple.
      use_batch_norm: BatchNorm(epsilon=1e-3, center=True, scale=False) after the conv.
      use_bias: conv bias (only the logits conv has one).
      activation: "relu" or None.
      sonnet_name: the unit's scope below `RGB/inception_i3d/`, e.g.
        "Mixed_4b/Branch_1/Conv3d_0b_3x3"; the checkpoint variables are
        `{SCOPE}/{sonnet_name}/conv_3d/{w,b}` and `.../batch_norm/{beta,moving_mean,moving_variance}`.

    Shapes:
      [N, T, H, W, C] → [N, ceil(T/st), ceil(H/sh), ceil(W/sw), filters].
    """

    def __init__(self, filters, kernel_size=(1, 1, 1), strides=(1, 1, 1), use_batch_norm=True,
                 use_bias=False, activation="relu", sonnet_name="", **kwargs):
        kwargs.setdefault("name", sonnet_name.replace("/", "_") or None)
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(kernel_size)
        self.strides = tuple(strides)
        self.use_batch_norm = bool(use_batch_norm)
        self.use_bias = bool(use_bias)
        self.activation = activation
        self.sonnet_name = sonnet_name
        self.conv = keras.layers.Conv3D(
            self.filters, self.kernel_size, strides=self.strides, padding="same",
            use_bias=self.use_bias, name="conv_3d")
        self.batch_norm = (
            keras.layers.BatchNormalization(epsilon=1e-3, center=True, scale=False, name="batch_norm")
            if self.use_batch_norm else None)

    def build(self, input_shape):
        self.conv.build(input_shape)
        if self.batch_norm is not None:
            self.batch_norm.build(self.conv.compute_output_shape(input_shape))

    def call(self, x):
        x = self.conv(x)
        if self.batch_norm is not None:
            # Inference statistics always: this network is only used as a frozen feature extractor.
            x = self.batch_norm(x, training=False)
        if self.activation == "relu":
            x = ops.relu(x)
        return x

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def checkpoint_variables(self) -> dict:
        """{original checkpoint variable name: Keras variable} for this unit."""
        prefix = f"{SCOPE}/{self.sonnet_name}"
        out = {f"{prefix}/conv_3d/w": self.conv.kernel}
        if self.use_bias:
            out[f"{prefix}/conv_3d/b"] = self.conv.bias
        if self.batch_norm is not None:
            out[f"{prefix}/batch_norm/beta"] = self.batch_norm.beta
            out[f"{prefix}/batch_norm/moving_mean"] = self.batch_norm.moving_mean
            out[f"{prefix}/batch_norm/moving_variance"] = self.batch_norm.moving_variance
        return out

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                      use_batch_norm=self.use_batch_norm, use_bias=self.use_bias,
                      activation=self.activation, sonnet_name=self.sonnet_name)
        return config


def _max_pool(x, pool_size, strides, name):
    # TF "SAME" max pooling (padding ignored), as tf.nn.max_pool3d(padding=SAME) in Sonnet.
    return keras.layers.MaxPooling3D(pool_size, strides=strides, padding="same", name=name)(x)


def _mixed(x, name, channels):
    """Inception block: four branches concatenated along channels."""
    b0, (b1a, b1b), (b2a, b2b), b3 = channels
    branch_0 = Unit3D(b0, (1, 1, 1), sonnet_name=f"{name}/Branch_0/Conv3d_0a_1x1")(x)
    branch_1 = Unit3D(b1a, (1, 1, 1), sonnet_name=f"{name}/Branch_1/Conv3d_0a_1x1")(x)
    branch_1 = Unit3D(b1b, (3, 3, 3), sonnet_name=f"{name}/Branch_1/Conv3d_0b_3x3")(branch_1)
    branch_2 = Unit3D(b2a, (1, 1, 1), sonnet_name=f"{name}/Branch_2/Conv3d_0a_1x1")(x)
    # The checkpoint keeps the original's naming quirk in Mixed_5b.
    conv_2b = "Conv3d_0a_3x3" if name == "Mixed_5b" else "Conv3d_0b_3x3"
    branch_2 = Unit3D(b2b, (3, 3, 3), sonnet_name=f"{name}/Branch_2/{conv_2b}")(branch_2)
    branch_3 = _max_pool(x, (3, 3, 3), (1, 1, 1), name=f"{name}_Branch_3_MaxPool3d_0a_3x3")
    branch_3 = Unit3D(b3, (1, 1, 1), sonnet_name=f"{name}/Branch_3/Conv3d_0b_1x1")(branch_3)
    return keras.layers.Concatenate(axis=-1, name=f"{name}_concat")(
        [branch_0, branch_1, branch_2, branch_3])


@keras.saving.register_keras_serializable(package="kp_tf")
class InceptionI3D(keras.Model):
    """I3D RGB network (Kinetics-400 classifier) as a functional Keras model.

    Args:
      num_classes: logits size (400 for the Kinetics checkpoint).
      image_size: spatial input size; the logits' (2, 7, 7) VALID average pool needs 224.
        None leaves H and W unspecified.

    Call:
      videos: float32 [N, T, H, W, 3], RGB in [-1, 1], T >= 9 (16 is usual).
    Returns:
      logits [N, num_classes], averaged over the remaining time steps (the FVD features).

    Load the DeepMind weights with `load_checkpoint_npz(model, path)` or build and load in one
    step with `InceptionI3D.from_npz(path)`.
    """

    def __init__(self, num_classes=NUM_CLASSES, image_size=IMAGE_SIZE, **kwargs):
        size = image_size
        inputs = keras.Input(shape=(None, size, size, 3), name="rgb_input")
        x = Unit3D(64, (7, 7, 7), strides=(2, 2, 2), sonnet_name="Conv3d_1a_7x7")(inputs)
        x = _max_pool(x, (1, 3, 3), (1, 2, 2), name="MaxPool3d_2a_3x3")
        x = Unit3D(64, (1, 1, 1), sonnet_name="Conv3d_2b_1x1")(x)
        x = Unit3D(192, (3, 3, 3), sonnet_name="Conv3d_2c_3x3")(x)
        x = _max_pool(x, (1, 3, 3), (1, 2, 2), name="MaxPool3d_3a_3x3")
        x = _mixed(x, "Mixed_3b", MIXED_CHANNELS["Mixed_3b"])
        x = _mixed(x, "Mixed_3c", MIXED_CHANNELS["Mixed_3c"])
        x = _max_pool(x, (3, 3, 3), (2, 2, 2), name="MaxPool3d_4a_3x3")
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = _mixed(x, name, MIXED_CHANNELS[name])
        x = _max_pool(x, (2, 2, 2), (2, 2, 2), name="MaxPool3d_5a_2x2")
        x = _mixed(x, "Mixed_5b", MIXED_CHANNELS["Mixed_5b"])
        x = _mixed(x, "Mixed_5c", MIXED_CHANNELS["Mixed_5c"])
        # Logits. The original applies dropout here; it is the identity at inference, so omitted.
        x = keras.layers.AveragePooling3D((2, 7, 7), strides=(1, 1, 1), padding="valid",
                                          name="Logits_AvgPool3d")(x)
        x = Unit3D(num_classes, (1, 1, 1), use_batch_norm=False, use_bias=True, activation=None,
                   sonnet_name="Logits/Conv3d_0c_1x1")(x)
        x = ops.squeeze(x, axis=(2, 3))  # [N, T', num_classes]
        logits = ops.mean(x, axis=1)  # averaged over time, as RGB/inception_i3d/Mean:0
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self.num_classes = num_classes
        self.image_size = image_size

    def get_config(self):
        return {"num_classes": self.num_classes, "image_size": self.image_size,
                "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def checkpoint_variables(self) -> dict:
        """{original checkpoint variable name: Keras variable}, for every weight of the model."""
        mapping = {}
        for layer in self.layers:
            if isinstance(layer, Unit3D):
                for name, var in layer.checkpoint_variables().items():
                    if name in mapping:
                        raise RuntimeError(f"two layers claim checkpoint variable {name}")
                    mapping[name] = var
        return mapping

    @classmethod
    def from_npz(cls, path, **kwargs) -> "InceptionI3D":
        model = cls(**kwargs)
        load_checkpoint_npz(model, path)
        return model


def load_checkpoint_npz(model: InceptionI3D, path) -> None:
    """Sets every weight of `model` from the DeepMind checkpoint arrays, by original name.

    Every array of the file must be used exactly once and every model weight set exactly once,
    with identical shapes; anything else raises ValueError naming the offending arrays (a
    partially loaded I3D would silently give wrong FVDs).

    Args:
      model: an `InceptionI3D` with the default 400 classes.
      path: `.npz` with the 230 arrays under `RGB/inception_i3d/...` names
        (`i3d_kinetics400_rgb_scratch.npz`), or a dict-like of name → array.
    """
    if isinstance(path, (str, os.PathLike)):
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        source = str(path)
    else:
        arrays = dict(path)
        source = "the given arrays"
    mapping = model.checkpoint_variables()
    model_vars = {id(v) for v in model.weights}
    mapped = {id(v) for v in mapping.values()}
    if model_vars != mapped or len(mapped) != len(mapping):
        raise RuntimeError("internal error: the checkpoint map does not cover every model weight "
                           "exactly once")
    missing = sorted(set(mapping) - set(arrays))
    unexpected = sorted(set(arrays) - set(mapping))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} weight(s) missing from the file: {', '.join(missing[:10])}"
                         + (" ..." if len(missing) > 10 else ""))
        if unexpected:
            parts.append(f"{len(unexpected)} array(s) in the file that the model does not use: "
                         f"{', '.join(unexpected[:10])}" + (" ..." if len(unexpected) > 10 else ""))
        raise ValueError(f"I3D checkpoint {source} does not match the network "
                         f"({len(arrays)} arrays, {len(mapping)} weights): " + "; ".join(parts))
    bad = [f"{n}: file {tuple(arrays[n].shape)} vs model {tuple(v.shape)}"
           for n, v in mapping.items() if tuple(arrays[n].shape) != tuple(v.shape)]
    if bad:
        raise ValueError(f"I3D checkpoint {source}: shape mismatch for " + "; ".join(bad[:10]))
    if model.num_classes == NUM_CLASSES and len(mapping) != NUM_WEIGHT_ARRAYS:
        raise RuntimeError(f"internal error: expected {NUM_WEIGHT_ARRAYS} weights, got {len(mapping)}")
    for name, var in mapping.items():
        var.assign(np.asarray(arrays[name], dtype=var.dtype))


# --- SavedModel export with the TF-Hub module's calling interface ---------------------------

SIGNATURE_KEY = "default"  # hub module: signatures["default"], single input, output "default"


def export_savedmodel(weights, out_dir, image_size: int = IMAGE_SIZE) -> str:
    """Writes a TF2 SavedModel that is called like the TF-Hub module `deepmind/i3d-kinetics-400/1`.

    Through `hub.load(handle)` the official (TF1-format) module offers
    `module.signatures["default"](videos)["default"]` → logits [N, 400], with videos float32
    [N, T, 224, 224, 3] in [-1, 1] and any N and T. The export offers exactly that (input
    key "default", so keyword calls work too), plus `module(videos)` for convenience. It needs
    neither Keras nor this package to load.

    Args:
      weights: path to `i3d_kinetics400_rgb_scratch.npz`.
      out_dir: destination folder (created; an existing SavedModel there is overwritten).

    Returns:
      out_dir as a string.
    """
    import tensorflow as tf

    model = InceptionI3D.from_npz(weights, image_size=image_size)
    spec = tf.TensorSpec([None, None, image_size, image_size, 3], tf.float32,
                         name=SIGNATURE_KEY)

    class _I3DModule(tf.Module):
        def __init__(self, net):
            super().__init__(name="i3d_kinetics_400")
            self.net = net
            # Tracked explicitly so that the SavedModel holds every variable by a stable path.
            self.net_variables = list(net.weights)

        @tf.function(input_signature=[spec])
        def __call__(self, default):
            return self.net(default, training=False)

    module = _I3DModule(model)

    @tf.function(input_signature=[spec])
    def serving_default(default):
        return {"default": module(default)}

    out_dir = str(out_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, out_dir,
                        signatures={SIGNATURE_KEY: serving_default.get_concrete_function()})
    return out_dir


# --- where the network comes from (kp_tf.pretrained's rule) --------------------------------------------------------------------------------------

_BUILT_STAMP = "kp_tf_built_from.json"


def _is_savedmodel(path: Path) -> bool:
    return (path / "saved_model.pb").is_file()


def _built_i3d_dir() -> Path:
    return pretrained.cache_dir() / "i3d" / f"kinetics400-{pretrained.I3D_ARRAYS.sha256[:12]}"


def _build_i3d(arrays: Path, out: Path) -> None:
    """Builds the SavedModel from the checked arrays into `out`, atomically (a build killed
    half-way leaves no folder that looks complete)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        export_savedmodel(arrays, tmp)
        (tmp / _BUILT_STAMP).write_text(json.dumps({"arrays": str(arrays),
                                                    "sha256": pretrained.I3D_ARRAYS.sha256}))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def find_i3d(flag: Optional[str] = None, log=print) -> str:
    """A handle `hub.load` can open for the FVD's I3D, by the rule in the module docstring.

    `flag` (else $KP_TF_I3D) may be a local SavedModel folder, a TF-Hub handle, or the
    arrays file `i3d_kinetics400_rgb_scratch.npz` (built once into kp_tf's cache).
    """
    flag = flag or os.environ.get(pretrained.I3D_ENV)
    if flag:
        path = Path(flag)
        if path.suffix == ".npz":
            problem = pretrained.check_file(path, pretrained.I3D_ARRAYS)
            if problem:
                raise pretrained.PretrainedFileError(f"--i3d={flag}: {problem}")
            return _built_from(path, log)
        if "://" in str(flag):
            return str(flag)
        if not _is_savedmodel(path):
            raise pretrained.PretrainedFileError(f"--i3d={flag}: not a SavedModel folder (no saved_model.pb)")
        return str(path)
    looked = []
    hub_copy = pretrained.tfhub_dir() / hashlib.sha1(pretrained.TFHUB_I3D.encode()).hexdigest()
    if _is_savedmodel(hub_copy):
        return str(hub_copy)
    looked.append(f"{hub_copy} (absent)")
    built = _built_i3d_dir()
    if (built / _BUILT_STAMP).is_file():
        return str(built)
    looked.append(f"{built} (absent)")
    shared = pretrained.shared_dir()
    if shared is not None:
        arrays = shared / "weights" / pretrained.I3D_ARRAYS.filename
        problem = pretrained.check_file(arrays, pretrained.I3D_ARRAYS)
        if problem is None:
            return _built_from(arrays, log)
        looked.append(f"{arrays} ({problem})")
    else:
        looked.append(pretrained.no_shared_folder())
    downloaded, problem = _download_hub(log)
    if downloaded:
        return downloaded
    looked.append(problem)
    raise pretrained.not_found(pretrained.I3D_ARRAYS, looked)


def _built_from(arrays: Path, log) -> str:
    out = _built_i3d_dir()
    if not (out / _BUILT_STAMP).is_file():
        log(f"Building the I3D network from {arrays} into {out} (once) ...")
        _build_i3d(arrays, out)
    return str(out)


def _download_hub(log) -> tuple[Optional[str], Optional[str]]:
    """Fetches the TF-Hub module into TF-Hub's cache → (its folder, None) or (None, why not)."""
    url = pretrained.download_url(pretrained.TFHUB_I3D)
    if url != pretrained.TFHUB_I3D:  # a mirror holds the compressed module under the same path
        url = url + ".tar.gz"
    try:
        import tensorflow_hub as hub

        log(f"Downloading the I3D network from {url} ...")
        path = hub.resolve(url)
    except Exception as e:  # noqa: BLE001 - any failure of the download is reported in one line
        reason = (str(e).splitlines() or [""])[0][:200]
        return None, f"download from {url} failed ({type(e).__name__}: {reason})"
    if not _is_savedmodel(Path(path)):
        return None, f"download from {url} gave no SavedModel"
    return path, None
