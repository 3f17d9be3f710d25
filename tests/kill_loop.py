"""SIGKILL a command at seeded random moments, again and again, and check what every kill leaves (issue 18).

A kill loop starts the command, kills its process group after a delay drawn
uniformly from ``[0, window)`` (``window``: an uninterrupted run's duration, so
every phase of the run gets hit: imports, compute, each atomic write), checks
the outputs, and starts the command again on what the kill left, until
``kills`` kills have landed on a running process. A run that finishes before
its kill is checked as a complete run and the outputs are reset. There are no
wall-clock assertions: the loop ends after a fixed number of kills.

``SLOW_REPLACE`` is Python source that makes every ``os.replace`` wait first,
so that a good share of the kills land while a temporary file exists (the real
window of a rename is microseconds).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

SLOW_REPLACE = (
    "import os, time\n_r = os.replace\n"
    "def _slow(a, b, **kw):\n    time.sleep(float(os.environ.get('SLOW_REPLACE_S', '0.3')))\n    return _r(a, b, **kw)\n"
    "os.replace = _slow\n"
)


@dataclass
class KillLoop:
    """What a loop did: kills that landed, runs that finished first, and the temporaries seen right after kills."""

    kills: int = 0
    finished: int = 0
    delays: list[float] = field(default_factory=list)
    temporaries_after_kill: int = 0


def temporaries(folder: Path) -> list[Path]:
    """Files under ``folder`` named like a temporary (``*.tmp``)."""
    return sorted(p for p in Path(folder).rglob("*.tmp"))


def assert_complete_outputs(folder: Path) -> None:
    """Every non-temporary parquet / JSON / safetensors file under ``folder`` is whole (readable)."""
    import pyarrow.parquet as pq

    for p in Path(folder).rglob("*"):
        if not p.is_file() or p.name.endswith(".tmp") or p.name.startswith("."):
            continue
        if p.suffix == ".parquet":
            pq.read_table(p)
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(p), "pt") as f:
                for k in f.keys():
                    f.get_tensor(k)


def kill_loop(start: Callable[[], subprocess.Popen], *, kills: int, seed: int, window: float,
              after_kill: Callable[[], None], after_finish: Callable[[], None], outputs: Path,
              max_runs: int | None = None) -> KillLoop:
    """Kill ``start()``'s process group at ``kills`` seeded random moments (see the module docstring).

    Args:
        start: Starts the command in its own session (``start_new_session=True``).
        kills: Kills that must land on a running process.
        seed: Seeds the delays.
        window: Delays are drawn from ``[0, window)`` seconds.
        after_kill: Checks after each kill (outputs absent or complete).
        after_finish: Checks after a run that finished (outputs equal the reference), then resets them.
        outputs: Folder whose temporaries are counted after each kill.
        max_runs: Give up after this many runs (default ``4 * kills``).
    """
    rng = random.Random(seed)
    res = KillLoop()
    for _ in range(max_runs or 4 * kills):
        if res.kills >= kills:
            break
        delay = rng.uniform(0.0, window)
        proc = start()
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            res.kills += 1
            res.delays.append(round(delay, 2))
            res.temporaries_after_kill += bool(temporaries(outputs))
            after_kill()
            continue
        assert proc.returncode == 0, f"run failed with {proc.returncode}"
        res.finished += 1
        after_finish()
    assert res.kills >= kills, f"only {res.kills} of {kills} kills landed in {res.kills + res.finished} runs"
    return res


def timed_run(start: Callable[[], subprocess.Popen]) -> float:
    """Seconds one uninterrupted run takes (it must succeed)."""
    t0 = time.perf_counter()
    proc = start()
    assert proc.wait() == 0
    return time.perf_counter() - t0
