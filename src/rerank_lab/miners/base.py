"""What every negative miner sees: the corpus, first-stage runs, what is relevant, a seeded rng."""

from __future__ import annotations

import dataclasses
import random

from rerank_lab.io.trec import Run, ranked
from rerank_lab.schema import Document, Example, passage_text


@dataclasses.dataclass
class MineContext:
    """Shared read-only inputs of a mine run."""

    corpus: dict[str, Document]
    doc_ids: list[str]  # sorted: random sampling must not depend on dict order
    runs: dict[str, Run]  # run name -> the run of the split being mined
    relevant: dict[str, set[str]]  # query id -> docs judged relevant (qrels grade > 0 and labels)
    scorers: dict[str, object] = dataclasses.field(default_factory=dict)  # model name -> PairScorer
    # sentence mode: the pool is the row's own texts (doc_ids: its non-evidence ones), not the corpus
    within_row: bool = False

    def text(self, doc_id: str) -> str:
        """The passage a model sees for a corpus doc."""
        doc = self.corpus[doc_id]
        return passage_text(doc["title"], doc["text"])

    def excluded(self, row: Example) -> set[str]:
        """Docs a negative must never be: relevant ones, and the row's own texts (unless they are the pool)."""
        relevant = self.relevant.get(row["id"], set())
        if self.within_row:
            return relevant | {t for t, label in zip(row["text_ids"], row["labels"]) if label}
        return relevant | set(row["text_ids"])

    def for_row(self, row: Example) -> MineContext:
        """The context a miner gets for ``row``: in sentence mode, its own non-evidence texts are the pool."""
        if not self.within_row:
            return self
        banned = self.excluded(row)
        return dataclasses.replace(self, doc_ids=sorted(t for t in row["text_ids"] if t not in banned))

    def candidates(self, run_name: str, row: Example, range_min: int, range_max: int) -> list[tuple[str, float]]:
        """Non-relevant docs at ranks ``range_min + 1 .. range_max`` of a run, best first."""
        docs = ranked(self.runs[run_name].get(row["id"], {}))[range_min:range_max]
        banned = self.excluded(row)
        return [(d, s) for d, s in docs if d not in banned]


def row_rng(seed: int, query_id: str) -> random.Random:
    """A generator per query: the same negatives whatever the row order or split size."""
    return random.Random(f"{seed}:{query_id}")
