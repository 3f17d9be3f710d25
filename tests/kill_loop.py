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
import sys
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


def _killed_after(proc, delay: float) -> bool:
    """Wait ``delay`` seconds for ``proc``, then SIGKILL its process group and wait for it.

    Returns True when the kill landed on a running process, False when the run finished first; also
    when it exited between the wait's timeout and the kill (a fork-server run is reaped at once, so
    ``os.killpg`` then finds no process: seen once on a loaded machine).
    """
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        proc.wait()
        return False
    proc.wait()
    return True


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
        if _killed_after(proc, delay):
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


# ------------------------------------------------------------------ a fork server: runs in well under a second

_ZYGOTE = r'''
import json, os, sys, traceback
exec(sys.argv[1])  # the imports every run shares (torch, the package), done once
proto_in, proto_out = sys.stdin, sys.stdout
for line in proto_in:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:  # the run: its own session (killed as a group), its own output, the script as __main__
        os.setsid()
        log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1), os.dup2(log, 2)
        code = 0
        try:
            os.chdir(req["cwd"])
            os.environ.update(req["env"])
            sys.argv = req["argv"]
            exec(compile(req["script"], "<run>", "exec"), {"__name__": "__main__"})
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(code)
    proto_out.write(f"{pid}\n"), proto_out.flush()
    _, status = os.waitpid(pid, 0)  # reaped at once: a killed run is dead (no zombie) before the test looks
    proto_out.write(f"{os.waitstatus_to_exitcode(status)}\n"), proto_out.flush()
'''


class ForkedRun:
    """One run started by :class:`ForkServer`; ``wait``/``pid``/``returncode`` as ``subprocess.Popen``'s."""

    def __init__(self, server: "ForkServer", pid: int):
        self._server, self.pid, self.returncode = server, pid, None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            line = self._server.line(timeout)
            if line is None:
                raise subprocess.TimeoutExpired(f"forked run {self.pid}", timeout)
            self.returncode = int(line)
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None


class ForkServer:
    """A Python process that imports ``preload`` once, then forks one run per :meth:`start` (a zygote).

    A run of a tiny stage is then its compute and its writes, not the seconds
    that importing torch takes, so a loop of 100 kills (each followed by an
    uninterrupted rerun) takes minutes, not an hour. Each run is a fresh
    process (own pid, own session, own temporaries' names): a kill of its
    process group is a kill of that run only. The server does no compute
    before it forks (torch's thread pools start in the child).
    """

    def __init__(self, preload: str, *, env: dict | None = None, log: Path):
        self.log = str(log)
        self.proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE, preload], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, bufsize=0)
        self._buf = b""

    def line(self, timeout: float | None) -> str | None:
        """The server's next line (unbuffered, so ``select`` sees what is unread), or None after ``timeout`` s."""
        import select

        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            assert chunk, f"the fork server died (log: {self.log})"
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def start(self, script: str, argv: list[str], *, cwd: Path | str = ".", env: dict | None = None) -> ForkedRun:
        """Fork a run of ``script`` (as ``__main__``, with ``sys.argv = argv``) in ``cwd``."""
        req = {"script": script, "argv": ["run", *map(str, argv)], "cwd": str(cwd), "env": env or {}, "log": self.log}
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        return ForkedRun(self, int(self.line(None)))

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()

    def __enter__(self) -> "ForkServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def kill_and_rerun_loop(start: Callable[[], object], *, kills: int, seed: int, window: float,
                        after_kill: Callable[[], None], after_rerun: Callable[[], None], outputs: Path) -> KillLoop:
    """``kills`` kills at seeded moments in ``[0, window)``, each followed by an uninterrupted rerun on what it left.

    After each kill ``after_kill`` checks what is there (absent or whole); the
    rerun must succeed, and ``after_rerun`` checks its outputs against the
    uninterrupted run's, checks that no temporary is left, and resets the
    outputs for the next kill. A run that finishes before its kill is drawn
    again with a new delay (it counts in ``finished``).
    """
    rng = random.Random(seed)
    res = KillLoop()
    while res.kills < kills:
        delay = rng.uniform(0.0, window)
        proc = start()
        if _killed_after(proc, delay):
            res.kills += 1
            res.delays.append(round(delay, 3))
            res.temporaries_after_kill += bool(temporaries(outputs))
            after_kill()
            rerun = start()
            assert rerun.wait() == 0, f"the rerun after kill {res.kills} (at {delay:.3f} s) failed"
            after_rerun()
            continue
        assert proc.returncode == 0, f"run failed with {proc.returncode}"
        res.finished += 1
        after_rerun()
        assert res.finished <= 4 * kills, f"only {res.kills} of {kills} kills landed"
    return res
