import numpy as np
import pytest

from imagenet_clean.classes import imagenet_classes
from imagenet_clean.data.imagenet_r import (
    from_subset_labels,
    load_subset,
    restrict_logits,
    restrict_probs,
    restricted_topk,
    to_subset_labels,
)


def _probs(n=6, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random((n, 1000)).astype(np.float32) ** 8
    return p / p.sum(1, keepdims=True)


def test_subset_is_timms_200_imagenet_r_classes_in_imagenet_order():
    s = load_subset("imagenet_r")
    full = imagenet_classes()
    assert len(s) == 200 and len(set(s.indices.tolist())) == 200
    assert list(s.indices) == sorted(s.indices)
    assert all(full.wnids[i] == w for w, i in zip(s.wnids, s.indices))
    assert "n01443537" in s.wnids  # goldfish
    assert len(load_subset("imagenet_a")) == 200


def test_restricted_probs_sum_to_one_on_the_subset_only():
    p = _probs()
    s = load_subset()
    r = restrict_probs(p)
    assert r.shape == (6, 1000) and np.allclose(r.sum(1), 1, atol=1e-5)
    assert not r[:, ~s.mask()].any()
    small = restrict_probs(p, keep_shape=False)
    assert small.shape == (6, 200) and np.allclose(small, r[:, s.indices])
    # the ranking inside the subset is unchanged
    assert (np.argmax(small, 1) == np.argmax(p[:, s.indices], 1)).all()


def test_topk_only_holds_subset_classes_and_matches_restricted_argmax():
    p = _probs()
    p[0, 0] = 5.0  # tench is not an ImageNet-R class: must never appear
    top = restricted_topk(p, k=5)
    s = load_subset()
    assert top.shape == (6, 5) and np.isin(top, s.indices).all()
    assert (top[:, 0] == np.argmax(restrict_probs(p), 1)).all()


def test_logit_mask_gives_the_same_softmax_as_restricted_probs():
    torch = pytest.importorskip("torch")
    x = torch.randn(3, 1000, generator=torch.Generator().manual_seed(0))
    a = torch.softmax(restrict_logits(x), -1).numpy()
    b = restrict_probs(torch.softmax(x, -1).numpy())
    assert np.allclose(a, b, atol=1e-6)


def test_labels_map_to_subset_positions_and_back():
    s = load_subset()
    labels = np.array([s.indices[0], s.indices[199], 0, -1])
    pos = to_subset_labels(labels)
    assert pos.tolist() == [0, 199, -1, -1]
    assert from_subset_labels(pos[:2]).tolist() == labels[:2].tolist()
    with pytest.raises(ValueError, match=r"out of range \[0, 200\).*\[-1, 200\]"):
        from_subset_labels([0, 200, -1])


def test_bad_inputs_are_refused_with_the_offending_values():
    with pytest.raises(ValueError, match=r"\(N, 1000\).*\(4, 200\)"):
        restrict_probs(np.ones((4, 200)))
    with pytest.raises(ValueError, match="unknown class subset 'imagenet_x'"):
        restrict_probs(_probs(), subset="imagenet_x")
    with pytest.raises(ValueError, match="k=0"):
        restricted_topk(_probs(), k=0)
