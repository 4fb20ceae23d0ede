"""Malformed inputs through the real CLI: one clear line naming the file and record, exit 2, nothing written."""

from __future__ import annotations

import gzip
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import datasets
import pytest
import yaml

from rerank_lab.cli import cli, main
from rerank_lab.errors import ConfigError, InputError, RerankLabError
from rerank_lab.io.datasets import save_dataset
from rerank_lab.io.trec import read_run
from rerank_lab.schema import to_dataset, validate_example

HEADER = "query-id\tcorpus-id\tscore"
DOCS = [
    {"_id": "d1", "title": "Aspirin", "text": "Aspirin reduces fever."},
    {"_id": "d2", "title": "Sleep", "text": "Adults need sleep."},
    {"_id": "d3", "title": "", "text": "Water is wet."},
]
QUERIES = [{"_id": "q1", "text": "aspirin fever"}, {"_id": "q2", "text": "how much sleep"}, {"_id": "q3", "text": "is water wet"}]


def _jsonl_bytes(objs: list[dict]) -> bytes:
    return "".join(json.dumps(o) + "\n" for o in objs).encode("utf-8")


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _beir(root: Path, *, corpus: bytes | None = None, queries: bytes | None = None, test: str | None = None) -> Path:
    """A valid tiny BEIR folder, with any of its three files replaced."""
    _write(root / "corpus.jsonl", _jsonl_bytes(DOCS) if corpus is None else corpus)
    _write(root / "queries.jsonl", _jsonl_bytes(QUERIES) if queries is None else queries)
    _write(root / "qrels" / "test.tsv", f"{HEADER}\nq1\td1\t1\nq2\td2\t2\nq3\td3\t1\n" if test is None else test)
    return root


def _e(path: Path) -> str:
    return re.escape(str(path))


# Each case builds its input under tmp and returns (input path, convert.sources.x entry, error type, pattern).
Case = Callable[[Path], tuple[Path, dict, type[RerankLabError], str]]
BEIR = {"format": "beir"}


def truncated_gzip_corpus(tmp: Path):
    root = _beir(tmp / "beir")
    (root / "corpus.jsonl").unlink()
    gz = _write(root / "corpus.jsonl.gz", gzip.compress(_jsonl_bytes(DOCS), mtime=0)[:-12])
    return root, BEIR, InputError, f"^{_e(gz)}: corrupt or truncated gzip"


def missing_id_field(tmp: Path):
    docs = [DOCS[0], {"title": "No id", "text": "Lost."}, DOCS[2]]
    root = _beir(tmp / "beir", corpus=_jsonl_bytes(docs))
    return root, BEIR, InputError, rf"^{_e(root / 'corpus.jsonl')}: line 2: missing field\(s\) \['_id'\]"


def duplicate_doc_ids(tmp: Path):
    root = _beir(tmp / "beir", corpus=_jsonl_bytes([*DOCS, {"_id": "d1", "title": "", "text": "Again."}]))
    return root, BEIR, InputError, f"^{_e(root / 'corpus.jsonl')}: line 4: duplicate document id 'd1'"


def duplicate_query_ids(tmp: Path):
    root = _beir(tmp / "beir", queries=_jsonl_bytes([QUERIES[0], {"_id": "q1", "text": "again"}, QUERIES[2]]))
    return root, BEIR, InputError, f"^{_e(root / 'queries.jsonl')}: line 2: duplicate query id 'q1'"


def qrels_unknown_query(tmp: Path):
    root = _beir(tmp / "beir", test=f"{HEADER}\nq1\td1\t1\nq9\td2\t1\n")
    return root, BEIR, InputError, f"^{_e(root / 'qrels' / 'test.tsv')}: query q9: qrels name query 'q9', which queries.jsonl lacks"


UNKNOWN_DOC_QRELS = f"{HEADER}\nq1\td1\t1\nq2\td2\t1\nq1\td9\t1\n"  # d9's line is line 4, after another query's line


def qrels_unknown_doc(tmp: Path):
    root = _beir(tmp / "beir", test=UNKNOWN_DOC_QRELS)
    return root, BEIR, InputError, rf"^{_e(root / 'qrels' / 'test.tsv')}: line 4: qrels name document 'd9'.*on_missing_doc: drop"


def empty_query_text(tmp: Path):
    root = _beir(tmp / "beir", queries=_jsonl_bytes([*QUERIES[:2], {"_id": "q3", "text": "   "}]))
    return root, BEIR, InputError, f"^{_e(root / 'queries.jsonl')}: line 3: empty query text for query 'q3'"


def invalid_utf8_queries(tmp: Path):
    raw = _jsonl_bytes(QUERIES).replace(b"how much", b"how \xff much")
    root = _beir(tmp / "beir", queries=raw)
    byte = raw.index(b"\xff")
    return root, BEIR, InputError, f"^{_e(root / 'queries.jsonl')}: line 2: invalid UTF-8 at byte {byte} "


def wrong_qrels_header(tmp: Path):
    root = _beir(tmp / "beir", test="qid\tdocid\trel\nq1\td1\t1\n")
    return root, BEIR, InputError, rf"^{_e(root / 'qrels' / 'test.tsv')}: line 1: wrong qrels header 'qid\\tdocid\\trel'"


def empty_corpus_file(tmp: Path):
    root = _beir(tmp / "beir", corpus=b"")
    return root, BEIR, InputError, f"^{_e(root / 'corpus.jsonl')}: empty file"


def unknown_format(tmp: Path):
    root = _beir(tmp / "beir")
    return (
        root,
        {"format": "bier"},
        ConfigError,
        r"^convert\.sources\.x\.format: unknown value, got 'bier' "
        r"\(fix: did you mean 'beir'\? use one of: beir, triplets, hardneg, scifact_rationales\)$",
    )


def invalid_json_line(tmp: Path):
    root = _beir(tmp / "beir", queries=_jsonl_bytes(QUERIES[:1]) + b'{"_id": "q2", "text": \n' + _jsonl_bytes(QUERIES[2:]))
    return root, BEIR, InputError, rf"^{_e(root / 'queries.jsonl')}: line 2: invalid JSON \("


def not_a_json_object(tmp: Path):
    root = _beir(tmp / "beir", queries=_jsonl_bytes(QUERIES) + b'["q4", "text"]\n')
    return root, BEIR, InputError, f"^{_e(root / 'queries.jsonl')}: line 4: not a JSON object"


def non_integer_qrels_score(tmp: Path):
    root = _beir(tmp / "beir", test=f"{HEADER}\nq1\td1\t1\nq2\td2\t1.5\n")
    return root, BEIR, InputError, f"^{_e(root / 'qrels' / 'test.tsv')}: line 3: score '1.5' is not an integer"


def triplet_row_with_two_columns(tmp: Path):
    path = _write(tmp / "triplets.tsv", "what is bm25\tBM25 ranks.\tPandas eat bamboo.\nwhat is bm25\tBM25 ranks.\n")
    return path, {"format": "triplets"}, InputError, f"^{_e(path)}: line 2: expected 3 tab-separated columns, got 2"


def unknown_params_key(tmp: Path):
    root = _beir(tmp / "beir")
    return (
        root,
        {"format": "beir", "on_missing_docs": "drop"},
        ConfigError,
        r"^convert\.sources\.x\.on_missing_docs: unknown key \(fix: did you mean 'on_missing_doc'\? "
        r"valid keys: format, max_drop_fraction, on_missing_doc, remove_query, seed, teacher_name, ",
    )


def bad_on_missing_doc_value(tmp: Path):
    root = _beir(tmp / "beir")
    expected = r"^convert\.sources\.x\.on_missing_doc: unknown value, got 'skip' \(fix: use one of: error, drop\)$"
    return root, {"format": "beir", "on_missing_doc": "skip"}, ConfigError, expected


def hardneg_scores_misaligned(tmp: Path):
    line = {"query": "q", "pos": ["a."], "neg": ["b.", "c."], "pos_scores": [0.9], "neg_scores": [0.1]}
    path = _write(tmp / "hn.jsonl", _jsonl_bytes([line]))
    return path, {"format": "hardneg"}, InputError, f"^{_e(path)}: line 1: pos_scores/neg_scores do not line up with pos/neg"


def hardneg_score_not_a_number(tmp: Path):
    ok = {"query": "q", "pos": ["a."], "neg": ["b."], "pos_scores": [0.9], "neg_scores": [0.1]}
    path = _write(tmp / "hn.jsonl", _jsonl_bytes([ok, {**ok, "query": "r", "neg_scores": ["high"]}]))
    return path, {"format": "hardneg"}, InputError, f"^{_e(path)}: line 2: pos_scores/neg_scores must be numbers"


def _scifact(root: Path, train: list[dict], dev: list[dict]) -> Path:
    corpus = [{"doc_id": 1, "title": "T", "abstract": ["One.", "Two."], "structured": False}]
    _write(root / "corpus.jsonl", _jsonl_bytes(corpus))
    _write(root / "claims_train.jsonl", _jsonl_bytes(train))
    _write(root / "claims_dev.jsonl", _jsonl_bytes(dev))
    return root


def _claim(cid: int, evidence: dict) -> dict:
    return {"id": cid, "claim": f"claim {cid}", "evidence": evidence, "cited_doc_ids": [1]}


SCIFACT = {"format": "scifact_rationales"}


def scifact_duplicate_claim_id(tmp: Path):
    root = _scifact(tmp / "sf", [_claim(5, {}), _claim(6, {})], [_claim(7, {}), _claim(5, {})])
    return root, SCIFACT, InputError, rf"^{_e(root / 'claims_dev.jsonl')}: line 2: duplicate claim id 5 \(also in claims_train.jsonl\)"


def scifact_negative_sentence_index(tmp: Path):
    root = _scifact(tmp / "sf", [_claim(5, {"1": [{"sentences": [-1], "label": "SUPPORT"}]})], [_claim(6, {})])
    return (
        root,
        SCIFACT,
        InputError,
        rf"^{_e(root / 'claims_train.jsonl')}: line 1: claim 5: sentence index -1 outside doc 1 \(2 sentences\)",
    )


def scifact_sentence_index_past_the_end(tmp: Path):
    root = _scifact(tmp / "sf", [_claim(5, {})], [_claim(6, {"1": [{"sentences": [0, 2], "label": "SUPPORT"}]})])
    return root, SCIFACT, InputError, rf"^{_e(root / 'claims_dev.jsonl')}: line 1: claim 6: sentence index 2 outside doc 1"


def scifact_malformed_evidence(tmp: Path):
    root = _scifact(tmp / "sf", [_claim(5, {}), _claim(6, {"1": [{"label": "SUPPORT"}]})], [_claim(7, {})])
    return root, SCIFACT, InputError, f"^{_e(root / 'claims_train.jsonl')}: line 2: claim 6 has malformed evidence"


CASES: list[Case] = [
    truncated_gzip_corpus,
    missing_id_field,
    duplicate_doc_ids,
    duplicate_query_ids,
    qrels_unknown_query,
    qrels_unknown_doc,
    empty_query_text,
    invalid_utf8_queries,
    wrong_qrels_header,
    empty_corpus_file,
    unknown_format,
    invalid_json_line,
    not_a_json_object,
    non_integer_qrels_score,
    triplet_row_with_two_columns,
    unknown_params_key,
    bad_on_missing_doc_value,
    hardneg_scores_misaligned,
    hardneg_score_not_a_number,
    scifact_duplicate_claim_id,
    scifact_negative_sentence_index,
    scifact_sentence_index_past_the_end,
    scifact_malformed_evidence,
]


def _params(tmp: Path, params: dict) -> Path:
    return _write(tmp / "params.yaml", yaml.safe_dump(params))


def _fails_cleanly(args: list, exc_type: type[RerankLabError], pattern: str, monkeypatch, capsys) -> RerankLabError:
    """The command raises ``exc_type`` matching ``pattern``; through ``main`` it prints that one line and exits 2."""
    args = [str(a) for a in args]
    with pytest.raises(exc_type, match=pattern) as info:
        cli.main(args, prog_name="rerank-lab", standalone_mode=False)
    for var, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
        monkeypatch.setenv(var, value)  # main() sets these; monkeypatch puts the old values back
    monkeypatch.setattr(sys, "argv", ["rerank-lab", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit, match="^2$"):
        main()
    captured = capsys.readouterr()
    assert captured.err == f"error: {info.value}\n"  # one line, the same message
    assert "Traceback" not in captured.err and captured.out == ""
    return info.value


def _nothing_written(tmp: Path, *outputs: Path) -> None:
    for out in outputs:
        assert not out.exists(), out
    leftovers = [p for p in tmp.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == []


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_convert_rejects_bad_input(case: Case, tmp_path: Path, monkeypatch, capsys) -> None:
    input_path, source, exc_type, pattern = case(tmp_path)
    params = _params(tmp_path, {"convert": {"seed": 1, "sources": {"x": source}}})
    output, metrics = tmp_path / "out" / "converted", tmp_path / "out" / "convert.json"
    args = ["convert", "--params", params, "--source", "x", "--input", input_path, "--output", output, "--metrics", metrics]
    _fails_cleanly(args, exc_type, pattern, monkeypatch, capsys)
    _nothing_written(tmp_path, output, metrics)


def test_on_missing_doc_drop_accepts_the_unknown_doc(tmp_path: Path) -> None:
    root = _beir(tmp_path / "beir", test=UNKNOWN_DOC_QRELS)
    params = _params(tmp_path, {"convert": {"seed": 1, "sources": {"x": {"format": "beir", "on_missing_doc": "drop"}}}})
    output, metrics = tmp_path / "out" / "converted", tmp_path / "out" / "convert.json"
    args = ["convert", "--params", params, "--source", "x", "--input", root, "--output", output, "--metrics", metrics]
    cli.main([str(a) for a in args], prog_name="rerank-lab", standalone_mode=False)
    assert json.loads(metrics.read_text())["qrels_docs_dropped"] == 1
    assert (output / "qrels" / "test.tsv").read_text() == f"{HEADER}\nq1\td1\t1\nq2\td2\t1\n"
    assert (output / "dataset" / "dataset_dict.json").is_file()
    _nothing_written(tmp_path)


# --- a span outside its text: the schema rejects it -------------------------------------------------

BAD_SPAN_ROW = {"id": "q1", "query": "x", "texts": ["short text"], "text_ids": ["d1"], "context_spans": [[[0, 5], [6, 99]]], "labels": [1]}


def test_validate_example_rejects_a_span_outside_its_text() -> None:
    good = {**BAD_SPAN_ROW, "context_spans": [[[0, 5], [6, 10]]]}
    validate_example(good)  # the same row with the span inside the text is fine
    with pytest.raises(InputError, match=r"^train record q1, text 0: span \[6, 99\] lies outside its text \(length 10\)"):
        validate_example(BAD_SPAN_ROW, split="train")
    with pytest.raises(InputError, match=r"record q1, text 0: span \[3, 3\] lies outside"):
        validate_example({**BAD_SPAN_ROW, "context_spans": [[[3, 3]]]})  # empty spans are not sentences


def test_cli_rejects_a_dataset_with_a_span_outside_its_text(tmp_path: Path, monkeypatch, capsys) -> None:
    ds = tmp_path / "dataset"
    datasets.DatasetDict({"train": to_dataset([BAD_SPAN_ROW])}).save_to_disk(str(ds))  # bypasses save_dataset's check
    params = _params(tmp_path, {"dedup": {"max_duplicates": 0}, "convert": {"sources": {"x": {"format": "triplets"}}}})
    output, metrics = tmp_path / "out" / "dedup", tmp_path / "out" / "dedup.json"
    args = ["dedup", "--params", params, "--source", "x", "--input", ds, "--output", output, "--metrics", metrics]
    _fails_cleanly(args, InputError, rf"^{_e(ds)}: train record q1, text 0: span \[6, 99\] lies outside its text", monkeypatch, capsys)
    _nothing_written(tmp_path, output, metrics)


# --- a run file with a malformed line ----------------------------------------------------------------


def test_read_run_names_the_malformed_line(tmp_path: Path) -> None:
    good = "q1 Q0 d1 1 2.5 bm25\n"
    assert read_run(_write(tmp_path / "ok.trec", good)) == {"q1": {"d1": 2.5}}
    path = _write(tmp_path / "five.trec", good + "\nq1 Q0 d2 2 bm25\n")
    with pytest.raises(InputError, match=rf"^{_e(path)}: line 3: expected 6 columns \(qid Q0 docid rank score tag\), got 5"):
        read_run(path)
    path = _write(tmp_path / "score.trec", good + "q1 Q0 d2 2 high bm25\n")
    with pytest.raises(InputError, match=rf"^{_e(path)}: line 2: score 'high' is not a number"):
        read_run(path)
    path = _write(tmp_path / "twice.trec", good + "q1 Q0 d1 2 1.0 bm25\n")
    with pytest.raises(InputError, match=rf"^{_e(path)}: line 2: doc d1 appears twice for query q1"):
        read_run(path)


def test_evaluate_rejects_a_malformed_run_line(tmp_path: Path, monkeypatch, capsys) -> None:
    row = {"id": "q1", "query": "x", "texts": ["Some text."], "text_ids": ["d1"], "context_spans": [[[0, 10]]], "labels": [1]}
    save_dataset(datasets.DatasetDict({"test": to_dataset([row])}), tmp_path / "dataset")
    _write(tmp_path / "qrels" / "test.tsv", f"{HEADER}\nq1\td1\t1\n")
    run = _write(tmp_path / "runs" / "bm25" / "test.trec", "q1 Q0 d1 1 2.5 bm25\nq1 Q0 d2 2\n")
    params = _params(tmp_path, {"evaluate": {"metrics": ["ndcg@10"], "splits": ["test"]}})
    output, metrics = tmp_path / "out" / "per_query", tmp_path / "out" / "evaluate.json"
    args = [
        "evaluate",
        "--params",
        params,
        "--runs",
        tmp_path / "runs",
        "--dataset",
        tmp_path / "dataset",
        "--qrels",
        tmp_path / "qrels",
        "--metrics",
        metrics,
        "--output",
        output,
    ]
    _fails_cleanly(args, InputError, rf"^{_e(run)}: line 2: expected 6 columns .*got 4", monkeypatch, capsys)
    _nothing_written(tmp_path, output, metrics)
