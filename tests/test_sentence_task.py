"""Sentence mode (``task.unit: sentences``): on the real SciFact release, every candidate is
exactly one abstract sentence of a cited document (checked against the raw files, not against
the document-mode conversion), gold is exactly the evidence sentences, NOINFO claims stay judged
queries without evidence, context windows mark their sentence, and a source without sentence
evidence is refused."""

from __future__ import annotations

import json

import pytest

from rerank_lab.config import ConvertConfig
from rerank_lab.convert import convert, run, summary, write_converted
from rerank_lab.convert.sentence_task import to_sentences, window
from rerank_lab.errors import ConfigError, InputError
from rerank_lab.io.datasets import load_corpus, load_dataset
from rerank_lab.io.qrels import read_qrels
from rerank_lab.schema import passage_text
from rerank_lab.task import TaskConfig, task_config
from tests.test_convert import REAL_SCIFACT, _read_gz


@pytest.fixture(scope="module")
def raw():
    if not REAL_SCIFACT.is_dir():
        pytest.skip("data/raw/scifact_rationales is not in this checkout")
    corpus = {str(d["doc_id"]): [s.strip() for s in d["abstract"]] for d in _read_gz(REAL_SCIFACT / "corpus.jsonl.gz")}
    claims = _read_gz(REAL_SCIFACT / "claims_train.jsonl.gz") + _read_gz(REAL_SCIFACT / "claims_dev.jsonl.gz")
    return corpus, {str(c["id"]): c for c in claims}


@pytest.fixture(scope="module")
def documents():
    if not REAL_SCIFACT.is_dir():
        pytest.skip("data/raw/scifact_rationales is not in this checkout")
    return convert(REAL_SCIFACT, ConvertConfig(format="scifact_rationales", seed=42, validation_fraction=0.2))


def _rows(conv) -> dict[str, tuple[str, dict]]:
    return {r["id"]: (split, r) for split, rows in conv.splits.items() for r in rows}


def test_candidates_are_the_cited_abstracts_sentences_and_gold_the_evidence(raw, documents):
    corpus, claims = raw
    conv = to_sentences(documents, context=0, source="scifact_rationales")
    rows = _rows(conv)
    assert len(rows) == len(claims)
    for qid, (split, row) in rows.items():
        claim = claims[qid]
        cited = list(dict.fromkeys(str(d) for d in claim["cited_doc_ids"]))
        expected_ids = [f"{d}#{k}" for d in cited for k in range(len(corpus[d]))]
        assert row["text_ids"] == expected_ids
        assert row["texts"] == [corpus[d][k] for d in cited for k in range(len(corpus[d]))]
        gold = {f"{d}#{k}" for d, sets in claim["evidence"].items() for ev in sets for k in ev["sentences"]}
        assert {t for t, label in zip(row["text_ids"], row["labels"]) if label} == gold
        assert row["context_spans"] == [[[0, len(t)]] for t in row["texts"]]
        assert row["context_spans_relevance"] == [[label] for label in row["labels"]]
        assert conv.qrels[split][qid] == dict(zip(row["text_ids"], row["labels"]))
    # every candidate is a corpus document of its own, its text the sentence
    sentences = {d["id"]: d for d in conv.corpus}
    assert all(
        passage_text(sentences[t]["title"], sentences[t]["text"]) == text
        for _, r in rows.values()
        for t, text in zip(r["text_ids"], r["texts"])
    )
    # the split of every claim is the document mode's (carved by group there)
    assert {q: s for q, (s, _) in rows.items()} == {q: s for q, (s, _) in _rows(documents).items()}
    assert sum(1 for _, r in rows.values() if any(r["labels"])) == sum(1 for c in claims.values() if c["evidence"])


def test_noinfo_claims_are_judged_queries_without_evidence(raw, documents, tmp_path):
    _, claims = raw
    conv = to_sentences(documents, context=0, source="scifact_rationales")
    write_converted(conv, tmp_path / "out")
    noinfo = [r for r in conv.splits["test"] if not any(r["labels"])]
    dev_noinfo = {q for q, c in claims.items() if not c["evidence"]} & {r["id"] for r in conv.splits["test"]}
    assert {r["id"] for r in noinfo} == dev_noinfo and len(dev_noinfo) > 50
    qrels = read_qrels(tmp_path / "out" / "qrels" / "test.tsv")
    for row in noinfo:
        assert set(qrels[row["id"]].values()) == {0} and len(qrels[row["id"]]) == len(row["texts"])
    assert len(load_corpus(tmp_path / "out" / "corpus")) == summary(conv)["corpus_docs"]


def test_context_windows_mark_their_sentence(raw, documents):
    corpus, _ = raw
    conv = to_sentences(documents, context=1, source="scifact_rationales")
    for row in conv.splits["test"][:40]:
        for text_id, text, spans in zip(row["text_ids"], row["texts"], row["context_spans"]):
            doc, k = text_id.split("#")
            body, k = corpus[doc], int(k)
            ((start, end),) = spans
            assert text[start:end] == body[k]
            assert text == " ".join(body[max(0, k - 1) : k + 2])


def test_window_at_the_edges():
    assert window(["One.", "Two.", "Three."], 0, 2) == ("One. Two. Three.", [0, 4])
    assert window(["One.", "Two.", "Three."], 2, 1) == ("Two. Three.", [5, 11])


def test_the_stage_writes_sentence_mode_from_the_task_param(tmp_path):
    if not REAL_SCIFACT.is_dir():
        pytest.skip("data/raw/scifact_rationales is not in this checkout")
    cfg = (ConvertConfig(format="scifact_rationales", seed=42, validation_fraction=0.2), TaskConfig(unit="sentences"), "scifact_rationales")
    metrics = run(cfg, {"input": REAL_SCIFACT}, {"output": tmp_path / "out"})
    dd = load_dataset(tmp_path / "out" / "dataset")
    assert all("#" in t for t in dd["test"][0]["text_ids"])
    assert metrics["test_texts"] == sum(len(t) for t in dd["test"]["texts"])
    assert metrics["context_sentences"] == 0


def test_a_source_without_sentence_evidence_is_refused(tmp_path):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "title": "", "text": "One. Two."}) + "\n")
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "one"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    with pytest.raises(
        InputError, match=r"^convert\.sources\.tiny: task\.unit sentences needs sentence-level evidence .*\(fix: use a scifact_rationales"
    ):
        run((ConvertConfig(format="beir"), TaskConfig(unit="sentences"), "tiny"), {"input": folder}, {"output": tmp_path / "out"})
    assert not (tmp_path / "out").exists()


def test_task_params():
    assert task_config({}) == TaskConfig()
    assert task_config({"task": {"unit": "sentences", "context": 1}}).context == 1
    with pytest.raises(ConfigError, match=r"^task\.unit: "):
        task_config({"task": {"unit": "paragraphs"}})
    with pytest.raises(ConfigError, match=r"^task\.context: "):
        task_config({"task": {"context": -1}})


def test_noinfo_claims_never_count_toward_has_evidence_metrics(documents, tmp_path):
    from rerank_lab.evaluate import evaluate_runs
    from rerank_lab.io.trec import write_run

    conv = to_sentences(documents, context=0, source="scifact_rationales")
    write_converted(conv, tmp_path / "out")
    rows = conv.splits["test"]
    # gold first: a perfect ranking for every claim with evidence; NOINFO claims answer with their sentences
    run = {r["id"]: {t: float(label) + 1.0 / (i + 2) for i, (t, label) in enumerate(zip(r["text_ids"], r["labels"]))} for r in rows}
    write_run(run, tmp_path / "runs" / "perfect" / "test.trec", tag="perfect")
    summary, per_query = evaluate_runs([tmp_path / "runs"], tmp_path / "out" / "qrels", {"test": set(run)}, ("ndcg@10",), ("test",))
    has_evidence = {r["id"] for r in rows if any(r["labels"])}
    assert {q for _, _, q, _ in per_query} == has_evidence
    assert summary["perfect"]["test"] == {
        "ndcg@10": 1.0,
        "queries": len(has_evidence),
        "queries_without_relevant": len(rows) - len(has_evidence),
        "false_evidence_rate": 1.0,
    }
