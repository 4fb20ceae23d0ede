"""Each reranker family as an R0 cell, by params only: ``score.reranker`` names a ``rerankers``
entry (a tiny model of the real architecture under models/pretrained), and the score, tune and
evaluate commands run it end to end; the scores the stage writes are the family's own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from rerank_lab import cli
from rerank_lab.convert.common import document
from rerank_lab.io.datasets import save_corpus
from rerank_lab.io.qrels import write_qrels
from rerank_lab.io.scores import read_scores
from rerank_lab.rerankers import make_reranker
from rerank_lab.schema import to_corpus
from tests.tiny_models import CHAT_TEMPLATE, MINILM, tiny_bert, tiny_qwen3
from tests.tune_world import write_stage_inputs

TOP_K = 5


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """tune's synthetic world (40 dev queries, 6 test queries) with a corpus and test qrels, and the
    tiny models under models/pretrained, as dvc.yaml lays them out."""
    root = tmp_path_factory.mktemp("families")
    splits = write_stage_inputs(root)
    docs = sorted({d for cands in splits.values() for c in cands.values() for d in c.docs})
    words = ["cell", "protein", "gene", "virus", "cancer", "brain", "heart", "drug", "trial", "risk"]
    texts = [f"{words[i % 10]} {words[i * 7 % 10]} study {d}." for i, d in enumerate(docs)]
    save_corpus(to_corpus([document(d, "", t) for d, t in zip(docs, texts)]), root / "corpus")
    test = {q: {c.docs[1]: 1} for q, c in splits["test"].items()}
    write_qrels(test, root / "qrels" / "test.tsv")
    models = root / "models" / "pretrained"
    tiny_bert(models / "bert2", 2, init_range=0.3)
    tiny_qwen3(models / "qwen", init_range=0.3, chat_template=CHAT_TEMPLATE)
    return root


FAMILIES = {
    "cross-encoder": {"type": "cross-encoder", "model": "bert2", "max_length": 32},
    "causal-lm": {"type": "causal-lm", "model": "qwen", "prompt": "Judge relevance", "max_length": 32},
    "bi-encoder": {"type": "bi-encoder", "model": MINILM, "max_length": 32},
    "late-interaction": {"type": "late-interaction", "model": MINILM, "query_length": 8, "document_length": 16, "pool_factor": 2},
}


def _run(*args) -> None:
    cli.cli.main([str(a) for a in args], prog_name="rerank-lab", standalone_mode=False)


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory):
    """A real OpenAI-compatible server (``transformers serve``) with a tiny Llama whose every answer
    names the second passage of a window first."""
    from tests.llm_server import build_tiny_llm, transformers_serve
    from tests.rerankers.test_listwise import VOCAB

    root = tmp_path_factory.mktemp("listwise-cell")
    model = build_tiny_llm(root / "tiny-llama", VOCAB)
    with transformers_serve(model, root / "serve.log") as url:
        yield {"type": "listwise-llm", "model": str(model), "base_url": url, "window": 3, "stride": 2, "max_tokens": 4,
               "scoring": "permutation", "logit_bias": {str(VOCAB["[2]"]): 100.0}, "cache": str(root / "windows")}  # fmt: skip


@pytest.mark.parametrize("family", [*FAMILIES, "listwise-llm"])
def test_each_family_runs_as_an_r0_cell_through_score_tune_and_evaluate(world, family, tmp_path, monkeypatch, request):
    monkeypatch.chdir(world)  # paths as dvc.yaml gives them: relative to the repository
    entry = dict(FAMILIES[family]) if family in FAMILIES else request.getfixturevalue("llm_server")
    if family in ("cross-encoder", "causal-lm"):  # a local folder: under the declared models/pretrained
        entry["model"] = f"models/pretrained/{entry['model']}"
    params = {
        "score": {"runs": ["bm25"], "top_k": TOP_K, "name": "ce", "reranker": family, "splits": ["validation", "test"]},
        "rerankers": {family: entry},
        "tune": {"run": "bm25", "epsilon": 1.0, "n_trials": 8, "stages": 2},
        "evaluate": {"metrics": ["ndcg@10", "recall@10"], "baseline": "bm25", "compare_also": [], "n_resamples": 200},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    p = ["--params", tmp_path / "params.yaml"]
    out = tmp_path / "out"
    _run("score", *p, "--model", "models/pretrained/bert2", "--runs", "runs", "--dataset", "dataset", "--corpus", "corpus",
         "--models", "models/pretrained", "--cache", tmp_path / "scores.sqlite",
         "--output", out / "score", "--metrics", out / "score.json")  # fmt: skip
    _run("tune", *p, "--dataset", "dataset", "--qrels", "qrels", "--runs", "runs", "--scores", out / "score",
         "--output", out / "tune", "--metrics", out / "tune.json")  # fmt: skip
    _run("evaluate", *p, "--runs", "runs", "--runs", out / "score", "--runs", out / "tune" / "runs",
         "--probabilities", out / "tune" / "probabilities", "--dataset", "dataset", "--qrels", "qrels",
         "--metrics", out / "evaluate.json", "--output", out / "evaluate")  # fmt: skip

    # the scores written are the family's own, computed independently on the same pairs
    from rerank_lab.io.datasets import load_corpus, split_queries
    from rerank_lab.io.trec import ranked, read_run
    from rerank_lab.schema import passage_text

    table = read_scores(out / "score" / "scores.tsv")[("bm25", "test")]
    queries = split_queries("dataset", ("test",))["test"]
    passages = {d["id"]: passage_text(d["title"], d["text"]) for d in load_corpus("corpus")}
    first = read_run(Path("runs") / "bm25" / "test.trec")
    keys = [(q, d) for q in sorted(first) for d, _ in ranked(first[q])[:TOP_K]]
    scorer = make_reranker(family, entry).scorer(entry["model"], None)
    if family == "listwise-llm":  # each query's head as one list (its windows now read back from the cache)
        heads = {q: [d for d, _ in ranked(first[q])[:TOP_K]] for q in sorted(first)}
        lists = scorer.score_lists([(queries[q], [passages[d] for d in docs]) for q, docs in heads.items()])
        want = np.concatenate(lists)
        assert scorer.forward_calls == 0
    else:
        want = scorer.score([(queries[q], passages[d]) for q, d in keys])
    np.testing.assert_allclose([table[q][d] for q, d in keys], want, atol=1e-4)
    assert np.ptp(want) > 1e-3

    scored = json.loads((out / "score.json").read_text())
    index = {"index_documents", "index_vectors_per_document", "index_mb_fp16"}  # what a pooled index would hold
    assert (index <= set(scored)) == (family == "late-interaction") and not any(k.startswith("index_index") for k in scored)
    tuned = json.loads((out / "tune.json").read_text())
    assert tuned["trials"] == 8 and tuned["tuned"] is True
    metrics = json.loads((out / "evaluate.json").read_text())
    assert {"bm25", "bm25+ce", "bm25+ce+tuned"} <= set(metrics)
    assert all(metrics[run]["test"]["queries"] == 6 and 0 <= metrics[run]["test"]["ndcg@10"] <= 1 for run in ("bm25+ce", "bm25+ce+tuned"))


def _refused(params: dict, tmp_path: Path, message: str) -> None:
    """``score`` with ``params`` stops with ``message`` (a ConfigError) and writes nothing."""
    from rerank_lab.errors import ConfigError

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=message):
        _run("score", "--params", tmp_path / "params.yaml", "--model", "models/pretrained/bert2", "--runs", "runs",
             "--dataset", "dataset", "--corpus", "corpus", "--models", "models/pretrained",
             "--output", tmp_path / "o", "--metrics", tmp_path / "o.json")  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_a_local_model_outside_the_declared_folder_is_refused(world, tmp_path, monkeypatch):
    monkeypatch.chdir(world)
    params = {"score": {"reranker": "x", "top_k": TOP_K}, "rerankers": {"x": {"type": "cross-encoder", "model": str(tmp_path / "m")}}}
    tiny_bert(tmp_path / "m", 1)
    _refused(params, tmp_path, r"rerankers\.x\.model names the local folder .* not under models/pretrained")


def test_a_trained_late_interaction_reranker_needs_the_train_late_model(world, tmp_path, monkeypatch):
    monkeypatch.chdir(world)
    params = {"score": {"reranker": "colbert", "top_k": TOP_K}, "rerankers": {"colbert": {"type": "late-interaction", "model": "trained"}}}
    _refused(params, tmp_path, r"rerankers\.colbert\.model is trained, but no --late-model was given \(fix: pass --late-model")
