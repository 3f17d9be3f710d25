"""Wall-clock figures, kept out of DVC-tracked outputs and metrics.

Times and rates differ on every run, so a metrics file or marker that held
them would make every rerun's outputs differ (and `dvc exp show` noisy).
Stages split them off with :func:`split_timing` and append them to an
untracked log, ``logs/timing.jsonl`` of the DVC project the stage runs in (git-
and DVC-ignored), one JSON object a line with the stage name, where a curious
user reads them. ``IMAGENET_CLEAN_TIMING_LOG`` names another file; set to an
empty string it turns the log off (the test suite does).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

TIMING_LOG = Path("logs") / "timing.jsonl"
TIMING_ENV = "IMAGENET_CLEAN_TIMING_LOG"
# keys of stage summaries that hold wall-clock figures
WALL_CLOCK_KEYS = frozenset({"seconds", "files_per_s", "images_per_s", "train_s", "fit_s", "total_s"})


def split_timing(stats: dict) -> tuple[dict, dict]:
    """``(stats without wall-clock keys, the wall-clock keys)`` of a flat summary dict."""
    kept = {k: v for k, v in stats.items() if k not in WALL_CLOCK_KEYS}
    return kept, {k: v for k, v in stats.items() if k in WALL_CLOCK_KEYS}


def record_timing(stage: str, figures: dict, *, log: str | Path | None = None) -> None:
    """Append ``{"stage": stage, **figures}`` to the timing log (one ``O_APPEND`` write, safe across processes).

    Args:
        stage: The stage name, e.g. ``fit@vgg``.
        figures: Wall-clock figures (and what they measured).
        log: The log file; default ``$IMAGENET_CLEAN_TIMING_LOG``, else :data:`TIMING_LOG`
            when the working directory is a DVC project (has ``dvc.yaml``), else nothing is written.
    """
    if log is None:
        log = os.environ.get(TIMING_ENV)
        if log is None:
            log = TIMING_LOG if Path("dvc.yaml").is_file() else ""
    if not figures or not str(log):
        return
    path = Path(log)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps({"stage": stage, **figures}, sort_keys=True, default=float) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
