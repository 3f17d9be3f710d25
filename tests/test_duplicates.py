"""Duplicates and leakage: exact copies by hash, near copies by nearest neighbours, one representative per group."""
import numpy as np
import pandas as pd
import pytest

from imagenet_clean.cleanup.duplicates import (
    NN_BACKENDS,
    PAIR_COLUMNS,
    count_pairs,
    exact_duplicates,
    merge_pairs,
    near_duplicates,
    representatives,
)


def test_exact_copies_are_paired_within_and_across_splits_and_null_hashes_are_ignored():
    train = pd.Series(["h1", "h2", "h1", None, "h3"], index=["t0", "t1", "t2", "t3", "t4"])
    val = pd.Series(["h2", "h9", None], index=["v0", "v1", "v2"])
    pairs = exact_duplicates({"train": train, "val": val})
    assert list(pairs.columns) == list(PAIR_COLUMNS)
    got = set(map(tuple, pairs[["split_a", "sample_id_a", "split_b", "sample_id_b"]].to_numpy()))
    assert got == {("train", "t0", "train", "t2"), ("train", "t1", "val", "v0")}
    assert (pairs["kind"] == "exact").all() and (pairs["distance"] == 0).all()
    assert count_pairs(pairs) == {"train-train": {"exact": 1}, "train-val": {"exact": 1}}


def copies(seed=0, n=400, d=64, n_copies=30, noise=0.02):
    """Random features, and noisy copies of some of them (a re-encoded or recoloured photo moves its features a little)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    src = rng.choice(n, n_copies, replace=False)
    cp = x[src] + noise * rng.normal(size=(n_copies, d)).astype(np.float32) * np.linalg.norm(x[src], axis=1, keepdims=True) / np.sqrt(d)
    return x, src, cp


@pytest.mark.parametrize("backend", sorted(NN_BACKENDS))
def test_near_copies_are_found_with_full_precision_and_recall_by_every_backend(backend):
    x, src, cp = copies()
    ids = [f"s{i:03d}" for i in range(len(x))]
    half = len(cp) // 2  # half the copies land in val (leakage), half stay in train
    feats = {"train": (ids + [f"c{i:03d}" for i in range(half)], np.concatenate([x, cp[:half]])),
             "val": ([f"v{i:03d}" for i in range(len(cp) - half)], cp[half:])}
    pairs = near_duplicates(feats, max_distance=0.01, backend=backend)
    want = {("train", f"c{i:03d}", "train", ids[s]) if f"c{i:03d}" < ids[s] else ("train", ids[s], "train", f"c{i:03d}")
            for i, s in enumerate(src[:half])}
    want |= {("train", ids[s], "val", f"v{i:03d}") for i, s in enumerate(src[half:])}
    got = set(map(tuple, pairs[["split_a", "sample_id_a", "split_b", "sample_id_b"]].to_numpy()))
    assert got == want
    assert (pairs["distance"] < 0.01).all() and (pairs["kind"] == "near").all()


def test_the_backends_agree_on_the_same_pairs():
    x, _, cp = copies(seed=1)
    feats = {"train": ([f"s{i}" for i in range(len(x) + len(cp))], np.concatenate([x, cp]))}
    a, b = (near_duplicates(feats, max_distance=0.01, backend=n) for n in ("sklearn", "faiss"))
    pd.testing.assert_frame_equal(a.drop(columns="distance"), b.drop(columns="distance"))
    np.testing.assert_allclose(a["distance"], b["distance"], atol=1e-5)


def test_a_pair_found_both_ways_is_kept_once_as_exact():
    exact = exact_duplicates({"train": pd.Series(["h", "h"], index=["a", "b"])})
    near = near_duplicates({"train": (["a", "b", "c"], np.array([[1.0, 0], [1.0, 0.001], [0, 1.0]]))}, max_distance=0.01)
    both = merge_pairs(exact, near)
    assert both[["sample_id_a", "sample_id_b", "kind"]].to_numpy().tolist() == [["a", "b", "exact"]]


def test_every_group_keeps_one_representative():
    pairs = pd.DataFrame([("train", "c", "train", "d", "near", 0.0), ("train", "b", "train", "c", "exact", 0.0),
                          ("train", "x", "train", "y", "near", 0.0), ("train", "b", "val", "v", "exact", 0.0)],
                         columns=list(PAIR_COLUMNS))
    rep = representatives(pairs, "train")
    assert rep == {"b": "b", "c": "b", "d": "b", "x": "x", "y": "x"}  # leakage pairs are not train groups
    kept = {u for u, r in rep.items() if u == r}
    assert kept == {"b", "x"}  # removing every non-representative leaves one copy of each group


@pytest.mark.parametrize("feats, kwargs, message", [
    ({"train": (["a"], np.zeros((1, 3)))}, {"max_distance": 3.0}, r"max_distance 3.0 is outside \[0, 2\]"),
    ({"train": (["a", "b"], np.zeros((1, 3)))}, {"max_distance": 0.1}, r"split 'train': 2 sample ids but features of shape \(1, 3\)"),
    ({"train": (["a"], np.zeros((1, 3))), "val": (["b"], np.zeros((1, 4)))}, {"max_distance": 0.1},
     r"feature widths differ between splits: \[3, 4\]"),
    ({"train": (["a", "b"], np.eye(2))}, {"max_distance": 0.1, "backend": "annoy"}, "unknown nearest-neighbour backend 'annoy'"),
])
def test_bad_input_is_refused_naming_it(feats, kwargs, message):
    with pytest.raises(ValueError, match=message):
        near_duplicates(feats, **kwargs)
