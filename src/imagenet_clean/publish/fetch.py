"""Getting a release's files, checked against its ``dvc.lock``.

Two ways in:

* :func:`pull_release` in a clone (``imagenet-clean pull``): ``dvc pull`` of
  the clean stages' outputs, after checking that the remote holds every one of
  them (else one line naming the release and the files, and nothing pulled),
  then comparing each pulled file with the lock.
* :func:`fetch_release_file` without a clone (``apply --from``, ``diff --rev``):
  DVC's Python API (:class:`dvc.api.DVCFileSystem`) reads the release's
  ``dvc.lock`` and the file at a git revision of any repository URL or path.

A file whose md5 is not the one the lock names is deleted and never used.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from . import gitops
from .lock import CLEAN_STAGE, LockedFile, cached_outs, md5_file, parse_lock
from .remote import check_reachable, describe, dvc_errors, missing_objects

CHUNK = 1 << 20


@dataclass(frozen=True)
class FetchedFile:
    """A release file fetched and checked.

    Attributes:
        path: Where it was written.
        repo_path: Its path in the release repository.
        md5: Its md5 (equal to the lock's).
        repo: The repository URL or path it came from.
        rev: The revision asked for (None: the default branch).
        commit: The commit that revision resolved to.
    """

    path: Path
    repo_path: str
    md5: str
    repo: str
    rev: str | None
    commit: str


def split_repo_rev(spec: str) -> tuple[str, str | None]:
    """``<repo-url>[@rev]`` -> ``(url, rev)``.

    The revision is what follows the last ``@`` when it holds no ``/`` or ``:``
    (so ``git@host:org/repo`` and ``https://user@host/repo`` keep their ``@``).
    """
    head, sep, tail = spec.rpartition("@")
    if sep and head and tail and "/" not in tail and ":" not in tail:
        return head, tail
    return spec, None


def _targets(repo, targets: list[str]) -> list[LockedFile]:
    """The cached outputs of the stages (``clean`` = every ``clean@<split>``) or paths named by ``targets``."""
    lock, outs = cached_outs(repo)
    if not lock:
        raise ValueError(f"{repo.root_dir}: no dvc.lock, so no release to pull")
    chosen = []
    for rel, stage in outs:
        if any(t in (stage, stage.split("@")[0]) or rel == t.rstrip("/") or rel.startswith(t.rstrip("/") + "/")
               for t in targets):
            if rel not in lock:
                raise ValueError(f"dvc.lock names no hash for {rel}; this revision is not a release")
            chosen.append(lock[rel])
    if not chosen:
        raise ValueError(f"no DVC output matches {', '.join(targets)}")
    return sorted(chosen, key=lambda f: f.path)


def pull_release(root: str | Path = ".", targets: list[str] | None = None) -> dict[str, list[str]]:
    """Pull a release's files into the workspace of a clone, checked against its ``dvc.lock``.

    Args:
        root: A folder inside the clone.
        targets: Stage names (``clean``, ``clean@val``) or output paths; default ``["clean"]``.

    Returns:
        ``{"pulled": [...], "present": [...]}``: paths fetched now, and paths already in place.

    Raises:
        ValueError: the remote lacks files of the release (named, with the release; nothing pulled), a
            pulled file differs from the lock (deleted), or DVC failed.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    top = gitops.repo_root(root)
    release = gitops.release_name(top)
    with dvc_errors(f"release {release}"), Repo(str(top)) as repo:
        files = _targets(repo, targets or [CLEAN_STAGE])
        present = [f for f in files if (top / f.path).is_file() and md5_file(top / f.path) == f.md5]
        needed = [f for f in files if f not in present]
        if needed:
            try:
                odb = repo.cloud.get_remote_odb(None, "pull")
            except DvcException as e:
                raise ValueError(f"release {release}: no usable DVC remote: {' '.join(str(e).split())}") from None
            url = describe(str(odb.fs.unstrip_protocol(odb.path)).removesuffix("/files/md5"))
            check_reachable(odb, url, push=False)
            lost = set(missing_objects(odb, [f.md5 for f in needed if not f.md5.endswith(".dir")]))
            if lost:
                names = [f"{f.path} (md5 {f.md5})" for f in needed if f.md5 in lost]
                raise ValueError(f"release {release} is incomplete on remote {repo.config['core'].get('remote')!r} "
                                 f"({url}): missing {', '.join(names)}; nothing pulled")
            failure = None
            try:
                repo.pull(targets=[str(top / f.path) for f in needed])
            except DvcException as e:
                failure = " ".join(str(e).split())
            bad = [f for f in needed if not f.md5.endswith(".dir") and not _matches(top / f.path, f.md5)]
            for f in bad:
                _discard(repo, top / f.path, f.md5)
            if bad:
                raise ValueError(f"release {release}: {', '.join(f.path for f in bad)} from remote {url} "
                                 "do(es) not match the md5 in dvc.lock (the remote holds different bytes); "
                                 "not used" + (f" (DVC: {failure})" if failure else ""))
            if failure:
                raise ValueError(f"release {release}: dvc pull from {url} failed: {failure}")
    return {"pulled": [f.path for f in needed], "present": [f.path for f in present]}


def _matches(path: Path, md5: str) -> bool:
    return path.is_file() and md5_file(path) == md5


def _discard(repo, path: Path, md5: str) -> None:
    """Delete a workspace file and the cache object DVC stored it under (it holds the wrong bytes)."""
    path.unlink(missing_ok=True)
    obj = Path(repo.cache.local.oid_to_path(md5))
    obj.unlink(missing_ok=True)


def read_release_lock(fs, repo: str, rev: str | None) -> dict[str, LockedFile]:
    """The outputs named by the ``dvc.lock`` of a release (a :class:`dvc.api.DVCFileSystem`)."""
    where = f"{repo}@{rev}" if rev else repo
    try:
        text = fs.read_text("dvc.lock")
    except FileNotFoundError:
        raise ValueError(f"{where} has no dvc.lock: not a release of this pipeline") from None
    return parse_lock(text)


def open_release(repo: str, rev: str | None):
    """A :class:`dvc.api.DVCFileSystem` of ``repo`` at ``rev`` and the commit it resolved to; one-line errors."""
    from dvc.api import DVCFileSystem
    from dvc.exceptions import DvcException
    from dvc.scm import SCMError

    where = f"{repo}@{rev}" if rev else repo
    try:
        fs = DVCFileSystem(repo, rev=rev)
        return fs, fs.repo.get_rev()
    except (DvcException, SCMError) as e:
        raise ValueError(f"cannot open {where}: {' '.join(str(e).split())}") from None
    except Exception as e:  # noqa: BLE001 - scmrepo and fsspec raise many kinds for a bad URL
        raise ValueError(f"cannot open {where}: {type(e).__name__}: {' '.join(str(e).split())}") from None


def fetch_release_file(repo: str, rev: str | None, repo_path: str, dest: str | Path, *, fs=None,
                       commit: str | None = None, missing_hint: str = "") -> FetchedFile:
    """Fetch one DVC output of a release into ``dest``, checked against the release's ``dvc.lock``.

    Args:
        repo: Repository URL or path.
        rev: Git revision (tag, branch, commit); None: the default branch.
        repo_path: The output's path in the repository (``data/clean/val.parquet``).
        dest: Where to write it.
        fs: An open :class:`dvc.api.DVCFileSystem` of ``repo`` at ``rev`` (opened when None).
        commit: The commit ``fs`` resolved to (with ``fs``).
        missing_hint: Appended to the message when the lock names no such output.

    Raises:
        ValueError: no such output in the release, the remote lacks it, or its md5 differs from the
            lock's (``dest`` is then removed).
    """
    from dvc.exceptions import DvcException

    where = f"{repo}@{rev}" if rev else repo
    if fs is None:
        fs, commit = open_release(repo, rev)
    locked = read_release_lock(fs, repo, rev).get(repo_path)
    if locked is None:
        raise ValueError(f"{where} has no {repo_path} (its dvc.lock names no such output){missing_hint}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.fetch")
    try:
        digest = _copy(fs, repo_path, tmp)
    except (DvcException, OSError) as e:
        committed = committed_object(fs, locked.md5)
        try:
            if committed is None:
                raise
            digest = _copy(fs, committed, tmp)
        except (DvcException, OSError):
            tmp.unlink(missing_ok=True)
            raise ValueError(f"cannot fetch {repo_path} of {where} from its DVC remote: {' '.join(str(e).split())}") from None
    if digest != locked.md5:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"{repo_path} fetched from {where} has md5 {digest}, its dvc.lock says {locked.md5}; "
                         "not used (the remote holds a different file)")
    tmp.replace(dest)
    return FetchedFile(dest, repo_path, locked.md5, repo, rev, commit or "")


def _copy(fs, path: str, dest: Path) -> str:
    """Copy ``path`` of a DVC file system to ``dest``; returns its md5."""
    h = hashlib.md5()
    with fs.open(path, "rb") as src, open(dest, "wb") as out:
        while block := src.read(CHUNK):
            h.update(block)
            out.write(block)
    return h.hexdigest()


def committed_object(fs, md5: str) -> str | None:
    """The git path of an object in a remote folder committed inside the release repository, if it has one.

    DVC resolves a relative remote of a repository it reads through git (a URL,
    not a local path) against ``/``, so ``dvc get``/``DVCFileSystem`` cannot use
    such a remote; its objects are plain git files, read here instead.
    """
    import os

    try:
        name = fs.repo.config["core"].get("remote")
        url = fs.repo.config["remote"][name]["url"] if name else None
    except (KeyError, TypeError):
        return None
    if not url or "://" in url:
        return None
    rel = os.path.relpath(url, fs.repo.root_dir)
    if rel.startswith(".."):
        return None
    path = f"{Path(rel).as_posix()}/files/md5/{md5[:2]}/{md5[2:]}"
    return path if fs.isfile(path) else None
