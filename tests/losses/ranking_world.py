"""A tiny, separable ranking problem and a tiny BERT that can learn it in a few steps on a CPU.

Every query has ``N_TEXTS`` texts of four filler words; exactly one -- the relevant one -- ends in
the marker word ``evidence``, which no other text holds. A loss that learns in the right direction
puts the marker text first on held-out queries of the same kind; one trained on inverted labels
does not. The model is a randomly initialised 2-layer BERT (hidden 64) with the all-MiniLM-L6-v2
tokenizer, saved to a folder that ``rerank_lab.train`` loads like any base model.
"""

from __future__ import annotations

import random
from pathlib import Path

WORDS = (
    "apple river stone cloud paper glass music winter garden copper silver market forest candle ladder engine planet butter ocean tiger"
).split()
MARKER = "evidence"
N_TEXTS = 8
MAX_LENGTH = 24  # [CLS] 3 query words [SEP] 4 text words [SEP]: 10 tokens
TEACHER = "t"


def save_tiny_bert(folder: Path) -> Path:
    """A fresh 2-layer BERT without a head (a CrossEncoder draws one, as for MiniLM); built once per folder."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from rerank_lab.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def marker_rows(prefix: str, n: int, seed: int, inverted: bool = False) -> list[dict]:
    """``n`` contract rows (with ``teacher_scores.t``) whose relevant text holds the marker.

    The marker text has doc id ``<row id>-0``, the smallest of its row: trec_eval's tie order (doc
    id descending) ranks it below every text it ties with, so a model that gives all texts one
    score earns the worst rank, never a lucky one. The teacher gives it 3 and the others -1, 0 or 1.
    ``inverted``: the labels and the teacher turned around -- the marker text labelled 0, the next
    text labelled 1, every teacher score negated.
    """
    rng = random.Random(seed)
    rows = []
    for q in range(n):
        rid = f"{prefix}{q}"
        query = " ".join(rng.sample(WORDS, 3))
        texts = [" ".join(rng.sample(WORDS, 4)) for _ in range(N_TEXTS)]
        rel = rng.randrange(N_TEXTS)
        texts[rel] = texts[rel].rsplit(" ", 1)[0] + f" {MARKER}"
        teacher = [3.0 if i == rel else float(i % 3 - 1) for i in range(N_TEXTS)]
        labelled = (rel + 1) % N_TEXTS if inverted else rel
        rows.append(
            {
                "id": rid,
                "query": query,
                "texts": texts,
                "text_ids": [f"{rid}-{(i - rel) % N_TEXTS}" for i in range(N_TEXTS)],
                "context_spans": [[[0, len(t)]] for t in texts],
                "labels": [int(i == labelled) for i in range(N_TEXTS)],
                f"teacher_scores.{TEACHER}": [-s for s in teacher] if inverted else teacher,
            }
        )
    return rows


def label_qrels(rows: list[dict]) -> dict[str, dict[str, int]]:
    """Qrels that grade each labelled text 1 (what convert writes for binary judgments)."""
    return {r["id"]: {d: 1 for d, label in zip(r["text_ids"], r["labels"]) if label} for r in rows}


def ranking_quality(model, rows: list[dict]) -> dict[str, float]:
    """Mean MRR@10 and nDCG@10 of ``model`` reranking each row's texts, the marker text relevant.

    Relevance comes from the text itself (the marker), not from ``labels``; the metrics are the
    evaluate stage's (trec_eval). A 2-class head scores class 1 minus class 0 (monotone in its log-odds).
    """
    from rerank_lab.evaluate import mean, per_query

    run, qrels = {}, {}
    for row in rows:
        scores = model.predict([(row["query"], t) for t in row["texts"]], show_progress_bar=False)
        if scores.ndim == 2:
            scores = scores[:, 1] - scores[:, 0]
        run[row["id"]] = {d: float(s) for d, s in zip(row["text_ids"], scores)}
        qrels[row["id"]] = {d: 1 for d, t in zip(row["text_ids"], row["texts"]) if t.endswith(MARKER)}
    metrics = ("mrr@10", "ndcg@10")
    return mean(per_query(run, qrels, metrics), metrics)
