"""The dataset card: provenance, counts, rules, settings, loading and citation."""
from __future__ import annotations

import subprocess

import pandas as pd

from apply_tree import WNIDS, make_split
from imagenet_clean.publish.apply import load_clean_manifest
from imagenet_clean.publish.card import git_revision, render_card

COUNTS = {
    "split": "val", "mode": "symlink", "source_files": 12, "images": 12, "classes": 4, "kept": 7,
    "relabelled": 2, "merged": 2, "placeholders": 1, "deepaugment": 0, "removed": 1,
    "created": 12, "unchanged": 0, "stale_removed": 0,
}


def _card(tmp_path, **kw):
    _, manifest, _ = make_split(tmp_path, "val")
    clean, meta = load_clean_manifest(manifest)
    kw.setdefault("revision", "abc123")
    return render_card(clean, meta, COUNTS, split="val", manifest_path=manifest, file_list="val.txt", class_order=WNIDS, **kw)


def test_card_states_source_counts_settings_and_citation(tmp_path):
    text = _card(tmp_path)
    assert text.startswith("# Cleaned val split")
    for needle in [
        "layout `val`",
        "git revision `abc123`",
        "| image files under the source root | 12 |",
        "| left out (removed) | 1 |",
        "| labels fixed | 2 |",
        "| placeholders (emptied classes) | 1 |",
        '"h3": 3',
        "resnet10t",
        "| n04000004 | n02000002 | 2 |",  # the merge
        "Emptied classes, each holding one black placeholder: n04000004.",
        "arXiv:2103.16324",
        "classes.txt",
        "--decisions",
    ]:
        assert needle in text, needle


def test_card_is_deterministic_and_counts_rules_from_decisions(tmp_path):
    decisions = pd.DataFrame(
        {
            "sample_id": ["a", "b", "c", "d"],
            "action": ["keep", "fix", "remove", "keep"],
            "rules": [[], ["cl_fix"], ["consensus"], ["consensus", "cam_exempt"]],
        }
    )
    _, manifest, _ = make_split(tmp_path, "val")
    clean, meta = load_clean_manifest(manifest)
    render = lambda: render_card(  # noqa: E731
        clean, meta, COUNTS, split="val", manifest_path=manifest, file_list="val.txt", class_order=WNIDS,
        decisions=decisions, revision="abc",
    )
    a = render()
    assert a == render()
    assert "keep 2, fix 1, remove 1" in a
    assert "| consensus | 2 |" in a and "| cam_exempt | 1 |" in a and "| cl_fix | 1 |" in a
    assert "--decisions" not in a


def test_card_without_recorded_settings(tmp_path):
    _, manifest, _ = make_split(tmp_path, "val")
    clean, _ = load_clean_manifest(manifest)
    text = render_card(clean, {}, COUNTS, split="val", manifest_path=manifest, file_list="val.txt", class_order=WNIDS, revision="x")
    assert "thresholds: `not recorded`" in text and "layout `unknown`" in text


def test_git_revision(tmp_path):
    assert git_revision(tmp_path / "nowhere.parquet") is None  # not a repository
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("x")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-q", "-m", "m"], check=True, env={**__import__("os").environ, **env})
    rev = git_revision(tmp_path / "f")
    assert rev is not None and len(rev) == 40
