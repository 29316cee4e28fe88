"""tools/figures.py draws the docs' pictures from an export: full colour, or a palette PNG."""

import os
import subprocess
import sys

import numpy as np
from PIL import Image

from _tiny_run import tiny_run  # noqa: F401  (the shared trained run, a fixture)
from conftest import REPO, command_env


def _figures(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "figures.py"), *args],
                          capture_output=True, text=True, env=command_env(), timeout=600)


def test_overview_in_full_colour_and_as_a_palette(tiny_run, tmp_path):  # noqa: F811
    common = ["overview", f"--model={tiny_run.export_dir}", f"--data_dir={tiny_run.data_dir}",
              "--frames=4"]
    full, palette = tmp_path / "full.png", tmp_path / "palette.png"
    for out, extra in ((full, []), (palette, ["--colors=64"])):
        proc = _figures(*common, *extra, f"--out={out}")
        assert proc.returncode == 0, proc.stderr
        assert f"wrote {out}" in proc.stdout
    rgb, indexed = Image.open(full), Image.open(palette)
    assert rgb.mode == "RGB" and indexed.mode == "P" and rgb.size == indexed.size
    assert len(indexed.getcolors()) <= 64
    # the same picture, up to the palette: mean absolute difference under 8 of 255
    difference = np.abs(np.asarray(rgb, np.float32) - np.asarray(indexed.convert("RGB"), np.float32))
    assert difference.mean() < 8.0


def test_a_palette_outside_2_to_256_is_refused(tiny_run, tmp_path):  # noqa: F811
    out = tmp_path / "x.png"
    proc = _figures("overview", f"--model={tiny_run.export_dir}",
                    f"--data_dir={tiny_run.data_dir}", "--frames=4", "--colors=300", f"--out={out}")
    assert proc.returncode == 2
    assert "--colors=300: a palette has 2 to 256 colours" in proc.stderr
    assert not out.exists()
