"""How a console script ends (pipeline.cli.teardown.exit_after): as the interpreter would, minus its teardown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import atexit, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from pipeline.cli.teardown import exit_after

folder = Path(sys.argv[1])

class Finalized:
    def __init__(self, path):
        self.path = path

    def __del__(self):
        self.path.write_text("the interpreter tore this down")

def late_thread():
    time.sleep(0.5)
    (folder / "thread").write_text("done")

def at_exit():
    (folder / "atexit").write_text("thread done first" if (folder / "thread").exists() else "thread not done")

def main():
    global kept, pool
    kept = Finalized(folder / "finalized")  # alive at the end: only the interpreter's teardown would finalize it
    atexit.register(at_exit)
    threading.Thread(target=late_thread).start()  # not a daemon: the process waits for it
    pool = ThreadPoolExecutor(1)
    pool.submit(time.sleep, 0.1)  # never shut down: its idle worker stops when the interpreter tells it to
    sys.stdout.write("buffered, no newline")  # stdout is a pipe: block-buffered until flushed
    {ending}

exit_after(main)
"""


def run_script(tmp_path: Path, ending: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(ending=ending), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("ending", "status", "stderr"),
    [
        ("pass", 0, ""),
        ("raise SystemExit(3)", 3, ""),
        ("raise SystemExit('error: bad input')", 1, "error: bad input\n"),
    ],
)
def test_a_command_ends_with_its_status_threads_joined_atexit_run_output_flushed_and_no_teardown(
    tmp_path: Path, ending: str, status: int, stderr: str
) -> None:
    done = run_script(tmp_path, ending)
    assert (done.returncode, done.stderr) == (status, stderr)
    assert done.stdout == "buffered, no newline"
    assert (tmp_path / "thread").read_text() == "done"
    assert (tmp_path / "atexit").read_text() == "thread done first"  # the order of a normal exit
    assert not (tmp_path / "finalized").exists()  # no teardown (a plain exit would finalize it): 0.3 s of a command


def test_a_bug_still_ends_with_its_traceback_and_a_normal_exit(tmp_path: Path) -> None:
    done = run_script(tmp_path, "raise ValueError('a bug')")
    assert done.returncode == 1
    assert done.stderr.rstrip().endswith("ValueError: a bug")
    assert done.stdout == "buffered, no newline"
    assert (tmp_path / "atexit").read_text() == "thread done first"
