"""Properties of the rules on random ensembles (issue 8): monotone thresholds, order independence."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagenet_clean.cleanup.ensemble import clean_arrays
from imagenet_clean.config import Thresholds

ENSEMBLES = st.tuples(
    st.integers(0, 2**31 - 1),  # seed
    st.integers(40, 90),  # N
    st.integers(3, 6),  # K
    st.integers(1, 4),  # M
)


def make_ensemble(seed: int, n: int, k: int, m: int):
    """Labels with every class present, 15 % of them flipped, and M noisy models that mostly see the truth."""
    rng = np.random.default_rng(seed)
    true = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
    labels = true.copy()
    flip = rng.random(n) < 0.15
    labels[flip] = (true[flip] + rng.integers(1, k, flip.sum())) % k
    probs = []
    for _ in range(m):
        logits = rng.normal(0, 1, (n, k))
        logits[np.arange(n), true] += rng.uniform(0.5, 3.0)
        p = np.exp(logits)
        probs.append(p / p.sum(1, keepdims=True))
    return labels, probs


def decide(labels, probs, **thresholds):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decisions, _ = clean_arrays(labels, probs, thresholds=Thresholds(**thresholds))
    return decisions


def removed(d) -> set[int]:
    return set(d.loc[d["action"] == "remove", "sample_id"].astype(int))


SETTINGS = settings(max_examples=20, deadline=None)


@SETTINGS
@given(ENSEMBLES, st.integers(1, 4), st.integers(1, 4))
def test_raising_h2_never_adds_removals(ens, a, b):
    labels, probs = make_ensemble(*ens)
    lo, hi = sorted((a, b))
    assert removed(decide(labels, probs, h2=hi, h3="all")) <= removed(decide(labels, probs, h2=lo, h3="all"))


@SETTINGS
@given(ENSEMBLES, st.integers(1, 4), st.integers(1, 4))
def test_raising_h3_never_adds_removals(ens, a, b):
    labels, probs = make_ensemble(*ens)
    lo, hi = sorted((a, b))
    assert removed(decide(labels, probs, h3=hi)) <= removed(decide(labels, probs, h3=lo))


@SETTINGS
@given(ENSEMBLES)
def test_no_sample_is_both_fixed_and_removed_and_fixes_change_the_label(ens):
    labels, probs = make_ensemble(*ens)
    d = decide(labels, probs, h1=1, h2=2, h3=1)
    fixed = d["action"] == "fix"
    assert (d.loc[fixed, "new_label"] != d.loc[fixed, "label"]).all()
    assert (d.loc[~fixed, "new_label"] == d.loc[~fixed, "label"]).all()
    assert set(d["action"]) <= {"keep", "fix", "remove"}


@SETTINGS
@given(ENSEMBLES)
def test_decisions_do_not_depend_on_sample_order(ens):
    labels, probs = make_ensemble(*ens)
    perm = np.random.default_rng(ens[0] + 1).permutation(len(labels))
    a = decide(labels, probs, h1=1, h2=2, h3=2)
    b = decide(labels[perm], [p[perm] for p in probs], h1=1, h2=2, h3=2)
    # b's row i is a's row perm[i]
    assert b["action"].tolist() == a["action"].to_numpy()[perm].tolist()
    assert b["new_label"].tolist() == a["new_label"].to_numpy()[perm].tolist()


@SETTINGS
@given(ENSEMBLES)
def test_decisions_do_not_depend_on_model_order(ens):
    labels, probs = make_ensemble(*ens)
    a = decide(labels, probs, h1=1, h2=2, h3=2)
    b = decide(labels, probs[::-1], h1=1, h2=2, h3=2)
    assert b["action"].tolist() == a["action"].tolist()
    assert b["new_label"].tolist() == a["new_label"].tolist()


@pytest.mark.parametrize("seed", range(3))
def test_random_ensembles_find_some_of_the_flips(seed):
    """A sanity anchor for the properties above: they are not vacuous on these ensembles."""
    labels, probs = make_ensemble(seed, 80, 4, 3)
    d = decide(labels, probs, h1=1, h2=2, h3=2)
    assert (d["action"] != "keep").sum() > 0
