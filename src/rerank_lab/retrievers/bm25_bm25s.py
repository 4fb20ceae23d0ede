"""BM25 with bm25s: the fast backend (pure Python/numpy, ~1 s to index SciFact).

bm25s numbers the stemmed vocabulary in the iteration order of a Python ``set`` of strings, which
follows string hashing (``PYTHONHASHSEED``, random per process): the same corpus gave differently
ordered matrices and vocab files, so the index folder (a DVC output) hashed differently on every
run. The tokens are renumbered in sorted order before indexing; everything else bm25s derives
from them (document frequencies, the CSC matrix, the saved vocab) then follows that order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field
from tqdm import tqdm

from rerank_lab.config import Number, params_model
from rerank_lab.io.trec import Run
from rerank_lab.retrievers.base import Scope, scope_positions, scoped_top_k


def sorted_vocab(tokens):
    """``tokens`` (a ``bm25s.tokenization.Tokenized``) with term ids given in sorted term order.

    >>> from bm25s.tokenization import Tokenized
    >>> renumbered = sorted_vocab(Tokenized(ids=[[0, 1], [1, 2]], vocab={"plant": 0, "cell": 1, "leaf": 2}))
    >>> renumbered.ids, renumbered.vocab
    ([[2, 0], [0, 1]], {'cell': 0, 'leaf': 1, 'plant': 2})
    """
    from bm25s.tokenization import Tokenized

    terms = sorted(tokens.vocab)
    new_id = {tokens.vocab[t]: i for i, t in enumerate(terms)}
    return Tokenized(ids=[[new_id[i] for i in doc] for doc in tokens.ids], vocab={t: i for i, t in enumerate(terms)})


@params_model("retrievers.<name>")
class Bm25sBM25:
    """BM25 (Lucene variant) over bm25s tokens: English stop words and the Snowball stemmer.

    >>> Bm25sBM25(k1=0.9, b=0.4).method
    'lucene'
    """

    k1: Number = Field(0.9, ge=0)
    b: Number = Field(0.4, ge=0, le=1)
    method: Literal["robertson", "atire", "bm25l", "bm25+", "lucene"] = "lucene"  # bm25s's variants
    stopwords: str = "en"
    stemmer: str = "english"

    def _tokenize(self, texts: list[str]):
        import bm25s
        import Stemmer

        return bm25s.tokenize(texts, stopwords=self.stopwords, stemmer=Stemmer.Stemmer(self.stemmer), show_progress=False)

    def index(self, doc_ids: list[str], passages: list[str], out: Path) -> None:
        import bm25s

        model = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        model.index(sorted_vocab(self._tokenize(passages)), show_progress=False)
        model.save(str(out / "bm25s"))
        (out / "doc_ids.json").write_text(json.dumps(doc_ids))

    def search(self, index: Path, queries: dict[str, str], depth: int, scope: Scope | None = None) -> Run:
        import bm25s

        model = bm25s.BM25.load(str(index / "bm25s"))
        doc_ids = np.array(json.loads((index / "doc_ids.json").read_text()))
        qids = sorted(queries)
        allowed = scope_positions(doc_ids, scope, qids, str(index))
        tokens = self._tokenize([queries[q] for q in qids])
        vocab_inv = {i: t for t, i in tokens.vocab.items()}
        run: Run = {}
        for qid, ids in tqdm(list(zip(qids, tokens.ids)), desc="bm25s", leave=False):
            terms = [vocab_inv[i] for i in ids]
            scores = model.get_scores(terms) if terms else np.zeros(len(doc_ids), dtype=np.float32)
            # bm25s scores in float32; lift to float64 so written scores round-trip exactly
            hits = scoped_top_k(np.asarray(scores, dtype=np.float64), doc_ids, depth, allowed[qid])
            # a score of 0 means no query term matched: not retrieved (as in Lucene)
            run[qid] = {d: s for d, s in hits.items() if s > 0}
        return run
