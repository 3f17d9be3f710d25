"""Stage ``scan@split`` (always run): the split root's listing fingerprint, so ``dvc repro`` notices tree changes."""
from __future__ import annotations

from ..config import Params
from ..workspace import Workspace


def run(params: Params, ws: Workspace, split: str) -> dict:
    """Write ``ws.scan(split)``: :func:`imagenet_clean.data.scan.scan_split` of ``splits.<split>``.

    The JSON changes only when a file under the root is added, moved, removed
    or rewritten (path, size, mtime), or the labels CSV changes; otherwise it
    is byte-identical and DVC reruns nothing downstream. A source whose trees
    are DVC outputs already (the embedded ``generate``) records no listing.
    For a source whose class list is its training split's (``folders``), the
    train scan also lists the classes (``dataset.classes: data/scan/train.json``).

    Returns:
        The JSON written.
    """
    from ..data.scan import scan_split
    from ..data.sources import source_of
    from ..io import write_json
    from ..leftovers import sweep_outputs

    out = ws.scan(split)
    sweep_outputs([out])
    source = source_of(params)
    sc = params.splits.get(split)
    if sc is None or not sc.root:
        result = {"split": split, "skipped": True}
    elif source.tree_in_dvc:
        result = {"split": split, "skipped": False, "source": source.name, "listing": "none: the tree is a DVC output"}
    else:
        result = {"source": source.name, **scan_split(split, ws.resolve(sc.root), layout=sc.layout,
                                                      labels=ws.resolve(sc.labels) if sc.labels else None,
                                                      class_list=source.classes_from_train and split == "train")}
    write_json(out, result)
    return result
