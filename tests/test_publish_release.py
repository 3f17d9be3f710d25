"""`imagenet-clean publish`, `pull`, `apply --from` and `diff --rev` with real git and DVC (issue 17).

Every test works on a copy of one small pipeline project (tests/release_project.py)
published to a DVC remote committed inside it (``published/remote``, as this
repository's own), so a fresh ``git clone`` pulls offline. Refusals are checked
for their one-line message and for leaving nothing written: the config, the
card, the remote folder, the commits and the tags stay as they were.
"""
from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import pytest

from apply_tree import expected_tree, tree_files
from imagenet_clean.cli import main
from imagenet_clean.publish.fetch import split_repo_rev
from imagenet_clean.publish.release import publish
from release_project import Project, dvc, git, imagenet_clean, lock_outs, make_release_project, md5

CLEAN_OUTS = {f"data/{kind}/{s}.{ext}" for s in ("val", "v2")
              for kind, ext in (("clean", "parquet"), ("decisions", "parquet"), ("changes", "csv"))}


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Project:
    return make_release_project(tmp_path_factory.mktemp("release") / "p")


def copy_project(src: Project, dst: Path) -> Project:
    """A private copy of a project (repository and the user's image trees)."""
    shutil.copytree(src.repo.parent, dst, symlinks=True)
    return Project(dst / "repo", {s: dst / r.relative_to(src.repo.parent) for s, r in src.roots.items()}, src.clean)


@pytest.fixture
def project(origin, tmp_path) -> Project:
    """A private copy of the unpublished project."""
    return copy_project(origin, tmp_path / "p")


@pytest.fixture(scope="module")
def released(origin, tmp_path_factory) -> Project:
    """The project published as release v1 to its committed remote (published/remote); tests only read it."""
    project = copy_project(origin, tmp_path_factory.mktemp("released") / "p")
    publish(project.repo, str(project.repo / "published" / "remote"), tag="v1", prune=True)
    return project


@pytest.fixture
def published(released, tmp_path) -> Project:
    """A private copy of the released project, for tests that change it."""
    return copy_project(released, tmp_path / "p")


def snapshot(repo: Path) -> dict:
    """Everything a refused publish must leave as it was."""
    files = {p: (repo / p).read_bytes() if (repo / p).is_file() else None
             for p in (".dvc/config", ".dvc/config.local", "published/CARD.md")}
    remote = repo / "published" / "remote"
    objects = sorted(p.relative_to(remote).as_posix() for p in remote.rglob("*")) if remote.exists() else None
    return {"files": files, "remote": objects, "head": git("rev-parse", "HEAD", cwd=repo),
            "tags": git("tag", cwd=repo), "status": git("status", "--porcelain", cwd=repo)}


def cli_error(capsys, *args: str) -> str:
    """Run the CLI in-process, expecting the one-line error of a refusal; returns that line."""
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    assert exc.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("imagenet-clean: error:")]
    assert len(errors) == 1, errors
    return errors[0]


# ------------------------------------------------------------------ publish


def test_publish_pushes_what_users_need_writes_card_records_remote_commits_and_tags(released):
    repo = released.repo
    locked = lock_outs(repo)
    remote = repo / "published" / "remote" / "files" / "md5"
    held = {p.parent.name + p.name for p in remote.glob("*/*")}
    assert held == {locked[p] for p in CLEAN_OUTS}, "only the clean stages' outputs are pushed"
    assert locked["data/models/m.bin"] not in held

    config = (repo / ".dvc" / "config").read_text()
    assert "remote = published" in config and "url = ../published/remote" in config  # relative: works in any clone
    assert not (repo / ".dvc" / "config.local").exists() or "published" not in (repo / ".dvc/config.local").read_text()

    card = (repo / "published" / "CARD.md").read_text()
    for path in CLEAN_OUTS:
        assert f"| `{path}` | {locked[path]} |" in card
    assert "| val | 12 | 9 | 2 | 1 | 12 | 7 | 2 | 2 | 0 | 1 |" in card  # counts per split and action
    assert "3565 (7.13 %)" in card and "292 (2.9 %)" in card  # the paper's counts beside ours
    assert "h3: 2" in card and "resnet10t" in card  # params from dvc.lock, models from the manifests

    assert git("status", "--porcelain", cwd=repo).strip() == ""
    assert git("rev-parse", "v1^{commit}", cwd=repo) == git("rev-parse", "HEAD", cwd=repo)
    committed = set(git("show", "--name-only", "--format=", "HEAD", cwd=repo).split())
    assert {".dvc/config", "published/CARD.md"} <= committed
    assert {f"published/remote/files/md5/{m[:2]}/{m[2:]}" for m in held} <= committed


def test_fresh_clone_pulls_the_release_offline_and_its_hashes_match_the_lock(released, tmp_path):
    clone = tmp_path / "clone"
    git("clone", "-q", str(released.repo), str(clone), cwd=tmp_path)
    assert not (clone / "data").exists()
    dvc("pull", "clean", cwd=clone)
    locked = lock_outs(clone)
    assert {p: md5(clone / p) for p in CLEAN_OUTS} == {p: locked[p] for p in CLEAN_OUTS}
    assert not (clone / "data" / "models").exists()
    assert git("status", "--porcelain", cwd=clone).strip() == ""


def test_publish_all_pushes_every_cached_output(project):
    res = publish(project.repo, str(project.repo.parent / "remote"), everything=True, commit=False)
    held = {p.parent.name + p.name for p in (project.repo.parent / "remote" / "files" / "md5").glob("*/*")}
    assert lock_outs(project.repo)["data/models/m.bin"] in held and len(res.files) == len(CLEAN_OUTS) + 1
    assert git("log", "--oneline", cwd=project.repo).count("\n") == 1  # --no-commit: git untouched


def test_publish_refuses_a_stale_pipeline_naming_the_stages(project, capsys):
    (project.repo / "params.yaml").write_text("h3: 3\n")
    before = snapshot(project.repo)
    err = cli_error(capsys, "publish", "--repo", str(project.repo), "--remote", str(project.repo / "published/remote"),
                    "--tag", "v1")
    assert re.search(r"not up to date, stale stage\(s\): clean@v2, clean@val; run `dvc repro`", err), err
    assert snapshot(project.repo) == before and not (project.repo / "published").exists()


def test_publish_refuses_missing_metrics(project, capsys):
    (project.repo / "metrics" / "summary.json").unlink()
    before = snapshot(project.repo)
    err = cli_error(capsys, "publish", "--repo", str(project.repo), "--remote", str(project.repo / "published/remote"))
    assert "metrics missing" in err and "metrics/summary.json" in err
    assert snapshot(project.repo) == before


def test_publish_refuses_an_unreachable_remote(project, capsys):
    before = snapshot(project.repo)
    err = cli_error(capsys, "publish", "--repo", str(project.repo), "--remote", str(project.repo.parent / "no" / "such" / "remote"))
    assert "unreachable" in err and "no/such" in err
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = cli_error(capsys, "publish", "--repo", str(project.repo), "--remote", str(project.repo.parent / "r"),
                    "--read-url", f"http://127.0.0.1:{port}/r")
    assert "unreachable" in err and f"127.0.0.1:{port}" in err
    assert snapshot(project.repo) == before and not (project.repo.parent / "r").exists()


def test_publish_refuses_an_existing_tag(project, capsys):
    git("tag", "v1", cwd=project.repo)
    before = snapshot(project.repo)
    err = cli_error(capsys, "publish", "--repo", str(project.repo), "--remote", str(project.repo / "published/remote"),
                    "--tag", "v1")
    assert "tag 'v1' already exists" in err
    assert snapshot(project.repo) == before


def test_publish_refuses_uncommitted_pipeline_code(project, capsys):
    script = project.repo / "make_outputs.py"
    script.write_text(script.read_text() + "# edited\n")
    dvc("commit", "-f", "-q", cwd=project.repo)  # the lock follows the edit, git does not
    before = snapshot(project.repo)
    err = cli_error(capsys, "publish", "--repo", str(project.repo), "--remote", str(project.repo / "published/remote"))
    assert "uncommitted changes" in err and "make_outputs.py" in err
    assert snapshot(project.repo) == before


# ------------------------------------------------------------------ pull in a clone


def test_pull_names_the_release_and_the_files_the_remote_lacks(released, tmp_path):
    clone = tmp_path / "clone"
    git("clone", "-q", str(released.repo), str(clone), cwd=tmp_path)
    gone = lock_outs(clone)["data/clean/val.parquet"]
    (clone / "published/remote/files/md5" / gone[:2] / gone[2:]).unlink()
    res = imagenet_clean("pull", cwd=clone, check=False)
    assert res.returncode == 1
    err = [line for line in res.stderr.splitlines() if line.startswith("imagenet-clean: error:")]
    assert len(err) == 1 and "release v1" in err[0] and "data/clean/val.parquet" in err[0] and gone in err[0]
    assert not (clone / "data").exists(), "nothing is pulled from an incomplete release"


def test_pull_deletes_a_file_that_does_not_match_the_lock(released, tmp_path):
    clone = tmp_path / "clone"
    git("clone", "-q", str(released.repo), str(clone), cwd=tmp_path)
    bad = lock_outs(clone)["data/clean/val.parquet"]
    (clone / "published/remote/files/md5" / bad[:2] / bad[2:]).write_bytes(b"not the manifest")
    res = imagenet_clean("pull", cwd=clone, check=False)
    assert res.returncode == 1 and "data/clean/val.parquet" in res.stderr and "does not match" in res.stderr.replace("do(es)", "does")
    assert not (clone / "data/clean/val.parquet").exists()
    (clone / "published/remote/files/md5" / bad[:2] / bad[2:]).unlink(missing_ok=True)  # DVC may drop it itself
    git("checkout", "-q", "--", "published", cwd=clone)  # the committed object again
    out = imagenet_clean("pull", cwd=clone).stdout
    assert json.loads(out.splitlines()[-1])["pulled"] >= 1
    assert md5(clone / "data/clean/val.parquet") == bad


# ------------------------------------------------------------------ consumers without a clone


def test_apply_from_a_release_fetches_checks_and_applies(released, tmp_path):
    out = tmp_path / "cleaned"
    url = f"file://{released.repo}"
    res = imagenet_clean("apply", "--from", f"{url}@v1", "--split", "val", "--root", str(released.roots["val"]),
                         "--out", str(out), cwd=tmp_path)
    counts = json.loads(res.stdout.splitlines()[-1])
    commit = git("rev-parse", "v1^{commit}", cwd=released.repo).strip()
    assert counts["source"] == f"{url}@{commit}" and counts["removed"] == 1
    want = expected_tree(released.clean["val"])
    assert tree_files(out) == set(want)
    assert commit in (out / "README.md").read_text() and "cl_fix" in (out / "README.md").read_text()


def test_get_fetches_one_file_of_a_release_through_a_git_url(released, tmp_path):
    """`dvc get` of a git URL cannot read a remote committed in the repository; `imagenet-clean get` can."""
    got = tmp_path / "val.decisions.parquet"
    imagenet_clean("get", f"file://{released.repo}@v1", "data/decisions/val.parquet", "-o", str(got), cwd=tmp_path)
    assert md5(got) == lock_outs(released.repo)["data/decisions/val.parquet"]
    by_path = tmp_path / "val.clean.parquet"  # dvc get of the repository's path reads the committed remote
    dvc("get", str(released.repo), "data/clean/val.parquet", "-o", str(by_path), cwd=tmp_path)
    assert md5(by_path) == lock_outs(released.repo)["data/clean/val.parquet"]


def test_apply_from_a_revision_without_the_split_is_refused(released, tmp_path, capsys):
    out = tmp_path / "cleaned"
    err = cli_error(capsys, "apply", "--from", f"file://{released.repo}@v1", "--split", "train",
                    "--root", str(released.roots["val"]), "--out", str(out))
    assert "no clean manifest for split 'train'" in err and "v2, val" in err
    err = cli_error(capsys, "apply", "--from", f"file://{released.repo}@nope", "--split", "val",
                    "--root", str(released.roots["val"]), "--out", str(out))
    assert "unknown Git revision 'nope'" in err
    assert not out.exists()


def test_apply_from_refuses_a_manifest_that_does_not_match_the_lock(published, tmp_path, capsys):
    bad = lock_outs(published.repo)["data/clean/val.parquet"]
    other = lock_outs(published.repo)["data/clean/v2.parquet"]
    obj = published.repo / "published/remote/files/md5"
    shutil.copy(obj / other[:2] / other[2:], obj / bad[:2] / bad[2:])  # a valid manifest, but not this one
    git("commit", "-q", "-am", "tampered remote", cwd=published.repo)
    git("tag", "tampered", cwd=published.repo)
    shutil.rmtree(published.repo / ".dvc" / "cache")  # so the object can only come from the remote
    out = tmp_path / "cleaned"
    err = cli_error(capsys, "apply", "--from", f"file://{published.repo}@tampered", "--split", "val",
                    "--root", str(published.roots["val"]), "--out", str(out))
    assert "data/clean/val.parquet" in err and f"dvc.lock says {bad}" in err and "not used" in err
    assert not out.exists()


def test_diff_compares_two_releases_by_revision(published, tmp_path):
    repo = published.repo
    (repo / "params.yaml").write_text("h3: 3\n")
    dvc("repro", "-q", cwd=repo)
    git("add", "params.yaml", cwd=repo)
    git("commit", "-q", "-m", "stricter consensus", cwd=repo)
    publish(repo, str(repo / "published" / "remote"), tag="v2", prune=True)
    held = list((repo / "published/remote/files/md5").glob("*/*"))
    assert len(held) == len(CLEAN_OUTS), "--prune keeps only this release's objects (git history keeps v1's)"

    res = imagenet_clean("diff", "--rev", "v1", "v2", "--repo", f"file://{repo}", "--out", str(tmp_path / "d"), cwd=tmp_path)
    blocks = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert {b["split"]: b["keep->remove"] for b in blocks} == {"val": 1, "v2": 1}
    assert "param h3: 2 -> 3" in res.stdout
    assert (tmp_path / "d" / "val.csv").read_text().count("\n") == 2  # header + one changed decision


def test_split_repo_rev():
    assert split_repo_rev("https://github.com/org/imagenet-clean@v1") == ("https://github.com/org/imagenet-clean", "v1")
    assert split_repo_rev("git@github.com:org/imagenet-clean.git") == ("git@github.com:org/imagenet-clean.git", None)
    assert split_repo_rev("git@github.com:org/imagenet-clean.git@v2") == ("git@github.com:org/imagenet-clean.git", "v2")
    assert split_repo_rev("/srv/imagenet-clean") == ("/srv/imagenet-clean", None)


def test_an_always_run_stage_is_not_stale_but_its_changed_dependents_are(tmp_path):
    """The scan@<split> stages run on every `dvc repro` by design: publish refuses only what is really out of date."""
    import subprocess

    from dvc.repo import Repo

    from imagenet_clean.publish.release import stale_stages

    def sh(*cmd):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)

    sh("git", "init", "-q")
    sh("dvc", "init", "-q")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  scan:\n    cmd: echo listing > listing.txt\n    always_changed: true\n    outs:\n      - listing.txt:\n          cache: false\n"
        "  use:\n    cmd: cat listing.txt src.txt > used.txt\n    deps: [listing.txt, src.txt]\n    outs: [used.txt]\n")
    (tmp_path / "src.txt").write_text("a\n")
    sh("dvc", "repro", "-q")
    with Repo(str(tmp_path)) as repo:
        assert stale_stages(repo) == []
    (tmp_path / "src.txt").write_text("b\n")
    with Repo(str(tmp_path)) as repo:
        assert stale_stages(repo) == ["use"]
