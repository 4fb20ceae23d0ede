"""index / retrieve / fuse: first-stage candidates as TREC runs, one file per split.

``index`` turns the corpus into a retriever's index folder (a cached DVC output), ``retrieve``
searches it with each split's queries, ``fuse`` combines runs of other retrievers.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rerank_lab.errors import InputError
from rerank_lab.io.atomic import atomic_dir
from rerank_lab.io.datasets import load_corpus, load_dataset
from rerank_lab.io.trec import Run, read_run, write_run
from rerank_lab.retrievers.base import Retriever
from rerank_lab.schema import passage_text

log = logging.getLogger(__name__)


def build_index(retriever: Retriever, corpus_path: str | Path, out: str | Path) -> int:
    """Index every corpus passage (title + " " + text); returns the number of documents."""
    corpus = load_corpus(corpus_path)
    ids = list(corpus["id"])
    passages = [passage_text(t, x) for t, x in zip(corpus["title"], corpus["text"])]
    log.info("indexing %d documents with %s", len(ids), type(retriever).__name__)
    with atomic_dir(out) as tmp:
        retriever.index(ids, passages, tmp)
    return len(ids)


def split_queries(dataset_path: str | Path, splits: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """``{split: {query id: query text}}`` for the requested splits that the dataset has."""
    dd = load_dataset(dataset_path)
    return {s: dict(zip(dd[s]["id"], dd[s]["query"])) for s in splits if s in dd and len(dd[s])}


def run_retriever(
    retriever: Retriever, index: str | Path, dataset_path: str | Path, splits: tuple[str, ...], depth: int, out: str | Path, tag: str
) -> dict[str, int]:
    """Search ``index`` for every split's queries; writes ``<out>/<split>.trec``."""
    queries = split_queries(dataset_path, splits)
    with atomic_dir(out) as tmp:
        for split, qs in queries.items():
            log.info("%s: searching %d %s queries to depth %d", tag, len(qs), split, depth)
            write_run(retriever.search(Path(index), qs, depth), tmp / f"{split}.trec", tag=tag, depth=depth)
    return {s: len(q) for s, q in queries.items()}


def fuse_runs(fusion, run_dirs: list[Path], depth: int, out: str | Path, tag: str) -> list[str]:
    """Fuse the runs in ``run_dirs`` split by split; a split missing from one input is an error."""
    splits = sorted({p.stem for d in run_dirs for p in Path(d).glob("*.trec")})
    if not splits:
        raise InputError("no *.trec runs to fuse", path=", ".join(map(str, run_dirs)), fix="run the retrieve stages first")
    with atomic_dir(out) as tmp:
        for split in splits:
            runs: list[Run] = []
            for d in run_dirs:
                path = Path(d) / f"{split}.trec"
                if not path.is_file():
                    raise InputError(f"no {split} run to fuse", path=path, fix="retrieve the same splits with every fused retriever")
                runs.append(read_run(path))
            write_run(fusion.fuse(runs), tmp / f"{split}.trec", tag=tag, depth=depth)
    return splits
