"""Where each dataset's raw copy comes from, the layout conversion reads, and the checks that
let the training command convert a `--src` on first use.

`python -m kp_tf.train --dataset=NAME --src=DIR` is the way in for a new user: it converts DIR
into the data folder (what `kp_tf.make_tfrecords` writes) and trains. Everything that can go
wrong before the conversion starts is found here, cheaply (folder listings and the split
files, no clip decoded), so that a user learns it in seconds and not after a download of VGG
weights or an hour of conversion:

  * no conversion and no --src: where to get the dataset, the layout DIR needs, the command;
  * a --src laid out otherwise: what was expected and what was found (and the subfolder that
    would do, when the user named the folder above it);
  * a --src other than the one the existing conversion was made from, or a data folder that
    holds another dataset or resolution: refused, so that nothing converted is overwritten.

`SourceError` carries the one-line problem and the lines of help (`details`); the command
adds the command to run next, which only it knows.
"""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path
from typing import Optional, Sequence

from kp_tf.data import datasets, readers
from kp_tf.progress import plural

DOCS = "docs/datasets.md"


@dataclasses.dataclass(frozen=True)
class RawSource:
    """What a user must be told to get a dataset: one line each, and the layout as a tree.

    Attributes:
      title: name and paper.
      about: what it holds and what the preset uses of it.
      obtain: where to download it (the public page) and what to do with the download.
      tree: the layout under DIR, a few lines, `DIR/` first.
    """

    title: str
    about: str
    obtain: str
    tree: tuple[str, ...]


_CLIP_FOLDERS = ("DIR/",
                 "  train/   a clip per entry: a video (.mp4/.avi/.mov), a folder of frames,",
                 "           or a PNG strip of frames side by side",
                 "  test/    the same")

RAW_SOURCES: dict[str, RawSource] = {
    "mgif": RawSource(
        "Moving GIF (Siarohin et al., CVPR 2019)",
        "animated GIFs of cartoon animals walking or running; the paper: 900 train / 100 test",
        "the MGif link in the Datasets section of the README of "
        "https://github.com/AliaksandrSiarohin/monkey-net (the preprocessed copy); unpack it",
        ("DIR/", "  train/*.gif   an animated GIF per clip", "  test/*.gif")),
    "nemo": RawSource(
        "UvA-NEMO smiles (Dibeklioglu, Salah and Gevers, ECCV 2012)",
        "1,240 videos of 400 people smiling; the paper: Siarohin et al.'s preprocessed copy, "
        "1,110 train / 124 test",
        "https://www.uva-nemo.org (after its licence agreement), then split its videos into "
        "train/ and test/; or the preprocessed copy, already split: the Nemo link in the "
        "README of https://github.com/AliaksandrSiarohin/monkey-net",
        _CLIP_FOLDERS),
    "penn": RawSource(
        "Penn Action (Zhang, Zhu and Derpanis, ICCV 2013)",
        "2,326 sports videos, 13 joints a frame; the preset: 9 actions, the original code's "
        "1,172 train / 90 test split",
        "Penn_Action.tar.gz from http://dreamdragon.github.io/PennAction/, plus train_set.txt "
        "and test_set.txt from assets/penn_split/ of https://github.com/YunjiKim/"
        "Unsupervised-Keypoint-Learning-for-Guiding-Class-conditional-Video-Prediction",
        ("DIR/   (the unpacked Penn_Action/ with the two split files added)",
         "  frames/0001/000001.jpg ...   a folder of JPEG frames per video",
         "  labels/0001.mat ...          joints, visibility and action per video",
         "  train_set.txt, test_set.txt  lines 'frames/NNNN <class 0-8>'")),
    "weizmann": RawSource(
        "Weizmann actions (Gorelick et al., ICCV 2005), the Monkey-Net 64x64 crop",
        "64 clips of 8 people, 4 actions (wave1, wave2, jack, bend); actors a-g train, h test",
        "the project's labelled copy, ../shared/data/weizmann64; the videos: "
        "https://www.wisdom.weizmann.ac.il/~vision/SpaceTimeActions.html",
        ("DIR/", "  labels.csv           columns file,frames,action,actor,split",
         "  clips/NNNNNNNN.png   a clip per file, 64x64 frames side by side")),
    "folder": RawSource(
        "your own clips", "any clips without classes", "your own recordings", _CLIP_FOLDERS),
}


class SourceError(ValueError):
    """A dataset that cannot be prepared from what the user gave: no source, a source laid
    out otherwise, or a data folder that holds another conversion.

    Attributes:
      details: lines of help after the one-line message (where to get the dataset, its
        layout); empty when the message says it all.
      suggested_src: a folder that has the layout, when one was found inside the given one.
    """

    def __init__(self, message: str, details: Sequence[str] = (),
                 suggested_src: Optional[str] = None):
        super().__init__(message)
        self.details = tuple(details)
        self.suggested_src = suggested_src


def help_lines(dataset: str) -> list[str]:
    """Where to get `dataset` and the layout DIR needs: the details of a SourceError."""
    raw = RAW_SOURCES.get(dataset)
    if raw is None:
        return [f"More: {DOCS}"]
    return ([f"{raw.title}: {raw.about}.", f"Get it: {raw.obtain}.", "Expected under DIR:"]
            + [f"  {line}" for line in raw.tree] + [f"More: {DOCS}"])


# --- what a folder holds ------------------------------------------------------------------------

def describe_folder(path, limit: int = 4) -> str:
    """What a folder holds, in a few words for an error message: '2 folders (frames/,
    labels/), 3 files (2 .txt, 1 .zip)'; hidden entries left out."""
    path = Path(path)
    try:
        entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    except OSError as e:
        return f"a folder that cannot be listed ({e.strerror or e})"
    if not entries:
        return "nothing (an empty folder)"
    folders = sorted((p.name + "/" for p in entries if p.is_dir()), key=readers.natural_key)
    kinds = collections.Counter(p.suffix.lower() or "without extension"
                                for p in entries if not p.is_dir())
    parts = []
    if folders:
        shown = ", ".join(folders[:limit]) + (", ..." if len(folders) > limit else "")
        parts.append(f"{plural(len(folders), 'folder')} ({shown})")
    if kinds:
        shown = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common(limit))
        parts.append(f"{plural(sum(kinds.values()), 'file')} ({shown}"
                     + (", ..." if len(kinds) > limit else "") + ")")
    return ", ".join(parts)


def _clip_entries(folder: Path, spec: datasets.DatasetSpec) -> int:
    """How many entries of `folder` the folder layout would read as clips."""
    extensions = tuple(e.lower() for e in spec.extensions)
    return sum(1 for p in readers.folder_entries(folder)
               if (p.is_dir() and spec.allow_dirs) or p.suffix.lower() in extensions)


def _folder_layout_problem(spec, root: Path, splits) -> Optional[tuple[str, str]]:
    kinds = ", ".join(spec.extensions) + (" files" if not spec.allow_dirs
                                          else " files or frame folders")
    expected = f"{' and '.join(s + '/' for s in splits)} folders of clips ({kinds})"
    missing = [s for s in splits if not (root / s).is_dir()]
    if missing:
        return expected, f"no {' or '.join(s + '/' for s in missing)} in it; it holds " \
                         f"{describe_folder(root)}"
    for split in splits:
        if not _clip_entries(root / split, spec):
            return expected, f"{split}/ holds no clip: {describe_folder(root / split)}"
    return None


def _files_layout_problem(root: Path, folders: Sequence[str],
                          files: Sequence[str]) -> Optional[tuple[str, str]]:
    expected = ", ".join([f + "/" for f in folders] + list(files))
    missing = ([f + "/" for f in folders if not (root / f).is_dir()]
               + [f for f in files if not (root / f).is_file()])
    if missing:
        return expected, f"no {', '.join(missing)}; it holds {describe_folder(root)}"
    return None


def _layout_problem(spec, root: Path, splits) -> Optional[tuple[str, str]]:
    """(what was expected, what was found) for the first thing in `root` that does not fit
    `spec`'s layout; None when it fits. Lists folders and reads the split files only."""
    if spec.layout == "folder":
        return _folder_layout_problem(spec, root, splits)
    if spec.layout == "penn":
        problem = _files_layout_problem(root, ("frames", "labels"),
                                        [f"{s}_set.txt" for s in splits])
        if problem is None:
            for split in splits:
                try:
                    if not readers.read_penn_split(root, split):
                        return (f"{split}_set.txt listing videos", f"{split}_set.txt is empty")
                except (OSError, ValueError) as e:
                    return f"{split}_set.txt lines 'frames/NNNN <class 0-8>'", str(e)
        return problem
    if spec.layout == "weizmann":
        problem = _files_layout_problem(root, ("clips",), ("labels.csv",))
        if problem is None:
            try:
                readers.read_weizmann_labels(root)
            except (OSError, ValueError) as e:
                return "labels.csv with columns file,frames,action,actor,split", str(e)
        return problem
    return None


def _fitting_subfolder(spec, root: Path, splits, limit: int = 50) -> Optional[Path]:
    """A folder directly inside `root` that has the layout (the user named the folder that
    holds the unpacked download, not the download itself); None if there is none."""
    try:
        folders = [p for p in readers.folder_entries(root) if p.is_dir()][:limit]
    except OSError:
        return None
    return next((p for p in folders if _layout_problem(spec, p, splits) is None), None)


def check_source(spec: datasets.DatasetSpec, src, splits: Sequence[str] = datasets.SPLITS) -> None:
    """Raises SourceError unless `src` has the layout that `spec` is converted from.

    Cheap: folder listings, the Penn split files and the Weizmann labels header; no clip is
    decoded (a bad clip is skipped and reported by the conversion itself).
    """
    if not spec.has_source:
        return
    root = Path(src)
    if not root.is_dir():
        found = "it is a file, not a folder" if root.exists() else "it does not exist"
        raise SourceError(f"--src {src} for --dataset={spec.name}: {found}",
                          help_lines(spec.name))
    problem = _layout_problem(spec, root, splits)
    if problem is None:
        return
    expected, found = problem
    inner = _fitting_subfolder(spec, root, splits)
    hint = f"; {inner} inside it has that layout" if inner else ""
    raise SourceError(f"--src {src} is not laid out as --dataset={spec.name} is read: expected "
                      f"{expected}; found {found}{hint}", help_lines(spec.name),
                      suggested_src=str(inner) if inner else None)


# --- the training command's data step -----------------------------------------------------------

def _load(data_dir: str) -> Optional[dict]:
    from kp_tf.data import tfrecords

    try:
        return tfrecords.load_manifest(data_dir)
    except (FileNotFoundError, ValueError):
        return None


def existing_conversion(dataset: str, data_dir: str, src: Optional[str],
                        resolution: int) -> Optional[dict]:
    """The manifest in `data_dir` to train on as it is, or None when the data must be made
    first (from `src`, or by the generator); raises SourceError when it cannot be.

    An existing conversion of `dataset` at `resolution` is used whatever its clip counts
    (a user's own larger synthetic set included, unless an older generator made it), and a
    second run needs no --src. A real dataset is never converted over another conversion:
    a --src other than the recorded source, or a folder that holds another dataset or
    resolution, is refused with one line naming both.

    Raises:
      SourceError: the cases above, and a real dataset without a conversion whose --src is
        missing or laid out otherwise (with `details`: where to get it and the layout).
    """
    try:
        spec = datasets.get_spec(dataset, resolution)
    except ValueError as e:  # a preset of its own naming a dataset that is not registered
        raise SourceError(str(e)) from e
    manifest = _load(data_dir)
    if manifest is not None and (manifest.get("dataset"), manifest.get("resolution")) == (
            spec.name, spec.resolution):
        if not spec.has_source:
            return None if datasets.generated_by_other_version(manifest) else manifest
        recorded = manifest.get("source")
        if src and str(Path(src).resolve()) != recorded:
            raise SourceError(
                f"{data_dir} was converted from {recorded}, not from --src {src}: leave out "
                f"--src to train on that conversion, or give --data_dir=ANOTHER_FOLDER to "
                f"convert {src} beside it")
        return manifest
    if manifest is not None and spec.has_source:
        raise SourceError(
            f"{data_dir} holds {manifest.get('dataset')} at {manifest.get('resolution')} px "
            f"(from {manifest.get('source')}), not {spec.name} at {spec.resolution} px: give "
            f"--data_dir=ANOTHER_FOLDER for {spec.name}; nothing in {data_dir} is changed")
    if not spec.has_source:
        return None
    if not src:
        raise SourceError(f"no data for --dataset={spec.name}: {data_dir} holds no conversion "
                          f"(no manifest.json) and no --src was given", help_lines(spec.name))
    check_source(spec, src)
    return None
