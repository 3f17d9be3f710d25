"""``imagenet-clean apply --from <repo>[@rev]``: apply a published split without cloning.

The clean manifest (and the decisions table, for the card's per-rule counts)
of the split are fetched through DVC's Python API, each checked against the
release's ``dvc.lock`` (:mod:`.fetch`), into a temporary folder, and handed to
:func:`~imagenet_clean.publish.apply.apply_clean`. The card records the
repository, the revision and the commit it resolved to.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from .apply import apply_clean
from .fetch import fetch_release_file, open_release
from .lock import clean_manifest_path, clean_splits, decisions_path, parse_lock


def apply_from_release(repo: str, rev: str | None, split: str, root: str | Path, out: str | Path, **apply_kw) -> dict:
    """Fetch a release's clean manifest of ``split`` and build the cleaned tree from it.

    Args:
        repo: Repository URL or path of the release.
        rev: Git revision (tag, branch, commit); None: the default branch.
        split: Split name (``train``, ``val``, ``v2``).
        root: The user's copy of the original split.
        out: The new dataset folder.
        **apply_kw: Passed to :func:`~imagenet_clean.publish.apply.apply_clean` (``mode``, ``workers`` ...).

    Returns:
        The counts of ``apply_clean``, plus ``source`` (``repo@commit``).

    Raises:
        ValueError: the revision has no clean manifest for the split, a fetched file does not match
            the lock, or anything ``apply_clean`` refuses.
    """
    fs, commit = open_release(repo, rev)
    where = f"{repo}@{rev}" if rev else repo
    try:
        lock = parse_lock(fs.read_text("dvc.lock"))
    except FileNotFoundError:
        raise ValueError(f"{where} has no dvc.lock: not a release of this pipeline") from None
    have = clean_splits(lock)
    hint = f"; it has clean manifests for {', '.join(have)}" if have else "; it has no clean manifest at all"
    if clean_manifest_path(split) not in lock:
        raise ValueError(f"{where} has no clean manifest for split {split!r}{hint}")
    with tempfile.TemporaryDirectory(prefix="imagenet-clean-from-") as tmp:
        manifest = fetch_release_file(repo, rev, clean_manifest_path(split), Path(tmp) / f"{split}.parquet",
                                      fs=fs, commit=commit)
        decisions = None
        if decisions_path(split) in lock:
            decisions = fetch_release_file(repo, rev, decisions_path(split), Path(tmp) / "decisions.parquet",
                                           fs=fs, commit=commit).path
        source = f"{repo}@{commit}"
        counts = apply_clean(manifest.path, root, out, decisions=decisions, revision=source, **apply_kw)
    counts["source"] = source
    return counts
