"""k-fold linear probes: out-of-sample, shuffled and stratified, deterministic; the numerics registry."""
from __future__ import annotations

import numpy as np
import pytest

from imagenet_clean.models.probe import ProbeHead, fit_probe, probe_out_of_fold, stratified_folds
from imagenet_clean.models.speed import choose_numerics, has_fast_bf16


def _blobs(n_per=40, k=3, d=8, flip=0.1, seed=0):
    """Separable classes, labels sorted class by class (as a folder walk lists them), ``flip`` of them wrong."""
    rng = np.random.default_rng(seed)
    true = np.repeat(np.arange(k), n_per)
    centers = rng.normal(scale=4.0, size=(k, d))
    x = centers[true] + rng.normal(size=(len(true), d))
    given = true.copy()
    wrong = rng.choice(len(true), int(flip * len(true)), replace=False)
    given[wrong] = (true[wrong] + 1) % k
    # memorisable columns: one per sample, so a head that saw a sample can fit its (wrong) label
    x = np.concatenate([x, 6.0 * np.eye(len(true))], axis=1).astype(np.float32)
    return x, given, true, wrong


def test_out_of_fold_probabilities_are_out_of_sample():
    x, given, true, wrong = _blobs()
    probs, fold = probe_out_of_fold(x, given, num_classes=3, folds=4, seed=0, C=100.0)
    assert probs.shape == (len(given), 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    # held out, a misfiled sample is predicted as its true class ...
    assert (probs[wrong].argmax(1) == true[wrong]).mean() >= 0.9
    # ... while a head that saw it memorises its wrong label (what in-sample evidence would do)
    seen = fit_probe(x, given, num_classes=3, C=100.0).predict_proba(x)
    assert (seen[wrong].argmax(1) == given[wrong]).mean() >= 0.9
    # each row's probabilities are exactly those of the head fitted without its fold
    k = int(fold[wrong[0]])
    head = fit_probe(x[fold != k], given[fold != k], num_classes=3, C=100.0)
    np.testing.assert_allclose(probs[fold == k], head.predict_proba(x[fold == k]), atol=1e-6)


def test_folds_are_shuffled_stratified_and_seeded():
    labels = np.repeat([0, 1, 2], [40, 40, 20])  # sorted, as a folder walk gives them
    f0 = stratified_folds(labels, folds=4, seed=0)
    for k in range(4):
        counts = np.bincount(labels[f0 == k], minlength=3)
        assert counts.tolist() == [10, 10, 5]
    assert not all((np.diff(f0[labels == c]) >= 0).all() for c in range(3)), "folds are contiguous blocks: not shuffled"
    assert (stratified_folds(labels, folds=4, seed=0) == f0).all()
    assert (stratified_folds(labels, folds=4, seed=1) != f0).any()


def test_probe_is_deterministic():
    x, given, _, _ = _blobs(seed=3)
    a, fa = probe_out_of_fold(x, given, num_classes=4, folds=3, seed=7)
    b, fb = probe_out_of_fold(x, given, num_classes=4, folds=3, seed=7)
    assert (fa == fb).all() and np.array_equal(a, b)
    assert (a[:, 3] == 0).all()  # a class absent from training rows gets probability 0


def test_two_classes_and_head_roundtrip():
    x, given, _, _ = _blobs(k=2)
    head = fit_probe(x, given, num_classes=2)
    again = ProbeHead.from_arrays(head.to_arrays())
    np.testing.assert_array_equal(head.predict_proba(x), again.predict_proba(x))
    assert head.predict_proba(x).shape == (len(x), 2)


def test_bad_probe_input():
    with pytest.raises(ValueError, match="at least two classes"):
        fit_probe(np.ones((4, 2), np.float32), np.zeros(4, int), num_classes=3)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        fit_probe(np.ones((4, 2), np.float32), np.array([0, 1, 2, 1]), num_classes=2)
    with pytest.raises(ValueError, match="folds must be in"):
        stratified_folds(np.array([0, 1, 0]), folds=5, seed=0)


@pytest.mark.parametrize("flags, n, compiler, want", [
    ({"avx512_bf16", "avx2"}, 1000, True, "bf16"),
    ({"amx_bf16"}, 100_000, True, "bf16-compile"),
    ({"avx2"}, 1000, True, "eager"),
    ({"avx2"}, 100_000, True, "compile"),
    ({"avx2"}, 100_000, False, "eager"),
])
def test_numerics_are_chosen_by_cpu_and_workload(flags, n, compiler, want):
    numerics, why = choose_numerics("auto", n_images=n, flags=flags, compiler=compiler)
    assert numerics.name == want and why
    assert has_fast_bf16(flags) == numerics.bf16


def test_numerics_set_by_hand_and_unknown():
    assert choose_numerics("eager", n_images=10**6, flags={"amx_bf16"})[0].name == "eager"
    assert choose_numerics("auto", n_images=10**6, device_type="cuda")[0].name == "eager"
    with pytest.raises(ValueError, match="features.speed 'fast'"):
        choose_numerics("fast", n_images=1)


def test_repeated_folds_average_out_of_fold_probabilities():
    x, given, _, _ = _blobs(seed=5)
    one, fold = probe_out_of_fold(x, given, num_classes=3, folds=4, seed=2)
    second, _ = probe_out_of_fold(x, given, num_classes=3, folds=4, seed=3)
    both, fold2 = probe_out_of_fold(x, given, num_classes=3, folds=4, seed=2, repeats=2)
    np.testing.assert_allclose(both, (one + second) / 2, atol=1e-6)
    assert (fold2 == fold).all()
