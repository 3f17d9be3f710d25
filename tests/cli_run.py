"""The ``imagenet-clean`` command line as a subprocess, for tests that kill or race it.

:data:`CLI` runs the command with this interpreter; :data:`SLOW_CLI` is the same
on a "slow disk"; :func:`run` runs a command in a project folder with :data:`ENV`.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-c", "from imagenet_clean.cli import main; main()"]
# The same command on a "slow disk": every rename waits 0.4 s first, so that a kill reliably lands while a
# temporary output exists (the real window is a few milliseconds).
SLOW_CLI = [sys.executable, "-c", (
    "import os, time; _r = os.replace\n"
    "def _slow(a, b, **kw):\n    time.sleep(0.4)\n    return _r(a, b, **kw)\n"
    "os.replace = _slow\n"
    "from imagenet_clean.cli import main; main()")]
ENV = {**os.environ, "IMAGENET_CLEAN_PROGRESS": "0"}


def run(args: list[str], cwd: Path, *, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``args`` in ``cwd`` with :data:`ENV`, output captured; with ``check``, assert it succeeded."""
    res = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True)
    if check:
        assert res.returncode == 0, f"{args} failed:\n{res.stdout}\n{res.stderr}"
    return res


def stale_stages(project: Path) -> dict:
    """``dvc status --json`` of ``project`` without the stages whose only status is ``always changed``.

    The ``scan@<split>`` listing checks run on every ``dvc repro`` by design (``always_changed: true``), so
    ``dvc status`` always names them; every other entry is a stage that is really out of date (the same rule as
    ``imagenet_clean.publish.release.stale_stages``).
    """
    import json

    res = run(["dvc", "status", "--json"], project)
    return {k: v for k, v in json.loads(res.stdout or "{}").items() if v != ["always changed"]}
