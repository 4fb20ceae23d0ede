"""An LLM pruner: asks a served LLM, span by span, whether the span is evidence for the query.

It talks to any OpenAI-compatible endpoint (``/v1/chat/completions``: vLLM, ``transformers
serve``, a hosted API) through the ``openai`` client. The answer's first word must be ``yes``
(score 1) or ``no`` (score 0); anything else -- another word, an empty answer, an answer cut off
at ``max_tokens`` -- stops the stage with an error naming the record (row, text, span) and the
answer. ``logit_bias`` is passed through, e.g. to restrict the answer to the yes/no tokens.

Spans go in batches of ``batch_size`` (``concurrency`` requests in flight). Each finished batch is
written to the cache folder (``cache``, default ``llm-labels/`` in the per-user cache), keyed by the
model, prompt, settings and the batch's pairs: an interrupted run resumes after the last finished
batch, and a rerun asks nothing it has already asked. ``force: true`` asks again (and overwrites).
The API key is read from the environment variable ``api_key_env``, never from params.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import Field

from rerank_lab.config import Number, params_model
from rerank_lab.errors import InputError
from rerank_lab.io.atomic import write_text

log = logging.getLogger(__name__)

PROMPT = "Query: {query}\nSentence: {span}\nIs the sentence evidence that answers the query? Answer yes or no."


def parse_answer(answer: str | None, finish_reason: str | None) -> float | None:
    """1.0 for yes, 0.0 for no, ``None`` for anything else (case and trailing punctuation aside).

    >>> parse_answer("Yes.", "stop"), parse_answer(" no, because", "length"), parse_answer("maybe", "stop")
    (1.0, 0.0, None)
    """
    words = (answer or "").strip().split()
    first = words[0].strip(".,:;!\"'").lower() if words else ""
    return {"yes": 1.0, "no": 0.0}.get(first)


@params_model("pruners.<name>")
class LLMPruner:
    """Yes/no span labels from an OpenAI-compatible chat endpoint (see the module text)."""

    model: str = Field(min_length=1)  # the served model's name
    base_url: str = Field("http://127.0.0.1:8000/v1", min_length=1)
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable; unset: none sent
    prompt: str = PROMPT  # {query} and {span} are filled in
    max_tokens: int = Field(4, ge=1)
    logit_bias: dict[str, Number] = Field(default_factory=dict)  # token id -> bias, as the OpenAI API takes it
    batch_size: int = Field(64, ge=1)
    concurrency: int = Field(8, ge=1)
    timeout: Number = Field(120.0, gt=0)
    max_retries: int = Field(2, ge=0)
    force: bool = False
    cache: str | None = None  # folder of finished batches; null: llm-labels/ in the per-user cache

    def _client(self):
        from openai import OpenAI

        return OpenAI(
            base_url=self.base_url,
            api_key=os.environ.get(self.api_key_env) or "none",
            timeout=float(self.timeout),
            max_retries=self.max_retries,
        )

    def _folder(self) -> Path:
        if self.cache:
            return Path(self.cache)
        from rerank_lab.cache import cache_dir

        return cache_dir() / "llm-labels"

    def batch_key(self, pairs: list[tuple[str, str]]) -> str:
        """What a batch's answers depend on: the model, the request settings and its pairs."""
        settings = {"model": self.model, "prompt": self.prompt, "max_tokens": self.max_tokens, "logit_bias": self.logit_bias}
        return hashlib.sha256(json.dumps([settings, pairs], sort_keys=True).encode()).hexdigest()[:24]

    def _ask(self, client, pair: tuple[str, str], record: str) -> float:
        response = client.chat.completions.create(
            model=self.model,
            messages=[{"role": "user", "content": self.prompt.format(query=pair[0], span=pair[1])}],
            max_tokens=self.max_tokens,
            temperature=0.0,
            **({"logit_bias": {k: float(v) for k, v in self.logit_bias.items()}} if self.logit_bias else {}),
        )
        choice = response.choices[0]
        score = parse_answer(choice.message.content, choice.finish_reason)
        if score is None:
            cut = " (cut off at max_tokens)" if choice.finish_reason == "length" else ""
            raise InputError(
                f"the LLM's answer {choice.message.content!r}{cut} is not yes or no",
                path=f"{self.base_url} ({self.model})",
                record=record,
                fix="check the served model and pruners.<name>.prompt, or raise max_tokens if answers are cut off",
            )
        return score

    def scores(self, pairs: list[tuple[str, str]], records: list[str], cache: Any = None) -> list[float]:
        """One 0/1 score per pair, batch by batch, finished batches read from / written to the cache."""
        folder = self._folder()
        counts = self.__dict__  # the run's counters (requests sent, batches read back) beside the frozen settings
        counts["requests"] = counts["cached_batches"] = 0
        out: list[float] = []
        client = None
        for start in range(0, len(pairs), self.batch_size):
            batch, names = pairs[start : start + self.batch_size], records[start : start + self.batch_size]
            path = folder / f"{self.batch_key(batch)}.json"
            if path.is_file() and not self.force:
                out += json.loads(path.read_text())["scores"]
                counts["cached_batches"] += 1
                continue
            client = client or self._client()
            with ThreadPoolExecutor(self.concurrency) as pool:
                got = list(pool.map(self._ask, [client] * len(batch), batch, names))
            counts["requests"] += len(batch)
            write_text(path, json.dumps({"model": self.model, "records": names, "scores": got}) + "\n")
            out += got
            log.info("llm pruner: %d of %d spans labelled", len(out), len(pairs))
        return out
