"""The seeded synthetic world the tune tests share: candidates and qrels for 40 dev queries, and the
same world written to disk as the tune stage reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rerank_lab.policy import QueryCandidates

N_QUERIES, DEPTH, RERANKED = 40, 30, 10


def world(seed: int = 0) -> tuple[dict[str, QueryCandidates], dict[str, dict[str, int]]]:
    """40 queries, 30 first-stage docs each, reranker logits for the top 10.

    Every third query (14 of 40) is no-evidence: absent from the qrels, or (every sixth) judged
    with grade 0 only. A has-evidence query has one relevant doc somewhere in its top 10, which the
    reranker scores ~5 logits above the rest; the first stage does not know which one it is.
    """
    rng = np.random.default_rng(seed)
    cands, qrels = {}, {}
    for i in range(N_QUERIES):
        qid = f"q{i:02d}"
        docs = [f"{qid}-d{j:02d}" for j in range(DEPTH)]
        first_stage = np.sort(rng.normal(10.0, 2.0, DEPTH))[::-1].copy()
        reranker = rng.normal(-2.0, 1.5, RERANKED)
        if i % 3:
            pos = int(rng.integers(0, RERANKED))
            reranker[pos] += 5.0
            qrels[qid] = {docs[pos]: 1}
        elif i % 6 == 0:
            qrels[qid] = {docs[0]: 0}  # judged, nothing relevant: still no-evidence
        cands[qid] = QueryCandidates(docs, first_stage, reranker)
    return cands, qrels


CANDS, QRELS = world()
IDS = sorted(CANDS)
HAS_EVIDENCE = {q for q, docs in QRELS.items() if any(g > 0 for g in docs.values())}
NO_EVIDENCE = sorted(set(IDS) - HAS_EVIDENCE)


def write_stage_inputs(root: Path) -> dict[str, dict[str, QueryCandidates]]:
    """The world as the stage reads it: a dataset (validation + test), first-stage and reranked runs,
    and validation qrels only (no test qrels: tune must not need them). Returns each split's candidates."""
    import datasets

    from rerank_lab.io.datasets import save_dataset
    from rerank_lab.io.qrels import write_qrels
    from rerank_lab.io.scores import write_scores
    from rerank_lab.io.trec import write_run
    from rerank_lab.schema import to_dataset

    other = sorted(world(seed=1)[0].items())[:6]
    splits = {
        "validation": CANDS,
        "test": {f"t{q}": QueryCandidates([f"t{d}" for d in c.docs], c.first_stage, c.reranker) for q, c in other},
    }

    def row(qid: str) -> dict:
        return {"id": qid, "query": f"query {qid}", "texts": ["Some text."], "text_ids": ["x"], "context_spans": [[[0, 10]]], "labels": [1]}

    save_dataset(datasets.DatasetDict({s: to_dataset([row(q) for q in sorted(c)]) for s, c in splits.items()}), root / "dataset")
    for split, cands in splits.items():
        write_run(
            {q: dict(zip(c.docs, c.first_stage.tolist())) for q, c in cands.items()}, root / "runs" / "bm25" / f"{split}.trec", tag="bm25"
        )
    # the score stage's table: raw reranker scores of each query's first-stage head
    write_scores({("bm25", s): {q: dict(zip(c.docs, c.reranker.tolist())) for q, c in cands.items()} for s, cands in splits.items()},
                 root / "scored" / "scores.tsv")  # fmt: skip
    write_qrels(QRELS, root / "qrels" / "validation.tsv")
    return splits
