"""convert: four input formats -> one context-relevance dataset, a corpus and graded qrels.

========================  ===================================================================
format                    input
========================  ===================================================================
``beir``                  a BEIR folder: ``corpus.jsonl[.gz]``, ``queries.jsonl[.gz]``,
                          ``qrels/{train,dev,test}.tsv[.gz]`` (graded scores kept in the qrels;
                          ``validation.tsv`` may stand for ``dev.tsv``; names match in any case)
``triplets``              sentence-transformers triplets: ``query<TAB>positive<TAB>negative``
                          TSV (a first line that names the columns, e.g. ``query<TAB>positive<TAB>
                          negative``, is a header and skipped), or JSONL with
                          ``query/positive/negative`` (or ``anchor``)
``hardneg``               FlagEmbedding JSONL ``{query, pos, neg, pos_scores, neg_scores}``;
                          the scores become the ``teacher_scores.<teacher_name>`` column
``scifact_rationales``    SciFact's original release: ``claims_{train,dev}.jsonl[.gz]`` and
                          ``corpus.jsonl[.gz]`` with sentence-level evidence; texts are the
                          cited abstracts, ``context_spans_relevance`` marks gold sentences,
                          NOINFO claims are kept with every label 0
========================  ===================================================================

Every text's first span is its title (when it has one), then its sentences. Missing splits are
carved from train by group of queries sharing a judged document, with a seed (Open Provence: 1%, at
most 5,000; SciFact's dev split is set larger in params), never from test.

Every id goes through :func:`rerank_lab.schema.as_id` and every text through
:func:`~rerank_lab.schema.as_text`: a ``null``, a number or a list where text belongs, or an id
with white space, stops convert with the file and line instead of becoming ``"None"``, a Python
repr, or a run file with a column too many. Files that convert does not know are refused, never
skipped: a ``qrels/`` folder holds ``<split>.tsv`` files only (hidden files aside), and two files
giving one split (``dev.tsv`` and ``validation.tsv``) are an error.

One reader per file (:mod:`~rerank_lab.convert.beir`, :mod:`~rerank_lab.convert.triplets`,
:mod:`~rerank_lab.convert.hardneg`, :mod:`~rerank_lab.convert.scifact`), one :data:`FORMATS` entry
each; what they share is in :mod:`~rerank_lab.convert.common` and, for the two formats without ids,
:mod:`~rerank_lab.convert.grouper`. A new format's name goes into ``config.SourceFormat`` too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from rerank_lab.config import ConvertConfig, convert_config
from rerank_lab.convert.beir import convert_beir
from rerank_lab.convert.common import Converted, Format, document
from rerank_lab.convert.hardneg import convert_hardneg
from rerank_lab.convert.scifact import convert_scifact_rationales
from rerank_lab.convert.sentence_task import to_sentences
from rerank_lab.convert.triplets import convert_triplets
from rerank_lab.errors import InputError, unknown_name
from rerank_lab.io.atomic import atomic_dir, write_text
from rerank_lab.io.datasets import save_corpus, save_dataset
from rerank_lab.io.qrels import write_qrels
from rerank_lab.schema import to_corpus, to_dataset
from rerank_lab.splits import sharing_with
from rerank_lab.task import TaskConfig, task_config

__all__ = ["FORMATS", "Converted", "Format", "configure", "convert", "document", "run", "summary", "write_converted"]

FORMATS: dict[str, Format] = {
    "beir": Format(convert_beir, folder="the one holding corpus.jsonl, queries.jsonl and qrels/"),
    "triplets": Format(convert_triplets),
    "hardneg": Format(convert_hardneg),
    "scifact_rationales": Format(convert_scifact_rationales, folder="the one holding corpus.jsonl and claims_{train,dev}.jsonl"),
}


def convert(input_path: str | Path, cfg: ConvertConfig) -> Converted:
    """Convert ``input_path`` with the format named in ``cfg``."""
    if cfg.format not in FORMATS:
        raise unknown_name("format", cfg.format, list(FORMATS))
    fmt = FORMATS[cfg.format]
    path = Path(input_path)
    if not path.exists():
        raise InputError("input not found", path=path, fix="check the path in dvc.yaml")
    if fmt.folder is not None and not path.is_dir():
        raise InputError(f"is a file, but the {cfg.format} format reads a folder", path=path, fix=f"give the folder: {fmt.folder}")
    conv = fmt.read(path, cfg)
    if not conv.corpus or not any(conv.splits.values()):
        # written anyway, an empty dataset or corpus would fail later with a message about the output
        raise InputError(
            "no query with a judged text: nothing to convert", path=path, fix="check that the input holds records (a header alone is none)"
        )
    return conv


def summary(conv: Converted) -> dict[str, int]:
    """Counts per split for the metrics file, and how many validation/test queries share a judged
    document with a train query (0 for carved splits: they are carved by group)."""
    out: dict[str, int] = {"corpus_docs": len(conv.corpus), **conv.notes}
    judged = {q: docs for split in conv.qrels.values() for q, docs in split.items()}
    train = [r["id"] for r in conv.splits.get("train", [])]
    for split, rows in conv.splits.items():
        out[f"{split}_queries"] = len(rows)
        out[f"{split}_texts"] = sum(len(r["texts"]) for r in rows)
        out[f"{split}_positives"] = sum(sum(r["labels"]) for r in rows)
        if split != "train":
            out[f"{split}_queries_sharing_train_docs"] = sharing_with([r["id"] for r in rows], train, judged)
    return out


STANDARD_SPLITS = ("train", "validation", "test")


def write_converted(conv: Converted, out: str | Path) -> None:
    """Write ``dataset/``, ``corpus/`` and ``qrels/<split>.tsv`` under ``out``, all or nothing."""
    columns = sorted({c for rows in conv.splits.values() for r in rows for c in r}, key=lambda c: (c.count("."), c))
    # a split without rows is left out: datasets saves it without a shard and cannot load it back
    dd = datasets.DatasetDict({s: to_dataset(rows, columns) for s, rows in conv.splits.items() if rows})
    with atomic_dir(out) as tmp:
        save_dataset(dd, tmp / "dataset")
        save_corpus(to_corpus(conv.corpus), tmp / "corpus")
        # every standard split's qrels file, empty when the source has no such split (ArguAna: test
        # only), so a stage can declare the one split it reads (tune: validation.tsv) on any dataset
        for split in dict.fromkeys([*STANDARD_SPLITS, *conv.qrels]):
            write_qrels(conv.qrels.get(split, {}), tmp / "qrels" / f"{split}.tsv")
        write_text(tmp / "README.md", "Written by `rerank-lab convert`; see rerank_lab.schema for the layout.\n")


# --- the stage contract (rerank_lab.stage) ------------------------------------------------------


def configure(params: dict[str, Any], source: str) -> tuple[ConvertConfig, TaskConfig, str]:
    """``convert.sources.<source>`` with the shared ``convert.seed``, and the ``task``."""
    return convert_config(params, source), task_config(params), source


def run(cfg: tuple[ConvertConfig, TaskConfig, str], inputs: dict[str, Any], outputs: dict[str, Path]) -> dict[str, int]:
    """``--input`` converted into ``--output`` (in sentence mode, sentences are the candidates); the counts are the metrics."""
    source_cfg, task, source = cfg
    converted = convert(inputs["input"], source_cfg)
    if task.unit == "sentences":
        converted = to_sentences(converted, task.context, source)
    write_converted(converted, outputs["output"])
    return summary(converted)
