"""One scoring engine for every stage that scores (query, passage) pairs: score, teacher-score,
iterative mining and the label stage's cross-encoder pruner, for both pair-scoring reranker
families -- a cross-encoder's classification head and a causal LM's yes/no logits (read by
sentence-transformers' own modules: the model's ``Transformer`` and ``LogitScore``, its prompt and
chat template):

* pairs are tokenized once per call into compact int32 id arrays, truncated ``longest_first``
  without the tokenizer's overflow windows (:mod:`rerank_lab.pair_tokens`); a pair already scored is
  in the score cache, so its ids are never needed twice;
* pairs are sorted by length and packed into batches under a token budget, so a batch of short
  pairs is wide and a batch of long pairs is narrow (little padding, steady memory);
* bf16 autocast on CUDA, fp32 on CPU by default; an explicit ``dtype`` runs on any device, and
  ``cast`` runs the weights themselves in it (bf16 on a CPU with AMX: ~3.7x fp32; an explicit,
  measured choice, never the default -- README "Rerankers");
* a persistent :class:`~rerank_lab.score_cache.ScoreCache` (sqlite) maps (model key, pair text) to a score, so a later
  experiment that needs a score already computed reads it instead of running the model. The model
  key (:func:`fingerprint`) covers everything that decides a score: the model's files or hub
  revision, its head, the scoring settings and the library versions.

A score is one real number per pair: the logit of a 1-logit head, ``logit[1] - logit[0]`` of a
2-class head (the log-odds of class 1, "relevant"), or ``logit[yes] - logit[no]`` of a causal LM;
apply a sigmoid for probabilities.
A checkpoint without a classification head (the packaged bi-encoder MiniLM) gets a fresh 1-logit
head drawn from a fixed seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from rerank_lab.errors import ConfigError
from rerank_lab.models import best_device, hub_cache, hub_offline, resolve_model
from rerank_lab.pair_tokens import encode_pairs
from rerank_lab.score_cache import ScoreCache
from rerank_lab.scoring_key import (  # noqa: F401 -- re-exported: the key is part of the engine's interface
    FRESH_HEAD_SEED,
    PLAIN,
    SCORE_RULES,
    SCORING_VERSION,
    ScoringSpec,
    fingerprint,
    key_of,
    model_key,
)

log = logging.getLogger(__name__)

Pair = tuple[str, str]
PAIR_FAMILIES = ("cross-encoder", "causal-lm")
PREPROCESS_CHUNK = 64  # pairs per sentence-transformers preprocess call (causal LMs)


def pair_key(query: str, passage: str) -> str:
    """A stable key for a pair's text.

    >>> pair_key("q", "p") == pair_key("q", "p") != pair_key("q", "p2")
    True
    """
    return hashlib.sha1(f"{query}\x00{passage}".encode()).hexdigest()


def head_scores(logits: np.ndarray) -> np.ndarray:
    """One score per row of a head's logits: the logit of a 1-logit head, ``logit[1] - logit[0]``
    of a 2-class head (log-odds of "relevant": its sigmoid is softmax's P(class 1)).

    >>> head_scores(np.array([[0.5], [-2.0]])).tolist()
    [0.5, -2.0]
    >>> head_scores(np.array([[1.0, 3.0], [0.25, -0.5]])).tolist()
    [2.0, -0.75]
    """
    if logits.shape[1] == 1:
        return logits[:, 0]
    if logits.shape[1] == 2:
        return logits[:, 1] - logits[:, 0]
    raise ConfigError(f"a head of {logits.shape[1]} logits has no reranker score", fix="use a 1-logit or 2-class cross-encoder")


class CachedScorer:
    """What every scorer shares: one score per pair in input order, each distinct pair computed
    once (:meth:`_compute`), and only if the score cache lacks it under this scorer's ``key``."""

    key: str
    cache: ScoreCache
    pairs_scored: int = 0
    forward_calls: int = 0

    def _compute(self, pairs: list[Pair]) -> np.ndarray:
        raise NotImplementedError

    def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        """One score per pair, in order; cached pairs are not recomputed."""
        pairs = list(pairs)
        keys = [pair_key(q, p) for q, p in pairs]
        cached = self.cache.get(self.key, list(dict.fromkeys(keys)))
        missing = list(dict.fromkeys(k for k in keys if k not in cached))
        if missing:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            todo_pairs = [pairs[first[k]] for k in missing]
            values = self._compute(todo_pairs)
            self.pairs_scored += len(missing)
            # what the cache holds: another process may have stored some of these pairs meanwhile
            cached.update(self.cache.put(self.key, dict(zip(missing, values.tolist()))))
        log.info("scored %d pairs (%d from cache, %d forward batches)", len(pairs), len(pairs) - len(missing), self.forward_calls)
        return np.array([cached[k] for k in keys], dtype=np.float64)


class PairScorer(CachedScorer):
    """Scores (query, passage) pairs with a cross-encoder (``spec.family`` ``cross-encoder``: a 1- or
    2-logit classification head) or a causal LM read by sentence-transformers' yes/no LogitScore
    (``causal-lm``: ``spec.prompt`` the instruction it is given, ``spec.chat_template`` one that
    replaces the model's own); ``spec.cast`` runs the weights themselves in ``dtype`` (fastest,
    least exact; else autocast). Counts its forward calls."""

    def __init__(
        self,
        model: str,
        max_length: int = 256,
        batch_tokens: int = 8192,
        dtype: str = "auto",
        device: str = "auto",
        cache: ScoreCache | None = None,
        spec: ScoringSpec = PLAIN,
    ) -> None:
        if dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"unknown dtype {dtype!r}", fix="use auto, float32, bfloat16 or float16")
        if spec.family not in PAIR_FAMILIES:
            raise ConfigError(f"the pair scorer runs {', '.join(PAIR_FAMILIES)}, not {spec.family!r}", fix="use a pair-scoring reranker")
        self.name = model
        self.max_length = max_length
        self.batch_tokens = batch_tokens
        self.device = best_device() if device == "auto" else device
        self.device_type = self.device.split(":")[0]
        self.dtype = ("bfloat16" if self.device_type == "cuda" else "float32") if dtype == "auto" else dtype
        self.spec = dataclasses.replace(spec, cast=spec.cast and self.dtype != "float32")  # a cast to fp32 is no cast
        self.cache = cache or ScoreCache(None)
        self.identity = self._fingerprint()  # refuses heads it cannot score
        self.key = key_of(self.identity)
        self.forward_calls = 0
        self.pairs_scored = 0
        self._model = None
        self._extras: dict[str, Any] = {}  # the causal path's non-token features (modality, logits_to_keep)

    def _fingerprint(self) -> dict[str, Any]:
        return fingerprint(self.name, self.max_length, self.dtype, self.device_type, self.spec)

    def _load(self):
        if self._model is None:
            import torch
            from sentence_transformers import CrossEncoder

            if self.identity["head"] == "unknown" and self.identity["model"]["source"] == "hub":
                self._fetch_hub_config()
            source = self.identity["model"]
            kwargs: dict[str, Any] = {"max_length": self.max_length, "device": self.device}
            if source["source"] == "hub":  # load the revision the key names, from the cache the key looked in
                kwargs["cache_folder"] = str(hub_cache())
                kwargs["local_files_only"] = hub_offline()  # huggingface_hub read the variable once, at import
                if source["revision"] != "unresolved":
                    kwargs["revision"] = source["revision"]
                elif self.spec.revision is not None:
                    kwargs["revision"] = self.spec.revision
            if self.spec.trust_remote_code:
                kwargs["trust_remote_code"] = True
            if self.identity["head"] in (0, "unknown") and self.spec.family == "cross-encoder":
                # No head of its own (the packaged bi-encoder MiniLM): sentence-transformers would
                # otherwise build the config's default 2-label head; a checkpoint with a head keeps it.
                kwargs["num_labels"] = 1
            if self.spec.chat_template is not None:
                kwargs["processor_kwargs"] = {"chat_template": self.spec.chat_template}
            try:
                # a fresh head is drawn from a fixed seed, or each load scores differently under one key
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(FRESH_HEAD_SEED)
                    model = CrossEncoder(resolve_model(self.name), **kwargs)
            except (OSError, ValueError) as exc:  # ValueError: a folder that holds no model
                raise ConfigError(
                    f"cannot load {self.spec.family} {self.name!r}: {exc}", fix="give a trained model folder, a hub id or all-MiniLM-L6-v2"
                ) from None
            self._check_loaded(model)
            model.eval()
            if self.spec.cast:
                model.to(getattr(torch, self.dtype))
            self._model = model
        return self._model

    def _fetch_hub_config(self) -> None:
        """A hub id not in the cache when the key was worked out: fetch its config, key it again by
        the revision and head now known, so that scores are never stored under an incomplete key."""
        from huggingface_hub import hf_hub_download

        try:
            revision = self.identity["model"]["revision"]
            hf_hub_download(
                self.name,
                "config.json",
                cache_dir=hub_cache(),
                revision=self.spec.revision if revision == "unresolved" else revision,
                local_files_only=hub_offline(),  # offline: fail at once rather than retry the network
            )
        except Exception as exc:  # offline, unknown repo, no network: all mean the model cannot load
            raise ConfigError(
                f"cannot load {self.spec.family} {self.name!r}: {exc}", fix="give a trained model folder, a hub id or all-MiniLM-L6-v2"
            ) from None
        self.identity = self._fingerprint()
        self.key = key_of(self.identity)

    def _check_loaded(self, model) -> None:
        """The loaded model is the one the key describes."""
        # by class name: the module's import path moved between sentence-transformers releases
        modules = [type(m).__name__ for m in model]
        expected_modules = ["Transformer", "LogitScore"] if self.spec.family == "causal-lm" else ["Transformer"]
        if modules != expected_modules:
            raise ConfigError(
                f"reranker {self.name!r} has modules {modules}; a {self.spec.family} reranker runs {expected_modules}",
                fix="give a model whose modules.json holds those modules (or none: sentence-transformers then builds them)",
            )
        if self.spec.family == "causal-lm":
            return
        expected = 1 if self.identity["head"] in (0, "unknown") else self.identity["head"]
        if model.num_labels != expected:
            raise ConfigError(
                f"cross-encoder {self.name!r} loaded with {model.num_labels} labels, its config says {expected}",
                fix="check the checkpoint's config.json (id2label, num_labels)",
            )

    def _tokenize(self, pairs: list[Pair]) -> list[dict[str, np.ndarray]]:
        """Token ids of each pair: a cross-encoder's truncated ``longest_first`` here
        (:mod:`rerank_lab.pair_tokens`); a causal LM's as sentence-transformers prepares them (its
        prompt, chat template and truncation), unpadded."""
        model = self._load()
        if self.spec.family == "cross-encoder":
            return encode_pairs(model.tokenizer, pairs, self.max_length)
        out: list[dict[str, np.ndarray]] = []
        for start in range(0, len(pairs), PREPROCESS_CHUNK):
            features = model.preprocess(pairs[start : start + PREPROCESS_CHUNK], prompt=self.spec.prompt)
            mask = features["attention_mask"].bool()
            rows = {k: v for k, v in features.items() if hasattr(v, "shape") and tuple(v.shape[:2]) == tuple(mask.shape)}
            self._extras = {k: v for k, v in features.items() if k not in rows}
            ids = {k: v for k, v in rows.items() if k != "attention_mask"}
            out.extend({k: v[j][mask[j]].numpy().astype(np.int32) for k, v in ids.items()} for j in range(len(mask)))
        return out

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

    def _forward(self, encoded: list[dict[str, np.ndarray]]) -> np.ndarray:
        import torch

        model = self._load()
        out = np.empty(len(encoded), dtype=np.float64)
        # an explicit dtype runs on every device (CPU autocast does bf16/fp16), so the key's dtype is the one used
        autocast = self.dtype != "float32" and not self.spec.cast
        batches = self._batches([len(e["input_ids"]) for e in encoded])
        for batch in tqdm(batches, desc=f"scoring {len(encoded)} pairs", unit="batch", disable=len(batches) < 10, leave=False):
            rows = [{n: ids.tolist() for n, ids in encoded[i].items()} for i in batch]
            features = dict(model.tokenizer.pad(rows, return_tensors="pt"))  # left-padded for a causal LM (set on load)
            features = {k: v.to(model.device) for k, v in features.items()} | self._extras
            with torch.inference_mode(), torch.autocast(self.device_type, dtype=getattr(torch, self.dtype), enabled=autocast):
                scores = model(features)["scores"]  # the model's own modules: its head, or LogitScore
            self.forward_calls += 1
            out[batch] = head_scores(scores.float().cpu().numpy().reshape(len(batch), -1))  # (batch, labels) -> (batch,)
        return out

    def _compute(self, pairs: list[Pair]) -> np.ndarray:
        return self._forward(self._tokenize(pairs))
