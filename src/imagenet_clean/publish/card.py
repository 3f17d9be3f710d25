"""The dataset card (Markdown) written beside an applied tree.

The card says where the data came from and what cleaning changed: source split,
counts before and after, what each rule and merge did, thresholds, models,
pipeline version and git revision, how to load it, and how to cite. Its text
depends only on its inputs (no dates), so re-applying leaves it byte-identical.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd

from .. import __version__
from ..io import file_digest

PAPER_CITATION = """@article{kertesz2021imagenetclean,
  title   = {Automated Cleanup of the ImageNet Dataset by Model Consensus, Explainability and Confident Learning},
  author  = {Kert{\\'e}sz, Csaba},
  journal = {arXiv preprint arXiv:2103.16324},
  year    = {2021}
}"""

TOOL_CITATION = """@software{imagenet_clean,
  title   = {imagenet-clean: a reproducible DVC pipeline for automated ImageNet cleanup},
  version = {%s},
  note    = {git revision %s}
}"""

RULE_TEXT = {
    "cl_fix": "label fixed: enough models' confident learning agreed on a new label (h1, fewer than 3 candidates)",
    "cl_remove": "removed: confident learning candidates held h2 or more distinct labels",
    "consensus": "removal candidate: C_s >= h3 models missed the label in their top-5",
    "cam_exempt": "saved from consensus removal: a model's CAMs covered the bounding box",
    "unreadable": "removed: the image could not be read",
    "label_set": "kept with a label set: the image plausibly shows several classes (filed under the first)",
}
LABEL_SET_NOTE = {
    "csv": "filed under the first class of the set; every set in `label_sets.csv`",
    "first": "filed under the first class of the set; the sets are not written",
    "drop": "left out of this tree (counted as removed)",
}
"""The card's note on the label-set row, per ``--label-sets`` value."""


def git_revision(path: str | Path) -> str | None:
    """``git rev-parse HEAD`` of the repository holding ``path``; None without git or a repository."""
    path = Path(path)
    where = path if path.is_dir() else path.parent
    try:
        res = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    rev = res.stdout.strip()
    return rev if res.returncode == 0 and rev else None


def _json_meta(meta: dict[str, str], key: str):
    try:
        return json.loads(meta[key])
    except (KeyError, ValueError):
        return meta.get(key)


def _table(rows: list[tuple], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_card(
    clean: pd.DataFrame,
    meta: dict[str, str],
    counts: dict,
    *,
    split: str,
    manifest_path: str | Path,
    file_list: str,
    class_order: list[str],
    decisions: pd.DataFrame | None = None,
    revision: str | None = None,
) -> str:
    """The card's Markdown text.

    Args:
        clean: The clean manifest rows.
        meta: The clean manifest's schema metadata (``root``, ``layout``,
            ``thresholds``, ``models``, ...).
        counts: The counts :func:`~imagenet_clean.publish.apply.apply_clean` returns.
        split: Split name.
        manifest_path: The clean manifest file (hashed, and used to find the git revision).
        file_list: Name of the ``path<TAB>label`` list in the tree.
        class_order: Class ids in label order.
        decisions: Optional decisions table, for per-rule counts.
        revision: Git revision; default: looked up from ``manifest_path``.
    """
    manifest_path = Path(manifest_path)
    revision = revision or git_revision(manifest_path) or "unknown"
    used = counts["source_files"] - counts["removed"]
    n_real = counts["images"] - counts["placeholders"]
    lines = [
        f"# Cleaned {split} split",
        "",
        "Built by `imagenet-clean apply` from a clean manifest: the split cleaned by model consensus, "
        "explainability and confident learning (Kertész 2021), folded into ImageFolder layout "
        "(`<wnid>/<file>`).",
        "",
        "## Source",
        "",
        f"- split: `{split}` (layout `{meta.get('layout', 'unknown')}`); the pipeline read it from `{meta.get('root', 'unknown')}`",
        f"- clean manifest: `{manifest_path.name}`, BLAKE2b-128 `{file_digest(manifest_path)}`",
        f"- imagenet-clean {__version__}, git revision `{revision}`",
        "",
        "## Counts",
        "",
        _table(
            [
                ("image files under the source root", counts["source_files"], ""),
                ("images taken (kept, fixed or merged)", used - counts["deepaugment"], ""),
                ("DeepAugment copies following their original", counts["deepaugment"], ""),
                ("left out (removed)", counts["removed"], ""),
                ("labels fixed", counts["relabelled"], "action fix, fix+merge"),
                ("moved by a class merge", counts["merged"], "action merge, fix+merge"),
                ("placeholders (emptied classes)", counts["placeholders"], "one black image each"),
                ("files in this tree", counts["images"], f"{n_real} real + {counts['placeholders']} placeholders"),
                ("class folders", counts["classes"], f"of {len([c for c in class_order if c])} classes"),
                *([("images with a label set", counts["label_sets"], LABEL_SET_NOTE.get(counts.get("label_sets_mode"), ""))]
                  if "label_sets" in counts else []),
            ],
            ("what", "count", "note"),
        ),
        "",
        "## What each rule changed",
        "",
    ]
    if decisions is not None and "rules" in decisions.columns:
        rule_counts: dict[str, int] = {}
        for rules in decisions["rules"]:
            for r in list(rules) if rules is not None else []:
                rule_counts[r] = rule_counts.get(r, 0) + 1
        act = decisions["action"].value_counts() if "action" in decisions.columns else {}
        lines += [
            f"Decisions over {len(decisions)} manifest rows: "
            + ", ".join(f"{k} {int(act.get(k, 0))}" for k in ("keep", "fix", "remove", "relabel_set")
                        if k != "relabel_set" or int(act.get(k, 0)))
            + ".",
            "",
            _table([(r, n, RULE_TEXT.get(r, "")) for r, n in sorted(rule_counts.items())], ("rule", "samples", "meaning")),
            "",
        ]
    else:
        lines += ["(Per-rule counts need the decisions table: pass `--decisions data/decisions/<split>.parquet`.)", ""]
    fixes = clean[clean["action"].isin(["fix", "fix+merge"])]
    if len(fixes):
        top = fixes.groupby(["orig_wnid", "wnid"]).size().sort_values(ascending=False, kind="stable").head(20)
        lines += ["Most frequent label fixes (original -> clean):", "", _table([(a, b, n) for (a, b), n in top.items()], ("from", "to",
                                                                                                                          "samples")), ""]
    merged = clean[clean["action"].isin(["merge", "fix+merge"])]
    emptied = sorted(clean.loc[clean["action"] == "placeholder", "wnid"])
    if len(merged):
        pairs = merged.groupby(["orig_wnid", "wnid"]).size()
        lines += ["Class merges (after fixes and removals):", "", _table([(a, b, n) for (a, b), n in pairs.items()], ("from", "into",
                                                                                                                      "samples")), ""]
    if emptied:
        lines += [f"Emptied classes, each holding one black placeholder: {', '.join(emptied)}.", ""]
    thresholds, models = _json_meta(meta, "thresholds"), _json_meta(meta, "models")
    lines += [
        "## Settings",
        "",
        f"- thresholds: `{json.dumps(thresholds, sort_keys=True) if thresholds is not None else 'not recorded'}`",
        f"- models: `{json.dumps(models, sort_keys=True) if models is not None else 'not recorded'}`",
        "",
        "## Loading",
        "",
        f"`{file_list}` lists every image as `<wnid>/<file><TAB><label>`; it is authoritative. "
        "`classes.txt` holds the class ids in label order (line i = label i).",
        "",
        "torchvision's `ImageFolder` numbers the class folders in sorted order. For ImageNet-1k "
        "(whose label order is the sorted wnids, and where every class keeps at least a placeholder) "
        "that index equals the clean label. Otherwise map it:",
        "",
        "```python",
        "from torchvision.datasets import ImageFolder",
        "ds = ImageFolder(ROOT)",
        "order = open(f'{ROOT}/classes.txt').read().splitlines()",
        "to_label = {i: order.index(w) for i, w in enumerate(ds.classes)}",
        "ds.target_transform = to_label.__getitem__",
        "```",
        "",
        "timm reads the label order itself: "
        "`timm.data.create_dataset('', root=ROOT, split='', class_map='classes.txt')`.",
        "",
        "## Citation",
        "",
        "```bibtex",
        PAPER_CITATION,
        "",
        TOOL_CITATION % (__version__, revision),
        "```",
        "",
    ]
    return "\n".join(lines)
