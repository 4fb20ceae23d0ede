"""index / retrieve / fuse: first-stage candidates as TREC runs, one file per split.

``index`` turns the corpus into a retriever's index folder (a cached DVC output), ``retrieve``
searches it with each split's queries, ``fuse`` combines runs of other retrievers.

``remove_query`` (``convert.sources.<dataset>.remove_query``) is pyserini's ``--remove-query``,
used for all its published BEIR numbers: a hit whose doc id equals the query id is dropped. In
ArguAna every query is itself a corpus document; elsewhere ids could only coincide by accident (in
SciFact and NFCorpus they never do: same numbers either way). pyserini searches 1,000 deep, then drops the hit;
here every retriever searches ``depth + 1`` and the run is cut back to ``depth`` in trec_eval's
order, which gives the same ranking at every cut-off up to ``depth``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rerank_lab.errors import InputError
from rerank_lab.io.atomic import atomic_dir
from rerank_lab.io.datasets import load_corpus, split_queries
from rerank_lab.io.trec import Run, ranked, read_run, write_run
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


def search(retriever: Retriever, index: str | Path, queries: dict[str, str], depth: int, remove_query: bool = False) -> Run:
    """Each query's top ``depth``; with ``remove_query``, never the doc whose id is the query's own.

    The cut goes through :func:`ranked`, so a tie at the cut keeps the docs trec_eval ranks first.
    """
    if not remove_query:
        return retriever.search(Path(index), queries, depth)
    run = retriever.search(Path(index), queries, depth + 1)
    removed = sum(qid in docs for qid, docs in run.items())
    log.info("remove_query: dropped the query's own id from %d of %d queries' hits", removed, len(queries))
    return {qid: dict(ranked({d: s for d, s in docs.items() if d != qid})[:depth]) for qid, docs in run.items()}


def run_retriever(
    retriever: Retriever,
    index: str | Path,
    dataset_path: str | Path,
    splits: tuple[str, ...],
    depth: int,
    out: str | Path,
    tag: str,
    remove_query: bool = False,
) -> dict[str, int]:
    """Search ``index`` for every split's queries; writes ``<out>/<split>.trec``."""
    queries = split_queries(dataset_path, splits)
    with atomic_dir(out) as tmp:
        for split, qs in queries.items():
            log.info("%s: searching %d %s queries to depth %d", tag, len(qs), split, depth)
            write_run(search(retriever, index, qs, depth, remove_query), tmp / f"{split}.trec", tag=tag, depth=depth)
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
