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


def test_pair_names_follow_the_split_order():
    from imagenet_clean.cleanup.duplicates import pair_name, split_pairs

    assert pair_name("v2", "val") == "val-v2" and pair_name("val", "train") == "train-val"
    assert split_pairs(["v2", "train", "val"]) == ["train-train", "train-val", "train-v2", "val-val", "val-v2", "v2-v2"]
    near = near_duplicates({"v2": (["a"], np.array([[1.0, 0]])), "val": (["b"], np.array([[1.0, 0]]))}, max_distance=0.01)
    assert near[["split_a", "split_b"]].to_numpy().tolist() == [["val", "v2"]]
    assert count_pairs(near) == {"val-v2": {"near": 1}}


def test_removal_keeps_one_representative_and_refuses_to_remove_a_whole_group():
    from imagenet_clean.cleanup.duplicates import check_removals, removable

    pairs = pd.DataFrame([("train", "a", "train", "b", "exact", 0.0), ("train", "b", "train", "c", "near", 0.005),
                          ("train", "x", "train", "y", "near", 0.015), ("train", "a", "val", "v", "exact", 0.0)],
                         columns=list(PAIR_COLUMNS))
    drop = removable(pairs, "train", max_distance=0.01)
    assert drop.to_numpy().tolist() == [["b", "a"], ["c", "a"]]  # x-y is beyond the rule's own distance; val is not train
    assert removable(pairs, "train", max_distance=0.02)["sample_id"].tolist() == ["b", "c", "y"]
    check_removals(["b", "c", "y"], pairs, "train")
    with pytest.raises(ValueError, match=r"split 'train': removing every copy of the duplicate group \['a', 'b', 'c'\]"):
        check_removals(["a", "b", "c"], pairs, "train")


def features_file(path, ids, x, status=None, reasons=None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    status = status or ["ok"] * len(ids)
    arr = pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(x, np.float16).ravel(), pa.float16()), x.shape[1])
    pq.write_table(pa.table({"sample_id": ids, "status": status, "reason": reasons or [""] * len(ids), "features": arr}), path)


def test_a_features_file_gives_features_and_records_its_unreadable_rows(tmp_path):
    from imagenet_clean.cleanup.duplicates import read_feature_file

    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    features_file(tmp_path / "f.parquet", ["a", "b", "c", "d"], x, status=["ok", "error", "ok", "ok"],
                  reasons=["", "unreadable: truncated JPEG", "", ""])
    ids, got, bad = read_feature_file(tmp_path / "f.parquet", ["a", "b", "c", "d"])
    assert ids == ["a", "c", "d"] and bad == {"b": "unreadable: truncated JPEG"}
    np.testing.assert_array_equal(got, x[[0, 2, 3]])
    with pytest.raises(ValueError, match=r"f.parquet: its 4 rows are not the manifest's 3 samples in order"):
        read_feature_file(tmp_path / "f.parquet", ["a", "b", "c"])
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"sample_id": ["a"]}), tmp_path / "g.parquet")
    with pytest.raises(ValueError, match=r"g.parquet: not a features file \(no column 'status'\)"):
        read_feature_file(tmp_path / "g.parquet", ["a"])


def test_pooled_models_average_their_cosine_distances():
    from imagenet_clean.cleanup.duplicates import pool_models

    a = (["s", "t", "u"], np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    b = (["t", "s"], np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 2.0]]))  # u has no features in b: left out
    ids, x = pool_models([a, b])
    assert ids == ["s", "t"]
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(1 - x[0] @ x[1], (1.0 + 1.0) / 2, rtol=1e-6)  # both models: orthogonal


def test_truth_pairs_link_copies_of_one_original_and_score_found_pairs():
    from imagenet_clean.cleanup.duplicates import score_pairs, truth_pairs

    truth = pd.DataFrame({"split": ["train", "train", "train", "val", "val"], "sample_id": ["o", "c1", "c2", "v1", "z"],
                          "duplicate_of_split": [None, "train", "train", "train", None],
                          "duplicate_of": [None, "o", "o", "o", None],
                          "duplicate_kind": [None, "exact", "near", "exact", None]})
    t = truth_pairs(truth)
    got = {(a, b, c, d): k for a, b, c, d, k in t[["split_a", "sample_id_a", "split_b", "sample_id_b", "kind"]].to_numpy()}
    assert got == {("train", "c1", "train", "o"): "exact", ("train", "c2", "train", "o"): "near",
                   ("train", "c1", "train", "c2"): "near", ("train", "o", "val", "v1"): "exact",
                   ("train", "c1", "val", "v1"): "exact", ("train", "c2", "val", "v1"): "near"}
    found = pd.DataFrame([("train", "c1", "train", "o", "exact", 0.0), ("train", "o", "val", "v1", "exact", 0.0),
                          ("train", "c1", "val", "v1", "exact", 0.0), ("train", "c2", "train", "o", "near", 0.01),
                          ("train", "o", "val", "z", "near", 0.02)], columns=list(PAIR_COLUMNS))
    s = score_pairs(found, t)
    assert s["all"] == {"found": 5, "true": 6, "hit": 4, "precision": 0.8, "recall": round(4 / 6, 4)}
    assert s["exact"]["recall"] == 1.0 and s["exact"]["precision"] == 1.0
    assert s["near"] == {"found": 2, "true": 3, "hit": 1, "precision": 0.5, "recall": round(1 / 3, 4)}
    assert s["across"] == {"found": 3, "true": 3, "hit": 2, "precision": round(2 / 3, 4), "recall": round(2 / 3, 4)}
    assert truth_pairs(truth.drop(columns=["duplicate_of"])).empty


def test_the_distance_curve_trades_precision_for_recall():
    from imagenet_clean.cleanup.duplicates import distance_curve

    truth = pd.DataFrame([("train", "a", "train", "b", "near", np.nan), ("train", "c", "val", "d", "exact", np.nan)],
                         columns=list(PAIR_COLUMNS))
    found = pd.DataFrame([("train", "c", "val", "d", "exact", 0.0), ("train", "a", "train", "b", "near", 0.02),
                          ("train", "a", "train", "e", "near", 0.05)], columns=list(PAIR_COLUMNS))
    curve = distance_curve(found, truth, [0.01, 0.03, 0.1])
    assert [(c["found"], c["precision"], c["recall"]) for c in curve] == [(1, 1.0, 0.5), (2, 1.0, 1.0), (3, round(2 / 3, 4), 1.0)]
    assert [c["near_recall"] for c in curve] == [0.0, 1.0, 1.0]


# ---------------------------------------------------------------- the rule in the clean stage (tests/stage_project.py's split)


def _clean_run(folder, **over):
    from imagenet_clean.stages import clean as clean_stage
    from imagenet_clean.workspace import Workspace
    from stage_project import FakeCam, make_project

    folder.mkdir(parents=True, exist_ok=True)
    params, manifest, _ = make_project(folder, **over)
    ws = Workspace(folder)
    return params, manifest, ws, lambda p: clean_stage.run(p, ws, "val", find_exemptions=FakeCam(), load_model=lambda n, f: None)


def _removal_list(ws, groups: dict[str, list[str]], *, remove=True, remove_max_distance=0.02):
    from imagenet_clean.cleanup.duplicate_rule import write_removals

    rows = [("val", c, rep) for rep, cs in groups.items() for c in cs]
    write_removals(ws.duplicate_removals, pd.DataFrame(rows, columns=["split", "sample_id", "representative"]),
                   remove=remove, remove_max_distance=remove_max_distance)


def test_rule_off_gives_byte_identical_clean_outputs_even_with_a_removal_list(tmp_path):
    from stage_project import CLEAN_OUTPUTS

    params_a, _, _, run_a = _clean_run(tmp_path / "a")
    run_a(params_a)
    params_b, manifest, ws_b, run_b = _clean_run(tmp_path / "b", duplicates={"remove": False})
    sid = manifest["sample_id"]
    _removal_list(ws_b, {sid[20]: [sid[21], sid[22]]})
    run_b(params_b)
    for out in CLEAN_OUTPUTS:
        assert (tmp_path / "a" / out).read_bytes() == (tmp_path / "b" / out).read_bytes(), out


def test_rule_on_removes_copies_keeps_one_member_per_group_and_never_a_fix(tmp_path):
    from imagenet_clean.io import read_table
    from stage_project import BAD_ROW, CONS_REMOVE

    params0, manifest, ws, run = _clean_run(tmp_path)
    run(params0)
    before = read_table(ws.decisions("val"))
    sid = manifest["sample_id"].tolist()
    plain = [int(i) for i in np.flatnonzero([(a == "keep" and len(r) == 0) for a, r in zip(before["action"], before["rules"])])]
    fixed = int(np.flatnonzero(before["action"] == "fix")[0])
    assert before.loc[CONS_REMOVE, "action"] == "remove"
    g1 = sorted(sid[i] for i in plain[0:3])          # three plain keeps: two go
    g2 = [sid[CONS_REMOVE], *sorted(sid[i] for i in plain[3:5])]  # its representative is removed by consensus
    g3 = [sid[plain[5]], sid[fixed], sid[BAD_ROW]]  # a fix and an unreadable row stay
    _removal_list(ws, {g1[0]: g1[1:], g2[0]: g2[1:], g3[0]: g3[1:]})
    (tmp_path / "reviews").mkdir()
    i_rev = sid.index(g1[2])
    (tmp_path / "reviews/val.csv").write_text("sample_id,content_hash,verdict,wnid,reviewer,time,note\n"
                                              f"{g1[2]},{manifest['content_hash'][i_rev]},reject,,me,,\n")
    from stage_project import make_project

    params, _, _ = make_project(tmp_path, cam={"enabled": True}, duplicates={"remove": True})
    metrics = run(params)
    dec = read_table(ws.decisions("val")).set_index("sample_id")
    assert dec.loc[g1[1], "action"] == "remove" and list(dec.loc[g1[1], "rules"]) == ["duplicate"]
    assert dec.loc[g1[1], "reason"] == f"duplicate of {g1[0]}"
    assert dec.loc[g1[2], "action"] == "keep" and list(dec.loc[g1[2], "rules"]) == ["duplicate", "human"]  # the verdict wins
    assert dec.loc[g2[0], "action"] == "remove" and "duplicate" not in list(dec.loc[g2[0], "rules"])
    assert dec.loc[g2[1], "action"] == "keep"  # the representative is gone: the next member is kept
    assert dec.loc[g2[2], "action"] == "remove" and dec.loc[g2[2], "reason"] == f"duplicate of {g2[1]}"
    assert dec.loc[g3[1], "action"] == "fix" and dec.loc[g3[2], "rules"].tolist() == ["unreadable"]
    assert dec.loc[g3[0], "action"] == "keep"
    for g in (g1, g2, g3):
        assert (dec.loc[g, "action"] != "remove").any()  # every group keeps a member
    listed = set(g1 + g2 + g3)
    others = [s for s in sid if s not in listed]
    assert dec.loc[others, "action"].tolist() == before.set_index("sample_id").loc[others, "action"].tolist()
    assert metrics["remove_duplicate"] == 3
    assert f"duplicate of {g1[0]}" in (tmp_path / "data/changes/val.csv").read_text()


def test_rule_on_refuses_a_missing_stale_or_whole_group_removal_list(tmp_path):
    params, manifest, ws, run = _clean_run(tmp_path, duplicates={"remove": True})
    sid = manifest["sample_id"]
    with pytest.raises(FileNotFoundError, match="imagenet-clean duplicates"):
        run(params)
    _removal_list(ws, {sid[20]: [sid[21]]}, remove=False)
    with pytest.raises(ValueError, match="stale"):
        run(params)
    _removal_list(ws, {sid[20]: [sid[21]]}, remove_max_distance=0.01)
    with pytest.raises(ValueError, match="stale"):
        run(params)
    _removal_list(ws, {sid[20]: [sid[21]], sid[21]: [sid[20]]})  # each the other's representative: the group would go whole
    with pytest.raises(ValueError, match="a group keeps one representative"):
        run(params)
    assert not ws.decisions("val").exists()


def test_the_duplicate_rule_keeps_a_label_set_row_and_ignores_other_splits():
    from imagenet_clean.cleanup.duplicate_rule import apply_duplicate_rule

    dec = pd.DataFrame({"sample_id": ["a", "b", "c", "d"], "action": ["keep", "relabel_set", "keep", "keep"], "reason": "",
                        "rules": pd.Series([[], ["label_set"], [], []], dtype=object)})
    removals = pd.DataFrame([("val", "b", "a"), ("val", "c", "a"), ("train", "d", "a")], columns=["split", "sample_id", "representative"])
    out = apply_duplicate_rule(dec, removals, split="val")
    assert out["action"].tolist() == ["keep", "relabel_set", "remove", "keep"]
    assert out["reason"].tolist() == ["", "", "duplicate of a", ""]
    assert [list(r) for r in dec["rules"]] == [[], ["label_set"], [], []]  # the input is not changed
