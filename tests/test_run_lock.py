"""The run folder's lock: a second `train` on a folder that a live run holds refuses, naming
the holder's pid and host; a lock left by a killed run is taken over."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from conftest import REPO, command_env
from kp_tf import run_folder

# Holds the lock of argv[1] until stdin closes; says "held" once it has it.
HOLDER = ("import sys\nfrom kp_tf import run_folder\n"
          "lock = run_folder.RunLock(sys.argv[1]).acquire()\n"
          "print('held', flush=True)\nsys.stdin.read()\n")


@pytest.fixture
def holder(tmp_path):
    """A live process holding the lock of tmp_path/run."""
    logdir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(logdir)], cwd=REPO,
                            env=command_env(TF_CPP_MIN_LOG_LEVEL="3"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "held\n"
        yield logdir, proc
    finally:
        proc.kill()
        proc.wait()


def test_second_train_refuses_while_the_first_lives(holder):
    logdir, proc = holder
    result = subprocess.run(
        [sys.executable, "-m", "kp_tf.train", "--dataset=tiny", f"--logdir={logdir}",
         f"--data_dir={logdir.parent / 'data'}", "--stage=export", "--strategy=default"],
        cwd=REPO, env=command_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: ") and f"{logdir} is in use by pid {proc.pid} on host " \
        f"{socket.gethostname()}" in first, result.stderr
    # The refusal leaves the holder's lock as it was.
    assert json.loads((logdir / run_folder.LOCK).read_text())["pid"] == proc.pid


def test_lock_refused_in_process_and_freed_by_release(holder, tmp_path):
    logdir, proc = holder
    with pytest.raises(run_folder.RunLockedError, match=f"pid {proc.pid} on host"):
        run_folder.RunLock(str(logdir)).acquire()
    proc.stdin.close()  # the holder exits normally and its lock goes with it
    proc.wait(timeout=60)
    with run_folder.RunLock(str(logdir)) as lock:
        assert json.loads(open(lock.path).read())["pid"] == os.getpid()
    assert not (logdir / run_folder.LOCK).exists()


def test_stale_lock_of_a_killed_run_is_taken_over(holder, caplog):
    logdir, proc = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert json.loads((logdir / run_folder.LOCK).read_text())["pid"] == proc.pid  # left behind
    with run_folder.RunLock(str(logdir)) as lock:
        assert json.loads(open(lock.path).read())["pid"] == os.getpid()
        with pytest.raises(run_folder.RunLockedError, match=f"pid {os.getpid()} "):
            run_folder.RunLock(str(logdir)).acquire()  # flock: a second open file conflicts
    assert f"stale lock of pid {proc.pid} on host" in caplog.text
