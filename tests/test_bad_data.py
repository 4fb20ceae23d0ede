"""Bad data in input files: refused where it is read, with one line naming the file, the record and a fix.

Each case here was silently turned into wrong data, or crashed with a traceback, before the readers
checked ids (one token: no white space or control characters), text fields (strings, valid
Unicode) and numbers (finite). The convert cases run twice: through the library and through the
real CLI (exit 2, one line on stderr, no output written, inputs byte-identical). The readers'
own cases (JSON lines, qrels, runs, the schema) are in tests/io/test_bad_records.py.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import datasets
import pytest
import yaml

from rerank_lab.cli import cli, main
from rerank_lab.config import ConvertConfig
from rerank_lab.convert import convert
from rerank_lab.errors import InputError

HEADER = "query-id\tcorpus-id\tscore"
DOCS = [
    {"_id": "d1", "title": "Aspirin", "text": "Aspirin reduces fever."},
    {"_id": "d2", "title": "Sleep", "text": "Adults need sleep."},
    {"_id": "d3", "title": "", "text": "Water is wet."},
]
QUERIES = [{"_id": "q1", "text": "aspirin fever"}, {"_id": "q2", "text": "how much sleep"}, {"_id": "q3", "text": "is water wet"}]
TEST_QRELS = f"{HEADER}\nq1\td1\t1\nq2\td2\t2\nq3\td3\t1\n"


def _jsonl(objs: list[dict]) -> str:
    # json.dumps writes a lone surrogate as the escape \ud800 (ensure_ascii), as a broken exporter would
    return "".join(json.dumps(o) + "\n" for o in objs)


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _beir(root: Path, *, docs: list[dict] = DOCS, queries: list[dict] = QUERIES, qrels: dict[str, str] | None = None) -> Path:
    _write(root / "corpus.jsonl", _jsonl(docs))
    _write(root / "queries.jsonl", _jsonl(queries))
    for name, text in (qrels or {"test.tsv": TEST_QRELS}).items():
        _write(root / "qrels" / name, text)
    return root


def _e(path: Path) -> str:
    return re.escape(str(path))


# --- convert cases: each builds its input under tmp and returns (input, convert.sources.x entry, pattern) ------

Case = Callable[[Path], tuple[Path, dict, str]]
BEIR = {"format": "beir"}


def beir_dev_and_validation_qrels(tmp: Path):
    root = _beir(
        tmp / "beir",
        qrels={"train.tsv": f"{HEADER}\nq1\td1\t1\n", "dev.tsv": f"{HEADER}\nq2\td2\t1\n", "validation.tsv": f"{HEADER}\nq3\td3\t1\n"},
    )
    return root, BEIR, rf"^{_e(root / 'qrels')}: dev.tsv and validation.tsv both give the validation split \(fix: keep one"


def beir_same_split_in_two_cases(tmp: Path):
    root = _beir(tmp / "beir", qrels={"test.tsv": TEST_QRELS, "TEST.TSV": TEST_QRELS})
    return root, BEIR, rf"^{_e(root / 'qrels')}: TEST.TSV and test.tsv both give the test split"


def beir_unknown_file_in_qrels(tmp: Path):
    root = _beir(tmp / "beir", qrels={"test.tsv": TEST_QRELS, "test.txt": TEST_QRELS})
    return root, BEIR, rf"^{_e(root / 'qrels' / 'test.txt')}: unknown file 'test.txt' in qrels/ \(fix: move it out"


def beir_null_doc_id(tmp: Path):
    root = _beir(tmp / "beir", docs=[DOCS[0], {**DOCS[1], "_id": None}, DOCS[2]])
    return root, BEIR, rf"^{_e(root / 'corpus.jsonl')}: line 2: _id must be a string, got null \(fix:"


def beir_doc_id_with_a_space(tmp: Path):
    root = _beir(tmp / "beir", docs=[DOCS[0], {**DOCS[1], "_id": "d 2"}, DOCS[2]], qrels={"test.tsv": f"{HEADER}\nq1\td1\t1\n"})
    return (
        root,
        BEIR,
        rf"^{_e(root / 'corpus.jsonl')}: line 2: _id 'd 2' contains white space \(' ' at position 1\) \(fix: ids are single tokens",
    )


def beir_query_id_with_a_no_break_space(tmp: Path):
    queries = [*QUERIES[:2], {"_id": "q\u00a03", "text": "is water wet"}]
    root = _beir(tmp / "beir", queries=queries, qrels={"test.tsv": f"{HEADER}\nq1\td1\t1\nq\u00a03\td3\t1\n"})
    return root, BEIR, rf"^{_e(root / 'queries.jsonl')}: line 3: _id 'q\\xa03' contains white space"


def beir_qrels_id_with_a_control_character(tmp: Path):
    root = _beir(tmp / "beir", qrels={"test.tsv": f"{HEADER}\nq1\td1\t1\nq2\td2\x07\t1\n"})
    return root, BEIR, rf"^{_e(root / 'qrels' / 'test.tsv')}: line 3: corpus id 'd2\\x07' contains a control character"


def beir_null_query_text(tmp: Path):
    root = _beir(tmp / "beir", queries=[*QUERIES[:2], {"_id": "q3", "text": None}])
    return root, BEIR, rf"^{_e(root / 'queries.jsonl')}: line 3: text must be a string, got null \(fix: write the text as one JSON string"


def beir_list_title(tmp: Path):
    root = _beir(tmp / "beir", docs=[{**DOCS[0], "title": ["Aspirin", "ASA"]}, *DOCS[1:]])
    return root, BEIR, rf"^{_e(root / 'corpus.jsonl')}: line 1: title must be a string, got a list \[\"Aspirin\", \"ASA\"\]"


def beir_object_text(tmp: Path):
    root = _beir(tmp / "beir", docs=[DOCS[0], {**DOCS[1], "text": {"en": "Adults need sleep."}}, DOCS[2]])
    return root, BEIR, rf"^{_e(root / 'corpus.jsonl')}: line 2: text must be a string, got an object"


def beir_number_text(tmp: Path):
    root = _beir(tmp / "beir", docs=[*DOCS[:2], {**DOCS[2], "text": 42}])
    return root, BEIR, rf"^{_e(root / 'corpus.jsonl')}: line 3: text must be a string, got a number 42"


def beir_lone_surrogate_in_a_doc(tmp: Path):
    root = _beir(tmp / "beir", docs=[*DOCS[:2], {**DOCS[2], "text": "Water \ud800 is wet."}])
    return root, BEIR, rf"^{_e(root / 'corpus.jsonl')}: line 3: field 'text' holds a lone UTF-16 surrogate"


def beir_lone_surrogate_in_a_query(tmp: Path):
    root = _beir(tmp / "beir", queries=[QUERIES[0], {"_id": "q2", "text": "sleep \udfff"}, QUERIES[2]])
    return root, BEIR, rf"^{_e(root / 'queries.jsonl')}: line 2: field 'text' holds a lone UTF-16 surrogate"


def beir_corpus_is_a_directory(tmp: Path):
    root = _beir(tmp / "beir")
    (root / "corpus.jsonl").unlink()
    (root / "corpus.jsonl").mkdir()
    return root, BEIR, rf"^{_e(root / 'corpus.jsonl')}: is a directory, not a file"


def beir_input_is_a_file(tmp: Path):
    root = _beir(tmp / "beir")
    return root / "corpus.jsonl", BEIR, rf"^{_e(root / 'corpus.jsonl')}: is a file, but the beir format reads a folder"


def beir_qrels_with_no_judgments(tmp: Path):
    root = _beir(tmp / "beir", qrels={"test.tsv": HEADER + "\n"})
    return root, BEIR, rf"^{_e(root)}: no query with a judged text: nothing to convert"


TRIPLETS = {"format": "triplets"}
TRIPLET_LINES = "what is bm25\tBM25 ranks.\tPandas eat bamboo.\nwhat is dense\tEmbeddings.\tThe sky is blue.\n"


def triplets_header_in_the_middle(tmp: Path):
    path = _write(tmp / "t.tsv", TRIPLET_LINES + "query\tpositive\tnegative\n" + TRIPLET_LINES.replace("what", "who"))
    return path, TRIPLETS, rf"^{_e(path)}: line 3: a header row in the middle of the file"


def triplets_header_only(tmp: Path):
    path = _write(tmp / "t.tsv", "query\tpositive\tnegative\n")
    return path, TRIPLETS, rf"^{_e(path)}: a header row and no triplets"


def triplets_null_positive(tmp: Path):
    path = _write(tmp / "t.jsonl", _jsonl([{"query": "what is bm25", "positive": None, "negative": "Pandas."}]))
    return path, TRIPLETS, rf"^{_e(path)}: line 1: positive must be a string, got null"


def triplets_number_negative(tmp: Path):
    path = _write(tmp / "t.jsonl", _jsonl([{"anchor": "what is bm25", "positive": "BM25 ranks.", "negative": 5}]))
    return path, TRIPLETS, rf"^{_e(path)}: line 1: negative must be a string, got a number 5"


HARDNEG = {"format": "hardneg"}
SCORED = {"query": "what is bm25", "pos": ["BM25 ranks."], "neg": ["Pandas eat bamboo."], "pos_scores": [0.9], "neg_scores": [0.1]}


def _hardneg(tmp: Path, lines: list[str]) -> Path:
    return _write(tmp / "hn.jsonl", "".join(line + "\n" for line in lines))


def hardneg_nan_score(tmp: Path):
    path = _hardneg(tmp, [json.dumps(SCORED).replace("0.9", "NaN")])
    return path, HARDNEG, rf"^{_e(path)}: line 1: NaN is not a JSON number \(fix: write a finite number"


def hardneg_infinite_score(tmp: Path):
    path = _hardneg(tmp, [json.dumps(SCORED), json.dumps({**SCORED, "query": "q2"}).replace("0.1", "-Infinity")])
    return path, HARDNEG, rf"^{_e(path)}: line 2: -Infinity is not a JSON number"


def hardneg_score_too_large_for_a_float(tmp: Path):
    path = _hardneg(tmp, [json.dumps(SCORED).replace("0.1", "1e999")])
    return path, HARDNEG, rf"^{_e(path)}: line 1: number 1e999 is too large for a float"


def hardneg_integer_score_too_large_for_a_float(tmp: Path):
    path = _hardneg(tmp, [json.dumps(SCORED).replace("0.1", "1" + "0" * 400)])
    return path, HARDNEG, rf"^{_e(path)}: line 1: pos_scores/neg_scores must be numbers, all finite"


def hardneg_scores_on_some_records(tmp: Path):
    unscored = {k: v for k, v in SCORED.items() if not k.endswith("_scores")}
    path = _hardneg(tmp, [json.dumps(SCORED), json.dumps({**unscored, "query": "q2"})])
    return path, HARDNEG, rf"^{_e(path)}: line 2: has no pos_scores/neg_scores, unlike {_e(path)}: line 1 \(fix: give pos_scores"


def hardneg_null_query(tmp: Path):
    path = _hardneg(tmp, [json.dumps({**SCORED, "query": None})])
    return path, HARDNEG, rf"^{_e(path)}: line 1: query must be a string, got null"


def hardneg_object_passage(tmp: Path):
    path = _hardneg(tmp, [json.dumps(SCORED), json.dumps({**SCORED, "query": "q2", "pos": [{"text": "BM25 ranks."}]})])
    return path, HARDNEG, rf"^{_e(path)}: line 2: pos\[0\] must be a string, got an object"


SCIFACT = {"format": "scifact_rationales"}
SF_DOC = {"doc_id": 1, "title": "T", "abstract": ["One.", "Two."], "structured": False}


def _claim(cid: int, **changes) -> dict:
    return {"id": cid, "claim": f"claim {cid}", "evidence": {}, "cited_doc_ids": [1], **changes}


def _scifact(tmp: Path, *, doc: dict = SF_DOC, train: dict | None = None) -> Path:
    root = tmp / "sf"
    _write(root / "corpus.jsonl", _jsonl([doc]))
    _write(root / "claims_train.jsonl", _jsonl([_claim(5), train or _claim(6)]))
    _write(root / "claims_dev.jsonl", _jsonl([_claim(7)]))
    return root


def scifact_cited_doc_ids_a_string(tmp: Path):
    root = _scifact(tmp, train=_claim(6, cited_doc_ids="1"))
    return root, SCIFACT, rf'^{_e(root / "claims_train.jsonl")}: line 2: cited_doc_ids must be a list, got a string "1"'


def scifact_cited_doc_ids_null(tmp: Path):
    root = _scifact(tmp, train=_claim(6, cited_doc_ids=None))
    return root, SCIFACT, rf"^{_e(root / 'claims_train.jsonl')}: line 2: cited_doc_ids must be a list, got null"


def scifact_abstract_a_string(tmp: Path):
    root = _scifact(tmp, doc={**SF_DOC, "abstract": "One. Two."})
    return root, SCIFACT, rf"^{_e(root / 'corpus.jsonl')}: line 1: abstract must be a list, got a string"


def scifact_fractional_sentence_index(tmp: Path):
    root = _scifact(tmp, train=_claim(6, evidence={"1": [{"sentences": [1.5], "label": "SUPPORT"}]}))
    return root, SCIFACT, rf"^{_e(root / 'claims_train.jsonl')}: line 2: claim 6 has malformed evidence"


def scifact_null_claim(tmp: Path):
    root = _scifact(tmp, train=_claim(6, claim=None))
    return root, SCIFACT, rf"^{_e(root / 'claims_train.jsonl')}: line 2: claim must be a string, got null"


def scifact_null_doc_id(tmp: Path):
    root = _scifact(tmp, doc={**SF_DOC, "doc_id": None})
    return root, SCIFACT, rf"^{_e(root / 'corpus.jsonl')}: line 1: doc_id must be a string, got null"


CONVERT_CASES: list[Case] = [
    beir_dev_and_validation_qrels,
    beir_same_split_in_two_cases,
    beir_unknown_file_in_qrels,
    beir_null_doc_id,
    beir_doc_id_with_a_space,
    beir_query_id_with_a_no_break_space,
    beir_qrels_id_with_a_control_character,
    beir_null_query_text,
    beir_list_title,
    beir_object_text,
    beir_number_text,
    beir_lone_surrogate_in_a_doc,
    beir_lone_surrogate_in_a_query,
    beir_corpus_is_a_directory,
    beir_input_is_a_file,
    beir_qrels_with_no_judgments,
    triplets_header_in_the_middle,
    triplets_header_only,
    triplets_null_positive,
    triplets_number_negative,
    hardneg_nan_score,
    hardneg_infinite_score,
    hardneg_score_too_large_for_a_float,
    hardneg_integer_score_too_large_for_a_float,
    hardneg_scores_on_some_records,
    hardneg_null_query,
    hardneg_object_passage,
    scifact_cited_doc_ids_a_string,
    scifact_cited_doc_ids_null,
    scifact_abstract_a_string,
    scifact_fractional_sentence_index,
    scifact_null_claim,
    scifact_null_doc_id,
]
IDS = [c.__name__ for c in CONVERT_CASES]


@pytest.mark.parametrize("case", CONVERT_CASES, ids=IDS)
def test_convert_refuses_bad_data(case: Case, tmp_path: Path) -> None:
    input_path, source, pattern = case(tmp_path)
    with pytest.raises(InputError, match=pattern):
        convert(input_path, ConvertConfig(seed=1, **source))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _cli_fails(args: list, pattern: str, monkeypatch, capsys) -> None:
    """The command raises InputError matching ``pattern``; through ``main`` it prints that one line and exits 2."""
    args = [str(a) for a in args]
    with pytest.raises(InputError, match=pattern) as info:
        cli.main(args, prog_name="rerank-lab", standalone_mode=False)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM"):
        monkeypatch.setenv(var, "1" if var != "TOKENIZERS_PARALLELISM" else "false")  # main() sets these
    monkeypatch.setattr(sys, "argv", ["rerank-lab", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit, match="^2$"):
        main()
    captured = capsys.readouterr()
    assert captured.err == f"error: {info.value}\n" and captured.out == ""


@pytest.mark.parametrize("case", CONVERT_CASES, ids=IDS)
def test_convert_cli_refuses_bad_data(case: Case, tmp_path: Path, monkeypatch, capsys) -> None:
    inputs = tmp_path / "in"
    input_path, source, pattern = case(inputs)
    before = _files(inputs)
    params = _write(tmp_path / "params.yaml", yaml.safe_dump({"convert": {"seed": 1, "sources": {"x": source}}}))
    output, metrics = tmp_path / "out" / "converted", tmp_path / "out" / "convert.json"
    args = ["convert", "--params", params, "--source", "x", "--input", input_path, "--output", output, "--metrics", metrics]
    _cli_fails(args, pattern, monkeypatch, capsys)
    assert not output.exists() and not metrics.exists()
    assert not [p for p in tmp_path.rglob(".*") if ".tmp-" in p.name]
    assert _files(inputs) == before


# --- what is accepted instead of being ignored ---------------------------------------------------------------


def test_qrels_file_names_match_in_any_case(tmp_path: Path) -> None:
    """qrels/TEST.TSV is the test split; it used to be skipped and test carved from train. Hidden
    files (.DS_Store) are not data: passed over, not refused."""
    qrels = {"Train.tsv": f"{HEADER}\nq1\td1\t1\nq2\td2\t1\n", "TEST.TSV": f"{HEADER}\nq3\td3\t1\n", ".DS_Store": "\x00"}
    root = _beir(tmp_path / "beir", qrels=qrels)
    conv = convert(root, ConvertConfig(format="beir", seed=1, validation_fraction=0.0))
    assert {s: [r["id"] for r in rows] for s, rows in conv.splits.items()} == {"train": ["q1", "q2"], "test": ["q3"], "validation": []}
    assert conv.qrels["test"] == {"q3": {"d3": 1}}


def test_triplets_header_on_the_first_line_is_skipped(tmp_path: Path, monkeypatch, capsys) -> None:
    """A header row is skipped (and logged), not turned into a query named "query"."""
    plain = convert(_write(tmp_path / "plain.tsv", TRIPLET_LINES), ConvertConfig(format="triplets", validation_fraction=0, test_fraction=0))
    headed = _write(tmp_path / "headed.tsv", "\n Query\tPositive\tNegative\n" + TRIPLET_LINES)  # any case, after a blank line
    conv = convert(headed, ConvertConfig(format="triplets", validation_fraction=0, test_fraction=0))
    assert [r["query"] for r in conv.splits["train"]] == [r["query"] for r in plain.splits["train"]]
    assert sorted(r["query"] for r in conv.splits["train"]) == ["what is bm25", "what is dense"]
    assert conv.splits == plain.splits and len(conv.corpus) == 4


ROW = {"id": "q1", "query": "x", "texts": ["Some text."], "text_ids": ["d1"], "context_spans": [[[0, 10]]], "labels": [1]}


# --- run files through the CLI: evaluate refuses them with one line ------------------------------------------


@pytest.mark.parametrize(
    ("run_text", "match"),
    [("q1 Q0 d1 1 2.5 bm25\nq1 Q0 d2 2 inf bm25\n", r"line 2: score is inf"), ("", r"empty run file")],
    ids=["infinite_score", "empty_run"],
)
def test_evaluate_refuses_a_bad_run_file(tmp_path: Path, run_text: str, match: str, monkeypatch, capsys) -> None:
    from rerank_lab.io.datasets import save_dataset
    from rerank_lab.schema import to_dataset

    save_dataset(datasets.DatasetDict({"test": to_dataset([ROW])}), tmp_path / "in" / "dataset")
    _write(tmp_path / "in" / "qrels" / "test.tsv", f"{HEADER}\nq1\td1\t1\n")
    run = _write(tmp_path / "in" / "runs" / "bm25" / "test.trec", run_text)
    before = _files(tmp_path / "in")
    params = _write(tmp_path / "params.yaml", yaml.safe_dump({"evaluate": {"metrics": ["ndcg@10"], "splits": ["test"]}}))
    output, metrics = tmp_path / "out" / "per_query", tmp_path / "out" / "evaluate.json"
    args = ["evaluate", "--params", params, "--runs", tmp_path / "in" / "runs", "--dataset", tmp_path / "in" / "dataset"]
    args += ["--qrels", tmp_path / "in" / "qrels", "--metrics", metrics, "--output", output]
    _cli_fails(args, rf"^{_e(run)}: {match}", monkeypatch, capsys)
    assert not output.exists() and not metrics.exists()
    assert _files(tmp_path / "in") == before


def test_an_empty_corpus_folder_says_so(tmp_path):
    """A corpus saved with no rows (by older code) used to fail with "list index out of range"."""
    from rerank_lab.io.datasets import load_corpus
    from rerank_lab.schema import to_corpus

    to_corpus([]).save_to_disk(str(tmp_path / "corpus"))
    with pytest.raises(InputError, match=r"corpus: the corpus holds no rows \(fix: rewrite it"):
        load_corpus(tmp_path / "corpus")
