"""The few git operations a release needs (run as ``git`` subprocesses)."""
from __future__ import annotations

import subprocess
from pathlib import Path


def git(root: str | Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``git -C root args``; with ``check``, a failure becomes a one-line ValueError."""
    try:
        res = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    except OSError as e:
        raise ValueError(f"cannot run git: {e.strerror or e}") from None
    if check and res.returncode != 0:
        msg = " ".join((res.stderr or res.stdout).split()) or f"exit code {res.returncode}"
        raise ValueError(f"git {' '.join(args[:2])} failed in {root}: {msg}")
    return res


def repo_root(path: str | Path) -> Path:
    """The top folder of the git repository holding ``path``."""
    res = git(path, "rev-parse", "--show-toplevel", check=False)
    if res.returncode != 0:
        raise ValueError(f"{path} is not inside a git repository (a release is a git revision)")
    return Path(res.stdout.strip())


def check_tag_name(root: str | Path, tag: str) -> None:
    """Refuse a tag name git would reject."""
    if git(root, "check-ref-format", f"refs/tags/{tag}", check=False).returncode != 0 or tag.startswith("-"):
        raise ValueError(f"{tag!r} is not a valid git tag name")


def tag_commit(root: str | Path, tag: str) -> str | None:
    """The commit a tag points at, or None when the tag does not exist."""
    res = git(root, "rev-parse", "-q", "--verify", f"refs/tags/{tag}^{{commit}}", check=False)
    return res.stdout.strip() if res.returncode == 0 else None


def head(root: str | Path) -> str | None:
    """The commit HEAD points at, or None in a repository without commits."""
    res = git(root, "rev-parse", "-q", "--verify", "HEAD^{commit}", check=False)
    return res.stdout.strip() if res.returncode == 0 else None


def release_name(root: str | Path) -> str:
    """``<tag>`` when HEAD is exactly a tag, else the short commit (``abc1234``), else ``the workspace``."""
    res = git(root, "describe", "--tags", "--exact-match", "HEAD", check=False)
    if res.returncode == 0 and res.stdout.strip():
        return res.stdout.strip()
    rev = head(root)
    return f"commit {rev[:10]}" if rev else "the workspace"


def dirty(root: str | Path, paths: list[str]) -> list[str]:
    """Files under ``paths`` that differ from HEAD: changed (staged or not), deleted, or new and not ignored."""
    if not paths:
        return []
    res = git(root, "status", "--porcelain", "--untracked-files=all", "--", *paths)
    return sorted({line[3:].split(" -> ")[-1] for line in res.stdout.splitlines() if line.strip()})


def commit_paths(root: str | Path, paths: list[str], message: str) -> str:
    """Stage ``paths`` (new, changed and deleted files) and commit only them; returns the new commit."""
    git(root, "add", "-A", "--", *paths)
    staged = git(root, "diff", "--cached", "--name-only", "--", *paths).stdout.split()
    if staged:
        git(root, "commit", "-q", "-m", message, "--", *paths)
    elif head(root) is None:
        raise ValueError("nothing to commit in a repository without commits")
    return head(root) or ""


def create_tag(root: str | Path, tag: str, message: str) -> None:
    """An annotated tag on HEAD."""
    git(root, "tag", "-a", tag, "-m", message)
