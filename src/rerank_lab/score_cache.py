"""The persistent score cache: a sqlite table ``(model key, pair key) -> score`` shared by every
experiment of a user, read and written by the scoring engine (:class:`rerank_lab.scoring.PairScorer`;
the keys are :func:`rerank_lab.scoring.model_key` and :func:`rerank_lab.scoring.pair_key`), and a
second table ``(model key, text key) -> token vectors`` for late interaction, whose documents'
token embeddings every pool factor and method of a grid reuses (float32, exactly as computed)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

TABLES = {"scores": ("pair", "score"), "vectors": ("item", "data")}  # table: (key column, value column)
DEFAULT_NAME = "scores.sqlite"  # the stages' score cache: rerank_lab.cache.cache_dir() / DEFAULT_NAME


def default_cache_path() -> Path:
    """The stages' score cache when ``--cache`` is not given: ``scores.sqlite`` in the per-user
    cache folder (:func:`rerank_lab.cache.cache_dir`; created, and checked writable)."""
    from rerank_lab.cache import cache_dir

    return cache_dir() / DEFAULT_NAME


class ScoreCache:
    """A sqlite table ``(model, pair) -> score`` shared by every experiment of a user.

    ``path`` None: in memory (tests, one-off scoring). The stages default to
    ``rerank_lab.cache.cache_dir() / "scores.sqlite"`` (see :data:`DEFAULT_NAME`), outside the
    workspace, so that queued experiments (``dvc queue start -j N``) share it while they run:

    * WAL journal: readers never block the writer, and a process killed mid-write leaves the file
      consistent (the torn transaction is rolled back on the next open);
    * short write transactions (``BEGIN IMMEDIATE``, :data:`WRITE_CHUNK` rows each) under a busy
      timeout, retried while another writer holds the lock;
    * first writer wins (``INSERT OR IGNORE``) and :meth:`put` returns the stored scores, so every
      experiment uses, and later ones read, the same value for a pair even if two processes
      computed it at once (their batches may differ in the last bits).

    WAL needs a local file system (not NFS); point ``RERANK_LAB_CACHE`` at a local folder.
    """

    WRITE_CHUNK = 500
    BUSY_TIMEOUT_S = 60.0
    RETRIES = 20

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self.hits = 0
        if self.path is None:
            self._db = sqlite3.connect(":memory:", isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level None: autocommit, so each transaction is the explicit one below
            self._db = sqlite3.connect(self.path, timeout=self.BUSY_TIMEOUT_S, isolation_level=None)
            self._retry(lambda: self._db.execute("PRAGMA journal_mode=WAL"))  # persistent; switching takes the lock briefly
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: never corrupt, at worst loses the last commits on power loss
        self._retry(
            lambda: self._db.execute("CREATE TABLE IF NOT EXISTS scores (model TEXT, pair TEXT, score REAL, PRIMARY KEY (model, pair))")
        )
        self._retry(
            lambda: self._db.execute("CREATE TABLE IF NOT EXISTS vectors (model TEXT, item TEXT, data BLOB, PRIMARY KEY (model, item))")
        )

    def _retry(self, action):
        """Run ``action``; while another process holds the database (past the busy timeout, or
        where sqlite returns SQLITE_BUSY at once), wait and try again."""
        for attempt in range(self.RETRIES):
            try:
                return action()
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or attempt == self.RETRIES - 1:
                    raise
                time.sleep(min(0.05 * 2**attempt, 2.0))
        raise AssertionError("unreachable")

    def _select(self, model: str, keys: Sequence[str], table: str = "scores") -> dict[str, Any]:
        key, value = TABLES[table]
        found: dict[str, Any] = {}
        for i in range(0, len(keys), 500):  # sqlite's limit on bound variables
            chunk = list(keys[i : i + 500])
            rows = self._db.execute(
                f"SELECT {key}, {value} FROM {table} WHERE model = ? AND {key} IN ({','.join('?' * len(chunk))})", [model, *chunk]
            ).fetchall()
            found.update(rows)
        return found

    def get(self, model: str, keys: Sequence[str]) -> dict[str, float]:
        found = self._retry(lambda: self._select(model, keys))
        self.hits += len(found)
        return found

    def put(self, model: str, scores: dict[str, float], table: str = "scores") -> dict[str, Any]:
        """Store ``scores`` (a pair already stored keeps its score); returns the stored scores of these pairs."""
        items = list(scores.items())
        stored: dict[str, Any] = {}
        for i in range(0, len(items), self.WRITE_CHUNK):
            chunk = items[i : i + self.WRITE_CHUNK]
            stored.update(self._retry(lambda chunk=chunk: self._write(model, chunk, table)))
        return stored

    def get_vectors(self, model: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored token vectors (n, d) of the texts ``keys`` under ``model``."""
        found = self._retry(lambda: self._select(model, keys, "vectors"))
        return {k: _vectors(blob) for k, blob in found.items()}

    def put_vectors(self, model: str, vectors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Store each text's token vectors (first writer wins); returns the stored ones."""
        stored = self.put(model, {k: _blob(v) for k, v in vectors.items()}, "vectors")
        return {k: _vectors(blob) for k, blob in stored.items()}

    def _write(self, model: str, chunk: list[tuple[str, Any]], table: str = "scores") -> dict[str, Any]:
        # IMMEDIATE takes the write lock up front, where the busy timeout applies (a deferred
        # transaction that upgrades from read to write fails at once instead of waiting)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(f"INSERT OR IGNORE INTO {table} VALUES (?, ?, ?)", [(model, k, v) for k, v in chunk])
            stored = self._select(model, [k for k, _ in chunk], table)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return stored

    def close(self) -> None:
        self._db.close()


def _blob(vectors: np.ndarray) -> bytes:
    """(n, d) float32 vectors as bytes: d (4 bytes, little endian), then the rows."""
    v = np.ascontiguousarray(vectors, dtype="<f4")
    return np.uint32(v.shape[1]).astype("<u4").tobytes() + v.tobytes()


def _vectors(blob: bytes) -> np.ndarray:
    dim = int(np.frombuffer(blob[:4], dtype="<u4")[0])
    return np.frombuffer(blob[4:], dtype="<f4").reshape(-1, dim)
