"""The kill-and-rerun harness of the slow kill loops (tests/kill_loop.py): a run that exits as it is killed."""
from __future__ import annotations

import subprocess
import sys

from kill_loop import kill_and_rerun_loop


class _Gone:
    """A run whose wait times out ``timeouts`` times, then reports success: by the kill, its process is gone."""

    def __init__(self, pid: int, timeouts: int):
        self.pid, self.timeouts, self.returncode = pid, timeouts, None

    def wait(self, timeout=None):
        if self.timeouts:
            self.timeouts -= 1
            raise subprocess.TimeoutExpired("gone", timeout)
        self.returncode = 0
        return 0


def test_a_run_that_exits_between_the_timeout_and_the_kill_counts_as_finished(tmp_path):
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()  # its pid, and its process group, no longer exist
    runs = iter([
        _Gone(done.pid, timeouts=1),  # times out, then is gone when killed (the race seen on a loaded machine)
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True),  # killed
        _Gone(done.pid, timeouts=0),  # the rerun after the kill
    ])
    calls = {"kill": 0, "rerun": 0}
    res = kill_and_rerun_loop(lambda: next(runs), kills=1, seed=0, window=0.5, outputs=tmp_path,
                              after_kill=lambda: calls.__setitem__("kill", calls["kill"] + 1),
                              after_rerun=lambda: calls.__setitem__("rerun", calls["rerun"] + 1))
    assert (res.kills, res.finished) == (1, 1) and calls == {"kill": 1, "rerun": 2}
