"""Temporaries that name their owner, and the sweep that removes those of dead owners.

Every atomic write (:func:`imagenet_clean.io.atomic_path`) first writes
``.<name>.<host>-<pid>-<random>.tmp`` beside its destination and renames it
into place. A process killed inside the write (SIGKILL, OOM killer, power cut
of a node) cannot clean up, so every stage calls :func:`sweep_temporaries` on
its output folders before it does anything else: a temporary whose owner was
on this host and is no longer running is removed; the temporaries of running
processes, of other hosts (shared storage) and every other file are left alone.

Library calls that write outside a stage (``predict_samples``,
``write_predictions``, ``save_checkpoint``, ...) are covered too: the first
atomic write of a process into a folder calls :func:`sweep_once` on that
folder, so a rerun of whatever was killed removes the dead writer's
temporaries on the path that writes them. One ``scandir`` per folder and
process: no cost in a loop that writes many files into one folder.

``<host>`` is a short hash of the host name, so that a node never judges
another node's process ids.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
from pathlib import Path
from typing import Iterable

TMP_SUFFIX = ".tmp"
_PATTERN = re.compile(r"\.(?P<name>.+)\.(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}\.tmp")


def host_tag() -> str:
    """Six hex digits naming this host (stable for the host name)."""
    return hashlib.blake2b(socket.gethostname().encode(), digest_size=3).hexdigest()


def temporary_name(name: str, *, pid: int | None = None) -> str:
    """The hidden temporary file name for destination file ``name``, owned by ``pid`` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    return f".{name}.{host_tag()}-{pid}-{secrets.token_hex(4)}{TMP_SUFFIX}"


def temporary_owner(name: str) -> tuple[str, int] | None:
    """``(host tag, pid)`` of a temporary named by :func:`temporary_name`, else None."""
    m = _PATTERN.fullmatch(name)
    return None if m is None else (m["host"], int(m["pid"]))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:  # a killed child its parent has not reaped yet still answers signal 0
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _orphaned(name: str, host: str, alive: dict[int, bool]) -> bool:
    owner = temporary_owner(name)
    if owner is None or owner[0] != host:
        return False
    pid = owner[1]
    if pid not in alive:
        alive[pid] = pid_alive(pid)
    return not alive[pid]


def sweep_temporaries(*folders: str | Path, recursive: bool = True) -> list[Path]:
    """Remove the temporaries that dead processes of this host left in ``folders``.

    Args:
        folders: Output folders (missing ones are skipped; a file means its parent folder).
        recursive: Also sweep sub-folders (symlinked folders are not followed).

    Returns:
        The files removed.
    """
    host, alive, removed = host_tag(), {}, []
    todo = []
    for f in folders:
        p = Path(f)
        todo.append(p if p.is_dir() else p.parent)
    seen = set()
    while todo:
        d = todo.pop()
        if d in seen:
            continue
        seen.add(d)
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if recursive:
                    todo.append(Path(e.path))
            elif e.name.endswith(TMP_SUFFIX) and _orphaned(e.name, host, alive):
                try:
                    os.unlink(e.path)
                    removed.append(Path(e.path))
                except FileNotFoundError:
                    pass
    return sorted(removed)


def sweep_outputs(paths: Iterable[str | Path], *, recursive: bool = False) -> list[Path]:
    """:func:`sweep_temporaries` over the folders of a stage's output files and folders."""
    return sweep_temporaries(*paths, recursive=recursive)


_SWEPT: set[tuple[int, str]] = set()


def sweep_once(folder: str | Path) -> list[Path]:
    """Sweep ``folder`` (not its sub-folders) unless this process already did.

    Called by every atomic write before it creates its temporary
    (:func:`imagenet_clean.io.atomic_path`). The memo is keyed by process id,
    so a forked worker sweeps again on its own first write.

    Returns:
        The files removed (empty when the folder was already swept).
    """
    key = (os.getpid(), os.path.abspath(folder))
    if key in _SWEPT:
        return []
    removed = sweep_temporaries(folder, recursive=False)
    _SWEPT.add(key)
    return removed
