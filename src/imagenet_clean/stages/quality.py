"""Stage ``quality@split``: the split's manifest and images -> ``ws.quality(split)``, the image-quality measures."""
from __future__ import annotations

from ..config import Params
from ..workspace import Workspace
from .common import skip_reason, split_root


def run(params: Params, ws: Workspace, split: str) -> dict:
    """Measure every image of the split's manifest (:mod:`imagenet_clean.data.quality`) into ``ws.quality(split)``.

    One row per manifest row, in its order; unreadable images get no figures and
    their reason. A skipped split (see ``ingest``) gets an empty file. Wall-clock
    figures go to the untracked timing log, so reruns are byte-identical.

    Returns:
        Counts (``n``, ``ok``, ``error``) and the seconds taken.
    """
    import time

    from ..data.quality import QUALITY_SCHEMA, measure_split, quality_table
    from ..io import read_metadata, read_table, write_table
    from ..leftovers import sweep_outputs
    from ..timing import record_timing

    out = ws.quality(split)
    sweep_outputs([out])
    why = skip_reason(params, split)
    if why:
        write_table(out, QUALITY_SCHEMA.empty_table(), metadata={"split": split, "skipped": "true"})
        return {"split": split, "skipped": True, "n": 0, "ok": 0, "error": 0}
    t0 = time.perf_counter()
    manifest = read_table(ws.manifest(split))
    meta = read_metadata(ws.manifest(split))
    root = split_root(meta, params, split, ws)
    df = measure_split(manifest, root, max_pixels=params.ingest.max_pixels, workers=params.ingest.workers)
    write_table(out, quality_table(df), metadata={"split": split, "root": meta.get("root", "")})
    seconds = time.perf_counter() - t0
    stats = {"split": split, "skipped": False, "n": int(len(df)), "ok": int((df["status"] == "ok").sum()),
             "error": int((df["status"] == "error").sum())}
    record_timing(f"quality@{split}", {"seconds": round(seconds, 3), "images_per_s": round(len(df) / seconds, 1) if seconds else None})
    return {**stats, "seconds": seconds}
