"""DVC remotes of a release: where it is pushed, where readers fetch it, what it holds.

A release has one remote name with two URLs: the **read URL** goes into the
committed ``.dvc/config`` (what every clone, ``dvc get`` and ``dvc import``
reads), the **push URL** into the git-ignored ``.dvc/config.local`` when it
differs (the publisher's own override). That is the usual pattern of a bucket
written as ``s3://bucket/x`` and read as ``https://bucket.../x``. A local folder
is written relative to ``.dvc/`` so that a remote committed beside the code
works in every clone.
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

CONFIG_HEADER = (
    "# DVC configuration of imagenet-clean; `imagenet-clean publish` writes the remote below.\n"
    "# The default remote holds the published release (docs/publishing.md); a relative url is relative to .dvc/.\n"
    "# Point it elsewhere for yourself without changing this file: dvc remote modify --local NAME url URL\n"
)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@contextmanager
def dvc_errors(what: str) -> Iterator[None]:
    """Turn an error DVC raises inside the block (a broken dvc.yaml, a locked repository ...) into one line."""
    from dvc.exceptions import DvcException

    try:
        yield
    except DvcException as e:
        raise ValueError(f"{what}: DVC: {_one_line(e)}") from None


def is_local_url(url: str) -> bool:
    """True for a folder path (no ``scheme://``, or ``file://``)."""
    return "://" not in url or url.startswith("file://")


def local_path(url: str, cwd: str | Path) -> Path:
    """The absolute folder of a local URL, relative paths taken from ``cwd``."""
    path = url[len("file://"):] if url.startswith("file://") else url
    return (Path(cwd) / os.path.expanduser(path)).resolve()


def config_url(url: str, *, cwd: str | Path) -> str:
    """The value DVC's config editor needs: a folder relative to this process's working directory.

    DVC stores such a path relative to ``.dvc/``, so that a remote inside (or
    beside) the repository works from every clone; URLs are kept as they are.
    """
    return os.path.relpath(local_path(url, cwd)) if is_local_url(url) else url


def describe(url: str) -> str:
    """A URL for messages (user info and query stripped)."""
    return re.sub(r"//[^/@]*@", "//", url).split("?", 1)[0]


def write_remote_config(repo, name: str, *, read_url: str, push_url: str, cwd: str | Path, default: bool = True) -> None:
    """Record remote ``name`` (as the default): read URL in ``.dvc/config``, push URL in ``.dvc/config.local``.

    Args:
        repo: An open ``dvc.repo.Repo``.
        name: Remote name.
        read_url: What consumers read (committed).
        push_url: What this machine pushes to (only written when it differs).
        cwd: Folder that relative local URLs are relative to.
        default: Make it the default remote (``core.remote``); False for a second remote (the exact outputs').
    """
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"remote name {name!r} is not a plain name (letters, digits, '_', '.', '-')")
    read, push = config_url(read_url, cwd=cwd), config_url(push_url, cwd=cwd)
    with repo.config.edit("repo") as conf:
        conf["remote"][name] = {"url": read}
        if default:
            conf["core"]["remote"] = name
    with repo.config.edit("local") as conf:
        if push != read:
            conf["remote"][name] = {"url": push}
        else:
            conf["remote"].pop(name, None)
    path = Path(repo.dvc_dir) / "config"
    text = path.read_text()
    if not text.startswith(CONFIG_HEADER):
        path.write_text(CONFIG_HEADER + text)


def url_odb(repo_config, url: str, *, cwd: str | Path = "."):
    """The object store (``files/md5``) of the DVC remote at ``url``.

    Args:
        repo_config: A DVC config (``repo.config``), for remote settings such as ``checksum_jobs``.
        url: Remote URL or local folder.
        cwd: Folder that a relative local URL is relative to.

    Raises:
        ValueError: one line, e.g. a scheme whose plugin is not installed.
    """
    from dvc.exceptions import DvcException
    from dvc.fs import get_cloud_fs
    from dvc_data.hashfile.db import get_odb

    try:
        cls, conf, fs_path = get_cloud_fs(repo_config, url=str(local_path(url, cwd)) if is_local_url(url) else url)
        fs = cls(**conf)
    except (DvcException, ImportError) as e:
        raise ValueError(f"remote {describe(url)}: {_one_line(e)} (cloud remotes need their extra: "
                         "pip install -e .[s3], .[gs], .[azure] or .[ssh])") from None
    return get_odb(fs, fs.join(fs_path, "files", "md5"), hash_name="md5")


def check_reachable(odb, url: str, *, push: bool, inside: str | Path | None = None) -> None:
    """Refuse a remote that cannot be reached (or, for pushing, written).

    A local folder must exist or have an existing parent folder (or lie inside
    ``inside``, the repository, where the push makes it), and be writable for
    pushing; any other remote must answer an existence query.

    Args:
        odb: The remote's object store (:func:`url_odb`).
        url: The URL, for messages.
        push: Also require write access (local folders).
        inside: A folder under which a missing local remote may be created.

    Raises:
        ValueError: one line naming the remote and why.
    """
    where = describe(url)
    if odb.fs.protocol == "local":
        folder = Path(odb.path).parents[1]  # <remote>/files/md5
        base = folder if folder.exists() else folder.parent
        if inside is not None and not base.exists() and Path(inside).resolve() in folder.parents:
            base = next(p for p in folder.parents if p.exists())
        if not base.is_dir():
            raise ValueError(f"remote {where} is unreachable: {base} is not an existing folder")
        if push and not os.access(base, os.W_OK | os.X_OK):
            raise ValueError(f"remote {where} is not writable: {base}")
        return
    if odb.fs.protocol in ("http", "https"):
        _check_http(url)
        return
    try:
        odb.fs.exists(odb.path)
    except Exception as e:  # noqa: BLE001 - every backend raises its own errors; all mean unreachable
        raise ValueError(f"remote {where} is unreachable: {_one_line(e)}") from None


def _check_http(url: str, timeout: float = 15) -> None:
    """Any HTTP answer (a 404 of a folder URL included) means reachable; no answer does not.

    DVC's HTTP file system reports a refused connection as a missing file, so
    this asks the server directly.
    """
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        why = _one_line(reason) if isinstance(reason, BaseException) else reason
        raise ValueError(f"remote {describe(url)} is unreachable: {why}") from None


def missing_objects(odb, md5s: Iterable[str]) -> list[str]:
    """The md5s the remote's object store does not hold."""
    missing = []
    for md5 in md5s:
        try:
            ok = odb.exists(md5)
        except Exception as e:  # noqa: BLE001 - see check_reachable
            raise ValueError(f"remote {describe(str(odb.fs.unstrip_protocol(odb.path)))} is unreachable: "
                             f"{_one_line(e)}") from None
        if not ok:
            missing.append(md5)
    return missing


def prune_local(folder: str | Path, keep: set[str]) -> int:
    """Delete every object of a local remote folder that is not in ``keep``; returns how many.

    Only ``files/md5/<xx>/<rest>`` files are touched.
    """
    root = Path(folder) / "files" / "md5"
    removed = 0
    for f in sorted(root.glob("*/*")) if root.is_dir() else []:
        if f.is_file() and f.parent.name + f.name not in keep:
            f.unlink()
            removed += 1
    for d in sorted(root.glob("*")) if root.is_dir() else []:
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return removed


def folder_bytes(folder: str | Path) -> int:
    """Total size of the files under a folder."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."
