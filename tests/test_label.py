"""label: every span gets the pruner's 0/1 label, the threshold fitted on validation is the best
F-beta (checked by brute force over every possible cut), quality figures match a computation by
hand, and the stage's settings fail clearly. The cross-encoder is a real tiny BERT classifier."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from rerank_lab.errors import ConfigError
from rerank_lab.io.datasets import load_dataset, save_dataset
from rerank_lab.label import LabelConfig, configure, fit_threshold, label, quality, run, split_spans
from rerank_lab.models import resolve_model
from rerank_lab.pruners.cross_encoder import CrossEncoderPruner
from rerank_lab.schema import to_dataset
from rerank_lab.score_cache import ScoreCache


def _tiny_classifier(folder: Path) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    config.num_labels = 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2")).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return _tiny_classifier(tmp_path_factory.mktemp("tiny") / "ce")


def _row(rid: str, query: str, texts: list[list[str]], gold: list[list[int]] | None) -> dict:
    joined = [" ".join(t) for t in texts]
    spans = []
    for sentences in texts:
        pos, spans_t = 0, []
        for s in sentences:
            spans_t.append([pos, pos + len(s)])
            pos += len(s) + 1
        spans.append(spans_t)
    row = {"id": rid, "query": query, "texts": joined, "text_ids": [f"{rid}-{i}" for i in range(len(texts))], "context_spans": spans}
    row["labels"] = [int(any(g)) for g in gold] if gold else [0] * len(texts)
    if gold is not None:
        row["context_spans_relevance"] = gold
    return row


SENTENCES = [
    "Cats purr by vibrating the larynx.",
    "Rivers carry sand to the sea.",
    "Purring happens at 25 to 150 Hz.",
    "Volcanoes erupt when magma pressure rises.",
    "Glaciers carve valleys.",
    "Kittens purr while nursing.",
]


def _dataset(with_gold: bool = True) -> datasets.DatasetDict:
    def rows(prefix: str, n: int) -> list[dict]:
        out = []
        for i in range(n):
            a, b, c = (SENTENCES[(i + k) % 6] for k in range(3))
            gold = [[int("urr" in a), int("urr" in b)], [int("urr" in c)]] if with_gold else None
            out.append(_row(f"{prefix}{i}", "how do cats purr", [[a, b], [c]], gold))
        return out

    return datasets.DatasetDict({s: to_dataset(rows(s[:2], 6)) for s in ("train", "validation", "test")})


def _f_beta(cut: float, scores: np.ndarray, gold: np.ndarray, beta: float) -> float:
    kept = scores >= cut
    tp = int((kept & (gold == 1)).sum())
    p, r = tp / max(kept.sum(), 1), tp / gold.sum()
    return 0.0 if tp == 0 else (1 + beta**2) * p * r / (beta**2 * p + r)


def test_fit_threshold_is_the_best_f_beta_over_every_cut():
    rng = np.random.default_rng(0)
    for beta in (0.5, 1.0, 2.0):
        scores, gold = rng.normal(size=200).round(2), rng.integers(0, 2, size=200)
        t = fit_threshold(scores, gold, beta)
        by_cut = {c: _f_beta(c, scores, gold, beta) for c in np.unique(scores)}
        best = max(by_cut.values())
        assert by_cut[t] == pytest.approx(best)
        assert t == min(c for c, f in by_cut.items() if f == pytest.approx(best))


def test_quality_by_hand():
    gold = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    kept = np.array([1, 1, 0, 1, 0, 0, 0, 0])  # tp 2, fp 1, fn 1
    q = quality(gold, kept)
    assert q == {"spans": 8, "compression": 0.625, "precision": 0.666667, "recall": 0.666667, "f1": 0.666667, "f2": 0.666667}
    assert quality(None, kept) == {"spans": 8, "compression": 0.625}


def test_every_span_is_labelled_at_the_fitted_threshold(model):
    dd = _dataset()
    pruner = CrossEncoderPruner(model=str(model), max_length=64)
    out, metrics = label(dd, pruner, LabelConfig(), ScoreCache(None))
    val = split_spans(dd["validation"])
    scores = np.array(pruner.scores(val.pairs, val.records, ScoreCache(None)))
    assert metrics["threshold"] == fit_threshold(scores, np.array(val.gold), 2.0)
    assert metrics["threshold_fitted"] is True
    for split in ("train", "validation", "test"):
        sp = split_spans(dd[split])
        kept = np.array(pruner.scores(sp.pairs, sp.records, ScoreCache(None))) >= metrics["threshold"]
        flat = [x for row in out[split]["context_spans_relevance"] for t in row for x in t]
        assert flat == kept.astype(int).tolist()
        assert [[len(t) for t in row] for row in out[split]["context_spans_relevance"]] == sp.shape
        assert metrics[split] == quality(np.array(sp.gold), kept.astype(int))
        assert out[split]["labels"] == dd[split]["labels"]  # only the span labels change


def test_a_fixed_threshold_needs_no_gold(model):
    dd = _dataset(with_gold=False)
    out, metrics = label(dd, CrossEncoderPruner(model=str(model), max_length=64), LabelConfig(threshold=-1e9), ScoreCache(None))
    assert metrics["test"] == {"spans": 18, "compression": 0.0}
    assert all(x == 1 for row in out["test"]["context_spans_relevance"] for t in row for x in t)
    with pytest.raises(
        ConfigError, match=r"label\.threshold is null \(fit on the validation split\), but that split has no gold span labels"
    ):
        label(dd, CrossEncoderPruner(model=str(model), max_length=64), LabelConfig(), ScoreCache(None))


def test_the_stage_reads_the_trained_reranker(model, tmp_path):
    save_dataset(_dataset(), tmp_path / "in")
    params = {"label": {"pruner": "ce"}, "pruners": {"ce": {"type": "cross-encoder", "model": "trained", "max_length": 64}}}
    cfg = configure(params)
    metrics = run(cfg, {"input": tmp_path / "in", "reranker": model, "models": tmp_path}, {"output": tmp_path / "out"})
    assert set(metrics) == {"threshold", "threshold_fitted", "train", "validation", "test"}
    assert "context_spans_relevance" in load_dataset(tmp_path / "out")["test"].column_names
    with pytest.raises(ConfigError, match=r"pruners\.ce\.model is 'trained', but no --reranker was given"):
        run(cfg, {"input": tmp_path / "in", "reranker": None, "models": tmp_path}, {"output": tmp_path / "out2"})


def test_label_params_fail_clearly():
    with pytest.raises(ConfigError, match=r"^pruners\.nope: params has no|params has no 'pruners\.nope'"):
        configure({"label": {"pruner": "nope"}, "pruners": {}})
    with pytest.raises(ConfigError, match=r"^label\.beta: "):
        configure({"label": {"beta": 0}, "pruners": {"cross-encoder": {"type": "cross-encoder"}}})
    with pytest.raises(ConfigError, match=r"^pruners\.x\.type: "):
        configure({"label": {"pruner": "x"}, "pruners": {"x": {"type": "regex"}}})
