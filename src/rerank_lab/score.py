"""score: rerank the top ``top_k`` candidates of first-stage runs with a cross-encoder.

Writes ``<output>/<run>+<model name>/<split>.trec`` -- only the reranked top ``top_k`` (a
reranker does not rank what it never saw) -- and ``scores.tsv`` with every (query, doc) score.
Scores come from the shared engine, so pairs scored by any earlier experiment with the same
model are read from the score cache instead of being recomputed.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from rerank_lab.errors import ConfigError, InputError
from rerank_lab.io.atomic import atomic_dir
from rerank_lab.io.trec import Run, ranked, read_run, write_run
from rerank_lab.schema import passage_text

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """The ``score`` section."""

    runs: tuple[str, ...] = ("bm25",)
    top_k: int = 20
    name: str = "ce"
    max_length: int = 256
    batch_tokens: int = 8192
    dtype: str = "auto"
    splits: tuple[str, ...] = ("validation", "test")

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs", tuple(self.runs))
        object.__setattr__(self, "splits", tuple(self.splits))
        if self.top_k < 1:
            raise ConfigError(f"score top_k must be >= 1, got {self.top_k}", fix="e.g. 20 on CPU, 100 on a GPU")


def rerank(run: Run, queries: dict[str, str], passages: dict[str, str], scorer, top_k: int, path: str = "run") -> Run:
    """Score each query's top ``top_k`` docs; returns the reranked run (top ``top_k`` only)."""
    stray = sorted(set(run) - set(queries))
    if stray:
        raise InputError(
            f"run names query {stray[0]!r}, which the dataset lacks",
            path=path,
            record=f"query {stray[0]}",
            fix="score runs retrieved for this dataset",
        )
    pairs, keys = [], []
    for qid in sorted(run):
        for did, _ in ranked(run[qid])[:top_k]:
            if did not in passages:
                raise InputError(
                    f"run names doc {did!r}, which the corpus lacks",
                    path=path,
                    record=f"query {qid}",
                    fix="score runs retrieved from this corpus",
                )
            pairs.append((queries[qid], passages[did]))
            keys.append((qid, did))
    scores = scorer.score(pairs)
    out: Run = {}
    for (qid, did), s in zip(keys, scores.tolist()):
        out.setdefault(qid, {})[did] = s
    return out


def score_runs(cfg: ScoreConfig, scorer, runs_root: Path, queries: dict[str, dict[str, str]], corpus, out: Path) -> dict[str, float]:
    """Rerank every configured run and split; returns counts for the metrics file."""
    passages = {d["id"]: passage_text(d["title"], d["text"]) for d in corpus}
    stats: dict[str, float] = {}
    with atomic_dir(out) as tmp:
        lines = ["run\tsplit\tquery_id\tdoc_id\tscore"]
        for name in cfg.runs:
            for split in cfg.splits:
                path = runs_root / name / f"{split}.trec"
                if split not in queries:
                    continue
                if not path.is_file():
                    raise InputError(f"no {split} run for {name!r}", path=path, fix="retrieve that split or drop it from score.splits")
                reranked = rerank(read_run(path), queries[split], passages, scorer, cfg.top_k, str(path))
                write_run(reranked, tmp / f"{name}+{cfg.name}" / f"{split}.trec", tag=f"{name}+{cfg.name}")
                lines += [f"{name}\t{split}\t{q}\t{d}\t{s!r}" for q in sorted(reranked) for d, s in ranked(reranked[q])]
                stats[f"{name}_{split}_pairs"] = sum(len(v) for v in reranked.values())
        (tmp / "scores.tsv").write_text("\n".join(lines) + "\n")
    stats.update({"pairs_computed": scorer.pairs_scored, "pairs_from_cache": scorer.cache.hits, "forward_batches": scorer.forward_calls})
    return stats
