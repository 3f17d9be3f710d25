"""Linear probes on frozen features: out-of-fold class probabilities without training a network.

:func:`probe_out_of_fold` fits, for each of ``folds`` shuffled, stratified
folds (scikit-learn's ``StratifiedKFold``, seeded), a multinomial logistic
regression (scikit-learn's L-BFGS solver) on the other folds' features and
predicts the held-out fold: every sample's probabilities come from a head that
never saw its label. :func:`fit_probe` fits one head on all samples, for splits
that are checked against a cleaned training split (the paper's validation
setting). Features are standardised with the training rows' mean and standard
deviation inside each fit. Classes absent from a fit's training rows get
probability 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import PROBE_MAX_ITER


@dataclass
class ProbeHead:
    """A fitted linear head: ``softmax(((x - mean) / scale) @ coef.T + intercept)`` over ``classes``."""

    classes: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    num_classes: int

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """``(N, num_classes)`` float32 probabilities; classes the head never saw get 0."""
        z = ((np.asarray(features, np.float32) - self.mean) / self.scale) @ self.coef.T + self.intercept
        if z.shape[1] == 1:  # scikit-learn's binary head: one logit for classes[1]
            z = np.concatenate([-z / 2, z / 2], axis=1)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        out = np.zeros((len(p), self.num_classes), np.float32)
        out[:, self.classes] = p
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The head as plain arrays (``np.savez``)."""
        return {"classes": self.classes, "coef": self.coef, "intercept": self.intercept, "mean": self.mean,
                "scale": self.scale, "num_classes": np.asarray(self.num_classes)}

    @classmethod
    def from_arrays(cls, arrays) -> "ProbeHead":
        """The inverse of :meth:`to_arrays`."""
        return cls(classes=np.asarray(arrays["classes"]), coef=np.asarray(arrays["coef"]), intercept=np.asarray(arrays["intercept"]),
                   mean=np.asarray(arrays["mean"]), scale=np.asarray(arrays["scale"]), num_classes=int(arrays["num_classes"]))


def fit_probe(features: np.ndarray, labels: np.ndarray, *, num_classes: int, C: float = 1.0, max_iter: int = PROBE_MAX_ITER,
              overwrite: bool = False) -> ProbeHead:
    """One multinomial logistic head on all the given rows.

    Args:
        features: ``(N, D)`` features.
        labels: ``(N,)`` integer labels in ``[0, num_classes)``.
        num_classes: Width of the probability vectors it predicts.
        C: Inverse L2 strength (scikit-learn's ``C``; cleanlab's recipe uses 1).
        max_iter: L-BFGS iterations at most.
        overwrite: ``features`` is a float32 array the caller no longer needs: it is
            standardised in place (saves one copy: 4.9 GB at 1.28M x 1,280 x 3/4).

    Raises:
        ValueError: fewer than two classes among ``labels``, or labels out of range.
    """
    from sklearn.linear_model import LogisticRegression

    x = features if overwrite and isinstance(features, np.ndarray) and features.dtype == np.float32 else \
        np.array(features, np.float32)
    y = np.asarray(labels)
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}); got {int(y.min())}..{int(y.max())}")
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"a probe needs at least two classes among its training rows; got {classes.tolist()}")
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    scale = x.std(axis=0, dtype=np.float64).astype(np.float32)
    scale[scale < 1e-6] = 1.0
    x -= mean
    x /= scale
    clf = LogisticRegression(C=C, max_iter=max_iter)
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return ProbeHead(classes=clf.classes_.astype(np.int64), coef=clf.coef_.astype(np.float32), intercept=clf.intercept_.astype(np.float32),
                     mean=mean, scale=scale, num_classes=num_classes)


def stratified_folds(labels: np.ndarray, *, folds: int, seed: int) -> np.ndarray:
    """Fold index per sample: shuffled (seeded) and stratified by label.

    A folder walk lists files class by class, so unshuffled folds would hold
    out whole classes; stratification keeps each class's share in every fold.
    A class with fewer samples than folds is spread over as many folds as it has samples.

    Raises:
        ValueError: ``folds`` < 2 or more than the number of samples.
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(labels)
    if folds < 2 or folds > len(y):
        raise ValueError(f"folds must be in [2, {len(y)}] (number of samples); got {folds}")
    out = np.full(len(y), -1, np.int32)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only n members"
        for k, (_, held) in enumerate(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)):
            out[held] = k
    return out


def probe_out_of_fold(features: np.ndarray, labels: np.ndarray, *, num_classes: int, folds: int, seed: int, C: float = 1.0,
                      max_iter: int = PROBE_MAX_ITER, repeats: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities of every sample from k-fold linear probes.

    Args:
        features: ``(N, D)`` features.
        labels: ``(N,)`` integer labels (the given, possibly wrong, labels).
        num_classes: Width of the probability vectors.
        folds: Number of folds (k).
        seed: Seed of the fold shuffle.
        C: Inverse L2 strength of the heads.
        max_iter: L-BFGS iterations at most.
        repeats: Repeated k-fold: the probabilities are averaged over this many fold
            assignments (seeds ``seed, seed + 1, ...``); each is still out of fold.

    Returns:
        ``(probs, fold)``: ``(N, num_classes)`` float32 probabilities, each row
        from heads that did not see it, and the fold that held each row out (first assignment).
    """
    y = np.asarray(labels)
    probs = np.zeros((len(y), num_classes), np.float32)
    first = None
    for r in range(repeats):
        fold = stratified_folds(y, folds=folds, seed=seed + r)
        first = fold if first is None else first
        for k in range(folds):
            held = fold == k
            head = fit_probe(features[~held], y[~held], num_classes=num_classes, C=C, max_iter=max_iter, overwrite=True)
            probs[held] += head.predict_proba(features[held])
    if repeats > 1:
        probs /= repeats
    return probs, first
