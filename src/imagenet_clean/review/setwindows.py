"""Where each class of a label set was found: the windows stage's evidence on the review page (issue 30).

The clean stage gives an image a label set when several classes are each found
in some window of a grid by enough models, two of them in windows apart
(:mod:`imagenet_clean.cleanup.labelsets`). The page shows those windows, per
class of the set, on the image: a reviewer sees that the digits sit in different
places (a scene) rather than one digit's parts read as two.

Only the image's row of the windows file is read (a parquet filter), so the
page stays fast on a split of any size. The vote settings are the ones the clean
stage recorded in the decisions' metadata; merged classes are read through the
merge table it recorded, as the clean stage read them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..classes import ClassList


class SetWindows:
    """The windows each class of a set was found in, for one split.

    Args:
        windows_path: The split's windows file (``ws.windows(split)``).
        decisions_meta: The decisions file's metadata (``label_sets`` and ``merges`` as the clean stage wrote them).
        classes: The class list.
        models: The cleanup models (``min_models`` may be a fraction of them).
        workdir: The project folder (a relative merge table is the project's).
    """

    def __init__(self, windows_path: str | Path, decisions_meta: dict, classes: ClassList, models: list[str], *,
                 workdir: str | Path):
        self.path = Path(windows_path)
        self.settings = json.loads(decisions_meta.get("label_sets") or "{}")
        self.merges = decisions_meta.get("merges") or "none"
        self.classes, self.models, self.workdir = classes, models, Path(workdir)
        self._lut: np.ndarray | None = None
        self._lut_done = False

    def lut(self) -> np.ndarray | None:
        """``class -> class after merges`` of the clean stage (None without merges)."""
        if not self._lut_done:
            from ..cleanup.merges import load_merges, merge_index, resolve_merge_spec

            merges = load_merges(resolve_merge_spec(self.merges, self.workdir), self.classes)
            self._lut, self._lut_done = (merge_index(merges, self.classes) if merges else None), True
        return self._lut

    def of(self, sample_id: str, labels: list[int]) -> dict:
        """``{"width", "height", "classes": [{"index", "windows": [[left, top, right, bottom], ...]}]}`` for ``labels``.

        A class of the set found at ``min_prob`` shows those windows; one that joined the set at the looser
        ``extend_prob`` shows its windows there. ``windows`` is empty for a class found in neither (a set
        a reviewer edited by hand).

        Raises:
            ValueError: no windows file, no row for the image, or the image was not read window by window
                (the message says which and what to run).
        """
        from ..cleanup.labelsets import class_windows, read_windows
        from ..io import read_metadata
        from ..models.windows import window_boxes
        from ..thresholds import resolve_threshold

        if not self.path.is_file():
            raise ValueError(f"{self.path.name}: no window evidence (run `imagenet-clean windows`)")
        if not self.settings:
            raise ValueError("the decisions do not record the label-set settings (rerun the clean stage)")
        rows, cls, prob = read_windows(self.path, sample_ids=[sample_id])
        if len(rows) != 1:
            raise ValueError(f"{self.path.name} has no row for {sample_id!r} (rerun `imagenet-clean windows`)")
        row = rows.iloc[0]
        if row["status"] != "ok":
            raise ValueError(f"not read window by window: {row['reason'] or row['status']}")
        meta = read_metadata(self.path)
        need = resolve_threshold(self.settings["min_models"], len(self.models))
        strong = class_windows(cls, prob, min_prob=self.settings["min_prob"], min_models=need, merge_lut=self.lut())[0]
        weak = class_windows(cls, prob, min_prob=min(self.settings.get("extend_prob", 1.0), self.settings["min_prob"]),
                             min_models=need, merge_lut=self.lut())[0]
        width, height = int(row["width"]), int(row["height"])
        boxes = window_boxes(width, height, window=float(meta["window"]), stride=float(meta["stride"]))
        out = []
        for c in labels:
            wins = strong.get(int(c), weak.get(int(c)))
            out.append({"index": int(c), "windows": [list(boxes[w]) for w in (wins.tolist() if wins is not None else [])]})
        return {"width": width, "height": height, "classes": out}
