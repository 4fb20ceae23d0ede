"""teacher-score: append ``teacher_scores.<name>`` columns, one per configured teacher.

Teacher types (``teachers.<name>.type``):

* ``cross-encoder`` -- any cross-encoder: a model trained by this pipeline (``models/...``), the
  packaged MiniLM, or a hub id; scored by the shared engine (pairs scored once, cached);
* ``first-stage`` -- a first-stage run's scores (a text the run did not retrieve gets ``missing``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import datasets
from pydantic import Field

from rerank_lab.config import ListOf, Number, params_model, parse, section
from rerank_lab.errors import InputError
from rerank_lab.io.trec import read_run
from rerank_lab.registry import make
from rerank_lab.schema import TEACHER_FEATURE, TEACHER_PREFIX


@params_model("teacher_score")
class TeacherScoreConfig:
    """``teacher_score``: the ``teachers.<name>`` entries to score with, one column each."""

    teachers: ListOf[str] | None = ()  # null: none, as an empty list

    def __post_init__(self) -> None:
        object.__setattr__(self, "teachers", self.teachers or ())


@params_model("teachers.<name>")
class CrossEncoderTeacher:
    """Scores every (query, text) of a row with a cross-encoder (the engine's score: the logit, or log-odds of a 2-class head)."""

    model: str = Field("all-MiniLM-L6-v2", min_length=1)
    max_length: int = Field(256, ge=1)
    batch_tokens: int = Field(8192, ge=1)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

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


@params_model("teachers.<name>")
class FirstStageTeacher:
    """A first-stage run's score for each text (``missing`` where the run lacks it)."""

    run: str = Field("bm25", min_length=1)
    missing: Number = 0.0

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


# --- the stage contract (rerank_lab.stage) ------------------------------------------------------


def configure(params: dict[str, Any]) -> dict[str, object]:
    """The teachers ``teacher_score.teachers`` names, built from their ``teachers.<name>`` entries."""
    cfg = parse(TeacherScoreConfig, section(params, "teacher_score"), "teacher_score")
    return {name: make_teacher(name, section(params, f"teachers.{name}")) for name in cfg.teachers}


def run(teachers: dict[str, object], inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
    """``--input`` with one ``teacher_scores.<name>`` column per teacher, into ``--output``."""
    from rerank_lab.io.datasets import load_dataset, save_dataset
    from rerank_lab.models import require_declared
    from rerank_lab.score_cache import ScoreCache

    for name, teacher in teachers.items():
        if getattr(teacher, "model", None):
            require_declared(str(teacher.model), inputs["models"], f"teachers.{name}.model")
    scored = add_teacher_scores(load_dataset(inputs["input"]), teachers, inputs["runs"], ScoreCache(outputs.get("cache")))
    save_dataset(scored, outputs["output"])
