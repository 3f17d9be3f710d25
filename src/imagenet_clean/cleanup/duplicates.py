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


SPLIT_ORDER = ("train", "val", "v2", "imagenet_r")
"""Splits in pair names' order (``train-val``, ``val-v2``); any other split comes after these, by name."""

LEAKAGE_PAIRS = ("train-val", "train-v2", "val-v2")
"""Split pairs whose copies are leakage: a test image with a copy in train (or in the other test set)."""


def _split_key(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def _ordered(a: tuple[str, str], b: tuple[str, str]) -> tuple[str, str, str, str]:
    lo, hi = (a, b) if (_split_key(a[0]), a[1]) <= (_split_key(b[0]), b[1]) else (b, a)
    return (*lo, *hi)


def pair_name(split_a: str, split_b: str) -> str:
    """``train-val``, ``val-v2``, ``train-train``: the two splits in :data:`SPLIT_ORDER`."""
    a, b = sorted((split_a, split_b), key=_split_key)
    return f"{a}-{b}"


def split_pairs(splits: Sequence[str]) -> list[str]:
    """Every pair name of ``splits``, each split with itself and with every later one."""
    ordered = sorted(set(splits), key=_split_key)
    return [pair_name(a, b) for i, a in enumerate(ordered) for b in ordered[i:]]


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
        out.setdefault(pair_name(sa, sb), {})[kind] = len(g)
    return out


# ---------------------------------------------------------------- removal rule


def removable(pairs: pd.DataFrame, split: str, *, max_distance: float) -> pd.DataFrame:
    """The within-split copies a removal rule drops: every group member but its representative.

    Only exact pairs and near pairs within ``max_distance`` group samples here
    (the rule's own threshold, at most the search's). Each group keeps its
    representative (:func:`representatives`), so a group is never removed whole.

    Returns:
        ``sample_id``, ``representative`` (the kept copy), sorted by ``sample_id``.
    """
    close = pairs[(pairs["kind"] == "exact") | (pairs["distance"] <= max_distance)]
    rep = representatives(close, split)
    rows = sorted((u, r) for u, r in rep.items() if u != r)
    removed = pd.DataFrame(rows, columns=["sample_id", "representative"])
    check_removals(removed["sample_id"], pairs, split)
    return removed


def check_removals(removed: Sequence[str], pairs: pd.DataFrame, split: str) -> None:
    """Refuse a removal that drops every copy of a within-split duplicate group.

    Raises:
        ValueError: naming a group all of whose members are in ``removed``.
    """
    gone = set(map(str, removed))
    groups: dict[str, list[str]] = {}
    for u, r in representatives(pairs, split).items():
        groups.setdefault(r, []).append(u)
    for members in groups.values():
        if gone.issuperset(members):
            raise ValueError(f"split {split!r}: removing every copy of the duplicate group {sorted(members)}; "
                             "a group keeps one representative")


# ---------------------------------------------------------------- features input


def read_feature_file(path, sample_ids: Sequence[str]) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """Pooled features of one split from a features file (the ``features`` stage's contract).

    The file has a row per manifest sample: ``sample_id``, ``status``
    (``ok``/``error``), ``reason`` and ``features`` (a fixed-size list of
    floats). Rows that are not ``ok`` (unreadable images) get no features and
    come back with their reason.

    Args:
        path: The parquet file (``data/features/<model>/<split>.parquet``).
        sample_ids: The split manifest's ids, in order; the file must hold exactly these.

    Returns:
        ``(ids with features, float32 (n, d) features, {sample_id: reason} of the rest)``.

    Raises:
        ValueError: a missing column, or rows that are not the manifest's (naming the file).
    """
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = [c for c in ("sample_id", "status", "features") if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: not a features file (no column {missing[0]!r})")
    ids = [str(v) for v in table["sample_id"].to_pylist()]
    if ids != [str(v) for v in sample_ids]:
        raise ValueError(f"{path}: its {len(ids)} rows are not the manifest's {len(sample_ids)} samples in order; rerun the features stage")
    status = np.asarray(table["status"].to_pylist(), dtype=object)
    reasons = table["reason"].to_pylist() if "reason" in table.column_names else [""] * len(ids)
    ok = status == "ok"
    col = table["features"].combine_chunks()
    width = col.type.list_size if hasattr(col.type, "list_size") else None
    flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float32)
    x = flat.reshape(len(ids), width if width else -1) if len(ids) else np.zeros((0, width or 0), np.float32)
    bad = {i: (r or "no features") for i, r, g in zip(ids, reasons, ok) if not g}
    return [i for i, g in zip(ids, ok) if g], x[ok], bad


def pool_models(per_model: Sequence[tuple[Sequence[str], np.ndarray]]) -> tuple[list[str], np.ndarray]:
    """One vector per sample from several models' features: each L2-normalised, concatenated, scaled by 1/sqrt(M).

    The pooled vector has unit length, and its cosine distance to another is the
    mean of the models' cosine distances. Only samples every model has features for are kept.
    """
    common = set(per_model[0][0]).intersection(*[set(ids) for ids, _ in per_model[1:]])
    order = [i for i in per_model[0][0] if i in common]
    parts = []
    for ids, x in per_model:
        pos = {u: j for j, u in enumerate(ids)}
        parts.append(_normalise(np.asarray(x, np.float32)[[pos[u] for u in order]]))
    x = np.concatenate(parts, axis=1) / np.sqrt(len(per_model)) if parts else np.zeros((0, 0), np.float32)
    return order, x


# ---------------------------------------------------------------- truth


def truth_pairs(truth: pd.DataFrame) -> pd.DataFrame:
    """The injected duplicate pairs of a truth table (``duplicate_of_split``, ``duplicate_of``, ``duplicate_kind``).

    Every copy is paired with its original, and copies of one original with each
    other (they are copies of one picture too): ``kind`` is ``exact`` when both
    members carry the same bytes, ``near`` otherwise.

    Returns:
        A frame of :data:`PAIR_COLUMNS` (``distance`` NaN); empty when the truth records no copies.
    """
    if "duplicate_of" not in truth.columns:
        return _pairs_frame([])
    cp = truth.dropna(subset=["duplicate_of"])
    groups: dict[tuple[str, str], list[tuple[tuple[str, str], str]]] = {}
    for s, sid, os_, o, kind in zip(cp["split"], cp["sample_id"], cp["duplicate_of_split"], cp["duplicate_of"], cp["duplicate_kind"]):
        groups.setdefault((str(os_), str(o)), []).append(((str(s), str(sid)), str(kind)))
    rows = []
    for orig, members in groups.items():
        everyone = [(orig, "exact")] + members
        for i in range(len(everyone)):
            for j in range(i + 1, len(everyone)):
                (a, ka), (b, kb) = everyone[i], everyone[j]
                rows.append((*_ordered(a, b), "exact" if ka == kb == "exact" else "near", float("nan")))
    return _pairs_frame(rows)


def score_pairs(found: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Precision and recall of found pairs against the truth's pairs, per kind and within/across splits.

    Recall of a kind is the share of the truth's pairs of that kind that were
    found (by either kind); precision of a kind is the share of found pairs of
    that kind that are in the truth. ``within`` and ``across`` split the pairs
    by whether both samples are in one split.

    Returns:
        ``{group: {"found", "true", "hit", "precision", "recall"}}`` for ``all``,
        ``exact``, ``near``, ``within``, ``across`` (precision/recall None when undefined).
    """
    key = list(PAIR_COLUMNS[:4])
    t = {tuple(r): k for r, k in zip(truth[key].itertuples(index=False, name=None), truth["kind"])}
    f = {tuple(r): k for r, k in zip(found[key].itertuples(index=False, name=None), found["kind"])}

    def block(tsel, fsel) -> dict:
        tp_r = sum(1 for p in tsel if p in f)
        tp_p = sum(1 for p in fsel if p in t)
        return {"found": len(fsel), "true": len(tsel), "hit": tp_r,
                "precision": round(tp_p / len(fsel), 4) if fsel else None,
                "recall": round(tp_r / len(tsel), 4) if tsel else None}

    out = {"all": block(list(t), list(f))}
    for kind in ("exact", "near"):
        out[kind] = block([p for p, k in t.items() if k == kind], [p for p, k in f.items() if k == kind])
    for name, same in (("within", True), ("across", False)):
        out[name] = block([p for p in t if (p[0] == p[2]) == same], [p for p in f if (p[0] == p[2]) == same])
    return out


def distance_curve(found: pd.DataFrame, truth: pd.DataFrame, distances: Sequence[float]) -> list[dict]:
    """Precision and recall of the found pairs kept at each ``max_distance`` (exact pairs always kept).

    ``found`` comes from a search at the largest distance; a threshold is then
    read off the truth (e.g. the largest distance whose precision is still at
    its goal), not picked by looking at examples.

    Returns:
        One ``{"max_distance", **score_pairs(...)["all"], "near_precision", "near_recall"}`` per distance.
    """
    out = []
    for d in distances:
        kept = found[(found["kind"] == "exact") | (found["distance"] <= d)]
        s = score_pairs(kept, truth)
        out.append({"max_distance": float(d), **s["all"], "near_precision": s["near"]["precision"],
                    "near_recall": s["near"]["recall"]})
    return out


# ---------------------------------------------------------------- the rule in the clean stage


def score_pairs_detail(found: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """:func:`score_pairs` plus the near pairs within one split (``near_within``) and across splits (``near_across``)."""
    out = score_pairs(found, truth)
    for scope, same in (("within", True), ("across", False)):
        t = truth[(truth["kind"] == "near") & ((truth["split_a"] == truth["split_b"]) == same)]
        f = found[(found["kind"] == "near") & ((found["split_a"] == found["split_b"]) == same)]
        out[f"near_{scope}"] = score_pairs(f, t)["all"]
    return out
