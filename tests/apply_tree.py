"""A 12-image split in each source layout and its clean manifest, for `imagenet-clean apply` and publishing.

:func:`make_split` writes the images and ``data/clean/<split>.parquet``;
:func:`expected_tree` is the ImageFolder tree ``apply`` must build from it and
:func:`tree_files` lists a built tree.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from imagenet_clean import io
from imagenet_clean.publish.apply import CLEAN_COLUMNS

# Label order deliberately not sorted, so ImageFolder's sorted indices differ from the labels.
WNIDS = ["n03000003", "n01000001", "n02000002", "n04000004"]


def write_jpeg(path: Path, rng: np.random.Generator) -> None:
    """A random 8x8 JPEG at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path, format="JPEG")


def _src_path(layout: str, wnid: str, i: int, k: int) -> str:
    if layout == "train":
        return f"{wnid}/{wnid}_{k}.JPEG"
    if layout == "val":
        return f"ILSVRC2012_val_{i + 1:08d}.JPEG"
    return f"{WNIDS.index(wnid)}/{k:04x}.jpeg"  # v2: same hex names in every folder


def make_split(tmp: Path, layout: str = "train", *, seed: int = 0, split: str | None = None):
    """A 12-image split in ``layout`` and its clean manifest.

    Decisions: image 0 of class 0 is fixed to class 1; image 2 of class 1 is
    removed; image 0 of class 3 is fixed to class 0; the rest of class 3 is
    merged into class 2, and class 3 keeps a placeholder. 7 keep, 2 fix, 2 merge.

    Returns:
        ``(root, manifest path, clean manifest rows)``.
    """
    rng = np.random.default_rng(seed)
    split = split or layout
    root = tmp / f"src_{split}"
    rows = []
    i = 0
    for label, wnid in enumerate(WNIDS):
        for k in range(3):
            rel = _src_path(layout, wnid, i, k)
            i += 1
            write_jpeg(root / rel, rng)
            new_label, action = label, "keep"
            if (label, k) == (1, 2):
                continue  # removed
            if (label, k) == (0, 0):
                new_label, action = 1, "fix"
            elif label == 3 and k == 0:
                new_label, action = 0, "fix"
            elif label == 3:
                new_label, action = 2, "merge"
            size = (root / rel).stat().st_size
            chash = None if k == 1 else io.file_digest(root / rel)  # some rows without a recorded hash
            rows.append((rel, rel, new_label, WNIDS[new_label], label, wnid, action, size, chash))
    ph = f"__placeholder__/{WNIDS[3]}.JPEG"
    rows.append((ph, ph, 3, WNIDS[3], 3, WNIDS[3], "placeholder", None, None))
    df = pd.DataFrame(rows, columns=list(CLEAN_COLUMNS)).astype({"size": "Int64"})
    manifest = tmp / "data" / "clean" / f"{split}.parquet"
    write_manifest(manifest, df, root=root, layout=layout, split=split)
    return root, manifest, df


def write_manifest(path: Path, df: pd.DataFrame, *, root: Path, layout: str, split: str) -> None:
    """Write ``df`` as a clean manifest of ``split`` with the metadata the clean stage records."""
    io.write_table(
        path,
        df,
        metadata={
            "root": str(root),
            "layout": layout,
            "split": split,
            "classes": "data/raw/classes.tsv",
            "num_classes": len(WNIDS),
            "thresholds": json.dumps({"fn": 1.0, "h1": 2, "h2": 3, "h3": 3}),
            "models": json.dumps(["resnet10t", "lcnet_050", "mobilenetv3_small_050"]),
        },
    )


def expected_tree(df: pd.DataFrame) -> dict[str, int]:
    """{dest: label} the tree must hold; on a name clash the first sample_id keeps the name."""
    out = {}
    for r in df.sort_values("sample_id").itertuples():
        name = "__placeholder__.JPEG" if r.action == "placeholder" else Path(r.path).name
        dest = f"{r.wnid}/{name}"
        if dest in out:
            dest = f"{r.wnid}/{r.sample_id.replace('/', '__')}"
        out[dest] = r.label
    return out


def tree_files(out: Path) -> set[str]:
    """Files and links of a built tree below its class folders, relative to ``out``."""
    return {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if (p.is_file() or p.is_symlink()) and p.parent != out
    }
