"""Stage ``generate``: the embedded mini-ImageNet (``generate.*``) under ``generate.out``."""
from __future__ import annotations

from ..config import Params
from ..workspace import Workspace


def run(params: Params, ws: Workspace) -> dict:
    """Write the embedded data set (:func:`imagenet_clean.data.generate.generate`); returns its summary.

    ``generate.out`` is a params path: relative to the project folder (``ws.root``).
    """
    import dataclasses

    from ..data.generate import generate

    return generate(dataclasses.replace(params.generate, out=str(ws.resolve(params.generate.out))), seed=params.seed)
