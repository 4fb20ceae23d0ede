"""One scoring engine for every stage that runs a cross-encoder over (query, passage) pairs.

* pairs are tokenized once and the token ids kept, keyed by the pair's text;
* pairs are sorted by length and packed into batches under a token budget, so a batch of short
  pairs is wide and a batch of long pairs is narrow (little padding, steady memory);
* bf16 autocast on CUDA, fp32 on CPU, chosen from the device;
* a persistent :class:`ScoreCache` (sqlite) maps (model key, pair text) to a score, so a later
  experiment that needs a score already computed reads it instead of running the model.

Scores are the model's raw logits (one per pair); apply a sigmoid for probabilities.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rerank_lab.errors import ConfigError
from rerank_lab.models import best_device, resolve_model

log = logging.getLogger(__name__)

Pair = tuple[str, str]


def pair_key(query: str, passage: str) -> str:
    """A stable key for a pair's text.

    >>> pair_key("q", "p") == pair_key("q", "p") != pair_key("q", "p2")
    True
    """
    return hashlib.sha1(f"{query}\x00{passage}".encode()).hexdigest()


def model_key(name: str, max_length: int) -> str:
    """Identify a model's scores: its weights' hash (a local folder) or its name (a hub id)."""
    path = Path(resolve_model(name))
    digest = hashlib.sha1(str(max_length).encode())
    if path.is_dir():
        for f in sorted(path.rglob("*")):
            # weights, config and tokenizer; not our own training report, which holds no weights
            if (
                f.is_file()
                and f.suffix in {".safetensors", ".bin", ".json", ".txt"}
                and "checkpoint-" not in str(f)
                and f.name != "rerank_lab_train.json"
            ):
                digest.update(f.relative_to(path).as_posix().encode())
                digest.update(hashlib.sha1(f.read_bytes()).digest())
    else:
        digest.update(name.encode())
    return digest.hexdigest()[:16]


class ScoreCache:
    """A sqlite table ``(model, pair) -> score`` shared by every experiment in a checkout."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self.hits = 0
        if self.path is None:
            self._db = sqlite3.connect(":memory:")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("CREATE TABLE IF NOT EXISTS scores (model TEXT, pair TEXT, score REAL, PRIMARY KEY (model, pair))")

    def get(self, model: str, keys: Sequence[str]) -> dict[str, float]:
        found: dict[str, float] = {}
        for i in range(0, len(keys), 500):
            chunk = list(keys[i : i + 500])
            rows = self._db.execute(
                f"SELECT pair, score FROM scores WHERE model = ? AND pair IN ({','.join('?' * len(chunk))})", [model, *chunk]
            ).fetchall()
            found.update(rows)
        self.hits += len(found)
        return found

    def put(self, model: str, scores: dict[str, float]) -> None:
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?)", [(model, k, v) for k, v in scores.items()])


class PairScorer:
    """Scores (query, passage) pairs with a cross-encoder; counts its forward calls."""

    def __init__(
        self,
        model: str,
        max_length: int = 256,
        batch_tokens: int = 8192,
        dtype: str = "auto",
        device: str = "auto",
        cache: ScoreCache | None = None,
    ) -> None:
        if dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"unknown dtype {dtype!r}", fix="use auto, float32, bfloat16 or float16")
        self.name = model
        self.max_length = max_length
        self.batch_tokens = batch_tokens
        self.device = best_device() if device == "auto" else device
        self.dtype = ("bfloat16" if self.device == "cuda" else "float32") if dtype == "auto" else dtype
        self.cache = cache or ScoreCache(None)
        self.key = model_key(model, max_length)
        self.forward_calls = 0
        self.pairs_scored = 0
        self._model = None
        self._encoded: dict[str, dict[str, list[int]]] = {}  # pair key -> input_ids (+ token_type_ids)

    def _load(self):
        if self._model is None:
            import torch
            from sentence_transformers import CrossEncoder

            try:
                # A checkpoint without a classification head (the packaged MiniLM) gets a fresh one:
                # draw it from a fixed seed, or each load scores differently under one cache key.
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    self._model = CrossEncoder(resolve_model(self.name), num_labels=1, max_length=self.max_length, device=self.device)
            except (OSError, ValueError) as exc:  # ValueError: a folder that holds no model
                raise ConfigError(
                    f"cannot load cross-encoder {self.name!r}: {exc}", fix="give a trained model folder, a hub id or all-MiniLM-L6-v2"
                ) from None
            self._model.model.eval()
        return self._model

    def _tokenize(self, pairs: list[Pair], keys: list[str]) -> list[dict[str, list[int]]]:
        todo = [i for i, k in enumerate(keys) if k not in self._encoded]
        if todo:
            tok = self._load().tokenizer
            enc = tok([pairs[i][0] for i in todo], [pairs[i][1] for i in todo], truncation="longest_first", max_length=self.max_length)
            names = [n for n in enc if n != "attention_mask"]
            for j, i in enumerate(todo):
                self._encoded[keys[i]] = {n: enc[n][j] for n in names}
        return [self._encoded[k] for k in keys]

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices grouped longest first so that ``len(batch) * longest <= batch_tokens``."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batches, current = [], []
        for i in order:
            width = lengths[current[0]] if current else lengths[i]
            if current and (len(current) + 1) * width > self.batch_tokens:
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        return batches

    def _forward(self, encoded: list[dict[str, list[int]]]) -> np.ndarray:
        import torch

        model = self._load()
        out = np.empty(len(encoded), dtype=np.float64)
        autocast = torch.autocast("cuda", dtype=getattr(torch, self.dtype)) if self.device == "cuda" and self.dtype != "float32" else None
        batches = self._batches([len(e["input_ids"]) for e in encoded])
        for batch in tqdm(batches, desc=f"scoring {len(encoded)} pairs", unit="batch", disable=len(batches) < 10, leave=False):
            features = model.tokenizer.pad([encoded[i] for i in batch], return_tensors="pt")
            features = {k: v.to(model.device) for k, v in features.items()}
            with torch.inference_mode():
                if autocast is not None:
                    with autocast:
                        logits = model.model(**features).logits
                else:
                    logits = model.model(**features).logits
            self.forward_calls += 1
            out[batch] = logits.float().view(-1).cpu().numpy()  # (batch,)
        return out

    def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        """One score per pair, in order; cached pairs are not recomputed."""
        pairs = list(pairs)
        keys = [pair_key(q, p) for q, p in pairs]
        cached = self.cache.get(self.key, list(dict.fromkeys(keys)))
        missing = list(dict.fromkeys(k for k in keys if k not in cached))
        if missing:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            todo_pairs = [pairs[first[k]] for k in missing]
            values = self._forward(self._tokenize(todo_pairs, missing))
            self.pairs_scored += len(missing)
            fresh = dict(zip(missing, values.tolist()))
            self.cache.put(self.key, fresh)
            cached.update(fresh)
        log.info("scored %d pairs (%d from cache, %d forward batches)", len(pairs), len(pairs) - len(missing), self.forward_calls)
        return np.array([cached[k] for k in keys], dtype=np.float64)
