"""`imagenet-clean` commands of releases: publish, pull, get."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer


def publish(
    remote: str = typer.Option(..., "--remote", help="Push URL: a local folder, s3://, gs://, azure://, ssh:// or http(s)://."),
    tag: Optional[str] = typer.Option(None, "--tag", help="Git tag for the release commit (must not exist yet)."),
    read_url: Optional[str] = typer.Option(None, "--read-url",
                                           help="URL readers fetch from, committed in .dvc/config (default: --remote)."),
    name: str = typer.Option("published", "--name", help="DVC remote name to record (made the default)."),
    everything: bool = typer.Option(False, "--all", help="Also push models, predictions, manifests and raw data."),
    prune: bool = typer.Option(False, "--prune", help="Remove earlier releases' objects from a local folder remote "
                                   "(one committed in git keeps them in its history)."),
    commit: bool = typer.Option(True, "--commit/--no-commit", help="Commit (and tag) the release files."),
    exact_remote: Optional[str] = typer.Option(None, "--exact-remote",
                                               help="Also push every DVC output (models, predictions, raw data) to this "
                                                    "URL, recorded as remote 'exact': what `pull --exact` restores."),
    exact_read_url: Optional[str] = typer.Option(None, "--exact-read-url",
                                                 help="URL readers fetch the exact outputs from (default: --exact-remote)."),
    repo: Path = typer.Option(Path("."), "--repo", help="The pipeline repository."),
) -> None:
    """Publish the pipeline's cleaned splits: check, push, write published/CARD.md, record the remote, commit, tag.

    Refuses, with nothing written, a stale pipeline (naming the stale stages),
    missing metrics, an unreachable remote, an existing tag, or uncommitted
    changes to the pipeline's code. Pushes the clean manifests, decisions and
    change lists (metrics and the card go with the git commit); --all pushes
    every DVC output. --exact-remote pushes every DVC output to a second
    remote, 'exact', kept out of the committed one (docs/publishing.md).
    """
    from ..publish.release import publish as run

    if exact_read_url is not None and exact_remote is None:
        raise typer.BadParameter("--exact-read-url needs --exact-remote", param_hint="--exact-read-url")
    res = run(repo, remote, tag=tag, read_url=read_url, name=name, everything=everything, prune=prune, commit=commit,
              exact_remote=exact_remote, exact_read_url=exact_read_url)
    for f in res.files:
        typer.echo(f"pushed {f.path} (md5 {f.md5}, {f.size} bytes)")
    typer.echo(f"remote {res.remote_name!r}: push {res.push_url}, read {res.read_url}; card {res.card}"
               + (f"; release commit {res.commit[:10]}" if res.commit else "; not committed (--no-commit)")
               + (f", tag {res.tag}" if res.tag else ""))
    if res.exact_url:
        typer.echo(f"exact outputs: {len(res.exact_files)} outputs ({res.exact_bytes} bytes) on remote 'exact', "
                   f"read {res.exact_url}")
    typer.echo(json.dumps({"files": len(res.files), "bytes": res.pushed_bytes, "pruned": res.pruned,
                           "remote_bytes": res.remote_bytes, "commit": res.commit, "tag": res.tag,
                           "exact_files": len(res.exact_files), "exact_bytes": res.exact_bytes}, sort_keys=True))


def pull(
    targets: Optional[List[str]] = typer.Argument(None, help="Stages (clean, clean@val) or output paths (default: clean)."),
    exact: bool = typer.Option(False, "--exact", help="Restore every output dvc.lock names (models, predictions, raw data), "
                                                      "byte-identical: `dvc repro` then runs no stage."),
    remote: Optional[str] = typer.Option(None, "--remote", help="With --exact: a remote name or URL "
                                                                "(default: the release's 'exact' remote, else its default)."),
    repo: Path = typer.Option(Path("."), "--repo", help="The clone to pull into."),
) -> None:
    """`dvc pull` of a release's cleaned splits, checked against dvc.lock.

    Refuses (pulling nothing) when the remote lacks files of the release, naming
    the release and the files; deletes a pulled file whose md5 is not the lock's.
    With --exact, restores every output instead, all or nothing: a missing or
    mismatching entry is one line naming its stage, and nothing is restored.
    """
    if exact:
        from ..publish.exact import pull_exact

        if targets:
            raise typer.BadParameter("--exact restores every output; give no targets", param_hint="TARGETS")
        res = pull_exact(repo, remote=remote)
        typer.echo(f"restored {len(res['restored'])} outputs, {len(res['present'])} already in place "
                   f"({res['bytes']} bytes in all); `dvc repro` now runs no stage")
        typer.echo(json.dumps({"restored": len(res["restored"]), "already_present": len(res["present"]),
                               "bytes": res["bytes"]}, sort_keys=True))
        return
    if remote is not None:
        raise typer.BadParameter("--remote applies to --exact", param_hint="--remote")
    from ..publish.fetch import pull_release

    res = pull_release(repo, list(targets or []) or None)
    for p in res["pulled"]:
        typer.echo(f"pulled {p}")
    typer.echo(json.dumps({"pulled": len(res["pulled"]), "already_present": len(res["present"])}, sort_keys=True))


def get(
    source: str = typer.Argument(..., help="A release: <repo-url-or-path>[@rev]."),
    path: str = typer.Argument(..., help="A DVC output of the release, e.g. data/clean/val.parquet."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Where to write it (default: its file name, here)."),
) -> None:
    """Fetch one published file of a release without cloning, checked against the release's dvc.lock.

    Like `dvc get`, and also for a release whose remote is a folder committed
    in the repository (which `dvc get` of a URL cannot read).
    """
    from ..publish.fetch import fetch_release_file, split_repo_rev

    repo, rev = split_repo_rev(source)
    got = fetch_release_file(repo, rev, path, out or Path(Path(path).name))
    typer.echo(f"{got.path}: {got.repo_path} of {got.repo}@{got.commit} (md5 {got.md5}, as in its dvc.lock)")


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.command("publish")(publish)
    app.command("pull")(pull)
    app.command("get")(get)
