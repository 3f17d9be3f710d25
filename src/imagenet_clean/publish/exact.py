"""Exact outputs: every DVC output a release's ``dvc.lock`` names, restored byte-identical (issue 28).

Training is bit-identical on one CPU family only (docs/reliability.md), so a
user on another machine who wants the committed figures, not a recomputation,
pulls the outputs themselves: models, predictions, manifests, raw data, clean
splits. DVC's run-cache cannot stand in for them (it skips stages with
persisted or uncached outputs: ``fit``, ``rounds``, ``retrain``, ``report``).
After :func:`pull_exact`, ``dvc repro`` finds every stage up to date and runs
none: the uncached outputs (``metrics/``) are in git, the cached ones match
the lock.

The full set lives on a second remote, :data:`EXACT_REMOTE` (``publish
--exact-remote URL``), because it is too large to commit beside the code; a
release without one is pulled from its default remote.

All or nothing: every object is fetched into the DVC cache and checked
(present, md5 as named, each file of a folder output too) before the
workspace is touched; a missing or mismatching entry is one line naming its
stage, and nothing is restored.
"""
from __future__ import annotations

import hashlib
import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from . import gitops
from .lock import LockedFile, cached_outs, md5_file
from .remote import NAME_RE, check_reachable, config_url, describe, dvc_errors

EXACT_REMOTE = "exact"
"""Name of the remote that holds a release's full output set (``.dvc/config``)."""


def exact_outs(repo) -> list[LockedFile]:
    """Every cached output of the pipeline with the hash its ``dvc.lock`` names (sorted by path).

    Raises:
        ValueError: no ``dvc.lock``, or it names no hash for an output (naming the stage).
    """
    lock, outs = cached_outs(repo)
    if not lock:
        raise ValueError(f"{repo.root_dir}: no dvc.lock, so no outputs to restore")
    missing = [f"{rel} (stage {stage})" for rel, stage in outs if rel not in lock]
    if missing:
        raise ValueError(f"dvc.lock names no hash for {', '.join(missing)}: this revision is not a complete run")
    return sorted((lock[rel] for rel, _ in outs), key=lambda f: f.path)


def pull_exact(root: str | Path = ".", *, remote: str | None = None) -> dict:
    """Restore every output ``dvc.lock`` names, byte-identical, so that ``dvc repro`` runs no stage.

    Args:
        root: A folder inside a clone of the pipeline.
        remote: A remote name of ``.dvc/config`` or a URL (recorded in the git-ignored
            ``.dvc/config.local`` as :data:`EXACT_REMOTE`); default: :data:`EXACT_REMOTE` when the release
            records one, else the default remote.

    Returns:
        ``{"restored": [...], "present": [...], "remote": name, "bytes": n}``: outputs checked out now, outputs
        already in place, the remote read, and the size of the full set.

    Raises:
        ValueError: one line (a missing or mismatching entry names its stage); the workspace is unchanged.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    top = gitops.repo_root(root)
    release = gitops.release_name(top)
    with dvc_errors(f"release {release}"):
        with Repo(str(top)) as repo:
            name = _remote_name(repo, remote)
        with Repo(str(top)) as repo:
            files = exact_outs(repo)
            present = [f for f in files if _in_place(top / f.path, f.md5, repo)]
            needed = [f for f in files if f not in present]
            url = None
            if needed:
                try:
                    odb = repo.cloud.get_remote_odb(name, "pull")
                except DvcException as e:
                    raise ValueError(f"release {release}: no usable DVC remote: {' '.join(str(e).split())}") from None
                url = describe(str(odb.fs.unstrip_protocol(odb.path)).removesuffix("/files/md5"))
                check_reachable(odb, url, push=False)
                with _quiet_dvc():  # DVC logs each failed transfer; what did not arrive is named below, by stage
                    try:
                        repo.fetch(targets=[str(top / f.path) for f in needed], remote=name)
                    except DvcException:
                        pass
                problems = _check_cache(repo, needed, odb)
                if problems:
                    raise ValueError(f"release {release}: the exact outputs on remote {name or 'default'!r} ({url}) do not match "
                                     f"dvc.lock: {'; '.join(problems)}; nothing restored")
                try:
                    repo.checkout(targets=[str(top / f.path) for f in needed], force=True)
                except DvcException as e:
                    raise ValueError(f"release {release}: checkout failed: {' '.join(str(e).split())}") from None
    return {"restored": [f.path for f in needed], "present": [f.path for f in present], "remote": name,
            "bytes": sum(f.size or 0 for f in files)}


def _remote_name(repo, remote: str | None) -> str | None:
    """The remote to read: a configured name, a URL recorded locally as :data:`EXACT_REMOTE`, or the default."""
    configured = repo.config["remote"]
    if remote is None:
        return EXACT_REMOTE if EXACT_REMOTE in configured else None
    if NAME_RE.fullmatch(remote) and remote in configured:
        return remote
    if NAME_RE.fullmatch(remote) and "/" not in remote and not Path(remote).exists():
        raise ValueError(f"no DVC remote named {remote!r} (configured: {', '.join(sorted(configured)) or 'none'}); "
                         "give a remote name or a URL")
    with repo.config.edit("local") as conf:  # git-ignored: `git status` stays clean
        conf["remote"][EXACT_REMOTE] = {"url": config_url(remote, cwd=".")}
    return EXACT_REMOTE


def _in_place(path: Path, md5: str, repo) -> bool:
    """Whether the workspace already holds this output, byte for byte."""
    if not md5.endswith(".dir"):
        return path.is_file() and not path.is_symlink() and md5_file(path) == md5
    entries = _dir_entries(repo, md5)
    if entries is None or not path.is_dir():
        return False
    return all((path / e["relpath"]).is_file() and md5_file(path / e["relpath"]) == e["md5"] for e in entries) and \
        sum(1 for p in path.rglob("*") if p.is_file()) == len(entries)


def _dir_entries(repo, md5: str) -> list[dict] | None:
    """The file list of a folder output's ``.dir`` object in the cache (None when absent or not its md5)."""
    obj = Path(repo.cache.local.oid_to_path(md5))
    if not obj.is_file():
        return None
    data = obj.read_bytes()
    if hashlib.md5(data).hexdigest() != md5.removesuffix(".dir"):
        return None
    return json.loads(data)


def _check_cache(repo, files: list[LockedFile], odb) -> list[str]:
    """What is missing from, or wrong in, the local cache for ``files``: one entry per stage and output.

    An object whose bytes do not hash to its name is deleted from the cache (never checked out).
    """
    problems = []
    for f in files:
        if f.md5.endswith(".dir"):
            entries = _dir_entries(repo, f.md5) or _remote_dir_entries(odb, f.md5)
            if entries is None:
                _drop(repo, f.md5)
                problems.append(f"stage {f.stage}: {f.path} (folder md5 {f.md5}) missing or not matching")
                continue
            bad = [e["relpath"] for e in entries if not _object_ok(repo, e["md5"])]
            if bad:
                shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
                problems.append(f"stage {f.stage}: {f.path}: {len(bad)} of {len(entries)} files missing or not matching ({shown})")
        elif not _object_ok(repo, f.md5):
            problems.append(f"stage {f.stage}: {f.path} (md5 {f.md5}) missing or not matching")
    return problems


def _remote_dir_entries(odb, md5: str) -> list[dict] | None:
    """The file list of a folder output read from the remote (DVC keeps it out of the cache when a file failed)."""
    try:
        data = odb.fs.cat_file(odb.oid_to_path(md5))
    except Exception:  # noqa: BLE001 - any backend error: the list is not there
        return None
    return json.loads(data) if hashlib.md5(data).hexdigest() == md5.removesuffix(".dir") else None


@contextmanager
def _quiet_dvc() -> Iterator[None]:
    logging.disable(logging.ERROR)  # DVC and dvc-data log from several loggers
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _object_ok(repo, md5: str) -> bool:
    obj = Path(repo.cache.local.oid_to_path(md5))
    if obj.is_file() and md5_file(obj) == md5:
        return True
    _drop(repo, md5)
    return False


def _drop(repo, md5: str) -> None:
    Path(repo.cache.local.oid_to_path(md5)).unlink(missing_ok=True)
