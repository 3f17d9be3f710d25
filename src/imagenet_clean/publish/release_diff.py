"""``imagenet-clean diff --rev A B``: what changed between two releases, split by split.

Each release's decisions tables are fetched through DVC's Python API and
checked against that release's ``dvc.lock`` (:mod:`.fetch`), then compared with
:func:`~imagenet_clean.cleanup.diff.diff_decisions` (rows matched by sample id,
then content hash). The params each release's clean stage ran with are compared
too, so a changed threshold shows beside the decisions it changed.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..cleanup.diff import diff_decisions, summarize
from ..io import read_table
from .fetch import fetch_release_file, open_release
from .lock import decision_splits, decisions_path, lock_params, parse_lock


@dataclass(frozen=True)
class SplitDiff:
    """The difference of one split between two releases.

    Attributes:
        split: Split name.
        rows: One row per changed decision (:func:`~imagenet_clean.cleanup.diff.diff_decisions`).
        summary: Counts per change kind and action transition.
        params: ``{key: (value in A, value in B)}`` for every clean-stage param that differs.
    """

    split: str
    rows: pd.DataFrame
    summary: dict[str, int]
    params: dict[str, tuple]


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _splits(lock_text: str) -> list[str]:
    return decision_splits(parse_lock(lock_text))


def diff_releases(repo: str, rev_a: str, rev_b: str, splits: list[str] | None = None) -> list[SplitDiff]:
    """Compare the decisions of two releases of one repository.

    Args:
        repo: Repository URL or path.
        rev_a: The old release (tag, branch, commit).
        rev_b: The new release.
        splits: Splits to compare; default: every split both releases' locks name.

    Raises:
        ValueError: a revision is unknown, lacks a split asked for, or a fetched table does not match its lock.
    """
    opened = {rev: open_release(repo, rev) for rev in (rev_a, rev_b)}
    locks = {}
    for rev, (fs, _) in opened.items():
        try:
            locks[rev] = fs.read_text("dvc.lock")
        except FileNotFoundError:
            raise ValueError(f"{repo}@{rev} has no dvc.lock: not a release of this pipeline") from None
    common = sorted(set(_splits(locks[rev_a])) & set(_splits(locks[rev_b])))
    if splits is None:
        splits = common
        if not splits:
            raise ValueError(f"{rev_a} and {rev_b} have no cleaned split in common")
    out = []
    with tempfile.TemporaryDirectory(prefix="imagenet-clean-diff-") as tmp:
        for split in splits:
            tables = []
            for i, rev in enumerate((rev_a, rev_b)):
                fs, commit = opened[rev]
                f = fetch_release_file(repo, rev, decisions_path(split), Path(tmp) / f"{i}-{split}.parquet",
                                       fs=fs, commit=commit, missing_hint=f" (no decisions for split {split!r})")
                tables.append(read_table(f.path))
            rows = diff_decisions(*tables)
            pa, pb = (_flat(lock_params(locks[r], f"clean@{split}")) for r in (rev_a, rev_b))
            params = {k: (pa.get(k), pb.get(k)) for k in sorted(set(pa) | set(pb)) if pa.get(k) != pb.get(k)}
            out.append(SplitDiff(split, rows, summarize(rows), params))
    return out
