"""The listwise reranker's window arithmetic, prompt and answer reading: pure functions, no server.

A window of passages is shown to the LLM as ``[1] <text>`` ... ``[n] <text>`` (or ``[A]`` ...
``[T]`` with letter identifiers); the LLM answers with the identifiers in order of relevance,
``[3] > [1] > [2]`` (RankGPT), and FIRST reads the same ranking off the log-probabilities of the
first identifier it generates.
"""

from __future__ import annotations

import math
import re
import string
from typing import Any, Literal

Identifiers = Literal["numbers", "letters"]
MAX_LETTERS = 26

PROMPT = (
    "I will provide you with {n} passages, each indicated by an identifier in brackets. "
    "Rank the passages based on their relevance to the search query: {query}\n\n"
    "{passages}\n\n"
    "Search query: {query}\n"
    "Rank the {n} passages above based on their relevance to the search query, most relevant first. "
    "List all the passages by their identifiers, in the format {example}. Only respond with the ranking, do not explain."
)
FIELDS = ("query", "n", "passages", "example")  # what a prompt template may name


def windows(n: int, window: int, stride: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` slices RankGPT's sliding window reorders, from the bottom of a list of
    ``n`` up by ``stride``; the last one starts at the top (RankGPT's own loop can stop short of it).

    >>> windows(7, 3, 2)
    [(4, 7), (2, 5), (0, 3)]
    >>> windows(25, 20, 10), windows(3, 20, 10), windows(1, 20, 10)
    ([(5, 25), (0, 15)], [(0, 3)], [])
    """
    out: list[tuple[int, int]] = []
    end = n if n > 1 else 0
    while end > 0:
        start = max(0, end - window)
        out.append((start, end))
        end = 0 if start == 0 else end - stride
    return out


def labels(n: int, identifiers: Identifiers) -> list[str]:
    """The identifiers of a window of ``n`` passages.

    >>> labels(3, "numbers"), labels(3, "letters")
    (['1', '2', '3'], ['A', 'B', 'C'])
    """
    return [str(i + 1) if identifiers == "numbers" else chr(ord("A") + i) for i in range(n)]


def render(template: str, query: str, passages: list[str], identifiers: Identifiers, max_words: int) -> str:
    """The prompt for one window: each passage on one line after its identifier, cut to ``max_words`` words.

    >>> print(render("{query}|{n}|{example}\\n{passages}", "cats?", ["a cat  purrs\\nloudly", "dogs"], "letters", 3))
    cats?|2|[B] > [A]
    [A] a cat purrs
    [B] dogs
    """
    ids = labels(max(len(passages), 2), identifiers)
    lines = [f"[{label}] {' '.join(text.split()[:max_words])}" for label, text in zip(ids, passages)]
    return template.format(query=query, n=len(passages), passages="\n".join(lines), example=f"[{ids[1]}] > [{ids[0]}]")


def template_problem(template: str) -> str | None:
    """Why ``template`` cannot be a prompt, or ``None``.

    >>> template_problem(PROMPT) is None, template_problem("{query} {passages} {title}")
    (True, 'names {title}')
    >>> template_problem("rank these: {passages}")
    'lacks {query}'
    """
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        return f"is not a format string ({exc})"
    stray = sorted(names - set(FIELDS))
    if stray:
        return f"names {{{stray[0]}}}"
    missing = [f for f in ("query", "passages") if f not in names]
    return f"lacks {{{missing[0]}}}" if missing else None


def _index(text: str, n: int, identifiers: Identifiers) -> int | None:
    i = int(text) - 1 if identifiers == "numbers" else ord(text) - ord("A")
    return i if 0 <= i < n else None


def parse_permutation(answer: str | None, n: int, identifiers: Identifiers = "numbers") -> list[int] | None:
    """The order an answer gives a window of ``n``: indices into the window, best first. The
    identifiers in brackets are read if there are any, else the bare ones; repeats and identifiers
    out of range are dropped, missing passages follow in their current order. ``None``: the answer
    names no passage.

    >>> parse_permutation("[3] > [1] > [3] > [9] > [0]", 4)
    [2, 0, 1, 3]
    >>> parse_permutation("2 > 3", 3), parse_permutation("I rank [C] > [A]", 3, "letters")
    ([1, 2, 0], [2, 0, 1])
    >>> parse_permutation("I cannot rank these passages.", 3), parse_permutation("[7] > [8]", 3), parse_permutation(None, 3)
    (None, None, None)
    """
    token = r"\d+" if identifiers == "numbers" else r"[A-Z]"
    text = answer or ""
    found = re.findall(rf"\[\s*({token})\s*\]", text) or re.findall(rf"(?<!\w)({token})(?!\w)", text)
    first = list(dict.fromkeys(i for i in (_index(t, n, identifiers) for t in found) if i is not None))
    return first + [i for i in range(n) if i not in first] if first else None


def logprob_order(content: list[Any] | None, n: int, identifiers: Identifiers = "numbers") -> list[int] | None:
    """FIRST: the window ordered by the log-probability of each identifier as the first identifier
    generated. ``content`` is a chat completion's ``choice.logprobs.content`` (one entry per generated
    token: ``token``, ``logprob``, ``top_logprobs``); tokens before the first that names a passage
    (a leading ``[``) are skipped. A passage's variants (``3``, `` 3``, ``[3``) add up; passages absent
    from ``top_logprobs`` follow the present ones in their current order, as do ties. ``None``: no
    generated token names a passage.

    A token must hold a whole identifier: where a tokenizer splits numbers into digits, windows
    over 9 passages need ``identifiers: letters``.
    """
    ids = {label: i for i, label in enumerate(labels(n, identifiers))}

    def named(token: str) -> int | None:
        return ids.get(token.strip().strip("[]").strip())

    for position in content or []:
        if named(position.token) is None:
            continue
        mass: dict[int, float] = {}
        for alt in position.top_logprobs or [position]:
            i = named(alt.token)
            if i is not None:
                mass[i] = alt.logprob if i not in mass else _logaddexp(mass[i], alt.logprob)
        ranked = sorted(mass, key=lambda i: (-mass[i], i))
        return ranked + [i for i in range(n) if i not in mass]
    return None


def _logaddexp(a: float, b: float) -> float:
    high = max(a, b)
    return high + math.log(math.exp(a - high) + math.exp(b - high))
