"""``imagenet-clean publish``: check, push, record, commit and tag a release in one step.

Order matters for "nothing half-written": every check runs before anything is
written (pipeline up to date, metrics present, tag free, remote reachable, the
code the lock depends on committed); then the remote config is recorded, the
files pushed, the card written and the release committed; a failure there
restores ``.dvc/config``, ``.dvc/config.local`` and the card as they were
(objects already uploaded stay: they are content-addressed, so a later push
reuses them). The tag comes last, on the release commit.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import gitops
from .lock import CLEAN_STAGE, LockedFile, cached_outs, clean_splits
from .release_card import CARD_PATH, Release, render_release_card, split_order
from .remote import (
    check_reachable,
    describe,
    dvc_errors,
    folder_bytes,
    is_local_url,
    local_path,
    missing_objects,
    prune_local,
    url_odb,
    write_remote_config,
)

RELEASE_FILES = ("dvc.yaml", "dvc.lock", "params.yaml", ".dvc/config", CARD_PATH)
"""Git-tracked files every release commit includes (plus metrics and an in-repository remote)."""


@dataclass
class PublishResult:
    """What ``publish`` did.

    Attributes:
        remote_name: The remote recorded in ``.dvc/config``.
        read_url: What consumers read.
        push_url: Where the files were pushed.
        files: The published DVC outputs.
        pushed_bytes: Their total size.
        commit: The release commit (None with ``commit=False``).
        tag: The tag made (None without one).
        pruned: Objects of earlier releases removed from a local remote.
        remote_bytes: Size of a local remote folder after publishing (None for others).
        exact_url: Read URL of the exact-outputs remote (None without ``exact_remote``).
        exact_files: Every cached output, pushed there.
        exact_bytes: Their total size.
    """

    remote_name: str
    read_url: str
    push_url: str
    files: list[LockedFile]
    pushed_bytes: int
    commit: str | None = None
    tag: str | None = None
    pruned: int = 0
    remote_bytes: int | None = None
    card: str = field(default=CARD_PATH)
    exact_url: str | None = None
    exact_files: list[LockedFile] = field(default_factory=list)
    exact_bytes: int = 0


def stale_stages(repo) -> list[str]:
    """Stages ``dvc status`` reports as changed (sorted).

    A stage whose only status is DVC's ``always changed`` (``always_changed: true``, the ``scan@<split>``
    listing checks) is not stale: it runs on every ``dvc repro`` by design, and what depends on it is
    reported on its own when the listing it wrote differs.
    """
    from dvc.exceptions import DvcException

    try:
        return sorted(str(k).rsplit("dvc.yaml:", 1)[-1] for k, v in repo.status().items() if v != ["always changed"])
    except DvcException as e:
        raise ValueError(f"dvc status failed: {' '.join(str(e).split())}") from None


def metrics_files(repo) -> list[str]:
    """Every metrics path the pipeline declares (stage metrics and ``dvc.yaml``'s top-level ``metrics:``)."""
    import yaml

    root = Path(repo.root_dir)
    paths = {Path(o.fs_path).relative_to(root).as_posix() for o in repo.index.outs if o.metric}
    dvc_yaml = root / "dvc.yaml"
    top = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("metrics") if dvc_yaml.is_file() else None
    paths.update(str(m) for m in top or [] if isinstance(m, str))
    return sorted(paths)


def missing_metrics(root: Path, paths: list[str]) -> list[str]:
    """Metrics paths that are absent or empty (a folder counts when it holds a file)."""
    missing = []
    for p in paths:
        f = root / p
        if f.is_dir():
            if not any(x.is_file() for x in f.rglob("*")):
                missing.append(p)
        elif not f.is_file() or f.stat().st_size == 0:
            missing.append(p)
    return missing


def published_outs(repo, *, everything: bool) -> list[LockedFile]:
    """The cached outputs to push: the clean stages' (clean manifests, decisions, change lists), or all with ``everything``."""
    lock, outs = cached_outs(repo)
    out = []
    for rel, stage in outs:
        if not everything and stage.split("@")[0] != CLEAN_STAGE:
            continue
        locked = lock.get(rel)
        if locked is None:
            raise ValueError(f"dvc.lock names no hash for {rel} (run `dvc repro` first)")
        out.append(locked)
    if not out:
        raise ValueError("the pipeline has no clean@<split> outputs to publish (dvc.yaml has no 'clean' stage)")
    return sorted(out, key=lambda f: f.path)


def git_tracked_outs(repo) -> list[str]:
    """Outputs kept in git rather than the DVC cache (``cache: false``: the metrics), relative to the root."""
    root = Path(repo.root_dir)
    return sorted(Path(o.fs_path).relative_to(root).as_posix() for o in repo.index.outs if not o.use_cache)


def code_dependencies(repo) -> list[str]:
    """Files the pipeline depends on that live in git: its code and inputs that are no DVC output.

    The release files themselves (``params.yaml`` ...) are left out: the release commit includes them.
    """
    root = Path(repo.root_dir)
    outs = [Path(o.fs_path) for o in repo.index.outs]
    deps = set()
    for stage in repo.index.stages:
        for d in stage.deps:
            path = Path(d.fs_path)
            if root not in path.parents or any(path == o or o in path.parents or path in o.parents for o in outs):
                continue
            deps.add(path.relative_to(root).as_posix())
    return sorted(deps - set(RELEASE_FILES))


@contextmanager
def restore_on_failure(paths: list[Path]) -> Iterator[None]:
    """Put ``paths`` back as they were (content, or absence) when the block raises."""
    saved = {p: (p.read_bytes() if p.is_file() else None) for p in paths}
    try:
        yield
    except BaseException:
        for p, data in saved.items():
            if data is None:
                p.unlink(missing_ok=True)
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
        raise


def publish(
    root: str | Path,
    remote: str,
    *,
    tag: str | None = None,
    read_url: str | None = None,
    name: str = "published",
    everything: bool = False,
    prune: bool = False,
    commit: bool = True,
    cwd: str | Path = ".",
    exact_remote: str | None = None,
    exact_read_url: str | None = None,
) -> PublishResult:
    """Publish the current pipeline outputs as a release.

    Args:
        root: Any folder inside the pipeline's git + DVC repository.
        remote: Push URL (local folder, ``s3://``, ``gs://``, ``azure://``, ``ssh://``, ``http(s)://``).
        tag: Git tag to create on the release commit.
        read_url: URL consumers read (committed); default: ``remote``.
        name: DVC remote name to record.
        everything: Push every cached output (models, predictions, raw data), not only what users need.
        prune: Remove objects of earlier releases from a local remote (for a remote committed in git,
            whose history keeps them).
        commit: Commit the release files (and tag); False leaves git alone.
        cwd: Folder that relative local URLs are relative to.
        exact_remote: Also push every cached output (the full set ``imagenet-clean pull --exact`` restores) to
            this URL, recorded as the second remote ``exact`` (publish/exact.py).
        exact_read_url: URL consumers read the full set from (committed); default: ``exact_remote``.

    Returns:
        What was done.

    Raises:
        ValueError: a one-line reason; nothing was written.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    top = gitops.repo_root(root)
    if not (top / ".dvc").is_dir():
        raise ValueError(f"{top} is not a DVC repository (no .dvc/)")
    if tag is not None:
        if not commit:
            raise ValueError("--tag needs the release commit (leave out --no-commit)")
        gitops.check_tag_name(top, tag)
        existing = gitops.tag_commit(top, tag)
        if existing:
            raise ValueError(f"tag {tag!r} already exists (commit {existing[:10]}); a release name is used once, "
                             "choose another --tag")
    read_url = read_url or remote
    if prune and not is_local_url(remote):
        raise ValueError("--prune only applies to a local folder remote")

    with dvc_errors("publish"), Repo(str(top)) as repo:
        stale = stale_stages(repo)
        if stale:
            raise ValueError(f"the pipeline is not up to date, stale stage(s): {', '.join(stale)}; "
                             "run `dvc repro` first (nothing published)")
        metrics = metrics_files(repo)
        missing = missing_metrics(top, metrics)
        if missing:
            raise ValueError(f"metrics missing or empty: {', '.join(missing)}; run `dvc repro` first (nothing published)")
        files = published_outs(repo, everything=everything)
        tracked_outs = git_tracked_outs(repo)
        if commit:
            changed = gitops.dirty(top, code_dependencies(repo))
            if changed:
                shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
                raise ValueError(f"uncommitted changes to files the pipeline depends on: {shown}; commit them first "
                                 "(a release's dvc.lock must match its code), or pass --no-commit")
        push_odb = url_odb(repo.config, remote, cwd=cwd)
        check_reachable(push_odb, remote, push=True, inside=top)
        read_odb = push_odb if read_url == remote else url_odb(repo.config, read_url, cwd=cwd)
        if read_url != remote:
            check_reachable(read_odb, read_url, push=False)
        exact_files, exact_odb = [], None
        if exact_remote is not None:
            exact_read_url = exact_read_url or exact_remote
            exact_files = published_outs(repo, everything=True)
            check_reachable(url_odb(repo.config, exact_remote, cwd=cwd), exact_remote, push=True, inside=top)
            exact_odb = url_odb(repo.config, exact_read_url, cwd=cwd)
            if exact_read_url != exact_remote:
                check_reachable(exact_odb, exact_read_url, push=False)
        shown_url = read_url
        if is_local_url(read_url) and top.resolve() in local_path(read_url, cwd).parents:
            shown_url = f"{local_path(read_url, cwd).relative_to(top.resolve()).as_posix()}/ (a folder committed in this repository)"
        card_text = render_release_card(
            Release(top, tag, name, shown_url, {f.path: f for f in files}, (top / "dvc.lock").read_text()),
            sorted(clean_splits([f.path for f in files]), key=split_order),
        )

    config_files = [top / ".dvc" / "config", top / ".dvc" / "config.local", top / CARD_PATH]
    with restore_on_failure(config_files), dvc_errors("publish"):
        with Repo(str(top)) as repo:
            write_remote_config(repo, name, read_url=read_url, push_url=remote, cwd=cwd)
        with Repo(str(top)) as repo:
            try:
                repo.push(targets=[str(top / f.path) for f in files], remote=name)
            except DvcException as e:
                raise ValueError(f"dvc push to {describe(remote)} failed: {' '.join(str(e).split())}") from None
        lost = missing_objects(read_odb, [f.md5 for f in files])
        if lost:
            paths = [f.path for f in files if f.md5 in lost]
            raise ValueError(f"after pushing, the read URL {describe(read_url)} does not serve {', '.join(paths)}; "
                             "check that it exposes the push URL's folder (release not recorded)")
        if exact_remote is not None:
            _push_exact(top, exact_files, exact_remote, exact_read_url, exact_odb, cwd=cwd)
        pruned = prune_local(local_path(remote, cwd), {f.md5 for f in files}) if prune else 0
        (top / CARD_PATH).parent.mkdir(parents=True, exist_ok=True)
        (top / CARD_PATH).write_text(card_text)
        result = PublishResult(name, read_url, remote, files, sum(f.size or 0 for f in files), pruned=pruned)
        if is_local_url(remote):
            result.remote_bytes = folder_bytes(local_path(remote, cwd))
        if exact_remote is not None:
            result.exact_url, result.exact_files = exact_read_url, exact_files
            result.exact_bytes = sum(f.size or 0 for f in exact_files)
        if commit:
            message = f"Release {tag}: " if tag else "Release: "
            result.commit = gitops.commit_paths(top, _release_paths(top, tracked_outs, remote, cwd),
                                                message + f"clean splits published to DVC remote {name!r}")
    if tag:
        try:
            gitops.create_tag(top, tag, f"imagenet-clean release {tag} (remote {name}: {describe(read_url)})")
        except ValueError as e:
            raise ValueError(f"the release is committed ({result.commit[:10]}) but not tagged: {e}") from None
        result.tag = tag
    return result


def _push_exact(top: Path, files: list[LockedFile], push_url: str, read_url: str, read_odb, *, cwd) -> None:
    """Record the remote ``exact`` (not the default) and push every cached output there; check the read URL serves them."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    from .exact import EXACT_REMOTE

    with Repo(str(top)) as repo:
        write_remote_config(repo, EXACT_REMOTE, read_url=read_url, push_url=push_url, cwd=cwd, default=False)
        with repo.config.edit("repo") as conf:  # a folder outside the repository: absolute, so a clone anywhere finds it
            conf["remote"][EXACT_REMOTE]["url"] = _exact_url(top, read_url, cwd, conf["remote"][EXACT_REMOTE]["url"])
    with Repo(str(top)) as repo:
        try:
            repo.push(targets=[str(top / f.path) for f in files], remote=EXACT_REMOTE)
        except DvcException as e:
            raise ValueError(f"dvc push of the exact outputs to {describe(push_url)} failed: {' '.join(str(e).split())}") from None
    lost = missing_objects(read_odb, [f.md5 for f in files])
    if lost:
        raise ValueError(f"after pushing, the exact read URL {describe(read_url)} does not serve "
                         f"{', '.join(f.path for f in files if f.md5 in lost)} (release not recorded)")


def _exact_url(top: Path, url: str, cwd, recorded: str) -> str:
    """A local folder outside the repository as an absolute path (a clone elsewhere finds the same folder)."""
    if is_local_url(url) and top.resolve() not in local_path(url, cwd).parents:
        return str(local_path(url, cwd))
    return recorded


def _release_paths(top: Path, tracked_outs: list[str], remote: str, cwd: str | Path) -> list[str]:
    """The git paths of a release commit: pipeline files, git-tracked outputs, the card, an in-repository remote."""
    paths = [p for p in RELEASE_FILES if (top / p).exists()]
    paths += [p for p in tracked_outs if (top / p).exists()]
    if is_local_url(remote):
        folder = local_path(remote, cwd)
        if top.resolve() in folder.parents:
            paths.append(folder.relative_to(top.resolve()).as_posix())
    return paths
