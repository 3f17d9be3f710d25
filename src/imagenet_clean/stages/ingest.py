"""Stage ``ingest@split``: ``splits.<split>`` -> the split's manifest and its ingest statistics."""
from __future__ import annotations

from ..config import Params
from ..constants import SKIPPED_WHY
from ..workspace import Workspace
from .common import skip_reason


def run(params: Params, ws: Workspace, split: str) -> dict:
    """Read a configured split's image headers and boxes into ``ws.manifest(split)``; statistics to ``ws.ingest_metrics(split)``.

    A split that params.yaml does not configure, or whose ``root`` is null, is
    skipped: an empty manifest and ``{"skipped": true}`` metrics are written so
    the DVC stage's outputs exist. Wall-clock figures go to the untracked timing
    log (:mod:`imagenet_clean.timing`), so reruns stay byte-identical.

    Returns:
        The statistics (with the wall-clock figures).
    """
    from ..classes import load_classes
    from ..data.ingest import ingest_split, manifest_table_empty, write_manifest
    from ..data.sources import source_of
    from ..io import write_json, write_table
    from ..leftovers import sweep_outputs
    from ..timing import record_timing, split_timing

    out, metrics = ws.manifest(split), ws.ingest_metrics(split)
    sweep_outputs([out, metrics])  # what a killed run's atomic writes left (leftovers.py)
    sc = params.splits.get(split)
    why = skip_reason(params, split)
    if why:
        meta = {"root": "", "layout": sc.layout if sc else "", "split": split, "classes": params.dataset.classes, "num_classes": 0}
        write_table(out, manifest_table_empty(), metadata=meta)
        stats = {"split": split, "skipped": True, SKIPPED_WHY: why, "n_files": 0, "n_ok": 0, "n_error": 0}
        write_json(metrics, stats)
        return stats
    source_of(params)  # the split's layout is one its source reads
    classes = load_classes(params.dataset.classes)
    ic = params.ingest
    df, stats = ingest_split(
        sc.root, layout=sc.layout, classes=classes, annotations=sc.annotations, labels=sc.labels,
        workers=ic.workers, max_pixels=ic.max_pixels, hash=ic.hash,
    )
    stats = {"split": split, "skipped": False, **stats}
    write_manifest(out, df, root=sc.root, layout=sc.layout, split=split,
                   classes=params.dataset.classes, num_classes=len(classes))
    tracked, timing = split_timing(stats)
    write_json(metrics, tracked)
    record_timing(f"ingest@{split}", timing)
    return stats
