"""The dataset registry, the resize policy, and conversion of a raw dataset to TFRecord shards.

`DATASETS` maps a name to a `DatasetSpec`; `iter_clips(spec, src, split)` walks a raw copy of
it and yields `(source, Clip | ClipReadError)`, so one bad file is reported and skipped instead
of ending the walk. `convert(...)` fits every clip to the dataset resolution (`fit_clip`),
writes `{split}-{i:05d}-of-{n:05d}.tfrecord` shards and `manifest.json` (see
`kp_tf.data.tfrecords`), and is what `python -m kp_tf.make_tfrecords` and the training
command's data step (`kp_tf.stages.prepare_data`, from `--src`) both call; where each dataset
comes from and the check of a source against its layout are in `kp_tf.data.sources`. GIFs are read by their
frame delays (`readers.read_gif`): the frames that adds are counted in the manifest.

The registry imports no TensorFlow (the writing functions import it when they run), so that a
command can list the datasets in its flags before TensorFlow starts.

Raw layouts (`src` is the dataset root):
  mgif        src/{train,test}/*.gif (as published by Siarohin et al.)
  nemo        src/{train,test}/ with videos (.mp4/.avi/.mov), frame folders or strip images
  folder      the same layout, any of those formats, no classes; pick the resolution
  penn        Penn_Action: frames/NNNN/*.jpg, labels/NNNN.mat, {train,test}_set.txt (9 classes)
  weizmann    labels.csv + clips/*.png strips (the 64×64 copy in ../shared/data/weizmann64)
  synthetic, synthetic_cluttered
              kp_tf.data.synthetic on plain / cluttered backgrounds; src is ignored
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Union

import cv2
import numpy as np

from kp_tf import progress
from kp_tf.data import readers
from kp_tf.data.clip import Clip
from kp_tf.data.readers import ClipReadError

SPLITS = ("train", "test")
# Bumped whenever what `convert` writes changes meaning; `ensure_converted` re-converts then.
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is and how to read its raw copy.

    Attributes:
      name: registry key, also the default data folder name (`data/<name>`).
      resolution: square frame size the clips are fitted to (overridable per conversion).
      layout: how `iter_clips` walks the source: 'folder', 'penn', 'weizmann' or 'synthetic'.
      extensions: for 'folder' layouts, the clip file types accepted.
      allow_dirs: for 'folder' layouts, whether frame folders count as clips.
      background: for 'synthetic', the generator's background kind.
      description: one line for summaries and --help.
    """

    name: str
    resolution: int
    layout: str
    extensions: tuple[str, ...] = readers.CLIP_EXTENSIONS
    allow_dirs: bool = True
    background: str = "plain"
    description: str = ""
    static_class_names: tuple[str, ...] = ()
    static_joint_names: tuple[str, ...] = ()

    @property
    def class_names(self) -> tuple[str, ...]:
        """Action names in label-index order; empty for datasets without classes."""
        if self.layout == "synthetic":
            from kp_tf.data import synthetic  # lazy: the generator is only needed here
            return tuple(synthetic.ACTIONS)
        return self.static_class_names

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Names of the ground-truth joints, in array order; empty when there are none."""
        if self.layout == "synthetic":
            from kp_tf.data import synthetic
            return tuple(synthetic.JOINT_NAMES)
        return self.static_joint_names

    @property
    def has_source(self) -> bool:
        """Whether conversion reads files (everything but the generator)."""
        return self.layout != "synthetic"


DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("mgif", 128, "folder", extensions=readers.GIF_EXTENSIONS, allow_dirs=False,
                description="Moving GIF (Siarohin et al.): src/{train,test}/*.gif"),
    DatasetSpec("nemo", 128, "folder",
                description="UvA-NEMO smiles: src/{train,test}/ videos, frame folders or strips"),
    DatasetSpec("folder", 128, "folder",
                description="any videos, GIFs, frame folders or strips in src/{train,test}/"),
    DatasetSpec("penn", 128, "penn", static_class_names=readers.PENN_CLASSES,
                static_joint_names=readers.PENN_JOINTS,
                description="Penn Action, 9-class subset (frames/, labels/, *_set.txt)"),
    DatasetSpec("weizmann", 64, "weizmann", static_class_names=readers.WEIZMANN_CLASSES,
                description="Weizmann actions 64x64 (labels.csv + clips/*.png strips)"),
    DatasetSpec("synthetic", 64, "synthetic", background="plain",
                description="kp_tf.data.synthetic figures on plain backgrounds"),
    DatasetSpec("synthetic_cluttered", 64, "synthetic", background="cluttered",
                description="kp_tf.data.synthetic figures on cluttered backgrounds"),
)}


def get_spec(name: str, resolution: Optional[int] = None) -> DatasetSpec:
    """The registered spec, with its resolution replaced when one is given.

    Raises:
      ValueError: unknown dataset name (lists the known ones) or a non-positive resolution.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    if resolution:
        if resolution < 1:
            raise ValueError(f"resolution must be positive, got {resolution}")
        spec = dataclasses.replace(spec, resolution=int(resolution))
    return spec


# --- resize policy ---------------------------------------------------------------------------

def resize_policy(resolution: int) -> dict:
    """The manifest's record of what `fit_clip` does."""
    return {
        "method": "shorter_side_then_center_crop",
        "size": [int(resolution), int(resolution)],
        "shrink_interpolation": "cv2.INTER_AREA",
        "enlarge_interpolation": "cv2.INTER_LINEAR",
        "description": (f"resize so the shorter side is {resolution} px (cv2.INTER_AREA when "
                        f"shrinking, cv2.INTER_LINEAR when enlarging), then centre-crop "
                        f"{resolution}x{resolution}; joints are mapped through the same "
                        f"transform and those outside the crop are marked not visible"),
    }


def fit_clip(clip: Clip, resolution: int) -> Clip:
    """Resizes the shorter side to `resolution` and centre-crops a square; joints follow.

    Joint coordinates use pixel centres at integers (as `conventions.pixels_to_normalized`
    expects), so a resize by s maps x to (x + 0.5)·s − 0.5. Joints that end up outside the
    crop keep their (out-of-range) coordinates but get visibility 0.

    Args:
      clip: any size.
      resolution: side of the square output.

    Returns:
      The same clip when it already is resolution×resolution, else a new Clip whose meta
      records the original size.
    """
    h, w = clip.size
    res = int(resolution)
    if (h, w) == (res, res):
        return clip
    scale = res / min(h, w)
    # The shorter side gets exactly `res`; rounding the longer one can never make it shorter.
    new_h = res if h <= w else max(res, int(round(h * scale)))
    new_w = res if w < h else max(res, int(round(w * scale)))
    frames = clip.frames
    if (new_h, new_w) != (h, w):
        # INTER_AREA averages the source pixels under each output pixel (no aliasing when
        # shrinking); when enlarging it degenerates to nearest-like blocks, so use bilinear.
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        frames = np.stack([cv2.resize(f, (new_w, new_h), interpolation=interp) for f in frames])
    top, left = (new_h - res) // 2, (new_w - res) // 2
    frames = np.ascontiguousarray(frames[:, top:top + res, left:left + res])

    joints = visibility = None
    if clip.joints is not None:
        sx, sy = new_w / w, new_h / h
        j = np.asarray(clip.joints, np.float32)
        x = (j[..., 0] + 0.5) * sx - 0.5 - left
        y = (j[..., 1] + 0.5) * sy - 0.5 - top
        joints = np.stack([x, y], axis=-1).astype(np.float32)
        # Inside = within the crop's outer pixel edges, [-0.5, res - 0.5].
        inside = (x >= -0.5) & (x <= res - 0.5) & (y >= -0.5) & (y <= res - 0.5)
        visibility = (np.asarray(clip.visibility, np.float32) * inside).astype(np.float32)
    meta = dict(clip.meta, original_size=[int(h), int(w)])
    return Clip(clip_id=clip.clip_id, frames=frames, label=clip.label, joints=joints,
                visibility=visibility, meta=meta)


# --- walking a raw dataset -------------------------------------------------------------------

ClipOrError = Union[Clip, ClipReadError]


def _split_dir(src, split: str) -> Path:
    path = Path(src) / split
    if not path.is_dir():
        raise FileNotFoundError(f"split folder {path} not found (expected {Path(src)}/{{"
                                f"{','.join(SPLITS)}}}/ with the clips)")
    return path


def iter_clips(spec: DatasetSpec, src, split: str, *, count: Optional[int] = None,
               num_frames: int = 48, seed: int = 0) -> Iterator[tuple[str, ClipOrError]]:
    """The raw clips of one split, unresized, in a deterministic order.

    Args:
      spec: from `DATASETS` / `get_spec`.
      src: dataset root (ignored by the generator).
      split: 'train' or 'test' (the generator also knows 'val').
      count: generator only: clips to make (default 1000 for train, 100 otherwise).
      num_frames: generator only: frames per clip.
      seed: generator only: dataset seed.

    Yields:
      (source path or id, Clip or ClipReadError). Labels are class indices.

    Raises:
      FileNotFoundError: the split folder / split file / labels.csv is missing.
    """
    if spec.layout == "synthetic":
        from kp_tf.data import synthetic
        n = count if count is not None else (1000 if split == "train" else 100)
        for clip in synthetic.generate_split(split, n, seed=seed, size=spec.resolution,
                                             num_frames=num_frames, background=spec.background):
            yield clip.clip_id, clip
    elif spec.layout == "folder":
        yield from readers.iter_folder(_split_dir(src, split), spec.extensions, spec.allow_dirs)
    elif spec.layout == "penn":
        for vid, label in readers.read_penn_split(src, split):
            source = str(Path(src) / "frames" / vid)
            try:
                yield source, readers.read_penn_clip(src, vid, label=label)
            except ClipReadError as e:
                yield source, e
    elif spec.layout == "weizmann":
        for row in readers.read_weizmann_labels(src):
            # A row of no known split is reported once, with the training split.
            if row["split"] != split and (row["split"] in SPLITS or split != "train"):
                continue
            source = str(Path(src) / "clips" / (row["file"] or ""))
            if row["split"] not in SPLITS:
                yield source, ClipReadError(
                    f"{Path(src) / 'labels.csv'}:{row['line']}",
                    f"split {row['split']!r} is neither train nor test" if row["split"]
                    else "the row has no split (fewer than 5 columns?)")
                continue
            try:
                yield source, readers.read_weizmann_clip(src, row)
            except ClipReadError as e:
                yield source, e
    else:
        raise ValueError(f"dataset {spec.name!r}: unknown layout {spec.layout!r}")


def count_candidates(spec: DatasetSpec, src, split: str, *,
                     count: Optional[int] = None) -> Optional[int]:
    """How many items `iter_clips` yields for `split` (clips and errors), from the file listing
    or the split file alone; None when that cannot be read (`iter_clips` then says why)."""
    try:
        if spec.layout == "synthetic":
            return count if count is not None else (1000 if split == "train" else 100)
        if spec.layout == "folder":
            return len(readers.folder_entries(_split_dir(src, split)))
        if spec.layout == "penn":
            return len(readers.read_penn_split(src, split))
        if spec.layout == "weizmann":
            return sum(row["split"] == split for row in readers.read_weizmann_labels(src))
    except (OSError, ValueError):
        return None
    return None


GIF_TIMING_RULE = ("GIF frames are read by their delays: a frame shown k times as long as the "
                   "shortest counts k times (kp_tf.data.readers.read_gif), so a still stretch "
                   "that the GIF's writer stored as one longer frame keeps its length")


# --- conversion ------------------------------------------------------------------------------

class ConversionError(RuntimeError):
    """Nothing could be converted (every candidate file failed, or there were none)."""


def _describe_error(source: str, err: Exception) -> str:
    # ClipReadError's message already starts with its path; drop it when it is the source
    # itself, keep it when it names a file inside (a bad frame of a frame folder, a .mat).
    if isinstance(err, ClipReadError) and err.path == source:
        return err.reason
    return str(err)


def convert(dataset: str, src: Optional[str] = None, out: Optional[str] = None, *,
            resolution: Optional[int] = None, clips_per_shard: int = 64,
            splits: Sequence[str] = SPLITS, num_train: int = 1000, num_test: int = 100,
            num_frames: int = 48, seed: int = 0,
            log: Optional[Callable[[str], None]] = print, show_progress: bool = True) -> dict:
    """Converts a raw dataset (or generates the synthetic one) into TFRecord shards + manifest.

    Every split is written under temporary names and all splits are renamed into place only
    at the end, so an interrupted or failed run leaves the previous conversion intact. Bad
    files are reported through `log` and listed in the manifest's `skipped`.

    Args:
      dataset: a `DATASETS` key.
      src: raw dataset root (not needed for the synthetic datasets).
      out: output folder; default `data/<dataset>`.
      resolution: frame size; default the dataset's.
      clips_per_shard: clips per TFRecord file.
      splits: which splits to convert; other splits of an earlier conversion of the same
        dataset and resolution in `out` are kept in the manifest.
      num_train, num_test, num_frames, seed: synthetic datasets only.
      log: called with skip messages and each split's summary (None: silent, and no
        progress either).
      show_progress: a bar with an ETA on a terminal, a line every 100 clips or 30 s in a log
        (kp_tf.progress), on stdout.

    Returns:
      The manifest (also written to `out/manifest.json`).

    Raises:
      ValueError: unknown dataset, bad arguments, or a missing `src` folder.
      FileNotFoundError: a split folder / split file / labels.csv is missing.
      ConversionError: no clip at all could be converted; `out` is left as it was.
    """
    from kp_tf.data import tfrecords

    show_progress = show_progress and log is not None
    log = log or (lambda _: None)
    spec = get_spec(dataset, resolution)
    out = str(out or os.path.join("data", spec.name))
    options = _conversion_options(spec, src, splits, clips_per_shard, num_train, num_test,
                                  num_frames, seed)
    counts = {"train": num_train}

    start = time.perf_counter()
    writers: dict[str, tfrecords.ShardWriter] = {}
    skipped: list[dict] = []
    gifs: dict[str, dict] = {}
    try:
        for split in splits:
            writers[split] = tfrecords.ShardWriter(out, split, clips_per_shard)
            gifs[split] = _convert_split(spec, src, split, writers[split],
                                         count=counts.get(split, num_test),
                                         num_frames=num_frames, seed=seed, skipped=skipped,
                                         log=log, show_progress=show_progress)
        total_clips = sum(w.num_clips for w in writers.values())
        if total_clips == 0:
            raise ConversionError(
                f"nothing converted for dataset {spec.name!r} from {src or 'the generator'}: "
                + (f"all {len(skipped)} candidate files failed (first: {skipped[0]['file']}: "
                   f"{skipped[0]['reason']})" if skipped else "no clips found")
                + f"; {out} left unchanged")
        split_info = {split: _split_info(writer, gifs[split])
                      for split, writer in writers.items()}
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    manifest = _manifest(spec, src, options, skipped, gifs, split_info,
                         time.perf_counter() - start)
    _keep_earlier_splits(out, spec, manifest)
    manifest["splits"].update(split_info)
    tfrecords.write_manifest(out, manifest)
    return manifest


def _conversion_options(spec: DatasetSpec, src, splits, clips_per_shard: int, num_train: int,
                        num_test: int, num_frames: int, seed: int) -> dict:
    """The manifest's record of the options; ValueError for a source or splits that cannot
    be converted."""
    if spec.has_source:
        if not src:
            raise ValueError(f"dataset {spec.name!r} needs --src, the folder of the raw copy")
        if not Path(src).is_dir():
            raise ValueError(f"source folder {src} not found")
    if not splits:
        raise ValueError("no splits to convert")
    options = {"clips_per_shard": int(clips_per_shard), "splits": list(splits)}
    if not spec.has_source:
        options.update(num_train=int(num_train), num_test=int(num_test),
                       num_frames=int(num_frames), seed=int(seed), background=spec.background)
    return options


def _convert_split(spec: DatasetSpec, src, split: str, writer, *, count: int, num_frames: int,
                   seed: int, skipped: list, log, show_progress: bool) -> dict:
    """Writes the clips of one split through `writer` (a tfrecords.ShardWriter), fitted to the
    resolution; adds its bad files to `skipped` and logs them and the split's summary.
    Returns its GIF counts: {"clips": GIFs read, "expanded_clips": those with frames added
    from their delays, "expanded_frames": frames added}."""
    seen: set[str] = set()
    gif = {"clips": 0, "expanded_clips": 0, "expanded_frames": 0}
    bar = progress.Progress(count_candidates(spec, src, split, count=count), "clip",
                            label=split, every=100, seconds=30.0, enabled=show_progress)
    for done, (source, item) in enumerate(
            iter_clips(spec, src, split, count=count, num_frames=num_frames, seed=seed), 1):
        if isinstance(item, Clip) and item.clip_id in seen:
            item = ClipReadError(source, f"duplicate clip id {item.clip_id!r} in {split}")
        if not isinstance(item, Clip):
            reason = _describe_error(source, item)
            skipped.append({"split": split, "file": source, "reason": reason})
            bar.clear()  # the message on a line of its own, not after the bar
            log(f"  skipped {source}: {reason}")
            bar.update(done)
            continue
        seen.add(item.clip_id)
        if "gif_frames" in item.meta:
            added = item.meta["gif_expanded_frames"]
            gif["clips"] += 1
            gif["expanded_clips"] += added > 0
            gif["expanded_frames"] += added
        writer.write(fit_clip(item, spec.resolution))
        bar.update(done)
    bar.close()
    split_skipped = sum(s["split"] == split for s in skipped)
    log(f"{split}: {progress.plural(writer.num_clips, 'clip')}, "
        f"{progress.plural(writer.num_frames, 'frame')}"
        + (f" ({progress.plural(gif['expanded_frames'], 'frame')} added from GIF delays)"
           if gif["clips"] else "")
        + (f", {split_skipped} skipped" if skipped else ""))
    return gif


def _split_info(writer, gif: dict) -> dict:
    """A split's manifest entry; commits the writer's shards."""
    info = {"clips": writer.num_clips, "frames": writer.num_frames,
            "min_frames": writer.min_frames or 0, "max_frames": writer.max_frames or 0,
            "shards": writer.commit()}
    if gif["clips"]:
        info.update(gif_clips=gif["clips"], gif_expanded_frames=gif["expanded_frames"])
    return info


def _manifest(spec: DatasetSpec, src, options: dict, skipped: list, gifs: dict,
              split_info: dict, elapsed: float) -> dict:
    """The manifest of a conversion that took `elapsed` seconds; its "splits" still empty."""
    total_clips = sum(s["clips"] for s in split_info.values())
    total_frames = sum(s["frames"] for s in split_info.values())
    return {
        "format": "kp_tf clip TFRecords: one tf.train.Example per clip, PNG frames, "
                  "joints in [-1, 1] (see kp_tf/data/tfrecords.py)",
        "format_version": FORMAT_VERSION,
        "dataset": spec.name,
        "description": spec.description,
        "resolution": spec.resolution,
        "resize_policy": resize_policy(spec.resolution),
        "class_names": list(spec.class_names),
        "num_classes": len(spec.class_names),
        "joint_names": list(spec.joint_names),
        "source": (str(Path(src).resolve()) if spec.has_source
                   else f"kp_tf.data.synthetic (generated, background={spec.background})"),
        "generator_version": None if spec.has_source else _generator_version(),
        "options": options,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "splits": {},
        "skipped": skipped,
        "gif_timing": _gif_timing(gifs),
        "conversion": {
            "seconds": round(elapsed, 3),
            "clips_per_second": round(total_clips / max(elapsed, 1e-9), 2),
            "frames_per_second": round(total_frames / max(elapsed, 1e-9), 1),
        },
    }


def _keep_earlier_splits(out: str, spec: DatasetSpec, manifest: dict) -> None:
    """Copies into `manifest` the splits of an earlier conversion of the same thing in `out`
    (their shards are untouched); anything else in an old manifest describes data that no
    longer matches."""
    from kp_tf.data import tfrecords

    try:
        old = tfrecords.load_manifest(out)
    except (FileNotFoundError, ValueError):
        return
    if (old.get("dataset") == spec.name and old.get("resolution") == spec.resolution
            and old.get("format_version") == FORMAT_VERSION):
        manifest["splits"].update(old.get("splits", {}))


def _gif_timing(gifs: dict) -> Optional[dict]:
    """The manifest's record of the frames that GIF delays added; None when no GIF was read."""
    clips = sum(g["clips"] for g in gifs.values())
    if not clips:
        return None
    return {"rule": GIF_TIMING_RULE, "gif_clips": clips,
            "clips_with_expanded_frames": sum(g["expanded_clips"] for g in gifs.values()),
            "expanded_frames": sum(g["expanded_frames"] for g in gifs.values())}


def format_summary(manifest: dict, data_dir: Optional[str] = None) -> str:
    """A few readable lines about a manifest (what `make_tfrecords` prints)."""
    res = manifest["resolution"]
    lines = [f"dataset {manifest['dataset']} at {res}x{res}"
             + (f" in {data_dir}" if data_dir else "")
             + f" (from {manifest['source']})",
             f"  resize: {manifest['resize_policy']['description']}"]
    classes = manifest.get("class_names", [])
    lines.append(f"  classes ({len(classes)}): {', '.join(classes) if classes else '-'}")
    joints = manifest.get("joint_names", [])
    lines.append(f"  joints ({len(joints)}): {', '.join(joints) if joints else '-'}")
    for split, info in manifest["splits"].items():
        size = sum(s.get("bytes", 0) for s in info["shards"])
        lines.append(f"  {split:>5}: {progress.plural(info['clips'], 'clip'):>11}, "
                     f"{progress.plural(info['frames'], 'frame'):>14} "
                     f"({info['min_frames']}-{info['max_frames']} per clip), "
                     f"{progress.plural(len(info['shards']), 'shard')}, "
                     f"{size / 2**20:.1f} MiB")
    timing = manifest.get("gif_timing")
    if timing:
        lines.append(f"  GIF delays: {progress.plural(timing['expanded_frames'], 'frame')} "
                     f"added to {timing['clips_with_expanded_frames']} of "
                     f"{progress.plural(timing['gif_clips'], 'GIF')} (a frame shown k times "
                     f"as long as the shortest counts k times)")
    skipped = manifest.get("skipped", [])
    lines.append(f"  skipped: {len(skipped)}")
    lines.extend(f"    {s['file']}: {s['reason']}" for s in skipped)
    conv = manifest.get("conversion")
    if conv:
        lines.append(f"  time: {conv['seconds']:.1f} s, {conv['clips_per_second']:.1f} clips/s, "
                     f"{conv['frames_per_second']:.0f} frames/s")
    return "\n".join(lines)


def ensure_converted(dataset: str, data_dir: Optional[str] = None, src: Optional[str] = None,
                     **options) -> dict:
    """The manifest of `data_dir`, converting first when it is missing or out of date.

    Meant for the training command: the synthetic datasets need no source, so training on
    them prepares its own data. A manifest is reused when it names the same dataset,
    resolution, format version and (for the generator) the same counts, frames and seed, and
    its shards exist.

    Args:
      dataset: a `DATASETS` key.
      data_dir: default `data/<dataset>`.
      src: raw source, needed only when a real dataset must be converted.
      **options: passed to `convert` (resolution, clips_per_shard, num_train, num_test,
        num_frames, seed, log).
    """
    from kp_tf.data import tfrecords

    spec = get_spec(dataset, options.get("resolution"))
    data_dir = data_dir or os.path.join("data", spec.name)
    try:
        manifest = tfrecords.load_manifest(data_dir)
    except (FileNotFoundError, ValueError):
        manifest = None
    if manifest is not None and _manifest_matches(manifest, spec, options, data_dir):
        return manifest
    if spec.has_source and not src:
        # load_manifest's error explains how to convert; raise it when there is no manifest.
        if manifest is None:
            tfrecords.load_manifest(data_dir)
        raise ValueError(f"data folder {data_dir} holds a different conversion "
                         f"({manifest.get('dataset')} at {manifest.get('resolution')}) and no "
                         f"source was given to convert {spec.name!r}")
    return convert(dataset, src, data_dir, **options)


def _generator_version() -> int:
    from kp_tf.data import synthetic

    return synthetic.GENERATOR_VERSION


def generated_by_other_version(manifest: dict) -> bool:
    """Whether `manifest` describes generated clips that this code would render differently."""
    spec = DATASETS.get(manifest.get("dataset"))
    return (spec is not None and not spec.has_source
            and manifest.get("generator_version") != _generator_version())


def _manifest_matches(manifest: dict, spec: DatasetSpec, options: dict, data_dir: str) -> bool:
    from kp_tf.data import tfrecords

    if (manifest.get("dataset") != spec.name or manifest.get("resolution") != spec.resolution
            or manifest.get("format_version") != FORMAT_VERSION
            or generated_by_other_version(manifest)):
        return False
    if not spec.has_source:
        wanted = {"num_train": 1000, "num_test": 100, "num_frames": 48, "seed": 0}
        wanted.update({k: v for k, v in options.items() if k in wanted})
        recorded = manifest.get("options", {})
        if any(recorded.get(k) != v for k, v in wanted.items()):
            return False
    try:
        for split in SPLITS:
            tfrecords.shard_paths(data_dir, split)
    except (FileNotFoundError, ValueError):
        return False
    return True
