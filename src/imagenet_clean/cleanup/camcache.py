"""On-disk cache of explainability scores, so a rerun recomputes nothing already computed.

One SQLite file ``<cache_dir>/cam_scores.sqlite`` holds one row per
(image, label, boxes, model, fold, model fingerprint, method, heat) -> score.
SQLite commits are atomic and durable, and concurrent writers are serialised by
its lock, so an interrupted stage keeps every batch it committed and a crash
never leaves a half-written cache. The model fingerprint (a hash of the weights
and the eval geometry) keys the scores, so retraining a model invalidates its
scores; ``heat`` is part of the key because the score depends on it, whereas
``pass_score`` and ``min_methods`` are applied to cached scores and cost nothing.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Iterable, Mapping

CACHE_FILE = "cam_scores.sqlite"

# (image, label, boxes, model, fold, fingerprint, method, heat)
Key = tuple[str, int, str, str, int, str, str, float]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    image TEXT NOT NULL, label INTEGER NOT NULL, boxes TEXT NOT NULL,
    model TEXT NOT NULL, fold INTEGER NOT NULL, fingerprint TEXT NOT NULL,
    method TEXT NOT NULL, heat REAL NOT NULL, score REAL NOT NULL,
    PRIMARY KEY (image, label, boxes, model, fold, fingerprint, method, heat)
)
"""


def boxes_digest(boxes) -> str:
    """A short stable digest of a list of boxes (rounded to 1/1000 pixel)."""
    text = json.dumps([[round(float(v), 3) for v in b] for b in boxes])
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class ScoreCache:
    """Explainability scores keyed by :data:`Key`; in memory when ``cache_dir`` is None.

    Args:
        cache_dir: Folder for ``cam_scores.sqlite`` (created if missing), or None
            for a cache that lives only as long as this object.
    """

    def __init__(self, cache_dir: str | Path | None) -> None:
        self.path = None if cache_dir is None else Path(cache_dir) / CACHE_FILE
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(":memory:" if self.path is None else str(self.path), timeout=600)
        with self._db:
            self._db.execute(_SCHEMA)

    def get_many(self, keys: Iterable[Key]) -> dict[Key, float]:
        """The cached scores among ``keys`` (missing keys are absent)."""
        out = {}
        for key in keys:
            row = self._db.execute(
                "SELECT score FROM scores WHERE image=? AND label=? AND boxes=? AND model=? AND fold=? "
                "AND fingerprint=? AND method=? AND heat=?", key).fetchone()
            if row is not None:
                out[key] = float(row[0])
        return out

    def put_many(self, scores: Mapping[Key, float]) -> None:
        """Store ``scores`` in one atomic transaction."""
        if not scores:
            return
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                 [(*k, float(v)) for k, v in scores.items()])

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0])

    def close(self) -> None:
        """Close the database."""
        self._db.close()
