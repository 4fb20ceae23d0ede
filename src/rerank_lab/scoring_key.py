"""The score cache's model key: everything that decides a reranker's scores, as a fingerprint.

A local folder (the packaged MiniLM included) is identified by its content, a hub id by the
revision it resolves to; then the family (how a score is read off the model), its head, the
prompt, the length limit and truncation, the dtype (and whether the weights themselves run in it),
the kind of device and the library versions. Two settings share cached scores only if every part
agrees (:func:`key_of`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from rerank_lab.errors import ConfigError
from rerank_lab.models import hub_config, hub_revision, resolve_model

# Bump when the way a model's output becomes a cached score changes (head rule, truncation, ...):
# every key changes with it, so no cache entry from the old rule is read again.
SCORING_VERSION = 2
TRUNCATION = "longest_first"
FRESH_HEAD_SEED = 0
FAMILIES = ("cross-encoder", "causal-lm", "bi-encoder", "late-interaction")
# Files in a model folder that hold no scoring state: our training report and the model card.
NOT_SCORING_STATE = {"rerank_lab_train.json", "README.md", ".rerank-lab-output"}  # the last: the stage runner's marker (io.outputs.MARKER)
# Folders that hold download bookkeeping (timestamps, etags), not model files.
NOT_MODEL_DIRS = {".git", ".cache"}
# distributions whose code computes a score: kernels, tokenization, model loading
LIBRARIES = ("torch", "transformers", "sentence-transformers", "tokenizers")
SCORE_RULES: dict[Any, str] = {
    0: f"fresh 1-logit head (seed {FRESH_HEAD_SEED}): logit",
    1: "logit",
    2: "logit[1] - logit[0]",
    "lm": "logit[yes] - logit[no] at the last token (sentence-transformers LogitScore)",
    "embedding": "cosine of the query's and the passage's embeddings",
    "tokens": "MaxSim: the sum over query tokens of the best dot product with a (pooled) document token, L2-normalised",
}


@dataclasses.dataclass(frozen=True)
class ScoringSpec:
    """How a score is read off a model, besides its files and the length, dtype and device: the
    family, its prompt and chat template, whether the weights run in the dtype (``cast``), the hub
    ref asked for and whether the model's own code runs. Part of the key; the engine follows it."""

    family: str = "cross-encoder"
    prompt: str | None = None
    chat_template: str | None = None
    cast: bool = False
    revision: str | None = None
    trust_remote_code: bool = False
    query_length: int | None = None  # late interaction: queries' token limit (documents': max_length)
    pooling: str | None = None  # late interaction: how document tokens are pooled (None: not at all)


PLAIN = ScoringSpec()  # a cross-encoder as its files say


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


def head_size(config: dict[str, Any] | None, name: str, family: str = "cross-encoder") -> int | str | None:
    """The head a score is read from: for a cross-encoder the logits of the checkpoint's own
    classification head (0 when it has none: a fresh seeded 1-logit head is drawn), ``"lm"`` for a
    causal LM's yes/no logits, ``"embedding"`` for a bi-encoder; ``None`` when the config cannot be
    read. Refuses a model its family cannot score.

    >>> head_size({"architectures": ["BertModel"]}, "m")
    0
    >>> head_size({"architectures": ["BertForSequenceClassification"]}, "m")  # transformers' default
    2
    >>> head_size({"architectures": ["BertForSequenceClassification"], "id2label": {"0": "LABEL_0"}}, "m")
    1
    >>> head_size({"architectures": ["Qwen3ForCausalLM"]}, "m", "causal-lm"), head_size(None, "m", "bi-encoder")
    ('lm', 'embedding')
    """
    if family == "bi-encoder":
        return "embedding"
    if family == "late-interaction":
        return "tokens"
    if config is None:
        return None
    arch = (config.get("architectures") or [""])[0]
    causal = arch.endswith("ForCausalLM")
    if family == "causal-lm":
        if not causal:
            raise ConfigError(
                f"model {name!r} is not a causal LM ({arch or 'no architecture'}); a causal-lm reranker reads yes/no logits",
                fix="give a *ForCausalLM checkpoint, or use type: cross-encoder for a classification head",
            )
        return "lm"
    if causal:
        raise ConfigError(
            f"model {name!r} is a causal LM ({arch}); a cross-encoder reranker scores sequence-classification heads",
            fix="use a rerankers entry of type: causal-lm (yes/no logits) for it, or give a *ForSequenceClassification checkpoint",
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


def fingerprint(
    name: str,
    max_length: int = 256,
    dtype: str = "float32",
    device: str = "cpu",
    spec: ScoringSpec = PLAIN,
) -> dict[str, Any]:
    """Everything that decides a model's scores, as a JSON-able dict (see :func:`model_key`).

    A local folder (the packaged MiniLM included) is identified by its content, a hub id by the
    revision it resolves to (``"unresolved"`` when that cannot be told); then :class:`ScoringSpec`'s
    settings that differ from a plain cross-encoder's.
    """
    if spec.family not in FAMILIES:
        raise ConfigError(f"unknown reranker family {spec.family!r}", fix=f"use one of: {', '.join(FAMILIES)}")
    path = Path(resolve_model(name))
    if path.is_dir():
        model: dict[str, Any] = {"source": "folder", "content": folder_digest(path)}
        config = _read_config(path)
    else:
        resolved = hub_revision(name, spec.revision)
        model = {"source": "hub", "id": name, "revision": resolved or "unresolved"}
        if spec.revision is not None:
            model["asked"] = spec.revision
        cached = hub_config(name, resolved) if resolved else None
        config = _read_config(Path(cached).parent) if cached else None
    head = head_size(config, name, spec.family)
    identity = {
        "scoring_version": SCORING_VERSION,
        "family": spec.family,
        "model": model,
        "head": "unknown" if head is None else head,
        "score": "unknown" if head is None else SCORE_RULES[head],
        "max_length": max_length,
        "truncation": TRUNCATION,
        "dtype": dtype,
        "device": device.split(":")[0],  # the kind of device decides the kernels, not its index
        "libraries": library_versions(),
    }
    if spec.prompt is not None:
        identity["prompt"] = spec.prompt
    if spec.chat_template is not None:
        identity["chat_template"] = spec.chat_template
    if spec.cast:
        identity["weights"] = dtype
    if spec.trust_remote_code:
        identity["trust_remote_code"] = True
    if spec.query_length is not None:
        identity["query_length"] = spec.query_length
    if spec.pooling is not None:
        identity["pooling"] = spec.pooling
    return identity


def model_key(name: str, max_length: int = 256, dtype: str = "float32", device: str = "cpu", **kw: Any) -> str:
    """A short hex key for :func:`fingerprint`: two settings share cached scores only if every part agrees."""
    return key_of(fingerprint(name, max_length, dtype, device, **kw))


def key_of(identity: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
