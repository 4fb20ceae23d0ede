"""check: the whole params.yaml, consistent across sections, before any stage runs.

Each stage checks its own section when it starts, but a mistake that only shows where two sections
meet -- ``train.dataset`` naming a dataset that is not converted, ``score.runs`` naming a first stage
that never runs, ``tune.run`` scoring a run that is not reranked, ``evaluate.compare_also`` naming a
run no stage writes (``bm25+ce`` after ``score.name`` changed) -- used to surface in the stage
that needs it, after every stage before it had run (16 minutes, on a grid cell). ``check`` is the
first stage of dvc.yaml: it depends on the whole params file, and every ``convert`` depends on its
output, so DVC runs it before anything else and an inconsistent cell stops in a second, with one line
naming the key, the bad value and the fix.

Its output is constant (a one-line attestation): it orders the pipeline without ever invalidating
the stages after it, so a params change that passes the check reruns only the stages that read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rerank_lab.config import FieldError, choice_error, section
from rerank_lab.validate import names

ATTESTATION = "checked.txt"
ATTESTED = "params.yaml: every section valid and the sections consistent (rerank-lab check)\n"


def _member(key: str, value: Any, allowed: list[str], what: str) -> None:
    if value not in allowed:
        raise choice_error(tuple(key.split(".")), value, allowed, what=what)


def consistency(params: dict[str, Any]) -> None:
    """Refuse a params file whose sections disagree (one :class:`ConfigError` line: key, value, fix).

    >>> p = {"datasets": ["a"], "first_stage": ["bm25"], "fusion": ["f"], "convert": {"sources": {"a": {}}},
    ...      "retrievers": {"bm25": {}}, "fusions": {"f": {"runs": ["bm25"]}}, "train": {"dataset": "b"}}
    >>> consistency(p)
    Traceback (most recent call last):
    ...
    rerank_lab.config.FieldError: train.dataset: unknown dataset, got 'b' (fix: use one of: a)
    """
    datasets = names(params, "datasets")
    first_stage = names(params, "first_stage")
    fusions = names(params, "fusion")
    if not fusions:  # evaluate declares data/fuse/<dataset> as a dep: without a fusion, DVC stops it after scoring
        fix = "list a fusions entry whose runs all are first stages, e.g. fusion: [rrf] with first_stage: [bm25, dense]"
        raise FieldError(("fusion",), "is empty: evaluate reads each dataset's data/fuse/<dataset>, which only a fusion writes", [], fix)
    for ds in datasets:
        _member("datasets", ds, list(section(params, "convert.sources")), "convert.sources entry")
    for name in first_stage:
        _member("first_stage", name, list(section(params, "retrievers")), "retrievers entry")
    for name in fusions:
        _member("fusion", name, list(section(params, "fusions")), "fusions entry")
        for run in section(params, f"fusions.{name}").get("runs", []):
            _member(f"fusions.{name}.runs", run, first_stage, "first_stage entry")
    train = params.get("train") or {}
    if "dataset" in train:  # trained on one converted dataset; evaluated on every dataset
        _member("train.dataset", train["dataset"], datasets, "dataset")
    _first_stage_refs(params, first_stage)
    _evaluated_refs(params, first_stage, fusions)
    _sentence_sources(params, datasets)


SENTENCE_FORMATS = ("scifact_rationales",)  # sources with sentence-level evidence


def _sentence_sources(params: dict[str, Any], datasets: list[str]) -> None:
    """Sentence mode needs gold sentences: every dataset's source must have them."""
    if ((params.get("task") or {}).get("unit")) != "sentences":
        return
    for ds in datasets:
        fmt = (section(params, f"convert.sources.{ds}") or {}).get("format")
        if fmt not in SENTENCE_FORMATS:
            fix = f"list only datasets of the {', '.join(SENTENCE_FORMATS)} format, or set task.unit: documents"
            what = f"holds {ds!r} (format {fmt}), which has no sentence-level evidence for task.unit sentences"
            raise FieldError(("datasets",), what, ds, fix)


def _first_stage_refs(params: dict[str, Any], first_stage: list[str]) -> None:
    """Every ``run`` a miner, teacher, score or tune reads is a first stage that runs (``tune.first_stages``:
    or a fusion)."""
    mine = params.get("mine") or {}
    miner = (params.get("miners") or {}).get(mine.get("miner"), {})
    if isinstance(miner, dict) and "run" in miner:
        _member(f"miners.{mine['miner']}.run", miner["run"], first_stage, "first_stage entry")
    teachers = params.get("teachers") or {}
    for name in (params.get("teacher_score") or {}).get("teachers", []):
        entry = teachers.get(name)
        if isinstance(entry, dict) and "run" in entry:
            _member(f"teachers.{name}.run", entry["run"], first_stage, "first_stage entry")
    score_runs = (params.get("score") or {}).get("runs", [])
    for run in score_runs:
        _member("score.runs", run, first_stage, "first_stage entry")
    tune_run = (params.get("tune") or {}).get("run")
    if tune_run is not None and score_runs:
        _member("tune.run", tune_run, list(score_runs), "score.runs entry")
    for run in (params.get("tune") or {}).get("first_stages") or []:
        _member("tune.first_stages", run, [*first_stage, *names(params, "fusion")], "first_stage or fusion entry")


def _evaluated_refs(params: dict[str, Any], first_stage: list[str], fusions: list[str]) -> None:
    """evaluate's reference runs (``baseline``, ``compare_also``) are runs the pipeline writes: a
    first stage, a fusion, ``<score.runs entry>+<score.name>``, ``<tune.run>+<score.name>+tuned`` or
    ``<tune.first_stages entry>+tuned``."""
    score = params.get("score") or {}
    name = score.get("name", "ce")
    runs = [*first_stage, *fusions, *(f"{run}+{name}" for run in score.get("runs", []))]
    if (params.get("tune") or {}).get("run") is not None:
        runs.append(f"{params['tune']['run']}+{name}+tuned")
    runs += [f"{run}+tuned" for run in (params.get("tune") or {}).get("first_stages") or []]
    evaluate = params.get("evaluate") or {}
    if evaluate.get("baseline") is not None:
        _member("evaluate.baseline", evaluate["baseline"], runs, "run")
    for ref in evaluate.get("compare_also") or []:
        _member("evaluate.compare_also", ref, runs, "run")


def configure(params: dict[str, Any]) -> None:
    """Every section through its stage's own typed config, then the cross-section checks."""
    from rerank_lab.validate import validate_params

    validate_params(params)
    consistency(params)


def run(cfg: None, inputs: dict[str, Any], outputs: dict[str, Path]) -> None:
    out = outputs["output"]
    out.mkdir(parents=True, exist_ok=True)
    (out / ATTESTATION).write_text(ATTESTED, encoding="utf-8")


def describe(cfg: None, metrics: Any) -> str:
    return "params.yaml checked: every section valid, the sections consistent"
