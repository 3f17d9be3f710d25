"""The dataset card of a release (``published/CARD.md``), written by ``imagenet-clean publish``.

It says what was published and from which params: counts per split and action
(next to the paper's ImageNet counts), the thresholds and models each split
was cleaned with, the ``params.yaml`` values ``dvc.lock`` recorded for each
clean stage, where to fetch the files and their checksums. Its text depends
only on its inputs (no dates), so publishing the same outputs twice writes the
same card.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import __version__
from ..cleanup.rules import ACTION_SET
from ..evaluate.paper import PAPER_TRAIN_CHANGES, PAPER_V2_CHANGES
from ..io import read_metadata, read_table
from ..workspace import Workspace
from .lock import LockedFile, clean_manifest_path, decisions_path, lock_params

CARD_PATH = "published/CARD.md"
"""Where the card of the current release lives, relative to the repository root."""

PAPER_VAL_CHANGES = {"fixes": 3565, "removals": 2471, "fixes_pct": 7.13, "removals_pct": 4.9}
"""Paper section 4.1: changes to the ILSVRC12 validation set (50,000 images)."""

PAPER_CHANGES = {"train": PAPER_TRAIN_CHANGES, "val": PAPER_VAL_CHANGES, "v2": PAPER_V2_CHANGES}
PAPER_SIZES = {"train": 1281167, "val": 50000, "v2": 10000}
"""Images per ImageNet split in the paper (section 4): T, V and ImageNetV2 matched frequency."""
DECISION_ACTIONS = ("keep", "fix", "remove")
CLEAN_ACTIONS = ("keep", "fix", "merge", "fix+merge", "placeholder")


@dataclass(frozen=True)
class Release:
    """What a card describes.

    Attributes:
        root: The repository root (the workspace the outputs are read from).
        tag: Release name (git tag), or None.
        remote_name: DVC remote name in ``.dvc/config``.
        read_url: The URL consumers read (as given to ``publish``).
        files: The published DVC outputs, by path.
        lock_text: The ``dvc.lock`` text the outputs belong to.
    """

    root: Path
    tag: str | None
    remote_name: str
    read_url: str
    files: dict[str, LockedFile]
    lock_text: str


def split_order(split: str) -> tuple[int, str]:
    """Sort key: the paper's order (train, val, v2), then any other split by name."""
    order = ("train", "val", "v2")
    return (order.index(split) if split in order else len(order), split)


def _table(rows: list[tuple], header: tuple[str, ...]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def _pct(n: int, total: int) -> str:
    return f"{n} ({100 * n / total:.1f} %)" if total else str(n)


def split_counts(root: Path, split: str) -> dict[str, int]:
    """Counts of one split: manifest rows, decisions per action, clean-manifest rows per action."""
    dec = read_table(root / decisions_path(split), columns=["action"])
    clean = read_table(root / clean_manifest_path(split), columns=["action"])
    d, c = dec["action"].value_counts(), clean["action"].value_counts()
    out = {"samples": len(dec), "clean_rows": len(clean)}
    out.update({f"decision_{a}": int(d.get(a, 0)) for a in DECISION_ACTIONS})
    out.update({f"clean_{a}": int(c.get(a, 0)) for a in CLEAN_ACTIONS})
    if int(d.get(ACTION_SET, 0)) or int(c.get(ACTION_SET, 0)):  # label sets (issue 30): only where there are some
        out.update({f"decision_{ACTION_SET}": int(d.get(ACTION_SET, 0)), f"clean_{ACTION_SET}": int(c.get(ACTION_SET, 0))})
    return out


def _settings(root: Path, split: str) -> tuple[object, object, object]:
    """``(thresholds, resolved thresholds, models)`` of a split, from its cleanup metrics and clean manifest."""
    metrics = Workspace(root).cleanup_metrics(split)
    m = json.loads(metrics.read_text()) if metrics.is_file() else {}
    meta = read_metadata(root / clean_manifest_path(split))
    try:
        models = json.loads(meta["models"])
    except (KeyError, ValueError):
        models = m.get("models")
    return m.get("thresholds"), m.get("thresholds_resolved"), models


def render_release_card(release: Release, splits: list[str]) -> str:
    """The card's Markdown text.

    Args:
        release: What was published.
        splits: The cleaned splits to describe (their decisions and clean manifests must be in the workspace).
    """
    root = release.root
    counts = {s: split_counts(root, s) for s in splits}
    lines = [
        f"# imagenet-clean release {release.tag or '(untagged)'}",
        "",
        "Cleaned splits made by model consensus, explainability and confident learning (Kertész 2021) with "
        f"imagenet-clean {__version__}. The files below are DVC outputs of this revision's `dvc.lock`; "
        "the images themselves are not published (the clean manifests name them by path, size and content hash).",
        "",
        "## Fetching",
        "",
        f"DVC remote `{release.remote_name}` (the default in `.dvc/config`), read from `{release.read_url}`.",
        "",
        "```bash",
        "dvc pull clean                    # in a clone: clean manifests, decisions and change lists of every split",
        "imagenet-clean pull               # the same, checked against dvc.lock, naming any file the remote lacks",
        f"imagenet-clean get <repository>{'@' + release.tag if release.tag else ''} data/clean/val.parquet"
        "   # without a clone, checked against dvc.lock",
        f"dvc get <repository> data/clean/val.parquet{' --rev ' + release.tag if release.tag else ''}"
        "   # a remote committed in the repository: from a local clone's path",
        "```",
        "",
        "## Counts per split and action",
        "",
        "Decisions are one row per image of the split; the clean manifest holds the kept and fixed images after "
        "class merges, plus one placeholder row per class a merge emptied.",
        "",
    ]
    rows = []
    sets = any(f"clean_{ACTION_SET}" in counts[s] for s in splits)
    for s in splits:
        c = counts[s]
        rows.append((s, c["samples"], c["decision_keep"], c["decision_fix"], c["decision_remove"],
                     *((c.get(f"decision_{ACTION_SET}", 0),) if sets else ()), c["clean_rows"],
                     c["clean_keep"], c["clean_fix"], c["clean_merge"], c["clean_fix+merge"], c["clean_placeholder"],
                     *((c.get(f"clean_{ACTION_SET}", 0),) if sets else ())))
    lines += _table(rows, ("split", "images", "keep", "fix", "remove", *(("label set",) if sets else ()), "clean rows", "kept",
                           "fixed", "merged", "fixed+merged", "placeholders", *(("kept with a label set",) if sets else ())))
    if sets:
        lines += ["", "A label set keeps an image that plausibly shows several classes under the first class of its set; "
                  "the clean manifest's `labels` column holds the whole set (docs/label-sets.md)."]
    lines += ["", "## Beside the paper's ImageNet counts", "",
              "The paper's figures are for real ImageNet (sections 4.1-4.3); the embedded default is a miniature "
              "with injected errors, so only the shape compares, not the numbers.", ""]
    rows = []
    for s in splits:
        c, p = counts[s], PAPER_CHANGES.get(s)
        paper = (f"{p['fixes']} ({p['fixes_pct']} %)", f"{p['removals']} ({p['removals_pct']} %)", PAPER_SIZES[s]) if p else ("-", "-", "-")
        rows.append((s, c["samples"], _pct(c["decision_fix"], c["samples"]), _pct(c["decision_remove"], c["samples"]), paper[2], paper[0],
                     paper[1]))
    lines += _table(rows, ("split", "images", "fixed (ours)", "removed (ours)", "images (paper)", "fixed (paper)", "removed (paper)"))
    lines += ["", "## Thresholds and models", ""]
    rows = []
    for s in splits:
        thresholds, resolved, models = _settings(root, s)
        rows.append((s, f"`{json.dumps(thresholds, sort_keys=True)}`", f"`{json.dumps(resolved, sort_keys=True)}`",
                     ", ".join(models) if isinstance(models, list) else f"`{json.dumps(models, sort_keys=True)}`"))
    lines += _table(rows, ("split", "thresholds", "resolved (models)", "models"))
    lines += ["", "The `params.yaml` values each clean stage ran with (from `dvc.lock`):", ""]
    for s in splits:
        params = lock_params(release.lock_text, f"clean@{s}")
        lines += [f"`clean@{s}`:", "", "```yaml", yaml.safe_dump(params, sort_keys=True).rstrip(), "```", ""]
    lines += ["## Checksums", "", "md5 as in `dvc.lock` (what `dvc pull` and `imagenet-clean pull` check):", ""]
    files = sorted(release.files.values(), key=lambda f: f.path)
    lines += _table([(f"`{f.path}`", f.md5, f.size if f.size is not None else "") for f in files], ("file", "md5", "bytes"))
    lines += ["", "## Citation", "", "Kertész, C. (2021). Automated Cleanup of the ImageNet Dataset by Model Consensus, "
              "Explainability and Confident Learning. arXiv:2103.16324.", ""]
    return "\n".join(lines)
