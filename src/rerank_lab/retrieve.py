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
from typing import Any

from rerank_lab.config import RetrieveConfig, convert_config, parse, section
from rerank_lab.errors import InputError
from rerank_lab.io.atomic import atomic_dir
from rerank_lab.io.datasets import load_corpus, split_queries, split_scopes
from rerank_lab.io.trec import Run, ranked, read_run, write_run
from rerank_lab.retrievers.base import Retriever, Scope
from rerank_lab.schema import passage_text
from rerank_lab.stage import Hooks
from rerank_lab.task import task_config

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


def search(
    retriever: Retriever, index: str | Path, queries: dict[str, str], depth: int, remove_query: bool = False, scope: Scope | None = None
) -> Run:
    """Each query's top ``depth``; with ``remove_query``, never the doc whose id is the query's own;
    with a ``scope``, only among the query's own candidates (sentence mode).

    The cut goes through :func:`ranked`, so a tie at the cut keeps the docs trec_eval ranks first.
    """
    if not remove_query:
        return retriever.search(Path(index), queries, depth, scope=scope)
    run = retriever.search(Path(index), queries, depth + 1, scope=scope)
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
    scoped: bool = False,
) -> dict[str, int]:
    """Search ``index`` for every split's queries; writes ``<out>/<split>.trec``. ``scoped``: each
    query ranks only its own row's texts (sentence mode: the sentences of its documents)."""
    queries = split_queries(dataset_path, splits)
    scopes = split_scopes(dataset_path, splits) if scoped else {}
    with atomic_dir(out) as tmp:
        for split, qs in queries.items():
            log.info(
                "%s: searching %d %s queries to depth %d%s", tag, len(qs), split, depth, " within their own candidates" if scoped else ""
            )
            run = search(retriever, index, qs, depth, remove_query, scope=scopes.get(split))
            write_run(run, tmp / f"{split}.trec", tag=tag, depth=depth)
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


# --- the three stages' contracts (rerank_lab.stage) ---------------------------------------------


def _declared(model: Any, models: Path | None, key: str) -> None:
    """A retriever's local model folder lies under the stage's declared ``--models`` input."""
    from rerank_lab.models import require_declared

    if getattr(model, "model", None):
        require_declared(str(model.model), models, key)


def configure_index(params: dict[str, Any], retriever: str) -> tuple[str, Retriever]:
    """The ``retrievers.<retriever>`` entry, built."""
    from rerank_lab.retrievers import make_retriever

    return retriever, make_retriever(retriever, section(params, f"retrievers.{retriever}"))


def run_index(cfg: tuple[str, Retriever], inputs: dict[str, Any], outputs: dict[str, Path]) -> None:
    """``--corpus`` indexed into ``--output``."""
    name, model = cfg
    _declared(model, inputs["models"], f"retrievers.{name}.model")
    build_index(model, inputs["corpus"], outputs["output"])


RetrieveSetup = tuple[RetrieveConfig, str, Retriever, bool, bool]


def configure_retrieve(params: dict[str, Any], retriever: str, source: str | None) -> RetrieveSetup:
    """The ``retrieve`` section, the built retriever, the source's ``remove_query`` (off without
    one), and whether queries rank only their own candidates (``task.unit: sentences``)."""
    from rerank_lab.retrievers import make_retriever

    cfg = parse(RetrieveConfig, section(params, "retrieve"), "retrieve")
    model = make_retriever(retriever, section(params, f"retrievers.{retriever}"))
    scoped = task_config(params).unit == "sentences"
    return cfg, retriever, model, source is not None and convert_config(params, source).remove_query, scoped


def run_retrieve(cfg: RetrieveSetup, inputs: dict[str, Any], outputs: dict[str, Path]) -> None:
    """Every split of ``--dataset`` searched in ``--index``; one run file per split in ``--output``."""
    retrieve_cfg, name, model, remove_query, scoped = cfg
    _declared(model, inputs["models"], f"retrievers.{name}.model")
    splits, depth = retrieve_cfg.splits, retrieve_cfg.depth
    out = outputs["output"]
    run_retriever(model, inputs["index"], inputs["dataset"], splits, depth, out, tag=name, remove_query=remove_query, scoped=scoped)


def configure_fuse(params: dict[str, Any], fusion: str) -> tuple[RetrieveConfig, str, Any]:
    """The ``retrieve`` section (its depth) and the built ``fusions.<fusion>`` entry."""
    from rerank_lab.retrievers import make_fusion

    return parse(RetrieveConfig, section(params, "retrieve"), "retrieve"), fusion, make_fusion(fusion, section(params, f"fusions.{fusion}"))


def run_fuse(cfg: tuple[RetrieveConfig, str, Any], inputs: dict[str, Any], outputs: dict[str, Path]) -> None:
    """The runs named by the fusion, read from ``--runs``, fused into ``--output``."""
    retrieve_cfg, name, fusion = cfg
    fuse_runs(fusion, [inputs["runs"] / run for run in fusion.runs], retrieve_cfg.depth, outputs["output"], tag=name)


INDEX = Hooks(configure_index, run_index)
RETRIEVE = Hooks(configure_retrieve, run_retrieve)
FUSE = Hooks(configure_fuse, run_fuse)
