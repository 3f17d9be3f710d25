"""The duplicate pairs the review app shows: ``data/duplicates/<pair>.parquet`` of the pairs that involve a split.

Stage ``duplicates`` (:mod:`imagenet_clean.stages.duplicates`) writes one file per split pair
(``train-train``, ``train-val``, ... ``v2-v2``) with :data:`~imagenet_clean.cleanup.duplicates.PAIR_COLUMNS`.
:class:`DuplicateIndex` keeps the pairs with the reviewed split on either side (pairs across splits are
leakage), and, read on first use, the manifest rows of their images in every split, so that the app can
serve both copies by ``(split, sample_id)``: only images of a listed pair, never a path from the request.
A project without the stage's outputs has no pairs; the app then shows no duplicate section.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..cleanup.duplicates import LEAKAGE_PAIRS, PAIR_COLUMNS, pair_name
from ..io import read_metadata
from ..workspace import Workspace

NOT_PAIRS = ("no_features", "removals")
"""Files of ``data/duplicates/`` that are not pairs."""
FILE_COLUMNS = ("sample_id", "path", "boxes", "status")
PAIR_SCHEMA = pa.schema([(c, pa.float64() if c == "distance" else pa.string()) for c in PAIR_COLUMNS])
"""The pairs as read (an empty file's columns may be typed null, a pandas one's large_string)."""
BATCH = 65_536


def reason_line(kind: str, distance: float, split_a: str, split_b: str, *, max_distance: float | None = None) -> str:
    """Why a pair is listed: ``exact copy: the same content hash``, or the near copy's distance; leakage named.

    Example: ``near copy: cosine distance 0.0123 of the pooled features (<= 0.05); leakage: the same
    image in train and val``.
    """
    if kind == "exact":
        why = "exact copy: the same content hash"
    else:
        bound = f" (<= {max_distance:g})" if max_distance is not None else ""
        why = f"near copy: cosine distance {distance:.4f} of the pooled features{bound}"
    if split_a != split_b:
        leak = "leakage" if pair_name(split_a, split_b) in LEAKAGE_PAIRS else "across splits"
        why += f"; {leak}: the same image in {split_a} and {split_b}"
    return why


class DuplicateIndex:
    """The duplicate pairs of one split (within it and with every other split), and their images.

    Args:
        workdir: The project folder (``data/duplicates``, ``data/manifests``).
        split: The reviewed split.
    """

    def __init__(self, workdir: str | Path, split: str):
        self.workspace = Workspace(Path(workdir))
        self.split = split
        folder = self.workspace.data / "duplicates"
        tables, self.names, self.max_distance = [], [], {}
        for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
            if path.stem in NOT_PAIRS or split not in path.stem.split("-"):
                continue
            try:
                t = pq.read_table(path, columns=list(PAIR_COLUMNS)).cast(PAIR_SCHEMA)
                md = read_metadata(path).get("max_distance")
            except (OSError, pa.ArrowException, KeyError):
                continue  # not a pairs file (or one being rewritten): no section rather than a broken app
            involved = pc.or_(pc.equal(t["split_a"], split), pc.equal(t["split_b"], split))
            t = t.filter(involved)
            self.names.append(path.stem)
            self.max_distance[path.stem] = float(md) if md not in (None, "") else None
            tables.append(t.append_column("pair", pa.array([path.stem] * t.num_rows, pa.string())))
        t = pa.concat_tables(tables).combine_chunks() if tables else None
        if t is None or not t.num_rows:
            self.pair = np.array([], object)
            self.split_a = self.id_a = self.split_b = self.id_b = self.kind = self.pair
            self.distance = np.array([], np.float64)
        else:
            col = lambda c: np.asarray(t[c].to_numpy(zero_copy_only=False), dtype=object)  # noqa: E731
            self.pair, self.split_a, self.id_a = col("pair"), col("split_a"), col("sample_id_a")
            self.split_b, self.id_b, self.kind = col("split_b"), col("sample_id_b"), col("kind")
            self.distance = np.asarray(t["distance"].to_numpy(zero_copy_only=False), np.float64)
        self._of: dict[str, list[int]] = {}
        for i, (sa, a, sb, b) in enumerate(zip(self.split_a, self.id_a, self.split_b, self.id_b)):
            if sa == split:
                self._of.setdefault(a, []).append(i)
            if sb == split and (sb, b) != (sa, a):
                self._of.setdefault(b, []).append(i)
        self._files: dict[tuple[str, str], dict] | None = None
        self._roots: dict[str, Path] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.pair)

    def summary(self) -> list[dict]:
        """Per pair file: ``name``, ``leakage`` (across splits), ``exact`` and ``near`` counts, ``total``."""
        out = []
        for name in self.names:
            m = self.pair == name
            a, b = (name.split("-", 1) + [""])[:2]
            out.append({"name": name, "leakage": name in LEAKAGE_PAIRS, "across": a != b,
                        "exact": int((m & (self.kind == "exact")).sum()), "near": int((m & (self.kind == "near")).sum()),
                        "total": int(m.sum())})
        return out

    def select(self, pair: str = "", kind: str = "") -> np.ndarray:
        """Positions of the pairs of one pair file (all when empty) and kind, closest first (exact copies first).

        Raises:
            ValueError: an unknown pair name or kind.
        """
        keep = np.ones(len(self), bool)
        if pair:
            if pair not in self.names:
                raise ValueError(f"unknown duplicate pair {pair!r}; the split has {', '.join(self.names) or 'none'}")
            keep &= self.pair == pair
        if kind:
            if kind not in ("exact", "near"):
                raise ValueError(f"kind must be exact or near, not {kind!r}")
            keep &= self.kind == kind
        idx = np.flatnonzero(keep)
        return idx[np.argsort(self.distance[idx], kind="stable")]

    def row(self, i: int) -> dict:
        """One pair: ``pair``, ``a`` and ``b`` (``split``, ``sample_id``), ``kind``, ``distance``, ``leakage``, ``reason``."""
        sa, sb = self.split_a[i], self.split_b[i]
        return {"index": int(i), "pair": self.pair[i], "kind": self.kind[i], "distance": round(float(self.distance[i]), 6),
                "a": {"split": sa, "sample_id": self.id_a[i]}, "b": {"split": sb, "sample_id": self.id_b[i]},
                "leakage": pair_name(sa, sb) in LEAKAGE_PAIRS, "across": sa != sb,
                "reason": reason_line(self.kind[i], float(self.distance[i]), sa, sb,
                                      max_distance=self.max_distance.get(self.pair[i]))}

    def of(self, sample_id: str, limit: int = 20) -> list[dict]:
        """The pairs of a sample of the split (the other copy as ``other``), closest first."""
        idx = sorted(self._of.get(sample_id, []), key=lambda i: self.distance[i])[:limit]
        out = []
        for i in idx:
            r = self.row(i)
            r["other"] = r["b"] if (r["a"]["split"], r["a"]["sample_id"]) == (self.split, sample_id) else r["a"]
            out.append(r)
        return out

    # ------------------------------------------------------------------ images

    def _load_files(self) -> dict[tuple[str, str], dict]:
        with self._lock:
            if self._files is not None:
                return self._files
            want: dict[str, set[str]] = {}
            for s, i in zip(np.concatenate([self.split_a, self.split_b]), np.concatenate([self.id_a, self.id_b])):
                want.setdefault(s, set()).add(i)
            files: dict[tuple[str, str], dict] = {}
            for s, ids in want.items():
                man = self.workspace.manifest(s)
                if not man.is_file():
                    continue
                root = Path(read_metadata(man).get("root") or ".")
                self._roots[s] = root if root.is_absolute() else self.workspace.root / root
                pf = pq.ParquetFile(man)
                cols = [c for c in FILE_COLUMNS if c in pf.schema_arrow.names]
                value_set = pa.array(sorted(ids), pa.string())
                for b in pf.iter_batches(batch_size=BATCH, columns=cols):
                    hit = pc.is_in(b.column(0), value_set=value_set).fill_null(False)
                    for r in b.filter(hit).to_pylist():
                        files[(s, r["sample_id"])] = r
            self._files = files
            return files

    def file(self, split: str, sample_id: str) -> dict | None:
        """The manifest row (path, boxes, status) of an image of a listed pair, or None."""
        return self._load_files().get((split, sample_id))

    def image_file(self, split: str, sample_id: str) -> Path | None:
        """The file of an image of a listed pair, if it exists under its split's root (else None)."""
        f = self.file(split, sample_id)
        if f is None or f.get("status") != "ok":
            return None
        from ..data.images import resolve_within

        root = self._roots[split]
        try:
            real = Path(resolve_within(root / f["path"], root))
        except ValueError:
            return None
        return real if real.is_file() else None

    def root(self, split: str) -> Path | None:
        """The image root of a split with listed pairs."""
        self._load_files()
        return self._roots.get(split)


def mark_sides(r: dict, split: str, pos: dict, audit, action) -> dict:
    """A pair row with, per side in ``split``, whether it is a change (the app can open it) and its action."""
    for side in ("a", "b", "other") if "other" in r else ("a", "b"):
        s = r[side]
        i = pos.get(s["sample_id"]) if s["split"] == split else None
        s["change"] = i is not None and not bool(audit[i])
        s["action"] = action[i] if i is not None else ""
    return r


def pair_page(index: "DuplicateIndex", mark, *, pair: str = "", kind: str = "", offset: int = 0, limit: int = 50) -> dict:
    """One page of ``index``'s pairs (of one pair file, one kind), closest first, each row through ``mark``.

    Raises:
        ValueError: an unknown pair or kind.
    """
    sel = index.select(pair, kind)
    offset, limit = max(0, int(offset)), max(1, min(int(limit), 500))
    return {"total": int(len(sel)), "offset": offset, "rows": [mark(index.row(int(i))) for i in sel[offset:offset + limit]]}
