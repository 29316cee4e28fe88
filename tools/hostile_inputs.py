"""Hostile inputs for the commands that read a user's files, and the count of what they did.

    python tools/hostile_inputs.py --model=EXPORT [--subset=all|ci] [--i3d=I3D] [--work=DIR]

Makes files built to break a reader (truncated and garbage GIF, MP4 and PNG, 0- and 1-frame
videos, a 10,000-frame video, 1×1 and 8000×8000 images, palette, CMYK and 16-bit images, NaN and
inf in .npy arrays, malformed labels.csv rows, names with spaces and non-ASCII letters) and runs
`make_tfrecords`, `predict`, `interpolate`, `animate` and `fvd` on them as a user would, one
command line per case or, for the commands that take a folder, one per folder of cases.

Each case ends as one of
  ran      a valid if unusual input (a palette PNG, a 1×1 image) that the command used;
  named    a refusal that names the file and the problem: the command's `error:` line and
           exit status 2, or, inside a folder, the file skipped with its reason;
  crashed  anything else: a traceback (status 1), a signal, a time-out, an input that should
           have been refused but was used, or a file that was in the output folder before
           the command and is gone or changed after it.
The table printed at the end counts them per command (docs/reliability.md has it);
--markdown also lists every case with what the command said.
--subset=ci runs the cases tests/test_hostile_inputs.py runs (half a minute); the whole set
took 28 minutes on a 2-core CPU shared with two trainings, most of them on the 10,000-frame
video. --model is an export of the `tiny` preset or any other; the fvd cases need the I3D
(--i3d, else found as `fvd` finds it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SENTINEL = "earlier.txt"  # put in every output folder first: it must survive every case
LONG_FRAMES = 10_000


@dataclasses.dataclass
class Case:
    command: str  # the kp_tf command
    name: str  # what the input is, for the table
    expect: str  # "ran", "named" or "either" (an odd input that may be used or refused)
    outcome: str = ""  # "ran", "named" or "crashed"
    detail: str = ""  # the error line, the skip reason, or what went wrong
    peak_mb: float = 0.0  # the command's peak resident memory, for one command a case


# --- the files -------------------------------------------------------------------------------

def _frames(count: int, size: int = 48, seed: int = 0) -> np.ndarray:
    """uint8 [count, size, size, 3]: a moving square on noise, so frames differ."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 80, (count, size, size, 3), dtype=np.uint8)
    for t in range(count):
        x = (t * 3) % (size - 8)
        frames[t, 8:16, x:x + 8] = 255
    return frames


def _gif(path: Path, frames) -> Path:
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=40, loop=0)
    return path


def _mp4(path: Path, frames) -> Path:
    t, h, w = frames.shape[:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _cut(path: Path, source: Path) -> Path:
    """The first half of `source`'s bytes."""
    data = source.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def _garbage(path: Path, size: int = 4096) -> Path:
    path.write_bytes(np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def make_images(folder: Path) -> dict:
    """{case name: (path, expect)}: single images for predict and interpolate."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = _frames(1)[0]
    good = folder / "good.png"
    Image.fromarray(frame).save(good)
    odd = folder / "dir with spaces" / "ímage é.png"
    odd.parent.mkdir(exist_ok=True)
    Image.fromarray(frame).save(odd)
    Image.fromarray(frame).convert("P", palette=Image.ADAPTIVE).save(folder / "palette.png")
    Image.fromarray(frame).convert("CMYK").save(folder / "cmyk.jpg")
    cv2.imwrite(str(folder / "16bit.png"), frame.astype(np.uint16) * 257)
    Image.fromarray(frame[:1, :1]).save(folder / "1x1.png")
    Image.new("RGB", (8000, 8000), (40, 90, 160)).save(folder / "8000x8000.png")
    (folder / "empty.png").write_bytes(b"")
    return {
        "PNG, spaces and non-ASCII in the path": (odd, "ran"),
        "palette PNG": (folder / "palette.png", "ran"),
        "CMYK JPEG": (folder / "cmyk.jpg", "ran"),
        "16-bit PNG": (folder / "16bit.png", "ran"),
        "1×1 PNG": (folder / "1x1.png", "ran"),
        "8000×8000 PNG": (folder / "8000x8000.png", "ran"),
        "truncated PNG": (_cut(folder / "truncated.png", good), "named"),
        "garbage PNG": (_garbage(folder / "garbage.png"), "named"),
        "empty PNG (0 bytes)": (folder / "empty.png", "named"),
        "missing file": (folder / "missing.png", "named"),
    }


def make_videos(folder: Path, long: bool) -> dict:
    """{case name: (path, expect)}: clips in one folder, for make_tfrecords, animate and fvd."""
    folder.mkdir(parents=True, exist_ok=True)
    good = _gif(folder / "good.gif", _frames(20))
    mp4 = _mp4(folder / "clip.mp4", _frames(20, seed=1))
    (folder / "no frames").mkdir(exist_ok=True)
    cases = {
        "GIF, spaces and non-ASCII in the name": (_gif(folder / "clip é 2.gif", _frames(20, seed=2)),
                                                  "ran"),
        "MP4": (mp4, "ran"),
        "truncated GIF": (_cut(folder / "truncated.gif", good), "named"),
        "garbage GIF": (_garbage(folder / "garbage.gif"), "named"),
        "truncated MP4": (_cut(folder / "truncated.mp4", mp4), "named"),
        "garbage MP4": (_garbage(folder / "garbage.mp4", 20000), "named"),
        "empty MP4 (0 bytes)": (_garbage(folder / "empty.mp4", 0), "named"),
        "0-frame video (empty frame folder)": (folder / "no frames", "named"),
        "1-frame GIF": (_gif(folder / "one frame.gif", _frames(1)), "either"),
    }
    if long:
        cases[f"{LONG_FRAMES:,}-frame GIF"] = (_gif(folder / "long.gif",
                                                    _frames(LONG_FRAMES, 32)), "ran")
    return cases


def make_arrays(folder: Path) -> dict:
    """{case name: (path, expect)}: .npy videos for fvd."""
    folder.mkdir(parents=True, exist_ok=True)
    video = _frames(16, 32).astype(np.float32)
    nan, inf = video.copy(), video.copy()
    nan[3, 4, 5, 0], inf[0, 0, 0, 1] = np.nan, np.inf
    arrays = {"NaN in a .npy video": (nan, "named"), "inf in a .npy video": (inf, "named"),
              ".npy of the wrong rank": (video[0], "named"),
              ".npy video of 3 frames": (video[:3], "named"),
              ".npy of strings": (np.array(["a", "b"]), "named")}
    cases = {}
    for i, (name, (array, expect)) in enumerate(arrays.items()):
        path = folder / f"array_{i}.npy"
        np.save(path, array)
        cases[name] = (path, expect)
    truncated = folder / "truncated.npy"
    np.save(truncated, video)
    _cut(truncated, truncated)
    cases["truncated .npy"] = (truncated, "named")
    return cases


def make_weizmann(root: Path) -> dict:
    """{case name: (the row's own strip or labels.csv line, expect)}: a Weizmann copy whose
    labels.csv has bad rows; each row names a strip of its own, so a skip names its row."""
    (root / "clips").mkdir(parents=True, exist_ok=True)
    rows = [("{},4,jack,a,train", "a good row", "ran"),
            ("{},4,bend,c,test", "a good test row", "ran"),
            ("{},4,fly,b,train", "an unknown action", "named"),
            ("{},abc,jack,b,train", "a frame count that is not a number", "named"),
            ("{},9,jack,b,train", "a frame count that disagrees with the strip", "named"),
            ("{},4", "a row cut short", "named"),
            ("{},4,jack,b,validation", "an unknown split", "named"),
            (",4,jack,b,train", "an empty file name", "named"),
            ("missing.png,4,jack,b,train", "a file that does not exist", "named")]
    lines, cases = ["file,frames,action,actor,split"], {}
    for i, (row, name, expect) in enumerate(rows):
        strip = f"row{i}.png"
        Image.fromarray(np.concatenate(list(_frames(4, 16, seed=i)), axis=1)).save(
            root / "clips" / strip)
        lines.append(row.format(strip))
        key = strip if "{}" in row else f"labels.csv:{i + 2}"
        cases[f"labels.csv: {name}"] = (key if not row.startswith("missing") else "missing.png",
                                        expect)
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return cases


# --- running a command -----------------------------------------------------------------------

@dataclasses.dataclass
class Result:
    status: int  # the exit status; -N for signal N, None for a time-out
    stdout: str
    stderr: str
    peak_mb: float  # the command's peak resident memory

    @property
    def error_line(self) -> str:
        return next((line for line in self.stderr.splitlines() if line.startswith("error: ")), "")


def run(command: str, args: list, work: Path, timeout: float) -> Result:
    """`python -m kp_tf.COMMAND ARGS` as a user runs it, with its peak memory (os.wait4)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", f"kp_tf.{command}", *map(str, args)],
                                cwd=work, env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)
        killed = threading.Event()

        def kill():
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, wait_status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(wait_status)
        out.seek(0)
        err.seek(0)
        # ru_maxrss is in KiB on Linux.
        return Result(None if killed.is_set() else proc.returncode, out.read(), err.read(),
                      usage.ru_maxrss / 1024)


def settle(case: Case, result: Result, named: bool, used: bool, detail: str = "") -> None:
    """The case's outcome from how the command ended and what it did with the input."""
    outcome = "named" if named else "ran" if used else ""
    if result.status is None:
        case.outcome, case.detail = "crashed", "timed out"
    elif result.status not in (0, 2) or not outcome:
        case.outcome = "crashed"
        case.detail = f"exit status {result.status}: {result.stderr.strip()[-300:]}"
    elif case.expect in (outcome, "either"):
        case.outcome, case.detail = outcome, detail or result.error_line
    else:
        case.outcome = "crashed"
        case.detail = (f"expected {case.expect}, but the input was "
                       f"{'refused' if named else 'used'}: {detail or result.error_line}")


def fresh_out(folder: Path) -> Path:
    """An output folder holding SENTINEL, as if an earlier command had written there."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SENTINEL).write_text("written before\n")
    return folder


def check_kept(case: Case, out: Path) -> None:
    """Turns the case into a crash when the output folder lost what it held before."""
    sentinel = out / SENTINEL
    if not sentinel.exists() or sentinel.read_text() != "written before\n":
        case.outcome, case.detail = "crashed", f"{sentinel} lost or changed"


# --- the commands ----------------------------------------------------------------------------

def single_cases(command: str, cases: dict, args, work: Path, timeout: float) -> list:
    """One command line per case: `args(path, out)` gives its arguments."""
    done = []
    for i, (name, (path, expect)) in enumerate(cases.items()):
        case = Case(command, name, expect)
        out = fresh_out(work / "out" / f"{command}_{i}")
        result = run(command, args(path, out), work, timeout)
        settle(case, result, named=result.status == 2 and bool(result.error_line),
               used=result.status == 0)
        check_kept(case, out)
        case.peak_mb = result.peak_mb
        done.append(case)
        print(f"  {command}: {name}: {case.outcome} {case.detail[:300]}", flush=True)
    return done


def folder_cases(command: str, cases: dict, result: Result, skips: list) -> list:
    """The cases of one command line over a folder: a case is named when a skip (file and
    reason) mentions its file, used otherwise."""
    done = []
    for name, (path, expect) in cases.items():
        key = Path(path).name
        reason = next((f"{file}: {why}" for file, why in skips if key in file or key in why), "")
        case = Case(command, name, expect)
        settle(case, result, named=bool(reason) or result.status == 2, used=result.status == 0,
               detail=reason)
        done.append(case)
        print(f"  {command}: {name}: {case.outcome} {case.detail[:300]}", flush=True)
    return done


def manifest_skips(data_dir: Path) -> list:
    try:
        manifest = json.loads((data_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return []
    return [(s["file"], s["reason"]) for s in manifest.get("skipped", [])]


def make_tfrecords_cases(work: Path, long: bool, timeout: float) -> list:
    src = work / "folder_src"
    cases = make_videos(src / "train", long)
    images = make_images(src / "images")
    del images["missing file"]  # a folder lists only what exists
    for name, (path, expect) in images.items():  # an image in a folder is a 1-frame strip
        moved = src / "train" / path.name
        os.replace(path, moved)
        cases[f"{name} (a 1-frame strip)"] = (moved, "either" if expect == "ran" else expect)
    (src / "test").mkdir(parents=True)
    _gif(src / "test" / "test.gif", _frames(12))
    out = work / "folder_data"
    result = run("make_tfrecords", ["--dataset=folder", f"--src={src}", f"--out={out}",
                                    "--resolution=32", "--print_manifest=false"], work, timeout)
    done = folder_cases("make_tfrecords", cases, result, manifest_skips(out))
    weizmann = work / "weizmann_src"
    rows = make_weizmann(weizmann)
    out = work / "weizmann_data"
    result = run("make_tfrecords", ["--dataset=weizmann", f"--src={weizmann}", f"--out={out}",
                                    "--print_manifest=false"], work, timeout)
    return done + folder_cases("make_tfrecords", rows, result, manifest_skips(out))


def model_cases(work: Path, model: str, subset: str, timeout: float) -> list:
    """predict and interpolate on each image, animate on each video, and --frames limits."""
    images = make_images(work / "images")
    good = work / "images" / "good.png"
    videos = make_videos(work / "driving", long=subset == "all")
    if subset == "ci":
        images = {k: images[k] for k in ("garbage PNG", "1×1 PNG")}
        videos = {k: videos[k] for k in ("truncated GIF",)}
    # The first of the model's actions, or none for a model without classes.
    actions = (Path(model) / "assets.extra" / "actions.txt").read_text().split()
    model = f"--model={model}"
    done = single_cases("predict", images, lambda path, out: [
        model, f"--image={path}", f"--out={out}", "--samples=1", "--frames=3",
        f"--action={actions[0] if actions else ''}"], work, timeout)
    frames = {"--frames=0": ("0", "named"), "--frames=5000 (above the cap)": ("5000", "named")}
    done += single_cases("predict", frames, lambda n, out: [
        model, f"--image={good}", f"--out={out}", "--samples=1", f"--frames={n}",
        f"--action={actions[0] if actions else ''}"], work, timeout)
    if subset == "all":
        done += single_cases("interpolate", images, lambda path, out: [
            model, f"--first={path}", f"--last={good}", f"--out={out}", "--frames=2"],
            work, timeout)
        done += single_cases("interpolate", frames, lambda n, out: [
            model, f"--first={good}", f"--last={good}", f"--out={out}", f"--frames={n}"],
            work, timeout)
    animated = single_cases("animate", videos, lambda path, out: [
        model, f"--source={good}", f"--driving={path}", f"--out={out}"], work, timeout)
    check_bounded(animated)
    return done + animated


LONG_GROWTH_MB = 300  # 10,000 frames of the animate panels at 128 px would hold 1.4 GB


def check_bounded(animated: list) -> None:
    """Turns the long driving video into a crash when animate's peak memory grew with it by
    more than LONG_GROWTH_MB over a 20-frame one."""
    by_name = {c.name: c for c in animated}
    long, short = by_name.get(f"{LONG_FRAMES:,}-frame GIF"), by_name.get("MP4")
    if long is None or short is None or long.outcome != "ran":
        return
    growth = long.peak_mb - short.peak_mb
    long.detail = (f"peak memory {long.peak_mb:.0f} MB, {growth:+.0f} MB over a 20-frame "
                   f"video")
    if growth > LONG_GROWTH_MB:
        long.outcome = "crashed"


def fvd_cases(work: Path, i3d: str, timeout: float) -> list:
    """fvd over a folder of good and hostile videos against a folder of good ones."""
    real, generated = work / "fvd_real", work / "fvd_generated"
    for folder in (real, generated):
        folder.mkdir(parents=True)
    for i in range(2):
        np.save(real / f"real_{i}.npy", _frames(16, 32, seed=10 + i))
        np.save(generated / f"good_{i}.npy", _frames(16, 32, seed=20 + i))
    cases = make_arrays(generated)
    cases.update({k: v for k, v in make_videos(generated, long=False).items()
                  if v[1] == "named"})
    args = [real, generated, "--frames=9"] + ([f"--i3d={i3d}"] if i3d else [])
    result = run("fvd", args, work, timeout)
    skips = [tuple(line.split("skipping ", 1)[1].partition(": ")[::2])
             for line in result.stderr.splitlines() if "skipping " in line]
    return folder_cases("fvd", cases, result, skips)


# --- the table -------------------------------------------------------------------------------

COMMANDS = ("make_tfrecords", "predict", "interpolate", "animate", "fvd")


def table(cases: list) -> str:
    """The Markdown table of counts per command, then the cases that crashed."""
    lines = ["| command | tried | ran | named | crashed |", "|---|---:|---:|---:|---:|"]
    for command in COMMANDS + ("all",):
        mine = [c for c in cases if command in (c.command, "all")]
        if mine:
            counts = [sum(c.outcome == o for c in mine) for o in ("ran", "named", "crashed")]
            lines.append(f"| {command} | {len(mine)} | " + " | ".join(map(str, counts)) + " |")
    crashed = [f"- {c.command}, {c.name}: {c.detail}" for c in cases if c.outcome == "crashed"]
    return "\n".join(lines + ([""] + crashed if crashed else []))


def cases_markdown(cases: list) -> str:
    """Every case with its outcome and what the command said."""
    lines = ["| command | input | outcome | what it said |", "|---|---|---|---|"]
    for c in cases:
        said = " ".join(c.detail.split()).replace("|", "\\|")[:160]
        lines.append(f"| {c.command} | {c.name} | {c.outcome} | {said} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an export (python -m kp_tf.export)")
    parser.add_argument("--subset", choices=("all", "ci"), default="all")
    parser.add_argument("--i3d", default=None, help="the I3D for fvd (default: fvd's rule)")
    parser.add_argument("--work", default=None, help="where the files go (default: a "
                                                     "temporary folder, removed after)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per command")
    parser.add_argument("--markdown", action="store_true", help="also list every case")
    parser.add_argument("--json", default=None, help="write the cases to this JSON file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        cases = make_tfrecords_cases(work, args.subset == "all", args.timeout)
        cases += model_cases(work, os.path.abspath(args.model), args.subset, args.timeout)
        if args.subset == "all":
            cases += fvd_cases(work, args.i3d, args.timeout)
    print(f"\n{len(cases)} cases in {time.monotonic() - start:.0f} s\n")
    print(table(cases))
    if args.markdown:
        print("\n" + cases_markdown(cases))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([dataclasses.asdict(c) for c in cases], f, indent=1)
    return 1 if any(c.outcome == "crashed" for c in cases) else 0


if __name__ == "__main__":
    sys.exit(main())
