"""Stage ``review``: the human verdicts on each split's changes -> ``metrics/review.json``."""
from __future__ import annotations

from ..config import Params
from ..workspace import Workspace


def run(params: Params | None, ws: Workspace) -> dict:
    """Reviewed changes per split and the machine's precision per rule as the reviewers judged it.

    See :func:`imagenet_clean.review.metrics.review_metrics`. ``params`` is not read:
    the splits reviewed are those with a decisions table.
    """
    from ..review.metrics import review_metrics

    return review_metrics(ws.root, out=ws.review_metrics)
