"""The Optuna study behind the tune stage: which settings of the inference policy to choose.

Objective: nDCG@10 over the has-evidence queries of the *select* half of the dev split, subject to
a false-evidence rate (share of no-evidence queries answered at all) <= ``epsilon`` on the same
half. The study is seeded TPE told the constraint (``Trial.set_constraint``); trials are staged over growing shares of the
select queries so a pruner (median / successive halving / hyperband) can stop poor ones early.
The best feasible trial is then scored once on the *confirm* half (never seen while selecting).
What a trial's settings mean is :mod:`rerank_lab.policy`; the search reads only cached scores.

By default each run is a fresh, seeded, in-memory study of ``n_trials`` trials, so the same
declared inputs give byte-identical outputs however often the stage runs. ``tune.storage`` opts
in to a shared study (any Optuna storage URL, ``journal:<file>``) that several workers fill
together: ``n_trials`` is then the study's total, a rerun only adds what is missing, and the
result depends on how the workers interleaved -- not reproducible, and documented as such. Each
trial records the worker that ran it (``worker``: host and process); a worker that reaches the
budget waits for the trials other workers are still running, so every worker of a study reports
the same finished trials and the same best one (a trial asked past the budget, by a worker that
saw the last place free at the moment another took it, is failed unrun: :func:`run_trials`). The
study's name covers the inputs, the search space and the source of every module the tune stage
executes (:func:`objective_code`), so a code change never continues a study run by other code.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rerank_lab.answerability import Answerability
from rerank_lab.errors import InputError
from rerank_lab.io.qrels import Qrels
from rerank_lab.optuna_storage import (
    WORKER,
    WORKER_ATTR,
    counted,
    fail_orphans,
    open_storage,
    over_budget,
    resolve_storage_url,  # noqa: F401 -- re-exported: tune's storage
    run_trials,
    shown,
)
from rerank_lab.policy import QueryCandidates, Settings, Subset, System, first_stage_score, fit_calibrators, pair_labels

if TYPE_CHECKING:
    from rerank_lab.tune import TuneConfig

log = logging.getLogger(__name__)

PRUNERS = ("none", "median", "successive-halving", "hyperband")
OTHERS_WAIT_S = 300.0  # the longest a worker waits for other workers' running trials before choosing without them


@dataclasses.dataclass(frozen=True)
class TuneInputs:
    """What the tune stage read, read once and handed to :func:`tune` whole."""

    splits: dict[str, dict[str, QueryCandidates]]  # {split: {query id (sorted): candidates}}; the dev split is tune.split
    dev_qrels: Qrels  # the dev split's qrels (the only labels tune reads)
    depth: int  # the longest first-stage list of any split: top_k_retriever's ceiling
    fingerprint: str  # digest of the files read, part of the study name


# --- the search: select/confirm halves, staged subsets, the search space ------------------------


def select_confirm(query_ids: list[str], has_evidence: set[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split dev queries into select / confirm halves, stratified by has-evidence vs no-evidence.

    >>> sel, conf = select_confirm(["a", "b", "c", "d"], {"a", "b"}, 0.5, 0)
    >>> sorted(sel + conf), len(sel), len(conf)
    (['a', 'b', 'c', 'd'], 2, 2)
    """
    select: list[str] = []
    confirm: list[str] = []
    for group in (sorted(q for q in query_ids if q in has_evidence), sorted(q for q in query_ids if q not in has_evidence)):
        shuffled = group[:]
        random.Random(f"{seed}:select-confirm").shuffle(shuffled)
        n_confirm = round(len(shuffled) * fraction)
        confirm += shuffled[:n_confirm]
        select += shuffled[n_confirm:]
    return sorted(select), sorted(confirm)


def staged_subsets(subset: Subset, stages: int, seed: int) -> list[Subset]:
    """Growing prefixes of a seeded shuffle of the subset's queries; the last is the whole subset."""
    ev, no = subset.evidence[:], subset.no_evidence[:]
    random.Random(f"{seed}:stages").shuffle(ev)
    random.Random(f"{seed}:stages").shuffle(no)
    out = []
    for i in range(1, stages + 1):
        out.append(Subset(ev[: math.ceil(len(ev) * i / stages)], no[: math.ceil(len(no) * i / stages)], subset.qrels))
    return out


def suggest(trial, cfg: TuneConfig, reranked_k: int, depth: int, gates: tuple[str, ...] | None = None) -> Settings:
    """Draw one point of the search space (``gates``: the gates available, default ``cfg.gates``)."""
    gates = cfg.gates if gates is None else gates
    low, high = cfg.top_k_retriever
    high = min(high, depth)
    top_k_retriever = trial.suggest_int("top_k_retriever", min(low, high), high, log=True)
    top_k_rerank = trial.suggest_int("top_k_rerank", 1, reranked_k)
    fusion = trial.suggest_categorical("fusion", list(cfg.fusions))
    k0, alpha, norm = 60, 1.0, "min-max"
    if fusion == "rrf":
        k0 = trial.suggest_int("k0", cfg.k0[0], cfg.k0[1], log=True)
    elif fusion == "weighted":
        alpha = trial.suggest_float("alpha", 0.0, 1.0)
        norm = trial.suggest_categorical("norm", list(cfg.norms))
    calibration = trial.suggest_categorical("calibration", list(cfg.calibrations))
    gate = trial.suggest_categorical("gate", list(gates)) if gates else "reranker"
    threshold = trial.suggest_float("threshold", 0.0, 1.0)
    return Settings(top_k_retriever, top_k_rerank, fusion, k0, alpha, norm, calibration, gate, threshold)


# --- storage: rerank_lab.optuna_storage (shared with tier B's train stage) --------------------


def make_pruner(name: str, stages: int):
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=10, n_warmup_steps=0)
    if name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=stages, reduction_factor=2)
    return optuna.pruners.NopPruner()


def objective_code() -> str:
    """A digest of the source of every package module the tune stage executes (the import closure
    of :mod:`rerank_lab.tune`: this study, the policy, answerability, evaluate's metrics, ...): part
    of the study name, so changed code never continues an old study."""
    from rerank_lab.deps import module_closure, source_digest

    return source_digest(module_closure("rerank_lab.tune"))


def study_name(cfg: TuneConfig, fingerprint: str) -> str:
    """``tune.study_name``, or one derived from the search space, the inputs and the code."""
    if cfg.study_name:
        return cfg.study_name
    key = hashlib.sha1(json.dumps([cfg.space(), fingerprint, objective_code()], sort_keys=True).encode()).hexdigest()[:12]
    return f"tune-{cfg.run}-{key}"


# --- the study ----------------------------------------------------------------------------------


@dataclasses.dataclass
class TuneResult:
    best: Settings
    default: Settings
    summary: dict[str, Any]
    trials: list[dict[str, Any]]
    topk: list[dict[str, Any]]
    calibrators: dict[str, Callable]
    answerability: Answerability | None = None


def _feasible_best(study, epsilon: float):
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    feasible = [t for t in done if t.user_attrs.get("false_evidence", 1.0) <= epsilon + 1e-12]
    # best value first; ties go to the earliest trial, so the choice is stable as trials are added
    return max(feasible, key=lambda t: (t.value, -t.number)) if feasible else None


def _wait_for_other_workers(study, timeout: float | None = None) -> None:
    """Wait until no trial of a shared study is running (other workers' last trials), so that
    every worker chooses among the same finished trials. A trial whose worker died on this machine
    is marked failed (:func:`fail_orphans`); one started more than ``timeout`` ago (a worker that
    died on another machine: a tune trial takes seconds) is not waited for, and none for longer
    than ``timeout``. A trial merely running when this worker opened the study is another live
    worker's current one, and is waited for."""
    from optuna.trial import TrialState

    timeout = OTHERS_WAIT_S if timeout is None else timeout
    started = datetime.datetime.now()  # Optuna stamps trials with the local time of the worker that ran them
    deadline = time.monotonic() + timeout
    while True:
        fail_orphans(study)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        waited = sorted(t.number for t in running if (started - t.datetime_start).total_seconds() < timeout)
        if not waited:
            return
        if time.monotonic() > deadline:
            log.warning(
                "trials %s of study %s still running after %.0f s (a worker stopped?): chosen among the finished trials",
                waited,
                study.study_name,
                timeout,
            )
            return
        time.sleep(0.1)


# a threshold above every probability: the system that never answers (no false evidence, nDCG 0)
ABSTAIN_EVERYWHERE = 2.0


def tune(cfg: TuneConfig, inputs: TuneInputs, storage_url: str | None = None, or_abstain: bool = False) -> TuneResult:
    """Run the study on the dev split ``cfg.split`` of ``inputs`` (a fresh in-memory one, or fill
    the shared ``storage_url`` up to ``n_trials``) and return the chosen settings with their
    select/confirm scores. When no trial meets epsilon: an error, or with ``or_abstain`` the system
    that never answers (a first stage whose scores cannot keep false evidence that low; the
    summary says ``no_trial_met_epsilon``)."""
    import optuna

    cands, dev_qrels, depth = inputs.splits[cfg.split], inputs.dev_qrels, inputs.depth
    dev_ids = list(cands)
    has_evidence = {q for q, docs in dev_qrels.items() if any(g > 0 for g in docs.values())}
    select_ids, confirm_ids = select_confirm(dev_ids, has_evidence, cfg.confirm_fraction, cfg.seed)
    select = Subset([q for q in select_ids if q in has_evidence], [q for q in select_ids if q not in has_evidence], dev_qrels)
    confirm = Subset([q for q in confirm_ids if q in has_evidence], [q for q in confirm_ids if q not in has_evidence], dev_qrels)
    # A dataset without no-evidence queries in both halves (BEIR: every query has a relevant doc) has
    # no false-evidence rate to constrain: it is tuned unconstrained, and the metrics say so
    # (`false_evidence_constrained: false`) -- one grid can hold such datasets next to SciFact's.
    constrained = cfg.epsilon < 1.0 and bool(select.no_evidence) and bool(confirm.no_evidence)
    epsilon = cfg.epsilon if constrained else 1.0
    if cfg.epsilon < 1.0 and not constrained:
        log.warning(
            "the %s split has %d no-evidence queries (select %d, confirm %d): tuned without the false-evidence "
            "constraint (tune.epsilon %s not applied)",
            cfg.split,
            len(dev_ids) - len(has_evidence & set(dev_ids)),
            len(select.no_evidence),
            len(confirm.no_evidence),
            cfg.epsilon,
        )
    if not select.evidence or not confirm.evidence:
        raise InputError(f"the {cfg.split} split has too few has-evidence queries to tune on", fix="use a larger dev split")
    reranked_k = max((q.reranker.size for q in cands.values()), default=0)
    if reranked_k == 0:
        raise InputError(f"no reranked candidates for run {cfg.run!r}", fix="run the score stage for this run first")

    # calibrators and the answerability model learn from the select half only
    select_cands = {q: cands[q] for q in select_ids}
    calibrators = fit_calibrators(cfg.calibrations, *pair_labels(select_cands, dev_qrels))
    stages = staged_subsets(select, cfg.stages, cfg.seed)
    gates = cfg.gates
    answerability = None
    if "answerability" in gates:
        if select.no_evidence:
            answerability = Answerability.fit(select_cands, has_evidence)
        else:  # nothing to learn it from (only possible without the constraint)
            gates = tuple(g for g in gates if g != "answerability")
    system = System.build(cands, calibrators, answerability)

    def objective(trial) -> float:
        if storage_url:
            trial.set_user_attr(WORKER_ATTR, WORKER)
        s = suggest(trial, cfg, reranked_k, depth, gates)
        value = 0.0
        for step, subset in enumerate(stages):
            value, fer = system.score(s, subset)
            trial.set_user_attr("false_evidence", fer)
            if step < len(stages) - 1:
                # the pruner sees the constraint too: an infeasible trial must not look better than a feasible one
                trial.report(value - max(0.0, fer - epsilon), step)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        trial.set_constraint("false_evidence", fer - epsilon)  # feasible when <= 0; TPE models it
        return value

    storage = open_storage(storage_url, "tune.storage") if storage_url else None  # None: in memory, fresh each run
    name = study_name(cfg, inputs.fingerprint)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=cfg.seed),
        pruner=make_pruner(cfg.pruner, cfg.stages),
        load_if_exists=True,
    )
    if storage is not None:
        for number, pid in fail_orphans(study):
            log.warning("trial %d: its worker (pid %d on this machine) is gone; marked failed, its place in the budget freed", number, pid)
    before, used = len(study.trials), counted(study)
    if storage is not None:  # the URL as every message shows it: its password masked
        log.info("study %s in %s: %d trials so far, budget %d in all (worker %s)", name, shown(storage_url), used, cfg.n_trials, WORKER)
    if before:  # a shared study resumed: reseed by its trial count, so this run does not replay old draws
        study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + before)
    # the untuned default: the score stage's own run (whole pool, head in reranker order, no abstaining)
    default = Settings(top_k_retriever=depth, top_k_rerank=reranked_k)
    if before == 0:
        first = {
            "top_k_retriever": min(cfg.top_k_retriever[1], depth),
            "top_k_rerank": reranked_k,
            "fusion": "none" if "none" in cfg.fusions else cfg.fusions[0],
            "calibration": "sigmoid" if "sigmoid" in cfg.calibrations else cfg.calibrations[0],
            "threshold": 0.0,  # never abstains, whatever the gate
        }
        if gates:
            first["gate"] = "reranker" if "reranker" in gates else gates[0]
        study.enqueue_trial(first, skip_if_exists=True)  # skipped when another worker enqueued it first
    # n_trials is the study's total: a shared study already holding trials only gets what is missing
    ran = run_trials(study, objective, cfg.n_trials)  # the trials this run ran (other workers may be filling the same study)
    if storage is not None:
        _wait_for_other_workers(study)
    listed = [t for t in study.trials if not over_budget(t)]  # a trial asked past the budget never ran
    best_trial = _feasible_best(study, epsilon)
    if best_trial is None and not or_abstain:
        raise InputError(
            f"no trial of study {name!r} met false-evidence <= {epsilon} ({len(listed)} trials)",
            fix="raise tune.epsilon, or add trials (tune.n_trials)",
        )
    if best_trial is None:
        log.warning("no trial of study %s met false-evidence <= %s: the system that never answers is chosen", name, epsilon)
        best = dataclasses.replace(default, calibration=cfg.calibrations[0], threshold=ABSTAIN_EVERYWHERE)
    else:
        best = Settings.from_params(best_trial.params)
    halves = (("select", stages[-1]), ("confirm", confirm))
    results: dict[str, Any] = {}
    for part, subset in halves:
        for label, settings in (("default", default), ("best", best)):
            ndcg, fer = system.score(settings, subset)
            results[f"{label}_{part}_ndcg@10"] = round(ndcg, 6)
            results[f"{label}_{part}_false_evidence"] = round(fer, 6)
        ndcg, fer = first_stage_score(cands, subset)
        results[f"first_stage_{part}_ndcg@10"] = round(ndcg, 6)
        results[f"first_stage_{part}_false_evidence"] = round(fer, 6)
    states = [t.state.name.lower() for t in listed]
    summary = {
        "study": name,
        "tuned": True,
        "trials": len(listed),
        "trials_this_run": len(ran),
        "complete": states.count("complete"),
        "pruned": states.count("pruned"),
        "best_trial": best_trial.number if best_trial else None,
        **({"no_trial_met_epsilon": True} if best_trial is None else {}),
        "epsilon": cfg.epsilon,
        "false_evidence_constrained": constrained,  # false: no no-evidence queries to constrain (tuned unconstrained)
        "select_queries": len(select_ids),
        "confirm_queries": len(confirm_ids),
        "select_no_evidence": len(select.no_evidence),
        "confirm_no_evidence": len(confirm.no_evidence),
        **results,
        # does the choice hold up on the confirm half, which played no part in choosing it?
        "meets_epsilon_on_confirm": results["best_confirm_false_evidence"] <= epsilon + 1e-12,
        "beats_untuned_on_confirm": results["best_confirm_ndcg@10"] > results["default_confirm_ndcg@10"],
        "beats_first_stage_on_confirm": results["best_confirm_ndcg@10"] > results["first_stage_confirm_ndcg@10"],
        "best": dataclasses.asdict(best),
    }
    trials = [
        {
            "number": t.number,
            "state": t.state.name.lower(),
            "value": t.value
            if t.value is not None
            else (t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None),
            "false_evidence": t.user_attrs.get("false_evidence"),
            "feasible": t.user_attrs.get("false_evidence", 1.0) <= epsilon + 1e-12,
            "params": json.dumps(t.params, sort_keys=True),
        }
        for t in listed
    ]
    topk = []
    for k in range(1, reranked_k + 1):
        s = dataclasses.replace(best, top_k_rerank=k)
        row: dict[str, Any] = {"top_k_rerank": k}
        for part, subset in halves:
            row[f"{part}_ndcg@10"], row[f"{part}_false_evidence"] = system.score(s, subset)
        topk.append(row)
    return TuneResult(best, default, summary, trials, topk, calibrators, answerability)
