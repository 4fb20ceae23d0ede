"""One scoring engine for every stage that runs a cross-encoder over (query, passage) pairs.

* pairs are tokenized once per call into compact int32 id arrays, truncated ``longest_first``
  without the tokenizer's overflow windows (:mod:`rerank_lab.pair_tokens`); a pair already scored is
  in the score cache, so its ids are never needed twice;
* pairs are sorted by length and packed into batches under a token budget, so a batch of short
  pairs is wide and a batch of long pairs is narrow (little padding, steady memory);
* bf16 autocast on CUDA, fp32 on CPU by default; an explicit ``dtype`` runs on any device;
* a persistent :class:`~rerank_lab.score_cache.ScoreCache` (sqlite) maps (model key, pair text) to a score, so a later
  experiment that needs a score already computed reads it instead of running the model. The model
  key (:func:`fingerprint`) covers everything that decides a score: the model's files or hub
  revision, its head, the scoring settings and the library versions.

A score is one real number per pair: the logit of a 1-logit head, or ``logit[1] - logit[0]`` of a
2-class head (the log-odds of class 1, "relevant"); apply a sigmoid for probabilities either way.
A checkpoint without a classification head (the packaged bi-encoder MiniLM) gets a fresh 1-logit
head drawn from a fixed seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rerank_lab.errors import ConfigError
from rerank_lab.models import best_device, hub_cache, hub_config, hub_offline, hub_revision, resolve_model
from rerank_lab.pair_tokens import encode_pairs
from rerank_lab.score_cache import ScoreCache

log = logging.getLogger(__name__)

Pair = tuple[str, str]

# Bump when the way a model's output becomes a cached score changes (head rule, truncation, ...):
# every key changes with it, so no cache entry from the old rule is read again.
SCORING_VERSION = 2
TRUNCATION = "longest_first"
FRESH_HEAD_SEED = 0
# Files in a model folder that hold no scoring state: our training report and the model card.
NOT_SCORING_STATE = {"rerank_lab_train.json", "README.md", ".rerank-lab-output"}  # the last: the stage runner's marker (io.outputs.MARKER)
# Folders that hold download bookkeeping (timestamps, etags), not model files.
NOT_MODEL_DIRS = {".git", ".cache"}
# distributions whose code computes a score: kernels, tokenization, model loading
LIBRARIES = ("torch", "transformers", "sentence-transformers", "tokenizers")
SCORE_RULES = {0: f"fresh 1-logit head (seed {FRESH_HEAD_SEED}): logit", 1: "logit", 2: "logit[1] - logit[0]"}


def pair_key(query: str, passage: str) -> str:
    """A stable key for a pair's text.

    >>> pair_key("q", "p") == pair_key("q", "p") != pair_key("q", "p2")
    True
    """
    return hashlib.sha1(f"{query}\x00{passage}".encode()).hexdigest()


# --- the model key ------------------------------------------------------------------------------


def folder_digest(path: Path) -> str:
    """A hash of every file in a model folder that can change a score (weights, config, every
    tokenizer file whatever its extension), by relative path and content; left out: ``checkpoint-*``
    folders (a training run's leftovers), download bookkeeping and :data:`NOT_SCORING_STATE`."""
    digest = hashlib.sha1()
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path)
        if not f.is_file() or rel.as_posix() in NOT_SCORING_STATE:
            continue
        if any(part.startswith("checkpoint-") or part in NOT_MODEL_DIRS for part in rel.parts[:-1]):
            continue
        with f.open("rb") as fh:
            digest.update(rel.as_posix().encode() + b"\x00" + hashlib.file_digest(fh, "sha1").digest())
    return digest.hexdigest()


def _read_config(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def head_size(config: dict[str, Any] | None, name: str) -> int | None:
    """Logits of the checkpoint's own classification head: 0 when it has none (a fresh seeded
    1-logit head is drawn), ``None`` when its config cannot be read; refuses heads it cannot score.

    >>> head_size({"architectures": ["BertModel"]}, "m")
    0
    >>> head_size({"architectures": ["BertForSequenceClassification"]}, "m")  # transformers' default
    2
    >>> head_size({"architectures": ["BertForSequenceClassification"], "id2label": {"0": "LABEL_0"}}, "m")
    1
    """
    if config is None:
        return None
    arch = (config.get("architectures") or [""])[0]
    if arch.endswith("ForCausalLM"):
        raise ConfigError(
            f"model {name!r} is a causal LM ({arch}); the scoring engine scores sequence-classification heads only",
            fix="give a cross-encoder (a *ForSequenceClassification checkpoint) or a model trained by the train stage",
        )
    if not arch.endswith("ForSequenceClassification"):
        return 0
    # transformers: id2label sets the label count; a config without one keeps the default of 2
    n = len(config["id2label"]) if config.get("id2label") else int(config.get("num_labels", 2))
    if n not in (1, 2):
        raise ConfigError(
            f"model {name!r} has a {n}-label classification head; a reranker score needs 1 logit or 2 classes (not relevant, relevant)",
            fix="give a cross-encoder with num_labels 1 or 2, or train one with train.loss=bce or ce",
        )
    return n


def library_versions() -> dict[str, str]:
    """Installed versions of :data:`LIBRARIES`, read from package metadata (importing
    sentence-transformers only to ask would cost seconds before a fully cached run)."""
    from importlib import metadata

    versions = {}
    for dist in LIBRARIES:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def fingerprint(name: str, max_length: int = 256, dtype: str = "float32", device: str = "cpu") -> dict[str, Any]:
    """Everything that decides a model's scores, as a JSON-able dict (see :func:`model_key`).

    A local folder (the packaged MiniLM included) is identified by its content, a hub id by the
    revision it resolves to (``"unresolved"`` when that cannot be told).
    """
    path = Path(resolve_model(name))
    if path.is_dir():
        model: dict[str, Any] = {"source": "folder", "content": folder_digest(path)}
        config = _read_config(path)
    else:
        revision = hub_revision(name)
        model = {"source": "hub", "id": name, "revision": revision or "unresolved"}
        cached = hub_config(name, revision) if revision else None
        config = _read_config(Path(cached).parent) if cached else None
    head = head_size(config, name)
    return {
        "scoring_version": SCORING_VERSION,
        "model": model,
        "head": "unknown" if head is None else head,
        "score": "unknown" if head is None else SCORE_RULES[head],
        "max_length": max_length,
        "truncation": TRUNCATION,
        "dtype": dtype,
        "device": device.split(":")[0],  # the kind of device decides the kernels, not its index
        "libraries": library_versions(),
    }


def model_key(name: str, max_length: int = 256, dtype: str = "float32", device: str = "cpu") -> str:
    """A short hex key for :func:`fingerprint`: two settings share cached scores only if every part agrees."""
    return key_of(fingerprint(name, max_length, dtype, device))


def key_of(identity: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


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
        self.device_type = self.device.split(":")[0]
        self.dtype = ("bfloat16" if self.device_type == "cuda" else "float32") if dtype == "auto" else dtype
        self.cache = cache or ScoreCache(None)
        self.identity = fingerprint(model, max_length, self.dtype, self.device_type)  # refuses heads it cannot score
        self.key = key_of(self.identity)
        self.forward_calls = 0
        self.pairs_scored = 0
        self._model = None

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
            if self.identity["head"] in (0, "unknown"):
                # No head of its own (the packaged bi-encoder MiniLM): sentence-transformers would
                # otherwise build the config's default 2-label head; a checkpoint with a head keeps it.
                kwargs["num_labels"] = 1
            try:
                # a fresh head is drawn from a fixed seed, or each load scores differently under one key
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(FRESH_HEAD_SEED)
                    model = CrossEncoder(resolve_model(self.name), **kwargs)
            except (OSError, ValueError) as exc:  # ValueError: a folder that holds no model
                raise ConfigError(
                    f"cannot load cross-encoder {self.name!r}: {exc}", fix="give a trained model folder, a hub id or all-MiniLM-L6-v2"
                ) from None
            self._check_loaded(model)
            model.model.eval()
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
                revision=None if revision == "unresolved" else revision,
                local_files_only=hub_offline(),  # offline: fail at once rather than retry the network
            )
        except Exception as exc:  # offline, unknown repo, no network: all mean the model cannot load
            raise ConfigError(
                f"cannot load cross-encoder {self.name!r}: {exc}", fix="give a trained model folder, a hub id or all-MiniLM-L6-v2"
            ) from None
        self.identity = fingerprint(self.name, self.max_length, self.dtype, self.device_type)
        self.key = key_of(self.identity)

    def _check_loaded(self, model) -> None:
        """The loaded model is the one the key describes."""
        # by class name: the module's import path moved between sentence-transformers releases
        if [type(m).__name__ for m in model] != ["Transformer"]:
            raise ConfigError(
                f"cross-encoder {self.name!r} has modules {[type(m).__name__ for m in model]}; the scoring engine runs one "
                "sequence-classification transformer",
                fix="give a cross-encoder whose modules.json holds only the Transformer module",
            )
        expected = 1 if self.identity["head"] in (0, "unknown") else self.identity["head"]
        if model.num_labels != expected:
            raise ConfigError(
                f"cross-encoder {self.name!r} loaded with {model.num_labels} labels, its config says {expected}",
                fix="check the checkpoint's config.json (id2label, num_labels)",
            )

    def _tokenize(self, pairs: list[Pair]) -> list[dict[str, np.ndarray]]:
        """Token ids of each pair, truncated ``longest_first`` (:mod:`rerank_lab.pair_tokens`)."""
        return encode_pairs(self._load().tokenizer, pairs, self.max_length)

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
        autocast = torch.autocast(self.device_type, dtype=getattr(torch, self.dtype)) if self.dtype != "float32" else None
        batches = self._batches([len(e["input_ids"]) for e in encoded])
        for batch in tqdm(batches, desc=f"scoring {len(encoded)} pairs", unit="batch", disable=len(batches) < 10, leave=False):
            rows = [{n: ids.tolist() for n, ids in encoded[i].items()} for i in batch]
            features = model.tokenizer.pad(rows, return_tensors="pt")
            features = {k: v.to(model.device) for k, v in features.items()}
            with torch.inference_mode():
                if autocast is not None:
                    with autocast:
                        logits = model.model(**features).logits
                else:
                    logits = model.model(**features).logits
            self.forward_calls += 1
            out[batch] = head_scores(logits.float().cpu().numpy())  # (batch, labels) -> (batch,)
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
            values = self._forward(self._tokenize(todo_pairs))
            self.pairs_scored += len(missing)
            # what the cache holds: another process may have stored some of these pairs meanwhile
            cached.update(self.cache.put(self.key, dict(zip(missing, values.tolist()))))
        log.info("scored %d pairs (%d from cache, %d forward batches)", len(pairs), len(pairs) - len(missing), self.forward_calls)
        return np.array([cached[k] for k in keys], dtype=np.float64)
