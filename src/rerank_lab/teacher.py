"""teacher-score: append ``teacher_scores.<name>`` columns, one per configured teacher.

Teacher types (``teachers.<name>.type``):

* ``cross-encoder`` -- any cross-encoder: a model trained by this pipeline (``models/...``), the
  packaged MiniLM, or a hub id; scored by the shared engine (pairs scored once, cached);
* ``first-stage`` -- a first-stage run's scores (a text the run did not retrieve gets ``missing``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import datasets

from rerank_lab.errors import InputError
from rerank_lab.io.trec import read_run
from rerank_lab.registry import make
from rerank_lab.schema import TEACHER_FEATURE, TEACHER_PREFIX


@dataclasses.dataclass(frozen=True)
class CrossEncoderTeacher:
    """Scores every (query, text) of a row with a cross-encoder (the engine's score: the logit, or log-odds of a 2-class head)."""

    model: str = "all-MiniLM-L6-v2"
    max_length: int = 256
    batch_tokens: int = 8192
    dtype: str = "auto"

    def _scorer(self, cache):
        """One scorer per teacher and cache: the model loads once for every split."""
        from rerank_lab.scoring import PairScorer

        scorers = self.__dict__.setdefault("_scorers", {})
        if id(cache) not in scorers:
            scorers[id(cache)] = PairScorer(self.model, self.max_length, self.batch_tokens, self.dtype, cache=cache)
        return scorers[id(cache)]

    def scores(self, split: str, ds: datasets.Dataset, runs_root: Path | None, cache) -> list[list[float]]:
        scorer = self._scorer(cache)
        pairs = [(q, t) for q, texts in zip(ds["query"], ds["texts"]) for t in texts]
        flat = scorer.score(pairs).tolist()
        out, i = [], 0
        for texts in ds["texts"]:
            out.append(flat[i : i + len(texts)])
            i += len(texts)
        return out


@dataclasses.dataclass(frozen=True)
class FirstStageTeacher:
    """A first-stage run's score for each text (``missing`` where the run lacks it)."""

    run: str = "bm25"
    missing: float = 0.0

    def scores(self, split: str, ds: datasets.Dataset, runs_root: Path | None, cache) -> list[list[float]]:
        if runs_root is None:
            raise InputError(f"teacher run {self.run!r} needs --runs", fix="pass the folder of first-stage runs")
        run = read_run(runs_root / self.run / f"{split}.trec")
        return [[run.get(q, {}).get(d, self.missing) for d in ids] for q, ids in zip(ds["id"], ds["text_ids"])]


TEACHERS: dict[str, type] = {"cross-encoder": CrossEncoderTeacher, "first-stage": FirstStageTeacher}


def make_teacher(name: str, settings: dict):
    """The teacher configured as ``teachers.<name>`` in params.yaml."""
    return make(TEACHERS, "teacher", name, settings)


def add_teacher_scores(dd: datasets.DatasetDict, teachers: dict[str, object], runs_root: Path | None, cache) -> datasets.DatasetDict:
    """Every split with one ``teacher_scores.<name>`` column per teacher (replacing a stale one)."""
    out = {}
    for split, ds in dd.items():
        for name, teacher in teachers.items():
            col = f"{TEACHER_PREFIX}{name}"
            values = teacher.scores(split, ds, runs_root, cache)
            if col in ds.column_names:
                ds = ds.remove_columns(col)
            ds = ds.add_column(col, values, feature=TEACHER_FEATURE)
        out[split] = ds
    return datasets.DatasetDict(out)
