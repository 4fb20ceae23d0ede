"""The readers refuse bad records once, for every stage: a directory for a file, non-finite numbers
and invalid Unicode in JSON lines, ids that would corrupt a TREC run or qrels file, infinite run
scores, empty runs, and datasets or corpora that break the schema. (Convert's cases, through the
library and the CLI, are in tests/test_bad_data.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rerank_lab.errors import InputError
from rerank_lab.io.qrels import read_qrels
from rerank_lab.io.text import read_bytes, read_jsonl
from rerank_lab.io.trec import read_run
from rerank_lab.schema import to_corpus, validate_corpus, validate_example

HEADER = "query-id\tcorpus-id\tscore"


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def _e(path: Path) -> str:
    return re.escape(str(path))


def test_read_bytes_names_a_directory(tmp_path: Path) -> None:
    (tmp_path / "run.trec").mkdir()
    with pytest.raises(InputError, match=rf"^{_e(tmp_path / 'run.trec')}: is a directory, not a file \(fix: give the path of the file"):
        read_bytes(tmp_path / "run.trec")
    with pytest.raises(InputError, match=r"run\.trec: is a directory"):
        read_run(tmp_path / "run.trec")


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('{"s": NaN}', r"line 2: NaN is not a JSON number"),
        ('{"s": [1, -Infinity]}', r"line 2: -Infinity is not a JSON number"),
        ('{"s": 2e308}', r"line 2: number 2e308 is too large for a float"),
        ('{"pos": ["ok", "bad \\udc00"]}', r"line 2: field 'pos\[1\]' holds a lone UTF-16 surrogate"),
        ('{"a": {"b": "\\ud800x"}}', r"line 2: field 'a\.b' holds a lone UTF-16 surrogate"),
    ],
)
def test_read_jsonl_refuses_non_finite_numbers_and_invalid_unicode(tmp_path: Path, line: str, match: str) -> None:
    # line 1 is fine: a surrogate *pair* is one valid character, 1.5 a finite number
    path = _write(tmp_path / "x.jsonl", '{"s": 1.5, "t": "fine \\ud83d\\ude00"}\n' + line + "\n")
    assert next(read_jsonl(path)) == (1, {"s": 1.5, "t": "fine \U0001f600"})
    with pytest.raises(InputError, match=rf"^{_e(path)}: {match}"):
        list(read_jsonl(path))


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("q 1\td1\t1", r"line 3: query id 'q 1' contains white space \(' ' at position 1\)"),
        ("q1\td\x001\t1", r"line 3: corpus id 'd\\x001' contains a control character"),
        ("q1\td\u20281\t1", r"line 3: corpus id 'd\\u20281' contains white space"),
        ("q1\td2\t1_0", r"line 3: score '1_0' is not an integer"),
        ("q1\td2\t+1", r"line 3: score '\+1' is not an integer"),
    ],
)
def test_read_qrels_refuses_ids_that_would_corrupt_a_run_file(tmp_path: Path, line: str, match: str) -> None:
    path = _write(tmp_path / "test.tsv", f"{HEADER}\nq1\td1\t2\n{line}\n")
    with pytest.raises(InputError, match=rf"^{_e(path)}: {match}"):
        read_qrels(path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("q1 Q0 d1 1 2.5 t\nq1 Q0 d2 2 inf t\n", r"line 2: score is inf \(fix: check the model"),
        ("q1 Q0 d1 1 -Infinity t\n", r"line 1: score is -Infinity"),
        ("", r"empty run file \(no result lines\) \(fix: rerun the stage that writes it"),
        ("\n\n", r"empty run file"),
    ],
)
def test_read_run_refuses_infinite_scores_and_empty_runs(tmp_path: Path, text: str, match: str) -> None:
    path = _write(tmp_path / "test.trec", text)
    with pytest.raises(InputError, match=rf"^{_e(path)}: {match}"):
        read_run(path)


ROW = {"id": "q1", "query": "x", "texts": ["Some text."], "text_ids": ["d1"], "context_spans": [[[0, 10]]], "labels": [1]}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"id": "q\t1"}, r"^train row: row id 'q\\t1' contains white space"),
        ({"text_ids": ["d 1"]}, r"^train record q1: text id 'd 1' of text 0 contains white space"),
        ({"teacher_scores.flag": [float("nan")]}, r"^train record q1: column 'teacher_scores.flag' holds nan for text 0"),
        ({"teacher_scores.flag": [float("-inf")]}, r"^train record q1: column 'teacher_scores.flag' holds -inf for text 0"),
    ],
)
def test_the_schema_refuses_bad_ids_and_non_finite_teacher_scores(change: dict, match: str) -> None:
    """A dataset written by another tool goes through the same rules as convert's input."""
    validate_example({**ROW}, split="train")
    with pytest.raises(InputError, match=match):
        validate_example({**ROW, **change}, split="train")


def test_the_schema_refuses_an_empty_corpus_and_a_doc_id_with_a_space() -> None:
    """A corpus saved with no documents cannot be loaded back ("list index out of range"): none is written."""
    with pytest.raises(InputError, match=r"^corpus: the corpus has no documents \(fix:"):
        validate_corpus(to_corpus([]), path="corpus")
    doc = {"id": "d 1", "title": "", "text": "Text.", "context_spans": [[0, 5]]}
    with pytest.raises(InputError, match=r"^corpus: doc 'd 1': document id 'd 1' contains white space"):
        validate_corpus(to_corpus([doc]), path="corpus")
    validate_corpus(to_corpus([{**doc, "id": "d1"}]))
