"""Offline English sentence splitting with exact character offsets.

``sentencex`` (rule-based, no downloads) finds the boundaries; the spans are then located in the
original string so that ``text[start:end]`` is the sentence with surrounding white space trimmed.
"""

from __future__ import annotations

from sentencex import segment

Span = tuple[int, int]


def sentence_spans(text: str, offset: int = 0, language: str = "en") -> list[Span]:
    """``[start, end)`` character spans of the sentences of ``text``, shifted by ``offset``.

    >>> t = "BM25 is strong. Dense is fast!  Both?"
    >>> [t[s:e] for s, e in sentence_spans(t)]
    ['BM25 is strong.', 'Dense is fast!', 'Both?']
    """
    spans: list[Span] = []
    pos = 0
    for piece in segment(language, text):
        sentence = piece.strip()
        if not sentence:
            continue
        start = text.find(sentence, pos)
        if start < 0:  # the splitter normalised something; keep the text whole rather than guess
            return [(offset + len(text) - len(text.lstrip()), offset + len(text.rstrip()))] if text.strip() else []
        spans.append((offset + start, offset + start + len(sentence)))
        pos = start + len(sentence)
    return spans
