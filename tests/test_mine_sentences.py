"""mine in sentence mode: a row already holds every sentence of its documents, so the miners
choose among its own non-evidence sentences (N0 at random, N1 by rank in the query's scoped run)
and the row keeps its evidence and the chosen negatives -- never a sentence of another document."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from rerank_lab.io.datasets import save_corpus
from rerank_lab.io.qrels import write_qrels
from rerank_lab.io.trec import write_run
from rerank_lab.mine import MineConfig, mine
from rerank_lab.miners import MixedMiner, RandomMiner, RetrieverHardMiner
from rerank_lab.schema import to_corpus, to_dataset

SENTENCES = {f"{doc}#{k}": f"Sentence {k} of document {doc}." for doc, n in (("a", 6), ("b", 4), ("c", 5)) for k in range(n)}
# q1 cites a and b (evidence a#2, b#1); q2 cites c (evidence c#0); n1 cites b and has no evidence (NOINFO)
ROWS = {
    "q1": ([t for t in SENTENCES if t[0] in "ab"], {"a#2", "b#1"}),
    "q2": ([t for t in SENTENCES if t[0] == "c"], {"c#0"}),
    "n1": ([t for t in SENTENCES if t[0] == "b"], set()),
}
# the scoped bm25 runs rank only each query's own sentences
RUN = {
    "q1": {"a#2": 9.0, "a#3": 8.0, "b#0": 7.0, "b#1": 6.0, "a#0": 5.0, "a#5": 4.0, "b#3": 3.0},
    "q2": {"c#3": 4.0, "c#0": 3.0, "c#1": 2.0},
    "n1": {"b#2": 2.0, "b#0": 1.0},
}


def _row(qid: str) -> dict:
    ids, gold = ROWS[qid]
    return {
        "id": qid,
        "query": f"query {qid}",
        "texts": [SENTENCES[t] for t in ids],
        "text_ids": ids,
        "context_spans": [[[0, len(SENTENCES[t])]] for t in ids],
        "labels": [int(t in gold) for t in ids],
        "context_spans_relevance": [[int(t in gold)] for t in ids],
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sentences")
    save_corpus(
        to_corpus([{"id": t, "title": "", "text": s, "context_spans": [[0, len(s)]]} for t, s in SENTENCES.items()]), root / "corpus"
    )
    write_qrels({q: {t: int(t in gold) for t in ids} for q, (ids, gold) in ROWS.items()}, root / "qrels" / "train.tsv")
    write_run(RUN, root / "runs" / "bm25" / "train.trec", tag="bm25")
    return root


def _mine(world: Path, miner, k: int, seed: int = 42) -> dict[str, dict]:
    dd = datasets.DatasetDict({"train": to_dataset([_row(q) for q in ROWS])})
    cfg = MineConfig(num_negatives=k, seed=seed, splits=("train",))
    out, _ = mine(dd, miner, cfg, world / "corpus", world / "qrels", world / "runs", within_row=True)
    return {r["id"]: r for r in out["train"]}


def test_hard_negatives_are_the_rows_top_ranked_non_evidence_sentences(world):
    rows = _mine(world, RetrieverHardMiner("bm25", 0, 10, "top"), k=2)
    assert rows["q1"]["text_ids"] == ["a#2", "b#1", "a#3", "b#0"]  # evidence in row order, then ranks 2 and 3
    assert rows["q2"]["text_ids"] == ["c#0", "c#3", "c#1"]
    assert rows["n1"]["text_ids"] == ["b#2", "b#0"]
    assert rows["q1"]["labels"] == [1, 1, 0, 0]
    assert rows["q1"]["texts"] == [SENTENCES[t] for t in rows["q1"]["text_ids"]]
    assert rows["q1"]["context_spans_relevance"] == [[1], [1], [0], [0]]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_negatives_come_from_the_same_documents(world, seed):
    rows = _mine(world, RandomMiner(), k=3, seed=seed)
    for qid, (ids, gold) in ROWS.items():
        got = rows[qid]["text_ids"]
        assert got[: len(gold)] == [t for t in ids if t in gold]
        negatives = got[len(gold) :]
        assert len(negatives) == 3 and len(set(negatives)) == 3
        assert set(negatives) <= set(ids) - gold


def test_a_row_with_fewer_negatives_than_asked_keeps_them_all(world):
    rows = _mine(world, MixedMiner("bm25", 0.5, 0, 10), k=20)
    for qid, (ids, _) in ROWS.items():
        assert sorted(rows[qid]["text_ids"]) == sorted(ids)


def test_the_same_seed_gives_the_same_rows(world):
    assert _mine(world, MixedMiner("bm25", 0.5, 0, 10), k=3, seed=5) == _mine(world, MixedMiner("bm25", 0.5, 0, 10), k=3, seed=5)
