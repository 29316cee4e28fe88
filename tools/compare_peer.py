"""kp_tf side by side with the PyTorch peer (../shared/perf/torch_reference.py), one job:
`python tools/compare_peer.py [--rounds=2] [--sections=predict,train]`.

Each round runs the peer, then kp_tf (tools/bench.py), section by section (A, B, A, B ...), so
that drift in the machine's load reaches both; /proc/loadavg is printed before and after. The
rows (kp_tf's penn preset, 128×128, K 40, random weights, 2 threads each):

  predict_fp32, predict_bf16   kp_tf `bench.py predict` (1 image → 32-frame video through the
                               serving computations) vs the peer's full_* (detector, cVAE
                               decoder, encoder once, translator on 32 frames); render_* (no
                               decoder) printed beside it
  stage1_fp32, stage1_bf16     one stage-1 training step, batch 16 (`bench.py stage1
                               --step_only`, random VGG weights)
  stage2_fp32, stage2_bf16     one stage-2 training step, batch 16

Each row: medians and min–max over every timed call of every round, and kp_tf / peer.
Absolute seconds differ between machines; the ratio measured side by side is the figure.

The peer's environment (once; PyPI's default torch wheel is large, the CPU one is enough):
    python3 -m venv /tmp/torchref && /tmp/torchref/bin/pip install --index-url \
        https://download.pytorch.org/whl/cpu torch numpy
`--make_venv` runs that (falling back to PyPI's wheel) when --peer_python is missing.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

# The checkout this file is in, whatever kp_tf the environment has installed.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import flags  # noqa: E402

from kp_tf import cli, pretrained  # noqa: E402

SECTIONS = ("predict", "train")
# Row → (kp_tf bench and its precision, the peer's row).
ROWS = {
    "predict_fp32": (("predict", "float32"), "full_fp32"),
    "predict_bf16": (("predict", "mixed_bfloat16"), "full_bf16"),
    "stage1_fp32": (("stage1", "float32"), "stage1_fp32"),
    "stage1_bf16": (("stage1", "mixed_bfloat16"), "stage1_bf16"),
    "stage2_fp32": (("stage2", "float32"), "stage2_fp32"),
    "stage2_bf16": (("stage2", "mixed_bfloat16"), "stage2_bf16"),
}
SHOWN_ONLY = ("render_fp32", "render_bf16")  # peer rows printed without a kp_tf partner

flags.DEFINE_integer("rounds", 2, "Rounds of (peer, kp_tf) per section.", lower_bound=1)
flags.DEFINE_list("sections", list(SECTIONS), f"Which of {', '.join(SECTIONS)} to run.")
flags.DEFINE_integer("calls", 3, "Timed calls per row and round, both sides.", lower_bound=1)
flags.DEFINE_string("peer_python", "/tmp/torchref/bin/python", "The peer's Python (with torch).")
flags.DEFINE_string("peer_script", "", "torch_reference.py (default: the shared folder's "
                    "perf/torch_reference.py).")
flags.DEFINE_boolean("make_venv", False, "Create --peer_python's venv when it is missing.")
flags.DEFINE_string("preset", "penn", "kp_tf's preset (the peer is fixed at the paper's size).")
flags.DEFINE_string("out_dir", "", "Where each run's JSON goes (default: a new folder under "
                    "the temporary directory, kept, so that a job cut short leaves them).")
flags.DEFINE_string("json", "", "Also write every call's seconds here.")
FLAGS = flags.FLAGS


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return f.read().strip()


def make_venv(python: str) -> None:
    venv = os.path.dirname(os.path.dirname(python))
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = [os.path.join(venv, "bin", "pip"), "install", "-q"]
    if subprocess.run(pip + ["--index-url", "https://download.pytorch.org/whl/cpu", "torch",
                             "numpy"]).returncode:
        subprocess.run(pip + ["torch", "numpy"], check=True)


def _run(command: list, log_name: str) -> None:
    print(f"$ {' '.join(command)}  [load {loadavg()}]", flush=True)
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        raise cli.UserError(f"{log_name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def peer_section(section: str, tmp: str, round_: int) -> dict:
    """{peer row: [seconds ...]} of one run of the peer."""
    out = os.path.join(tmp, f"peer_{section}_{round_}.json")
    n = str(FLAGS.calls)
    if section == "predict":
        rows = ["render_fp32", "full_fp32", "render_bf16", "full_bf16"]
        extra = ["--skip", "peaks,train", "--iters-infer", n]
    else:  # one run: the peer's training section always starts with two stage-1 steps
        rows = ["stage1_fp32", "stage1_bf16", "stage2_fp32", "stage2_bf16"]
        extra = ["--skip", "peaks,infer", "--iters-stage1", n, "--iters-stage2", n]
    _run([FLAGS.peer_python, FLAGS.peer_script, "--warmup", "1", "--only", ",".join(rows),
          "--json", out] + extra, "the peer")
    with open(out) as f:
        result = json.load(f)
    found = {**result.get("inference", {}), **result.get("training", {})}
    return {row: found[row]["all"] for row in rows if row in found}


def kp_tf_run(bench: str, precision: str, tmp: str, round_: int) -> list:
    out = os.path.join(tmp, f"kp_tf_{bench}_{precision}_{round_}.json")
    command = [sys.executable, "tools/bench.py", bench, f"--preset={FLAGS.preset}",
               f"--precision={precision}", f"--calls={FLAGS.calls}", f"--json={out}"]
    if bench != "predict":
        command += ["--batch_size=16", "--step_only", "--warmup=1"]
    if bench == "stage1":
        command.append("--vgg_weights=none")
    _run(command, f"bench.py {bench}")
    with open(out) as f:
        return next(iter(json.load(f)["figures"].values()))["all"]


def _span(seconds: list) -> str:
    return (f"{statistics.median(seconds):7.2f} s ({min(seconds):.2f}–{max(seconds):.2f}, "
            f"n {len(seconds)})")


def table(kp: dict, peer: dict) -> list:
    lines = [f"{'row':<14} {'kp_tf median (min–max)':<32} {'peer median (min–max)':<32} "
             f"kp_tf/peer"]
    for row, (_, peer_row) in ROWS.items():
        if row in kp and peer_row in peer:
            ratio = statistics.median(kp[row]) / statistics.median(peer[peer_row])
            lines.append(f"{row:<14} {_span(kp[row]):<32} {_span(peer[peer_row]):<32} "
                         f"{ratio:.2f}  (peer {peer_row})")
    for row in SHOWN_ONLY:
        if row in peer:
            lines.append(f"{'peer ' + row:<14} {'':<32} {_span(peer[row]):<32}")
    return lines


def main(argv) -> int:
    del argv
    unknown = set(FLAGS.sections) - set(SECTIONS)
    if unknown:
        raise cli.UserError(f"--sections: {', '.join(sorted(unknown))}; use {SECTIONS}")
    shared = pretrained.shared_dir()
    FLAGS.peer_script = FLAGS.peer_script or os.path.join(
        str(shared) if shared else os.path.join(REPO, "..", "shared"), "perf",
        "torch_reference.py")
    if not os.path.exists(FLAGS.peer_python):
        if not FLAGS.make_venv:
            raise cli.UserError(f"{FLAGS.peer_python}: no such Python; make the peer's venv "
                                f"(tools/compare_peer.py --help) or pass --make_venv")
        make_venv(FLAGS.peer_python)
    kp, peer = {}, {}
    before = loadavg()
    print(f"load before: {before}", flush=True)
    tmp = FLAGS.out_dir or tempfile.mkdtemp(prefix="kp_compare_")
    os.makedirs(tmp, exist_ok=True)
    print(f"runs' JSON in {tmp}", flush=True)
    for round_ in range(FLAGS.rounds):
        for section in FLAGS.sections:
            for row, found in peer_section(section, tmp, round_).items():
                peer.setdefault(row, []).extend(found)
            for row, ((bench, precision), _) in ROWS.items():
                if (bench == "predict") == (section == "predict"):
                    kp.setdefault(row, []).extend(kp_tf_run(bench, precision, tmp, round_))
            # After each section too: a job cut short still leaves its figures.
            print("\n".join(table(kp, peer)), flush=True)
    after = loadavg()
    print(f"load before: {before}\nload after:  {after}")
    print("\n".join(table(kp, peer)))
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump({"kp_tf": kp, "peer": peer, "load_before": before, "load_after": after},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    cli.run(main)
