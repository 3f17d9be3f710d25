"""The release committed in this repository pulls in a fresh clone, offline (issue 17).

This clones the repository's committed HEAD into a temporary folder, as a new
user would, and runs ``dvc pull clean`` there: the clean manifests, decisions
and change lists of every cleaned split must arrive from the remote committed
beside the code (``published/remote``), byte-identical to what the clone's
``dvc.lock`` names. The remote must hold exactly those files and stay under
2 MB, and the card (``published/CARD.md``) must name the same checksums.

It checks whatever ``dvc.lock`` says at HEAD, so it keeps passing across
pipeline changes as long as the release is refreshed with
``imagenet-clean publish --remote published/remote --prune`` after ``dvc repro``
and committed with it (docs/publishing.md).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from release_project import dvc, git, md5

PROJECT = Path(__file__).resolve().parents[1]
REMOTE = "published/remote"
MAX_REMOTE_BYTES = 2 * 1024 * 1024
REFRESH = "imagenet-clean publish --remote published/remote --prune"


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    if not (PROJECT / ".git").exists():
        pytest.skip("not a git checkout")
    dst = tmp_path_factory.mktemp("fresh") / "imagenet-clean"
    git("clone", "-q", "--no-hardlinks", str(PROJECT), str(dst), cwd=dst.parent)
    return dst


def clean_outs(clone: Path) -> dict[str, str]:
    """``path -> md5`` of the clean stages' cached outputs in the clone's dvc.lock."""
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for name, st in lock["stages"].items() if name.split("@")[0] == "clean"
            for o in st.get("outs", []) if not o["path"].startswith("metrics/")}


def test_fresh_clone_pulls_the_committed_release_matching_dvc_lock(clone):
    want = clean_outs(clone)
    assert {Path(p).parent.as_posix() for p in want} == {"data/clean", "data/decisions", "data/changes"}
    objects = clone / REMOTE / "files" / "md5"
    assert objects.is_dir(), f"HEAD has no committed release in {REMOTE}/: after `dvc repro`, run `{REFRESH}` and commit"
    held = {p.parent.name + p.name for p in objects.glob("*/*") if p.is_file()}
    assert held == set(want.values()), (
        f"{REMOTE}/ does not hold exactly the clean outputs of HEAD's dvc.lock "
        f"(missing {sorted(set(want.values()) - held)}, extra {sorted(held - set(want.values()))}): run `{REFRESH}`")
    size = sum(p.stat().st_size for p in (clone / REMOTE).rglob("*") if p.is_file())
    assert size < MAX_REMOTE_BYTES, f"{REMOTE}/ holds {size} bytes"

    dvc("pull", "clean", cwd=clone)
    assert {p: md5(clone / p) for p in want} == want
    assert git("status", "--porcelain", cwd=clone).strip() == ""


def test_committed_card_names_the_released_checksums(clone):
    path = clone / "published" / "CARD.md"
    assert path.is_file(), f"HEAD has no published/CARD.md: after `dvc repro`, run `{REFRESH}` and commit"
    card = path.read_text()
    for path, digest in clean_outs(clone).items():
        assert f"| `{path}` | {digest} |" in card, f"published/CARD.md is stale for {path}: run `{REFRESH}`"
