"""Every command on the console: quiet TensorFlow, one line on failure, help (kp_tf.cli).

Each command runs in its own process as a user runs it (conftest.command_env: no
TF_CPP_MIN_LOG_LEVEL), with stdout and stderr redirected as in a log. By default its stderr
holds no TensorFlow C++ log line, a success exits 0 and a failure exits 2 with exactly one line
naming the problem; `-v 1` or TF_CPP_MIN_LOG_LEVEL brings TensorFlow's lines back. The filter
itself (kp_tf.cli.filter_stream) is tested in-process on pipes.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import cv2
import pytest

from _tiny_run import copy_run, first_test_frame, tiny_run  # noqa: F401  (a fixture)
from conftest import REPO, command_env, tensorflow_log_lines
from kp_tf import cli


def run(*args, timeout=600, **env) -> subprocess.CompletedProcess:
    """`python ARGS` in the repository, as a user's shell would start it; stdout and stderr
    decoded as they are (text=True would turn a carriage return into a newline)."""
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=command_env(**env),
                          capture_output=True, timeout=timeout)
    proc.stdout, proc.stderr = proc.stdout.decode(), proc.stderr.decode()
    return proc


def assert_quiet_success(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not tensorflow_log_lines(proc.stderr), proc.stderr[-3000:]
    assert "\r" not in proc.stdout  # a log gets lines, never a redrawn bar


def assert_one_line_failure(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr[-3000:]
    for word in words:
        assert word in proc.stderr, proc.stderr


# --- the filter, in-process ---------------------------------------------------------------------

TF_LINES = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796611100.291691   27178 port.cc:153] oneDNN custom operations are on.",
    b"I0000 00:00:1796611100.403497   27178 cpu_feature_guard.cc:227] This TensorFlow binary is "
    b"optimized to use available CPU instructions in performance-critical operations.",
    b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    b"TensorFlow with the appropriate compiler flags.",
    b"E0000 00:00:1796611105.260280   27178 cuda_platform.cc:52] failed call to cuInit: INTERNAL",
    b"I0000 00:00:1796611096.583140   27132 tf_record_dataset_op.cc:390] TFRecordDataset "
    b"`buffer_size` is unspecified, default to 262144",
    b"E1207 02:43:15.461463   27111 meta_optimizer.cc:967] remapper failed: INVALID_ARGUMENT",
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
]
OUR_LINES = [
    b"W1207 02:43:14.739580 140330059836288 video_folders.py:87] skipping a.gif: 3 frames",
    b"F1207 02:43:15.000000   27111 check.cc:12] Check failed: the reason of an abort",
    b"Traceback (most recent call last):",
    b"error: /tmp/run: no trained run here",
    b"Image 1 of 2",
]


def test_tensorflow_lines_are_recognised_and_ours_are_not():
    assert all(cli.is_tensorflow_log_line(line) for line in TF_LINES)
    assert not any(cli.is_tensorflow_log_line(line) for line in OUR_LINES)


def _filtered(chunks, pause=0.0) -> bytes:
    """Everything filter_stream forwards when `chunks` are written to its pipe one by one."""
    read_in, write_in = os.pipe()
    read_out, write_out = os.pipe()
    copier = threading.Thread(target=cli.filter_stream, args=(read_in, write_out))
    copier.start()
    for chunk in chunks:
        os.write(write_in, chunk)
        time.sleep(pause)
    os.close(write_in)
    copier.join(timeout=10)
    os.close(write_out)
    with os.fdopen(read_out, "rb") as f:
        out = f.read()
    os.close(read_in)
    return out


def test_filter_drops_tensorflow_lines_split_anywhere_and_keeps_ours_in_order():
    stream = b"".join(line + b"\n" for pair in zip(TF_LINES, OUR_LINES + [b"last"] * 2)
                      for line in pair)
    expected = b"".join(line + b"\n" for line in OUR_LINES + [b"last"] * 2)
    assert _filtered([stream]) == expected
    # Cut into pieces of 7 bytes, read whenever they arrive: lines are cut mid-prefix too.
    assert _filtered([stream[i:i + 7] for i in range(0, len(stream), 7)], pause=0.001) == expected


def test_filter_forwards_a_line_without_its_end_at_once():
    """A prompt or a progress display (no newline yet) must not wait for the next line."""
    read_in, write_in = os.pipe()
    read_out, write_out = os.pipe()
    copier = threading.Thread(target=cli.filter_stream, args=(read_in, write_out))
    copier.start()
    try:
        os.write(write_in, TF_LINES[1] + b"\nprogress 1/3\r")
        os.set_blocking(read_out, True)
        assert os.read(read_out, 100) == b"progress 1/3\r"
    finally:
        os.close(write_in)
        copier.join(timeout=10)
        os.close(write_out)
        os.close(read_out)
        os.close(read_in)


def test_filter_process_passes_everything_on_before_an_abort():
    """The filter is a child process: a command ended by abort() (a TensorFlow check failure)
    still gets its last lines out, the fatal one included."""
    tensorflow_line, fatal_line = TF_LINES[1] + b"\n", OUR_LINES[1] + b"\n"
    code = ("import os\n"
            "from kp_tf import cli\n"
            "cli.quiet_tensorflow_logs([])\n"
            f"os.write(2, {tensorflow_line!r} + b'our line' + bytes([10]))\n"
            f"os.write(2, {fatal_line!r})\n"
            "os.abort()\n")
    proc = run("-c", code, timeout=60)
    assert proc.returncode < 0
    assert proc.stderr == "our line\n" + OUR_LINES[1].decode() + "\n"


def test_ctrl_c_is_one_line_and_status_130():
    # Python's own SIGINT handler, as a command started from a terminal has it (a shell starts
    # background jobs with SIGINT ignored, and Python then keeps it ignored).
    code = ("import signal, time\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from kp_tf import cli\n"
            "def main(argv):\n"
            "    print('ready', flush=True)\n"
            "    time.sleep(60)\n"
            "cli.run(main)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=command_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and err == b"interrupted\n", err


@pytest.mark.parametrize("argv,level", [([], 0), (["-v", "1"], 1), (["--verbosity=2"], 2),
                                        (["-v=1", "--", "-v", "3"], 1), (["--v", "x"], 0)])
def test_verbosity_is_read_before_absl_parses_the_command_line(argv, level):
    assert cli._verbosity_in(argv) == level


# --- help ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("command,first_line,own_flag", [
    (["-m", "kp_tf.train"], "Trains a model: data, stage 1", "--stage"),
    (["-m", "kp_tf.export"], "Writes a trained run's SavedModel, or its TFLite", "--format"),
    (["-m", "kp_tf.predict"], "Predicts videos of an action", "--image"),
    (["-m", "kp_tf.evaluate"], "Evaluates an exported model", "--metrics"),
    (["-m", "kp_tf.fvd"], "Fréchet Video Distance", "--real_cache"),
    (["-m", "kp_tf.make_tfrecords"], "Converts a raw video dataset", "--clips_per_shard"),
    (["tools/make_tfrecords.py"], "Converts a raw video dataset", "--clips_per_shard"),
    (["-m", "kp_tf.evaluation.motion_baselines"], "What motion a deterministic", "--frames"),
    (["-m", "kp_tf.data.synthetic"], "An embedded video dataset", "--background"),
])
def test_help_starts_with_the_description_and_the_commands_own_flags(command, first_line,
                                                                     own_flag):
    proc = run(*command, "--help", timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    out = proc.stdout
    assert out.startswith(first_line), out[:200]
    flags_at = out.index("\nflags:\n")
    assert out.index(f"\n  {own_flag}") > flags_at
    # The command's flags before the common ones; absl's own only with --helpfull.
    assert out.index("\ncommon flags:\n") > out.index(f"\n  {own_flag}")
    assert "logtostderr" not in out and "\\\n" not in out


def test_train_help_lists_the_run_settings_and_helpfull_the_libraries_flags():
    out = run("-m", "kp_tf.train", "--help", timeout=120).stdout
    settings = out.index("Settings (a preset's values are the defaults")
    assert settings < out.index("\n    --dataset:") < out.index("\nflags:\n  --stage")
    full = run("-m", "kp_tf.train", "--helpfull", timeout=120)
    assert full.returncode == 0 and "\nabsl.logging:\n" in full.stdout
    assert "--[no]logtostderr:" in full.stdout
    assert full.stdout.index("--stage") < full.stdout.index("logtostderr")


# --- failures: one line, status 2 ---------------------------------------------------------------

def _failures(tmp) -> dict:
    """{name: (argv, words the one line must hold)} for every command."""
    missing = str(tmp / "missing")
    cases = [
        ("train", ["-m", "kp_tf.train", "--dataset=tiny", "--stage=pseudo_labels",
                   f"--logdir={tmp}", f"--data_dir={missing}"], ["no stage-1 checkpoint"]),
        ("train flag", ["-m", "kp_tf.train", "--stage=everything"], ["--stage=everything"]),
        ("export", ["-m", "kp_tf.export", f"--logdir={tmp}"], ["no trained run here"]),
        ("predict", ["-m", "kp_tf.predict", f"--model={missing}", f"--image={missing}.png"],
         ["missing: no SavedModel here"]),
        ("evaluate", ["-m", "kp_tf.evaluate", f"--model={tmp}"], ["no SavedModel"]),
        ("fvd", ["-m", "kp_tf.fvd", missing, str(tmp)], [f"{missing}: not a folder"]),
        ("fvd arguments", ["-m", "kp_tf.fvd", str(tmp)], ["give two folders"]),
        ("make_tfrecords", ["-m", "kp_tf.make_tfrecords", "--dataset=mgif", f"--src={missing}"],
         ["missing not found"]),
        ("keypoints", ["-m", "kp_tf.evaluation.keypoints", f"--logdir={tmp}"],
         ["no trained keypoints stage"]),
        ("reconstruction", ["-m", "kp_tf.evaluation.reconstruction", f"--logdir={tmp}"],
         ["no trained keypoints stage"]),
        ("motion_baselines", ["-m", "kp_tf.evaluation.motion_baselines", f"--logdir={tmp}"],
         ["no trained motion stage"]),
        ("aggregate", ["-m", "kp_tf.evaluation.aggregate", f"--reports={tmp},{missing}"],
         ["no report.json"]),
        ("synthetic", ["-m", "kp_tf.data.synthetic", "--count=2"], ["--out"]),
        ("export_i3d", ["tools/export_i3d.py", f"--weights={missing}.npz", f"--out={tmp}"],
         ["no such weights file"]),
        ("export_sizes", ["tools/export_sizes.py", "tiny", "huge"], ["unknown preset huge"]),
        ("stray argument", ["-m", "kp_tf.export", f"--logdir={tmp}", "now"],
         ["unexpected argument now"]),
    ]
    return {name: (argv, words) for name, argv, words in cases}


@pytest.mark.parametrize("name", list(_failures(REPO)))
def test_a_failure_is_one_line_naming_the_problem(name, tmp_path):
    argv, words = _failures(tmp_path)[name]
    assert_one_line_failure(run(*argv, timeout=300), *words)


def test_verbosity_one_or_a_users_log_level_brings_tensorflow_lines_back(tmp_path):
    argv = ["-m", "kp_tf.export", f"--logdir={tmp_path}"]
    verbose = run(*argv, "-v", "1", timeout=300)
    assert verbose.returncode == 2
    assert tensorflow_log_lines(verbose.stderr), verbose.stderr[-3000:]
    assert verbose.stderr.endswith(f"error: {tmp_path}: no trained run here "
                                   f"(no keypoints/config.json)\n")
    users = run(*argv, TF_CPP_MIN_LOG_LEVEL="0", timeout=300)
    assert users.returncode == 2 and tensorflow_log_lines(users.stderr), users.stderr[-3000:]


# --- successes: nothing from TensorFlow ---------------------------------------------------------

def test_train_is_quiet_and_logs_progress_lines(tiny_run, tmp_path):  # noqa: F811
    """Stage 1 of the tiny preset: TensorFlow logs its TFRecordDataset buffer and grappler's
    remapper here unless filtered."""
    proc = run("-m", "kp_tf.train", "--dataset=tiny", f"--data_dir={tiny_run.data_dir}",
               f"--logdir={tmp_path / 'run'}", "--vgg_weights=none", "--stage=keypoints",
               "--stage1_steps=3")
    assert_quiet_success(proc)
    assert proc.stderr == ""
    lines = [line for line in proc.stdout.splitlines() if line.startswith("keypoints: ")]
    assert [line.split(" (")[0] for line in lines] == [
        "keypoints: 1/3 steps", "keypoints: 2/3 steps", "keypoints: 3/3 steps"], proc.stdout
    assert "g_loss " in lines[0] and "ETA" in lines[1] and "took" in lines[2]


def test_export_predict_and_the_evaluation_commands_are_quiet(tiny_run, tmp_path):  # noqa: F811
    copy = copy_run(tiny_run, tmp_path)
    export = run("-m", "kp_tf.export", f"--logdir={copy.logdir}", f"--out={tmp_path / 'e'}")
    assert_quiet_success(export)
    assert (tmp_path / "e" / "saved_model.pb").is_file()

    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), cv2.cvtColor(first_test_frame(tiny_run), cv2.COLOR_RGB2BGR))
    predict = run("-m", "kp_tf.predict", f"--model={tiny_run.export_dir}", f"--image={image}",
                  "--action=jack", "--samples=1", "--frames=4", f"--out={tmp_path / 'p'}")
    assert_quiet_success(predict)
    assert "Wrote 1 video of 4 frames" in predict.stdout

    for module, extra in (("kp_tf.evaluation.keypoints", ["--max_train_clips=4"]),
                          ("kp_tf.evaluation.reconstruction", ["--max_clips=1"]),
                          ("kp_tf.evaluation.motion_baselines", ["--frames=4"])):
        proc = run("-m", module, f"--logdir={copy.logdir}", *extra)
        assert_quiet_success(proc)
        assert proc.stdout.strip(), module

    preview = run("-m", "kp_tf.data.synthetic", f"--out={tmp_path / 'g'}", "--count=1",
                  "--num_frames=4", "--size=32")
    assert_quiet_success(preview)
    assert preview.stdout.strip().endswith("train_000000_wave1.gif")


def test_evaluate_and_fvd_are_quiet(tiny_run, tmp_path, i3d_handle):  # noqa: F811
    evaluate = run("-m", "kp_tf.evaluate", f"--model={tiny_run.export_dir}",
                   f"--data_dir={tiny_run.data_dir}", "--metrics=fvd,diversity", "--samples=1",
                   "--frames=9", "--max_videos=2", f"--out={tmp_path / 'r'}",
                   f"--i3d={i3d_handle}", f"--fvd_cache_dir={tmp_path / 'cache'}")
    assert_quiet_success(evaluate)
    assert "Generating static / oracle / 1 model video for 2 test clips" in evaluate.stdout
    assert "\ngeneration: 2/2 clips (100%), " in evaluate.stdout
    assert "\nFVD: static (I3D): 2/2 videos (100%), " in evaluate.stdout
    fvd = run("-m", "kp_tf.fvd", tiny_run.data_dir, tiny_run.data_dir, f"--i3d={i3d_handle}",
              "--frames=9", "--max_videos=2")
    assert_quiet_success(fvd)
    assert fvd.stdout.startswith("FVD: ")
