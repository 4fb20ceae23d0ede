"""score: rerank the top_k of first-stage runs with the real MiniLM; cached pairs are not recomputed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rerank_lab.errors import ConfigError, InputError
from rerank_lab.io.scores import read_scores
from rerank_lab.io.trec import ranked, read_run, write_run
from rerank_lab.schema import to_corpus
from rerank_lab.score import ScoreConfig, rerank, score_runs
from rerank_lab.score_cache import ScoreCache
from tests.mine_world import CORPUS, QUERIES, text

QUERY_TEXT = {"v1": QUERIES["v1"], "v2": QUERIES["q1"]}
# first-stage ranks 1..6 (the reranker may reorder them)
FIRST_STAGE = {
    "v1": {d: 6.0 - r for r, d in enumerate(["d09", "d06", "d26", "d27", "d00", "d19"])},
    "v2": {d: 6.0 - r for r, d in enumerate(["d05", "d00", "d07", "d10", "d13", "d29"])},
}
TOP3 = {"v1": {"d09", "d06", "d26"}, "v2": {"d05", "d00", "d07"}}
PASSAGES = {d["id"]: text(d["id"]) for d in CORPUS}


def _runs(root: Path, runs: dict, split: str = "validation") -> Path:
    write_run(runs, root / "bm25" / f"{split}.trec", tag="bm25")
    return root


def _score(scorer, runs: Path, out: Path, top_k: int = 20) -> dict[str, float]:
    """One `rerank-lab score` experiment on the validation queries."""
    return score_runs(ScoreConfig(top_k=top_k, splits=("validation",)), scorer, runs, {"validation": QUERY_TEXT}, to_corpus(CORPUS), out)


def test_rerank_keeps_top_k_scored_by_the_model(minilm_scorer_factory):
    scorer = minilm_scorer_factory()
    out = rerank(FIRST_STAGE, QUERY_TEXT, PASSAGES, scorer, top_k=3)
    assert {q: set(docs) for q, docs in out.items()} == TOP3
    checker = minilm_scorer_factory()
    for qid, docs in out.items():
        want = checker.score([(QUERY_TEXT[qid], PASSAGES[d]) for d in docs]).tolist()
        assert list(docs.values()) == pytest.approx(want, abs=1e-5)


def test_score_runs_writes_the_reranked_top_k_in_model_order(minilm_scorer_factory, tmp_path):
    runs = _runs(tmp_path / "runs", FIRST_STAGE)
    cfg = ScoreConfig(runs=("bm25",), top_k=3, name="minilm", splits=("validation", "test"))  # no test queries: skipped
    stats = score_runs(cfg, minilm_scorer_factory(), runs, {"validation": QUERY_TEXT}, to_corpus(CORPUS), tmp_path / "out")
    path = tmp_path / "out" / "bm25+minilm" / "validation.trec"
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()) == [
        "bm25+minilm/validation.trec",
        "scores.tsv",
    ]
    lines = [line.split() for line in path.read_text().splitlines()]
    # the whole first-stage list comes back: ranks 1-3 reranked, 4-6 as the first stage had them
    assert [(c[0], c[3], c[5]) for c in lines] == [(q, str(r), "bm25+minilm") for q in ("v1", "v2") for r in range(1, 7)]
    checker = minilm_scorer_factory()
    table = read_scores(tmp_path / "out" / "scores.tsv")
    assert list(table) == [("bm25", "validation")]
    for qid in ("v1", "v2"):
        in_file = [c[2] for c in lines if c[0] == qid]  # rank order as written
        scores = dict(zip(TOP3[qid], checker.score([(QUERY_TEXT[qid], PASSAGES[d]) for d in TOP3[qid]]).tolist()))
        assert in_file[:3] == sorted(TOP3[qid], key=lambda d: -scores[d])
        assert in_file[3:] == [d for d, _ in ranked(FIRST_STAGE[qid])][3:]
        assert table[("bm25", "validation")][qid] == pytest.approx(scores, abs=1e-5)  # raw scores of the head only
    tsv = (tmp_path / "out" / "scores.tsv").read_text().splitlines()
    assert tsv[0] == "run\tsplit\tquery_id\tdoc_id\tscore" and len(tsv) == 7
    assert stats == {"bm25_validation_pairs": 6, "pairs_computed": 6, "pairs_from_cache": 0, "forward_batches": 1}


def test_reranking_only_the_head_keeps_recall_at_depth(minilm_scorer_factory, tmp_path):
    """Recall@K of a reranked run is the first stage's for every K past the head: the reranker
    reorders ranks 1-3 and the rest stays below (before, the run held only the head: Recall@5 of
    the reranked run was Recall@3)."""
    from rerank_lab.evaluate import mean, per_query

    runs = _runs(tmp_path / "runs", FIRST_STAGE)
    _score(minilm_scorer_factory(), runs, tmp_path / "out", top_k=3)
    reranked = read_run(tmp_path / "out" / "bm25+ce" / "validation.trec")
    qrels = {"v1": {"d27": 1, "d19": 1}, "v2": {"d13": 1}}  # relevant docs at first-stage ranks 4, 6 and 5
    metrics = ("recall@3", "recall@5", "recall@6", "recall@100")
    first = mean(per_query(FIRST_STAGE, qrels, metrics), metrics)
    assert first == {"recall@3": 0.0, "recall@5": 0.75, "recall@6": 1.0, "recall@100": 1.0}
    assert mean(per_query(reranked, qrels, metrics), metrics) == first
    assert {q: set(d) for q, d in reranked.items()} == {q: set(d) for q, d in FIRST_STAGE.items()}


def test_a_wider_top_k_later_only_scores_the_extra_pairs(minilm_scorer_factory, tmp_path):
    runs = _runs(tmp_path / "runs", FIRST_STAGE)
    cache = tmp_path / "cache" / "scores.sqlite"

    narrow = _score(minilm_scorer_factory(cache=ScoreCache(cache)), runs, tmp_path / "k3", top_k=3)
    assert narrow["pairs_computed"] == 6 and narrow["pairs_from_cache"] == 0

    wide = _score(minilm_scorer_factory(cache=ScoreCache(cache)), runs, tmp_path / "k5", top_k=5)  # a later experiment
    assert wide["bm25_validation_pairs"] == 10
    assert wide["pairs_computed"] == 4  # ranks 4 and 5 of two queries
    assert wide["pairs_from_cache"] == 6
    k3 = read_scores(tmp_path / "k3" / "scores.tsv")[("bm25", "validation")]
    k5 = read_scores(tmp_path / "k5" / "scores.tsv")[("bm25", "validation")]
    assert all(k5[q][d] == s for q in k3 for d, s in k3[q].items())  # the shared pairs: the same scores

    again = _score(minilm_scorer_factory(cache=ScoreCache(cache)), runs, tmp_path / "again", top_k=5)
    assert again["pairs_computed"] == 0 and again["forward_batches"] == 0 and again["pairs_from_cache"] == 10
    run = Path("bm25+ce") / "validation.trec"
    assert (tmp_path / "again" / run).read_bytes() == (tmp_path / "k5" / run).read_bytes()
    assert (tmp_path / "again" / "scores.tsv").read_bytes() == (tmp_path / "k5" / "scores.tsv").read_bytes()


def test_run_naming_a_query_the_dataset_lacks(minilm_scorer_factory, tmp_path):
    runs = _runs(tmp_path / "runs", {**FIRST_STAGE, "v9": {"d00": 1.0}})
    path = runs / "bm25" / "validation.trec"
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: query v9: run names query 'v9', which the dataset lacks"):
        _score(minilm_scorer_factory(), runs, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_doc_the_corpus_lacks(minilm_scorer_factory, tmp_path):
    runs = _runs(tmp_path / "runs", {"v1": {"d09": 2.0, "zz": 1.0}})
    path = runs / "bm25" / "validation.trec"
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: query v1: run names doc 'zz', which the corpus lacks"):
        _score(minilm_scorer_factory(), runs, tmp_path / "out")


def test_a_doc_below_top_k_is_not_checked(minilm_scorer_factory):
    out = rerank({"v1": {"d09": 2.0, "zz": 1.0}}, QUERY_TEXT, PASSAGES, minilm_scorer_factory(), top_k=1)
    assert list(out["v1"]) == ["d09"]


def test_missing_run_for_a_split(minilm_scorer_factory, tmp_path):
    with pytest.raises(InputError, match=r"validation\.trec: no validation run for 'bm25'"):
        _score(minilm_scorer_factory(), tmp_path, tmp_path / "out")


def test_top_k_must_be_positive():
    with pytest.raises(ConfigError, match=r"^score\.top_k: must be >= 1, got 0"):
        ScoreConfig(top_k=0)
