"""The decision rules of paper section 3 on hand-built evidence."""
import numpy as np
import pandas as pd
import pytest

from imagenet_clean.cleanup.rules import apply_exemptions, consensus_only, decide, most_frequent_candidate
from imagenet_clean.config import Thresholds


def _ev(labels, rows):
    """rows: per model, a list of (candidate or None, cand_prob, top5_miss) per sample."""
    m, n = len(rows), len(labels)
    flagged = np.zeros((m, n), bool)
    cands = np.full((m, n), -1)
    probs = np.zeros((m, n))
    miss = np.zeros((m, n), bool)
    for i, r in enumerate(rows):
        for j, (c, p, ms) in enumerate(r):
            if c is not None:
                flagged[i, j], cands[i, j], probs[i, j] = True, c, p
            miss[i, j] = ms
    return dict(labels=np.asarray(labels), flagged=flagged, candidates=cands, cand_probs=probs, top5_miss=miss)


def run(labels, rows, **thr):
    ev = _ev(labels, rows)
    return decide(ev["labels"], ev["flagged"], ev["candidates"], ev["cand_probs"], ev["top5_miss"],
                  n_models=len(rows), thresholds=Thresholds(**thr))


NOFLAG = (None, 0.0, False)


def test_fix_by_majority_candidate():
    # 4 models, h1 = 2: three propose 3, one proposes 4 -> fix to 3
    rows = [[(3, 0.6, False)], [(3, 0.5, False)], [(4, 0.9, False)], [(3, 0.4, False)]]
    d = run([0], rows, h1=2, h2=3, h3=4)
    assert d.loc[0, "action"] == "fix" and d.loc[0, "new_label"] == 3
    assert d.loc[0, "rules"] == ["cl_fix"]
    assert d.loc[0, "flagged_models"] == ["m0", "m1", "m2", "m3"] and d.loc[0, "candidates"] == [3, 3, 4, 3]


def test_tie_goes_to_larger_summed_probability_then_smaller_index():
    # 2 vs 2: candidate 7 has summed prob 0.9, candidate 5 has 0.8 -> 7
    rows = [[(5, 0.4, False)], [(7, 0.5, False)], [(5, 0.4, False)], [(7, 0.4, False)]]
    d = run([0], rows, h1=2)
    assert d.loc[0, "new_label"] == 7
    # exact tie in count and sum -> smaller index
    rows = [[(7, 0.5, False)], [(5, 0.5, False)]]
    d = run([0], rows, h1=2)
    assert d.loc[0, "new_label"] == 5


def test_most_frequent_candidate_vectorised():
    cands = np.array([[1, 2, -1], [1, 3, -1], [2, 3, -1]])
    probs = np.array([[0.1, 0.2, 0], [0.1, 0.2, 0], [0.9, 0.1, 0]])
    assert most_frequent_candidate(cands, probs).tolist() == [1, 3, -1]


def test_three_distinct_candidates_block_the_fix_and_remove_at_h2():
    rows = [[(1, 0.5, False)], [(2, 0.5, False)], [(3, 0.5, False)]]
    d = run([0], rows, h1=1, h2=3, h3=3)
    assert d.loc[0, "action"] == "remove" and d.loc[0, "rules"] == ["cl_remove"]
    assert d.loc[0, "new_label"] == 0
    d = run([0], rows, h1=1, h2=4, h3=3)  # 3 distinct < h2 = 4: neither fixed nor removed
    assert d.loc[0, "action"] == "keep" and d.loc[0, "rules"] == []


def test_fix_beats_removal():
    # 2 distinct candidates: fix (< 3 distinct) and cl_remove (h2 = 2) both apply; all top-5 miss (consensus)
    rows = [[(1, 0.5, True)], [(2, 0.4, True)], [(1, 0.3, True)]]
    d = run([0], rows, h1=2, h2=2, h3=1)
    assert d.loc[0, "action"] == "fix" and d.loc[0, "new_label"] == 1
    assert d.loc[0, "rules"] == ["cl_fix"] and d.loc[0, "c_s"] == 3


def test_fractional_thresholds_compare_as_reals():
    # |M| = 3, h1 = 0.5 -> 1.5: one flag is not enough, two are
    one = [[(1, 0.5, False)], [NOFLAG], [NOFLAG]]
    d = run([0], one, h1=0.5, h2=3, h3=3)
    assert d.loc[0, "action"] == "keep"
    two = [[(1, 0.5, False)], [(1, 0.5, False)], [NOFLAG]]
    d = run([0], two, h1=0.5, h2=3, h3=3)
    assert d.loc[0, "action"] == "fix"
    # h3 = 0.667 of 3 = 2.001: C_s = 2 is not enough
    miss2 = [[(None, 0, True)], [(None, 0, True)], [(None, 0, False)]]
    assert run([0], miss2, h3=0.667).loc[0, "action"] == "keep"
    assert run([0], miss2, h3=0.666).loc[0, "action"] == "remove"


def test_the_papers_floor_asks_the_models_its_ensemble_needed():
    # |M| = 5, val's h1 = 0.5: three of five flag the same candidate. The formula at |M| (2.5) fixes;
    # floored at the paper's ten models (5 of 10, capped at 5) it does not, and the three misses
    # (h3 = 0.6666: 3.33 at |M|, 6.67 floored and capped to 5) no longer remove either
    three = [[(2, 0.8, True)], [(2, 0.7, True)], [(2, 0.6, True)], [NOFLAG], [NOFLAG]]
    assert run([0], three, h1=0.5, h2=3, h3=0.6666).loc[0, "action"] == "fix"
    assert run([0], three, h1=0.5, h2=3, h3=0.6666, floor_size=10).loc[0, "action"] == "keep"
    five = three[:3] + [[(2, 0.5, True)], [(2, 0.5, True)]]
    d = run([0], five, h1=0.5, h2=3, h3=0.6666, floor_size=10)
    assert d.loc[0, "action"] == "fix" and d.loc[0, "new_label"] == 2


def test_all_means_every_model():
    rows = [[(1, 0.5, True)], [(1, 0.5, True)], [(None, 0, True)]]
    d = run([0], rows, h1="all", h2=3, h3="all")
    assert d.loc[0, "action"] == "remove" and d.loc[0, "rules"] == ["consensus"]
    rows[2] = [(1, 0.5, True)]
    assert run([0], rows, h1="all", h2=3, h3="all").loc[0, "action"] == "fix"


def test_h2_counts_distinct_candidates_not_flags():
    rows = [[(1, 0.5, False)], [(1, 0.5, False)], [(1, 0.5, False)], [(1, 0.5, False)]]
    d = run([0], rows, h1=5, h2=2, h3=4)  # 4 flags but 1 distinct candidate; h1 too high to fix
    assert d.loc[0, "action"] == "keep" and d.loc[0, "n_distinct"] == 1


def test_consensus_and_cl_removal_both_recorded():
    rows = [[(1, 0.5, True)], [(2, 0.5, True)], [(3, 0.5, True)]]
    d = run([0], rows, h1=1, h2=3, h3=2)
    assert d.loc[0, "rules"] == ["cl_remove", "consensus"]
    assert not consensus_only(d)[0]  # a CL removal cannot be exempted


def test_consensus_counts_top5_misses():
    rows = [[(None, 0, True), (None, 0, False)], [(None, 0, True), (None, 0, True)], [(None, 0, False), (None, 0, False)]]
    d = run([0, 1], rows, h3=2)
    assert d["c_s"].tolist() == [2, 1]
    assert d["action"].tolist() == ["remove", "keep"]
    assert consensus_only(d).tolist() == [True, False]


def test_apply_exemptions_keeps_exempted_consensus_removals():
    rows = [[(None, 0, True)] * 2, [(None, 0, True)] * 2]
    d = run([0, 1], rows, h3=2)
    d.insert(0, "sample_id", ["a", "b"])
    ex = pd.DataFrame({"sample_id": ["a", "b"], "exempted_by": ["m1", ""],
                       "cam_scores": ['{"m1": {"gradcam": 0.5}}', '{"m0": {"gradcam": 0.0}}']})
    out = apply_exemptions(d, ex)
    assert out["action"].tolist() == ["keep", "remove"]
    assert out.loc[0, "rules"] == ["consensus", "cam_exempt"] and out.loc[0, "exempted_by"] == "m1"
    assert out.loc[1, "cam_scores"] == '{"m0": {"gradcam": 0.0}}'
    assert d["action"].tolist() == ["remove", "remove"]  # input untouched


def test_apply_exemptions_rejects_non_consensus_rows():
    rows = [[(1, 0.5, True)], [(2, 0.5, True)], [(3, 0.5, True)]]
    d = run([0], rows, h1=1, h2=3, h3=1)
    d.insert(0, "sample_id", ["a"])
    with pytest.raises(ValueError, match="not a consensus-only removal"):
        apply_exemptions(d, pd.DataFrame({"sample_id": ["a"], "exempted_by": ["m0"], "cam_scores": ["{}"]}))
    with pytest.raises(ValueError, match="unknown sample"):
        apply_exemptions(d, pd.DataFrame({"sample_id": ["zz"], "exempted_by": ["m0"], "cam_scores": ["{}"]}))


def test_bad_shapes_and_inconsistent_evidence():
    ev = _ev([0, 1], [[NOFLAG, NOFLAG], [NOFLAG, NOFLAG]])
    with pytest.raises(ValueError, match="expected \\(n_models, N\\)"):
        decide(ev["labels"], ev["flagged"][:1], ev["candidates"], ev["cand_probs"], ev["top5_miss"],
               n_models=2, thresholds=Thresholds())
    ev["flagged"][0, 1] = True  # flagged but candidate -1
    with pytest.raises(ValueError, match="without a candidate"):
        decide(ev["labels"], ev["flagged"], ev["candidates"], ev["cand_probs"], ev["top5_miss"],
               n_models=2, thresholds=Thresholds())
    ev["candidates"][0, 1] = 1  # candidate == given label
    with pytest.raises(ValueError, match="proposed the given label"):
        decide(ev["labels"], ev["flagged"], ev["candidates"], ev["cand_probs"], ev["top5_miss"],
               n_models=2, thresholds=Thresholds())


def _random_evidence(seed, m=5, n=400, k=6):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    flagged = rng.random((m, n)) < 0.4
    cands = (labels[None, :] + rng.integers(1, k, (m, n))) % k
    return labels, flagged, cands, rng.random((m, n)), rng.random((m, n)) < 0.3


@pytest.mark.parametrize("seed", range(5))
def test_raising_h1_never_adds_fixes(seed):
    labels, fl, c, p, miss = _random_evidence(seed)
    prev = None
    for h1 in (1, 2, 3, 4, 5, 6):
        fixed = decide(labels, fl, c, p, miss, n_models=5, thresholds=Thresholds(h1=h1)).eval("action == 'fix'").to_numpy()
        if prev is not None:
            assert not (fixed & ~prev).any()
        prev = fixed


@pytest.mark.parametrize("seed", range(3))
def test_fixed_samples_are_never_removed_and_new_label_differs(seed):
    labels, fl, c, p, miss = _random_evidence(seed)
    d = decide(labels, fl, c, p, miss, n_models=5, thresholds=Thresholds(h1=1, h2=1, h3=1))
    fix = d["action"] == "fix"
    assert fix.any()
    assert (d.loc[fix, "new_label"] != d.loc[fix, "label"]).all()
    assert (d.loc[~fix, "new_label"] == d.loc[~fix, "label"]).all()
    assert set(d["action"]) <= {"keep", "fix", "remove"}
