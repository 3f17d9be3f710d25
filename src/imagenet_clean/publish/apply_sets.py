"""``apply --label-sets``: what the cleaned tree does with the images kept with a label set (docs/label-sets.md)."""
from __future__ import annotations

import json

LABEL_SETS_FILE = "label_sets.csv"  # path,labels,wnids of every image kept with a label set (--label-sets csv)

LABEL_SET_MODES = {
    "csv": "keep them under the first label of their set and write every set to label_sets.csv beside the tree",
    "first": "keep them under the first label of their set; write no set",
    "drop": "leave them out of the tree, like removed images",
}
"""What ``apply`` does with the images kept with a label set (action ``relabel_set``), by ``--label-sets`` value."""
DEFAULT_LABEL_SETS = "csv"
"""Lossless and ImageFolder-safe: the tree is the ``first`` tree (what training uses) and no set is thrown away."""


def check_label_sets_mode(value: str) -> str:
    """``value`` when it is a :data:`LABEL_SET_MODES` key.

    Raises:
        ValueError: naming the value and the known ones (one line).
    """
    if value not in LABEL_SET_MODES:
        raise ValueError(f"--label-sets {value!r} is not one of {', '.join(LABEL_SET_MODES)}")
    return value


def format_label_sets(entries, set_of: dict[str, tuple[int, ...]], class_order: list[str]) -> str:
    """``label_sets.csv``: one row per tree entry with a label set, ``path,labels,wnids``, sorted by path.

    ``path`` is the entry's path in the tree (as in the file list), ``labels`` the set
    as a JSON list of class indices (``classes.txt`` order, the first is the entry's
    folder), ``wnids`` the same set as a JSON list of class ids.
    """
    import csv
    import io as _io

    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("path", "labels", "wnids"))
    for dest, the_set in sorted((e.dest, set_of[e.sample_id]) for e in entries if e.sample_id in set_of):
        w.writerow((dest, json.dumps(list(the_set), separators=(",", ":")),
                    json.dumps([class_order[c] if c < len(class_order) else str(c) for c in the_set], ensure_ascii=False,
                               separators=(",", ":"))))
    return buf.getvalue()
