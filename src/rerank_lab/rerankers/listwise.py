"""A listwise LLM reranker: a served LLM orders each query's head window by window (RankGPT's
sliding window, FIRST's first-token scoring), through any OpenAI-compatible endpoint
(``/v1/chat/completions``: vLLM, SGLang, ``transformers serve``, a hosted API) and the ``openai`` client.

* Windows of ``window`` passages, from the bottom of the first-stage list up by ``stride``; each
  window is reordered and the new order carried into the next, so a strong passage can climb from
  the bottom to the top in one pass. The prompt numbers the passages ``[1]`` .. ``[n]`` (or ``[A]``
  .. with ``identifiers: letters``); :mod:`rerank_lab.rerankers.listwise_prompt` renders and reads it.
* ``scoring``: ``first`` orders a window by the log-probability of each identifier as the first
  generated one (FIRST; the request asks for ``logprobs`` and ``top_logprobs``, a server that
  returns none is an error), ``permutation`` parses the generated ranking (RankGPT: repeats and
  strays dropped, missing passages appended in their current order), ``auto`` uses the
  log-probabilities where the server returns them and the ranking elsewhere. An answer that names
  no passage keeps the window's order; the run logs a warning counting such windows.
* A query's scores are ``len(list) - rank``, so the score stage's sort reproduces the final order.

Each finished window is written to the cache folder (``cache``, default ``llm-rerank/`` in the
per-user cache), keyed by the base URL, the scoring and the request as sent (model, rendered prompt
with the query and the window's passages, temperature, max_tokens, logit_bias, logprobs): a rerun
asks nothing it has already asked, an interrupted one resumes. ``force: true`` asks again (and
overwrites). The API key is read from the environment variable ``api_key_env``, never from params.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from rerank_lab.config import Number, invalid, params_model
from rerank_lab.errors import ConfigError
from rerank_lab.io.atomic import write_text
from rerank_lab.rerankers.listwise_prompt import (
    MAX_LETTERS,
    PROMPT,
    Identifiers,
    logprob_order,
    parse_permutation,
    render,
    template_problem,
    windows,
)

log = logging.getLogger(__name__)

Scoring = Literal["auto", "first", "permutation"]


@params_model("rerankers.<name>")
class ListwiseLLMReranker:
    """Windows of a query's head ordered by a served LLM (see the module text)."""

    model: str = Field(min_length=1)  # the name the server serves the model under
    base_url: str = Field(min_length=1)  # e.g. http://127.0.0.1:8000/v1
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable; unset: a placeholder is sent
    prompt: str = PROMPT  # {query}, {passages}, {n} and {example} are filled in
    identifiers: Identifiers = "numbers"  # letters: one token each on any tokenizer (FIRST), at most 26 a window
    window: int = Field(20, ge=2)
    stride: int = Field(10, ge=1)
    max_passage_words: int = Field(300, ge=1)  # a passage is cut to its first words in the prompt
    scoring: Scoring = "auto"
    top_logprobs: int = Field(20, ge=1)  # first / auto: alternatives asked for at each generated token
    temperature: Number = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(256, ge=1)  # room for a whole ranking; scoring: first needs only the first identifier
    logit_bias: dict[str, Number] = Field(default_factory=dict)  # token id -> bias, as the OpenAI API takes it
    concurrency: int = Field(8, ge=1)  # queries in flight (a query's windows go one after another)
    timeout: Number = Field(120.0, gt=0)
    max_retries: int = Field(2, ge=0)
    force: bool = False
    cache: str | None = None  # folder of finished windows; null: llm-rerank/ in the per-user cache

    family = "listwise-llm"
    reads_model_files = False  # the server loads the model: its name is not a local input of the stage

    def __post_init__(self) -> None:
        problem = template_problem(self.prompt)
        if problem:
            raise invalid(self, "prompt", problem, fix="name only {query}, {passages}, {n} and {example}; write other braces as {{ }}")
        if self.stride > self.window:
            skipped = f"must be <= window ({self.window}), or passages between windows are skipped"
            raise invalid(self, "stride", skipped, fix=f"set stride to at most {self.window}, e.g. {max(1, self.window // 2)}")
        if self.identifiers == "letters" and self.window > MAX_LETTERS:
            raise invalid(self, "window", f"must be <= {MAX_LETTERS} with identifiers: letters", fix=f"e.g. {MAX_LETTERS}")

    def scorer(self, model: str, cache: Any = None) -> ListwiseScorer:
        """``cache`` (the score stage's pair cache) is not used: a passage's score depends on its
        whole list, so windows are cached instead (:class:`WindowCache`)."""
        return ListwiseScorer(self, model)

    def _folder(self) -> Path:
        if self.cache:
            return Path(self.cache)
        from rerank_lab.cache import cache_dir

        return cache_dir() / "llm-rerank"


class WindowCache:
    """Finished windows, one JSON file per window key; ``hits`` counts the passages of the windows
    read back (the score stage reports it as pairs from cache)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.hits = folder, 0

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.folder / f"{key}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        write_text(self.folder / f"{key}.json", json.dumps(value) + "\n")


def _sha1(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()


class ListwiseScorer:
    """``score_lists``: one score array per (query, passages) list. Its counters, added up over
    calls: ``forward_calls`` requests sent, ``pairs_scored`` passages in them (a passage counts once
    per window it is sent in), ``cache.hits`` passages in windows read from the cache."""

    def __init__(self, settings: ListwiseLLMReranker, model: str) -> None:
        self.settings, self.model = settings, model
        self.cache = WindowCache(settings._folder())
        plumbing = ("force", "cache", "concurrency", "timeout", "max_retries")  # change how, not what, is asked
        identity = {k: v for k, v in dataclasses.asdict(settings).items() if k not in plumbing}
        self.key = _sha1({**identity, "family": settings.family, "model": model})
        self.pairs_scored = self.forward_calls = 0

    def score_lists(self, lists: list[tuple[str, list[str]]]) -> list[np.ndarray]:
        """Each list's passages scored ``len(list) - rank`` by their reranked order (first-stage order in)."""
        from tqdm import tqdm

        client = self._client()
        with ThreadPoolExecutor(self.settings.concurrency) as pool:
            ranked = pool.map(lambda item: self._rank(client, *item), lists)
            done = list(tqdm(ranked, total=len(lists), desc="listwise-llm", unit="query", disable=len(lists) < 10))
        counts: Counter[str] = sum((c for _, c in done), Counter())
        self.forward_calls += counts["requests"]
        self.pairs_scored += counts["sent"]
        self.cache.hits += counts["from_cache"]
        log.info(
            "listwise-llm: %d windows (%d from cache): %d by first-token logprobs, %d by the generated ranking",
            counts["windows"],
            counts["cached"],
            counts["logprobs"],
            counts["permutation"],
        )
        if counts["unparsed"]:
            log.warning(
                "listwise-llm: %d of %d windows got an answer naming no passage; they kept their order",
                counts["unparsed"],
                counts["windows"],
            )
        out = []
        for order, _ in done:
            scores = np.empty(len(order))
            scores[order] = np.arange(len(order), 0, -1)
            out.append(scores)
        return out

    def _client(self) -> Any:
        from openai import OpenAI

        s = self.settings
        key = os.environ.get(s.api_key_env) or "none"
        return OpenAI(base_url=s.base_url, api_key=key, timeout=float(s.timeout), max_retries=s.max_retries)

    def _rank(self, client: Any, query: str, passages: list[str]) -> tuple[list[int], Counter[str]]:
        """The list's final order (indices, best first) after every window, and what it took."""
        order, counts = list(range(len(passages))), Counter[str]()
        for start, end in windows(len(order), self.settings.window, self.settings.stride):
            part = order[start:end]
            got = self._window(client, query, [passages[i] for i in part], counts)
            order[start:end] = [part[i] for i in got]
        return order, counts

    def _request(self, query: str, passages: list[str]) -> dict[str, Any]:
        s = self.settings
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": render(s.prompt, query, passages, s.identifiers, s.max_passage_words)}],
            "temperature": float(s.temperature),
            "max_tokens": s.max_tokens,
        }
        if s.logit_bias:
            body["logit_bias"] = {k: float(v) for k, v in s.logit_bias.items()}  # the API takes floats (an int is refused)
        if s.scoring != "permutation":
            body |= {"logprobs": True, "top_logprobs": s.top_logprobs}
        return body

    def _window(self, client: Any, query: str, passages: list[str], counts: Counter[str]) -> list[int]:
        """One window's new order (indices into it), from the cache or the server."""
        n = len(passages)
        if n < 2:
            return list(range(n))
        s = self.settings
        body = self._request(query, passages)
        key = _sha1({"base_url": s.base_url, "scoring": s.scoring, "identifiers": s.identifiers, "request": body})
        found = None if s.force else self.cache.get(key)
        if found is None:
            choice = self._ask(client, body).choices[0]
            order, how = self._read(choice, n)
            self.cache.put(key, {"order": order, "how": how, "answer": choice.message.content})
            counts.update(requests=1, sent=n)
        else:
            order, how = found["order"], found["how"]
            counts.update(cached=1, from_cache=n)
        counts.update(["windows", how])
        return order

    def _ask(self, client: Any, body: dict[str, Any]) -> Any:
        import openai

        s = self.settings
        try:
            return client.chat.completions.create(**body)
        except openai.APIConnectionError as exc:  # refused, unresolved, timed out
            raise ConfigError(
                f"cannot reach the LLM server ({exc})",
                path=s.base_url,
                fix="start the server, or set rerankers.<name>.base_url to where it listens",
            ) from None
        except openai.APIStatusError as exc:
            said = " ".join(str(exc.message).split())[:300]
            logprobs = "; a server that refuses logprobs takes scoring: permutation" if "logprobs" in body else ""
            raise ConfigError(
                f"the LLM server answered HTTP {exc.status_code}: {said}",
                path=f"{s.base_url} ({self.model})",
                fix=f"check rerankers.<name>.model, the key in ${s.api_key_env} and the request settings against the server{logprobs}",
            ) from None

    def _read(self, choice: Any, n: int) -> tuple[list[int], str]:
        """The window's order from a response's choice, and how it was read: ``logprobs``,
        ``permutation`` or ``unparsed`` (the current order kept)."""
        s = self.settings
        content = choice.logprobs.content if choice.logprobs is not None and s.scoring != "permutation" else None
        if s.scoring == "first" and not content:
            raise ConfigError(
                "the LLM server returned no log-probabilities, which scoring: first reads",
                path=f"{s.base_url} ({self.model})",
                fix="set rerankers.<name>.scoring to auto or permutation, or serve the model where chat completions return logprobs (vLLM)",
            )
        order = logprob_order(content, n, s.identifiers) if content else None
        if order is not None:
            return order, "logprobs"
        order = parse_permutation(choice.message.content, n, s.identifiers) if s.scoring != "first" else None
        return (order, "permutation") if order is not None else (list(range(n)), "unparsed")
