"""On-disk cache of explainability scores, so a rerun recomputes nothing already computed.

One SQLite file ``<cache_dir>/cam_scores.sqlite`` holds one row per
(image, label, boxes, model, fold, model fingerprint, method, heat) -> score.
SQLite commits are atomic and durable, and concurrent writers are serialised by
its lock, so an interrupted stage keeps every batch it committed and a crash
never leaves a half-written cache. The model fingerprint (a hash of the weights
and the eval geometry) keys the scores, so retraining a model invalidates its
scores; ``heat`` is part of the key because the score depends on it, whereas
``pass_score`` and ``min_methods`` are applied to cached scores and cost nothing.

A second table holds the images a (model, fold) could not score (unreadable, box
outside the image), so that ranks sharing the CAM work of a split
(:func:`imagenet_clean.cleanup.cam.find_exemptions` under torchrun) all see
them. The file carries :data:`CACHE_VERSION` (SQLite ``user_version``); a file
of another version, or one SQLite cannot read, is reported in one line on
stderr, deleted and rebuilt: its scores are never trusted.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from pathlib import Path
from typing import Iterable, Mapping

CACHE_FILE = "cam_scores.sqlite"
CACHE_VERSION = 2
"""Bumped whenever the tables or the meaning of a score change (1: scores only, no version stamp)."""

# (image, label, boxes, model, fold, fingerprint, method, heat)
Key = tuple[str, int, str, str, int, str, str, float]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    image TEXT NOT NULL, label INTEGER NOT NULL, boxes TEXT NOT NULL,
    model TEXT NOT NULL, fold INTEGER NOT NULL, fingerprint TEXT NOT NULL,
    method TEXT NOT NULL, heat REAL NOT NULL, score REAL NOT NULL,
    PRIMARY KEY (image, label, boxes, model, fold, fingerprint, method, heat)
);
CREATE TABLE IF NOT EXISTS errors (
    image TEXT NOT NULL, label INTEGER NOT NULL, boxes TEXT NOT NULL,
    model TEXT NOT NULL, fold INTEGER NOT NULL, fingerprint TEXT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (image, label, boxes, model, fold, fingerprint)
);
"""

# (image, label, boxes, model, fold, fingerprint)
ErrorKey = tuple[str, int, str, str, int, str]


class CacheError(ValueError):
    """A cache file that is corrupt or of another :data:`CACHE_VERSION`."""


def check_cache_file(path: str | Path) -> None:
    """Raise :class:`CacheError` unless ``path`` is a readable score cache of this version (or absent).

    Raises:
        CacheError: naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        return
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=600)
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            check = db.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        raise CacheError(f"CAM cache {path} is corrupt ({e})") from None
    if check != "ok":
        raise CacheError(f"CAM cache {path} is corrupt (quick_check: {check})")
    if version != CACHE_VERSION or not {"scores", "errors"} <= tables:
        raise CacheError(f"CAM cache {path} is from cache version {version or 1}, not {CACHE_VERSION}")


def _discard(path: Path) -> None:
    for p in (path, path.with_name(path.name + "-journal"), path.with_name(path.name + "-wal"),
              path.with_name(path.name + "-shm")):
        p.unlink(missing_ok=True)


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
            try:
                check_cache_file(self.path)
            except CacheError as e:
                print(f"imagenet-clean: {e}: rebuilding it", file=sys.stderr)
                _discard(self.path)
        self._db = sqlite3.connect(":memory:" if self.path is None else str(self.path), timeout=600)
        with self._db:
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {CACHE_VERSION}")

    def get_many(self, keys: Iterable[Key]) -> dict[Key, float]:
        """The cached scores among ``keys`` (missing keys are absent)."""
        return self._lookup("SELECT score FROM scores WHERE image=? AND label=? AND boxes=? AND model=? AND fold=? "
                            "AND fingerprint=? AND method=? AND heat=?", keys, float)

    def get_errors(self, keys: Iterable[ErrorKey]) -> dict[ErrorKey, str]:
        """The recorded reasons why images among ``keys`` could not be scored."""
        return self._lookup("SELECT reason FROM errors WHERE image=? AND label=? AND boxes=? AND model=? AND fold=? "
                            "AND fingerprint=?", keys, str)

    def _lookup(self, sql: str, keys: Iterable, cast) -> dict:
        """``{key: cast(value)}`` for the keys whose row ``sql`` finds."""
        out = {}
        for key in keys:
            row = self._db.execute(sql, key).fetchone()
            if row is not None:
                out[key] = cast(row[0])
        return out

    def put_many(self, scores: Mapping[Key, float], *, errors: Mapping[ErrorKey, str] | None = None) -> None:
        """Store ``scores`` (and image ``errors``) in one atomic transaction."""
        if not scores and not errors:
            return
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                 [(*k, float(v)) for k, v in scores.items()])
            self._db.executemany("INSERT OR REPLACE INTO errors VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 [(*k, str(v)) for k, v in (errors or {}).items()])

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0])

    def close(self) -> None:
        """Close the database."""
        self._db.close()
