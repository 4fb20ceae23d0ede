"""tune: choose a system's inference settings with Optuna over cached scores -- no model forward passes.

The plan's tier A, in three parts:

* :mod:`rerank_lab.policy` -- the inference policy: what a setting means (pool sizes, fusion,
  calibration, the abstain gate and its threshold) and the run a system returns under it;
* :mod:`rerank_lab.answerability` -- the query-level model the ``answerability`` gate reads;
* :mod:`rerank_lab.study` -- the Optuna study that chooses the settings on the dev split
  (select half to choose, confirm half to check; the objective and the shared-storage option).

This module is the stage: its config (``tune`` in params.yaml), reading the inputs once
(:func:`read_inputs`), and writing the chosen system's runs for every split. Test labels are never
read here -- evaluate reads them once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from rerank_lab.config import ListOf, Number, Split, invalid, params_model
from rerank_lab.errors import InputError
from rerank_lab.io.trec import ranked
from rerank_lab.optuna_storage import refuse_password
from rerank_lab.policy import CALIBRATIONS, FUSIONS, GATES, NORMS, QueryCandidates, System, calibrated, candidates, sigmoid
from rerank_lab.study import TuneInputs, TuneResult, tune

log = logging.getLogger(__name__)

Calibration = Literal["sigmoid", "platt", "isotonic"]  # policy.CALIBRATIONS (a test keeps them equal)
Fusion = Literal["none", "rrf", "weighted"]  # policy.FUSIONS
Norm = Literal["min-max", "zmuv", "rank"]  # policy.NORMS
Gate = Literal["reranker", "answerability"]  # policy.GATES


@params_model("tune")
class TuneConfig:
    """The ``tune`` section of params.yaml."""

    run: str = Field("bm25", min_length=1)  # the first-stage run whose reranked head is tuned (a score.runs entry)
    # first-stage runs (retrievers or fusions) also tuned as systems of their own, gated on their own scores under the same
    # epsilon: what a reranker must beat at the same false-evidence budget; each is written as runs/<name>+tuned
    first_stages: ListOf[Annotated[str, Field(min_length=1)]] = ()
    epsilon: Number = Field(0.2, ge=0.0, le=1.0)  # largest allowed false-evidence rate on no-evidence queries; 1 = no constraint
    n_trials: int = Field(300, ge=0)  # trials in the study (with a shared storage: its total, counting earlier runs)
    seed: int = 42
    pruner: Literal["none", "median", "successive-halving", "hyperband"] = "median"
    stages: int = Field(4, ge=1)  # a trial is scored on 1/stages, 2/stages, ... of the select queries
    # None: a fresh seeded in-memory study per run; a URL: a shared, non-deterministic study. A relative file path
    # (sqlite:///optuna.db, journal:optuna.log) lies in the per-user cache (rerank_lab.cache: $RERANK_LAB_CACHE, else
    # $XDG_CACHE_HOME/rerank-lab, else ~/.cache/rerank-lab), so queued experiments share it; absolute paths and servers as given.
    # env:NAME: the URL in environment variable NAME (a server's URL with its password: never in params.yaml, refused there)
    storage: str | None = None
    study_name: str | None = None  # None = derived from the inputs, the search space and the code
    split: Split = "validation"
    confirm_fraction: Number = Field(0.5, gt=0.0, lt=1.0)  # share of the dev split held out to confirm the choice
    top_k_retriever: ListOf[Annotated[int, Field(ge=1)]] = (10, 200)
    k0: ListOf[Annotated[int, Field(ge=1)]] = (1, 200)
    calibrations: ListOf[Calibration] = Field(CALIBRATIONS, min_length=1)
    fusions: ListOf[Fusion] = Field(FUSIONS, min_length=1)
    norms: ListOf[Norm] = Field(NORMS, min_length=1)
    gates: ListOf[Gate] = Field(GATES, min_length=1)

    def __post_init__(self) -> None:
        refuse_password(self.storage, "tune")  # the URL comes from the environment: tune.storage: env:NAME
        for name in ("top_k_retriever", "k0"):
            value = getattr(self, name)
            if len(value) != 2 or value[0] > value[1]:
                raise invalid(self, name, "must be [low, high] with 1 <= low <= high", "e.g. [10, 200]")

    def space(self) -> dict[str, Any]:
        """What defines the search (part of the study's name; ``first_stages`` are studies of their own)."""
        keep = ("run", "epsilon", "seed", "pruner", "stages", "split", "confirm_fraction", "top_k_retriever", "k0")
        return {k: getattr(self, k) for k in keep} | {
            "calibrations": self.calibrations,
            "fusions": self.fusions,
            "norms": self.norms,
            "gates": self.gates,
        }


# --- the stage contract (rerank_lab.stage) --------------------------------------------------------


@params_model("score")
class RerankerName:
    """The one ``score`` key tune reads (dvc.yaml's params say so): the reranked run's name."""

    name: str = Field("ce", min_length=1)


def configure(params: dict[str, Any]) -> tuple[TuneConfig, str]:
    """``tune`` and ``score.name`` from params.yaml."""
    from rerank_lab.config import parse, section

    values = section(params, "score")
    picked = {k: v for k, v in values.items() if k == "name"} if isinstance(values, dict) else values
    return parse(TuneConfig, section(params, "tune"), "tune"), parse(RerankerName, picked, "score").name


def run(cfg: tuple[TuneConfig, str], inputs: dict[str, Any], outputs: dict[str, Path]) -> dict[str, Any]:
    tune_cfg, reranker = cfg
    paths = (inputs["dataset"], inputs["qrels"], tuple(inputs["runs"]), inputs["scores"])
    return tune_stage(tune_cfg, reranker, *paths, tune_cfg.storage, outputs["output"])


def describe(cfg: tuple[TuneConfig, str], s: dict[str, Any]) -> str:
    if not s.get("tuned", True):
        return f"not tuned: the {cfg[0].split} split has no queries"
    alone = "".join(
        f"; {name} alone: confirm nDCG@10 {f['best_confirm_ndcg@10']:.4f}, false evidence {f['best_confirm_false_evidence']:.3f}"
        for name, f in s.get("first_stages", {}).items()
    )
    return (
        f"study {s['study']}: {s['trials']} trials ({s['trials_this_run']} new, {s['pruned']} pruned); "
        f"nDCG@10 select {s['default_select_ndcg@10']:.4f} -> {s['best_select_ndcg@10']:.4f}, "
        f"confirm {s['default_confirm_ndcg@10']:.4f} -> {s['best_confirm_ndcg@10']:.4f} "
        f"(first stage {s['first_stage_confirm_ndcg@10']:.4f}); "
        f"false evidence select {s['best_select_false_evidence']:.3f}, confirm {s['best_confirm_false_evidence']:.3f} "
        f"(epsilon {s['epsilon']}); on confirm: meets epsilon {s['meets_epsilon_on_confirm']}, "
        f"beats untuned {s['beats_untuned_on_confirm']}, beats first stage {s['beats_first_stage_on_confirm']}{alone}"
    )


# --- the stage: read the inputs once, tune, write --------------------------------------------------


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha1()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


Roots = Path | tuple[Path, ...]  # the folder(s) holding one sub-folder per run (retrieve's and fuse's)


def run_folder(roots: Roots, name: str) -> Path:
    """Run ``name``'s folder: the first of ``roots`` that has it (the first root when none does, so
    the error that follows names where it was looked for first)."""
    roots = (roots,) if isinstance(roots, Path) else tuple(Path(r) for r in roots)
    return next((r / name for r in roots if (r / name).is_dir()), roots[0] / name)


def read_inputs(cfg: TuneConfig, dataset: Path, qrels_dir: Path, runs_roots: Roots, scored_root: Path) -> TuneInputs:
    """Every split's candidates for run ``tune.run`` (splits the score stage did not score are
    skipped; the dev split must be there) and the dev split's qrels."""
    from rerank_lab.io.datasets import load_dataset
    from rerank_lab.io.qrels import read_qrels
    from rerank_lab.io.scores import read_scores
    from rerank_lab.io.trec import read_run

    dd = load_dataset(dataset)
    if cfg.split not in dd:
        raise InputError(f"the dataset has no {cfg.split!r} split to tune on", path=dataset, fix=f"use one of: {', '.join(dd)}")
    scores_path = scored_root / "scores.tsv"
    table = read_scores(scores_path)
    split_cands: dict[str, dict[str, QueryCandidates]] = {}
    read: list[Path] = [scores_path]
    for split in dd:
        fs_path = run_folder(runs_roots, cfg.run) / f"{split}.trec"
        if (cfg.run, split) not in table:
            if split == cfg.split:
                raise InputError(
                    f"no reranker scores for the {split} split of run {cfg.run!r}",
                    path=scores_path,
                    fix=f"add {cfg.run} to score.runs and {split} to score.splits, then run score",
                )
            continue
        if not fs_path.is_file():
            raise InputError(f"no first-stage {split} run {cfg.run!r}", path=fs_path, fix="run retrieve for this split")
        ids = sorted(dd[split]["id"])
        split_cands[split] = candidates(read_run(fs_path), table[(cfg.run, split)], ids, str(scores_path))
        if split == cfg.split:
            read.append(fs_path)
    dev_qrels_path = qrels_dir / f"{cfg.split}.tsv"
    dev_qrels = read_qrels(dev_qrels_path)
    dev_ids = list(split_cands[cfg.split])
    depth = max((len(q.docs) for c in split_cands.values() for q in c.values()), default=0)
    fingerprint = _digest([*read, dev_qrels_path]) + hashlib.sha1("\n".join(dev_ids).encode()).hexdigest()
    return TuneInputs(split_cands, dev_qrels, depth, fingerprint)


def first_stage_alone(
    cfg: TuneConfig, name: str, reranked: TuneInputs, runs_roots: Roots, qrels_dir: Path
) -> tuple[TuneConfig, TuneInputs]:
    """First stage ``name`` as a system of its own, on the same queries as the reranked system: its
    own scores stand where the reranker's do (the gate reads them, calibrated; the head is as long as
    the reranked one) and no fusion. Its calibrations are tune's: ``platt`` and ``isotonic`` fit
    its scores to its dev labels; ``sigmoid`` (monotone too) just reads them as logits."""
    from rerank_lab.io.trec import read_run

    folder = run_folder(runs_roots, name)
    head = max((q.reranker.size for q in reranked.splits[cfg.split].values()), default=0)
    splits: dict[str, dict[str, QueryCandidates]] = {}
    for split, queries in reranked.splits.items():
        path = folder / f"{split}.trec"
        if not path.is_file():
            if split == cfg.split:
                raise InputError(
                    f"no {split} run {name!r} to tune alone",
                    path=path,
                    fix=f"list {name} in first_stage or fusion, or drop it from tune.first_stages",
                )
            continue
        run = read_run(path)
        splits[split] = {}
        for qid in queries:
            order = ranked(run.get(qid, {}))
            scores = np.array([s for _, s in order], dtype=float)
            splits[split][qid] = QueryCandidates([d for d, _ in order], scores, scores[:head].copy())
    dev_qrels_path = qrels_dir / f"{cfg.split}.tsv"
    depth = max((len(q.docs) for c in splits.values() for q in c.values()), default=0)
    dev_ids = "\n".join(splits[cfg.split]).encode()
    # the head's length (the reranked one's) bounds top_k_rerank: a shared study must not continue under another
    fingerprint = _digest([folder / f"{cfg.split}.trec", dev_qrels_path]) + hashlib.sha1(dev_ids).hexdigest() + f":{head}"
    alone = dataclasses.replace(cfg, run=name, fusions=("none",), first_stages=())
    return alone, TuneInputs(splits, reranked.dev_qrels, depth, fingerprint)


def write_outputs(folder: Path, tuned_name: str, inputs: TuneInputs, result: TuneResult, runs: Path | None = None) -> None:
    """Write the tuned system's outputs into ``folder``, its runs into ``runs`` (default
    ``folder/runs``; see :func:`tune_stage`)."""
    from rerank_lab.io.atomic import write_text
    from rerank_lab.io.trec import write_run

    best = result.best
    for split, cands in inputs.splits.items():
        system = System.build(cands, result.calibrators, result.answerability)
        write_run(system.run(best), (runs or folder / "runs") / tuned_name / f"{split}.trec", tag=tuned_name)
        if system.answerable is not None:
            rows = [f"{q}\t{system.answerable[q]!r}" for q in sorted(system.answerable)]
            write_text(folder / "answerability" / f"{split}.tsv", "\n".join(["query_id\tp_answerable", *rows]) + "\n")
        sig, probs = calibrated(cands, {"sigmoid": sigmoid})["sigmoid"], system.probs[best.calibration]
        lines = ["run\tquery_id\tdoc_id\tscore\tp_sigmoid\tp"]
        for qid, q in cands.items():
            for i in range(q.reranker.size):
                lines.append(
                    f"{tuned_name}\t{qid}\t{q.docs[i]}\t{float(q.reranker[i])!r}\t{float(sig[qid][i])!r}\t{float(probs[qid][i])!r}"
                )
        write_text(folder / "probabilities" / f"{split}.tsv", "\n".join(lines) + "\n")
    chosen = {"run": tuned_name, **dataclasses.asdict(best)}
    if result.answerability and best.gate == "answerability":
        chosen["answerability_model"] = result.answerability.describe()
    write_text(folder / "best.json", json.dumps(chosen, indent=2, sort_keys=True) + "\n")
    cols = ["number", "state", "value", "false_evidence", "feasible", "params"]
    write_text(folder / "trials.tsv", "\n".join(["\t".join(cols)] + ["\t".join(str(t[c]) for c in cols) for t in result.trials]) + "\n")
    cols = list(result.topk[0])
    write_text(folder / "topk.tsv", "\n".join(["\t".join(cols)] + ["\t".join(repr(r[c]) for c in cols) for r in result.topk]) + "\n")


def tune_stage(
    cfg: TuneConfig,
    reranker_name: str,
    dataset: Path,
    qrels_dir: Path,
    runs_roots: Roots,
    scored_root: Path,
    storage_url: str | None,
    out: Path,
) -> dict[str, Any]:
    """Read the first-stage runs and the reranker's scores, tune on the dev split, write the tuned
    runs of every split (``storage_url``: None for a fresh in-memory study, see the module doc).

    Writes ``runs/<run>+<reranker>+tuned/<split>.trec``, ``probabilities/<split>.tsv`` (every
    reranked pair's raw score, sigmoid and calibrated probability: evaluate's ECE),
    ``answerability/<split>.tsv`` (each query's probability of having evidence),
    ``best.json``, ``trials.tsv`` and ``topk.tsv`` under ``out``; and for each of
    ``tune.first_stages`` (:func:`first_stage_alone`, a study of its own under the same epsilon)
    ``runs/<name>+tuned/<split>.trec`` and the same files under ``first_stages/<name>/`` (when none of
    its trials meets epsilon: the system that never answers, said in its metrics). Returns
    the metrics (each first stage's under ``first_stages.<name>``).
    """
    from rerank_lab.io.atomic import atomic_dir, write_text
    from rerank_lab.io.datasets import load_dataset

    dd = load_dataset(dataset)
    if cfg.split not in dd or len(dd[cfg.split]) == 0:
        # e.g. ArguAna (test queries only) evaluated zero-shot: nothing to tune on, so no tuned system --
        # said in the metrics and best.json, never guessed; evaluate reports the untuned runs
        log.warning("the %s split of %s has no queries: not tuned (no tuned run is written)", cfg.split, dataset)
        with atomic_dir(out) as tmp:
            untuned = {"tuned": False, "reason": f"the {cfg.split} split has no queries", "epsilon": cfg.epsilon}
            write_text(tmp / "best.json", json.dumps(untuned, indent=2, sort_keys=True) + "\n")
        return {"tuned": False, "dev_queries": 0, "epsilon": cfg.epsilon}
    inputs = read_inputs(cfg, dataset, qrels_dir, runs_roots, scored_root)
    result = tune(cfg, inputs, storage_url)
    alone = {}
    for name in dict.fromkeys(cfg.first_stages):
        alone_cfg, alone_inputs = first_stage_alone(cfg, name, inputs, runs_roots, qrels_dir)
        alone[name] = (alone_inputs, tune(alone_cfg, alone_inputs, storage_url, or_abstain=True))
    with atomic_dir(out) as tmp:
        write_outputs(tmp, f"{cfg.run}+{reranker_name}+tuned", inputs, result)
        for name, (alone_inputs, alone_result) in alone.items():
            write_outputs(tmp / "first_stages" / name, f"{name}+tuned", alone_inputs, alone_result, runs=tmp / "runs")
    if not alone:
        return result.summary
    kept = {name: {k: r.summary[k] for k in ALONE_METRICS if k in r.summary} for name, (_, r) in alone.items()}
    return result.summary | {"first_stages": kept}


# what the metrics keep of each first stage tuned alone (its whole summary is first_stages/<name>/... 's best.json and trials)
ALONE_METRICS = (
    "study",
    "trials",
    "best_trial",
    "best_select_ndcg@10",
    "best_select_false_evidence",
    "best_confirm_ndcg@10",
    "best_confirm_false_evidence",
    "first_stage_confirm_ndcg@10",
    "first_stage_confirm_false_evidence",
    "meets_epsilon_on_confirm",
    "no_trial_met_epsilon",  # only there when true: its scores cannot keep false evidence that low, so it never answers
)
