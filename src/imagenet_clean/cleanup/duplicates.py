"""Duplicates and leakage: exact copies by content hash, near copies by nearest neighbours of pooled features.

Pairs are reported within each split and across splits; a pair across splits
(train-val, train-v2, val-v2) is leakage. The nearest-neighbour search is a
maintained library, chosen by size from :data:`NN_BACKENDS`: scikit-learn's
exact ``NearestNeighbors`` for small sets, faiss (``IndexIVFFlat``, an
approximate inverted-file index) for large ones. Features are L2-normalised, so the
reported ``distance`` is the cosine distance ``1 - cos`` (0 for identical
directions).

Groups of duplicates inside one split (connected components of its pairs) keep
one representative, the smallest ``sample_id``: :func:`representatives` never
marks every copy of a group.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

PAIR_COLUMNS = ("split_a", "sample_id_a", "split_b", "sample_id_b", "kind", "distance")
"""One row per duplicate pair; ``(split_a, sample_id_a) < (split_b, sample_id_b)``; ``kind`` is ``exact`` or ``near``."""

SKLEARN_MAX_ROWS = 50_000
"""Above this many vectors faiss's inverted-file index replaces scikit-learn's exact search (benchmarks/bench_duplicates.py)."""

FAISS_NPROBE = 16
"""Cells of the inverted-file index searched per query."""

FAISS_TRAIN_ROWS = 200_000
"""Vectors (a seeded sample) the index's k-means cells are trained on."""


def _pairs_frame(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(PAIR_COLUMNS))
    df["distance"] = df["distance"].astype(np.float64)
    return df.sort_values(list(PAIR_COLUMNS[:4]), kind="stable").reset_index(drop=True)


def _ordered(a: tuple[str, str], b: tuple[str, str]) -> tuple[str, str, str, str]:
    lo, hi = (a, b) if a <= b else (b, a)
    return (*lo, *hi)


def exact_duplicates(hashes: Mapping[str, pd.Series]) -> pd.DataFrame:
    """Pairs of samples with the same content hash, within and across splits.

    Args:
        hashes: Split name -> Series of content hashes indexed by ``sample_id``
            (null hashes, e.g. unreadable files or ``ingest.hash: false``, are skipped).

    Returns:
        A frame of :data:`PAIR_COLUMNS`, ``kind == "exact"``, distance 0.
    """
    frames = [pd.DataFrame({"split": s, "sample_id": h.index.astype(str), "hash": h.to_numpy()})
              for s, h in hashes.items()]
    if not frames:
        return _pairs_frame([])
    allh = pd.concat(frames, ignore_index=True).dropna(subset=["hash"])
    allh = allh[allh["hash"] != ""]
    rows = []
    for _, g in allh[allh.duplicated("hash", keep=False)].groupby("hash", sort=True):
        members = sorted(zip(g["split"], g["sample_id"]))
        for i in range(len(members)):
            for j in range(i + 1, len(members)):
                rows.append((*_ordered(members[i], members[j]), "exact", 0.0))
    return _pairs_frame(rows)


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _sklearn_neighbours(base: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=min(k, len(base)), algorithm="brute", metric="euclidean").fit(base)
    dist, idx = nn.kneighbors(query)
    return dist.astype(np.float32) ** 2, idx


def _faiss_neighbours(base: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    n, d = base.shape
    # an inverted-file index: about 4 sqrt(N) k-means cells, each trained on at least 39 points (faiss's minimum),
    # searched in FAISS_NPROBE cells: near copies share a cell or a neighbouring one
    nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist)
    train = base if n <= FAISS_TRAIN_ROWS else base[np.random.default_rng(0).choice(n, FAISS_TRAIN_ROWS, replace=False)]
    index.train(np.ascontiguousarray(train, np.float32))
    index.add(np.ascontiguousarray(base, np.float32))
    index.nprobe = min(nlist, FAISS_NPROBE)
    dist, idx = index.search(np.ascontiguousarray(query, np.float32), min(k, n))
    return dist, idx  # squared L2 distances


NN_BACKENDS: dict[str, Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]] = {
    "sklearn": _sklearn_neighbours,
    "faiss": _faiss_neighbours,
}
"""Nearest-neighbour search ``fn(base, query, k) -> (squared L2 distances, indices)`` over unit vectors."""


def pick_backend(n_rows: int) -> str:
    """scikit-learn's exact search up to :data:`SKLEARN_MAX_ROWS` vectors, faiss's inverted-file index above."""
    return "sklearn" if n_rows <= SKLEARN_MAX_ROWS else "faiss"


def near_duplicates(features: Mapping[str, tuple[Sequence[str], np.ndarray]], *, max_distance: float, k: int = 5,
                    backend: str | None = None) -> pd.DataFrame:
    """Pairs of samples whose pooled features are within ``max_distance`` cosine distance, within and across splits.

    Args:
        features: Split name -> (sample ids, float features (n, d)); every split has the same d.
        max_distance: Largest cosine distance ``1 - cos`` of a pair, in [0, 2].
        k: Neighbours looked up per sample (itself included): a group larger than ``k`` is
            still connected through its members' pairs.
        backend: A key of :data:`NN_BACKENDS` (default: :func:`pick_backend`).

    Returns:
        A frame of :data:`PAIR_COLUMNS`, ``kind == "near"``.

    Raises:
        ValueError: ``max_distance`` outside [0, 2], feature widths that differ, ids and rows that disagree.
    """
    if not 0.0 <= max_distance <= 2.0:
        raise ValueError(f"max_distance {max_distance!r} is outside [0, 2] (a cosine distance)")
    names, ids, mats = [], [], []
    for split, (sids, x) in features.items():
        x = np.asarray(x)
        if x.ndim != 2 or len(sids) != len(x):
            raise ValueError(f"split {split!r}: {len(sids)} sample ids but features of shape {x.shape}")
        names += [split] * len(x)
        ids += [str(s) for s in sids]
        mats.append(x)
    if not mats or sum(len(m) for m in mats) < 2:
        return _pairs_frame([])
    widths = {m.shape[1] for m in mats}
    if len(widths) > 1:
        raise ValueError(f"feature widths differ between splits: {sorted(widths)}")
    x = _normalise(np.concatenate(mats))
    name = backend or pick_backend(len(x))
    if name not in NN_BACKENDS:
        raise ValueError(f"unknown nearest-neighbour backend {name!r}; one of {', '.join(NN_BACKENDS)}")
    sq, idx = NN_BACKENDS[name](x, x, k)
    limit = 2.0 * max_distance  # |a - b|^2 = 2 (1 - cos) for unit vectors
    seen = set()
    rows = []
    for i, j in zip(*np.nonzero((sq <= limit + 1e-6) & (idx >= 0))):
        a, b = int(i), int(idx[i, j])
        if a == b or (min(a, b), max(a, b)) in seen:
            continue
        seen.add((min(a, b), max(a, b)))
        rows.append((*_ordered((names[a], ids[a]), (names[b], ids[b])), "near", float(max(sq[i, j], 0.0)) / 2.0))
    return _pairs_frame(rows)


def merge_pairs(exact: pd.DataFrame, near: pd.DataFrame) -> pd.DataFrame:
    """Exact and near pairs in one frame; a pair found both ways is kept once, as ``exact``."""
    both = pd.concat([exact, near], ignore_index=True)
    return _pairs_frame(list(both.drop_duplicates(list(PAIR_COLUMNS[:4]), keep="first").itertuples(index=False)))


def representatives(pairs: pd.DataFrame, split: str) -> dict[str, str]:
    """Within-split duplicate groups: member ``sample_id`` -> the group's representative (its smallest id).

    Only pairs with both samples in ``split`` count; the representative of a
    group maps to itself, so a rule that removes every member whose
    representative is another sample always keeps one copy.
    """
    inside = pairs[(pairs["split_a"] == split) & (pairs["split_b"] == split)]
    parent: dict[str, str] = {}

    def find(u: str) -> str:
        parent.setdefault(u, u)
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    for a, b in zip(inside["sample_id_a"], inside["sample_id_b"]):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {u: find(u) for u in list(parent)}


def count_pairs(pairs: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Pairs per split pair (``train-val``; within a split, ``train-train``) and kind."""
    out: dict[str, dict[str, int]] = {}
    for (sa, sb, kind), g in pairs.groupby(["split_a", "split_b", "kind"], sort=True):
        out.setdefault(f"{sa}-{sb}", {})[kind] = len(g)
    return out
