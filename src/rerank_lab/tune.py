"""tune: choose inference settings with Optuna over cached scores -- no model forward passes.

The plan's tier A. A *system* is a first-stage run plus the reranker's cached scores for its top
``score.top_k``; a trial picks how that system answers a query:

==================  ===========================================================================
setting             meaning
==================  ===========================================================================
``top_k_retriever`` candidates returned from the first stage (the pool; sets Recall@K)
``top_k_rerank``    how many of the pool's head the reranker reorders (<= the cached ``top_k``)
``fusion``          ``none`` (reranker order), ``rrf`` (``k0``) or ``weighted`` (``alpha`` x the
                    normalised reranker score + (1 - ``alpha``) x the normalised first-stage score)
``calibration``     raw scores -> probabilities: ``sigmoid`` (the cross-encoder's own), ``platt``
                    or ``isotonic`` (scikit-learn, fitted on the select split's labelled pairs)
``gate``            what the abstain decision reads: ``reranker`` (the best calibrated probability
                    in the reranked head) or ``answerability`` (a logistic regression, fitted on
                    the select split, of "this query has evidence" on the query's score profile:
                    top reranker score and margin, top first-stage score and margins)
``threshold``       evidence is returned only when the gate's probability reaches it; otherwise
                    the system abstains (returns nothing)
==================  ===========================================================================

Objective: nDCG@10 over the has-evidence queries of the *select* half of the dev split, subject to
a false-evidence rate (share of no-evidence queries answered at all) <= ``epsilon`` on the same
half. The study is seeded TPE told the constraint (``Trial.set_constraint``); trials are staged over growing shares of the
select queries so a pruner (median / successive halving / hyperband) can stop poor ones early.
The best feasible trial is then scored once on the *confirm* half (never seen while selecting)
and applied to every split's runs; test labels are never read here -- evaluate reads them once.

By default each run is a fresh, seeded, in-memory study of ``n_trials`` trials, so the same
declared inputs give byte-identical outputs however often the stage runs. ``tune.storage`` opts
in to a shared study (any Optuna storage URL, ``journal:<file>``) that several workers fill
together: ``n_trials`` is then the study's total, a rerun only adds what is missing, and the
result depends on how the workers interleaved -- not reproducible, and documented as such. The
study's name covers the inputs, the search space and the source of every module the objective
executes, so a code change never continues a study run by other code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rerank_lab.errors import ConfigError, InputError, unknown_name
from rerank_lab.evaluate import false_evidence_rate, per_query
from rerank_lab.io.qrels import Qrels
from rerank_lab.io.trec import Run, ranked, ranked_scores

log = logging.getLogger(__name__)

CALIBRATIONS = ("sigmoid", "platt", "isotonic")
FUSIONS = ("none", "rrf", "weighted")
NORMS = ("min-max", "zmuv", "rank")
PRUNERS = ("none", "median", "successive-halving", "hyperband")
GATES = ("reranker", "answerability")
OBJECTIVE = "ndcg@10"


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """The ``tune`` section of params.yaml."""

    run: str = "bm25"  # the first-stage run whose reranked head is tuned (a score.runs entry)
    epsilon: float = 0.2  # largest allowed false-evidence rate on no-evidence queries; 1 = no constraint
    n_trials: int = 300  # trials in the study (with a shared storage: its total, counting earlier runs)
    seed: int = 42
    pruner: str = "median"
    stages: int = 4  # a trial is scored on 1/stages, 2/stages, ... of the select queries
    storage: str | None = None  # None: a fresh seeded in-memory study per run; a URL: a shared, non-deterministic study
    study_name: str | None = None  # None = derived from the inputs and the search space
    split: str = "validation"
    confirm_fraction: float = 0.5  # share of the dev split held out to confirm the choice
    top_k_retriever: tuple[int, int] = (10, 200)
    k0: tuple[int, int] = (1, 200)
    calibrations: tuple[str, ...] = CALIBRATIONS
    fusions: tuple[str, ...] = FUSIONS
    norms: tuple[str, ...] = NORMS
    gates: tuple[str, ...] = GATES

    def __post_init__(self) -> None:
        for name in ("top_k_retriever", "k0", "calibrations", "fusions", "norms", "gates"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if isinstance(self.epsilon, bool) or not isinstance(self.epsilon, int | float) or not 0.0 <= self.epsilon <= 1.0:
            raise ConfigError(
                f"tune.epsilon must be a number in [0, 1] (a false-evidence rate), got {self.epsilon!r}",
                fix="e.g. 0.2: at most 20% of no-evidence queries may get an answer; 1 turns the constraint off",
            )
        if self.n_trials < 0 or self.stages < 1:
            raise ConfigError(f"tune.n_trials must be >= 0 and stages >= 1, got {self.n_trials}, {self.stages}", fix="e.g. 300, 4")
        if self.pruner not in PRUNERS:
            raise unknown_name("pruner", self.pruner, PRUNERS)
        for kind, chosen, valid in (
            ("calibration", self.calibrations, CALIBRATIONS),
            ("fusion", self.fusions, FUSIONS),
            ("norm", self.norms, NORMS),
            ("gate", self.gates, GATES),
        ):
            bad = [c for c in chosen if c not in valid] or ([] if chosen else ["(empty)"])
            if bad:
                raise unknown_name(kind, bad[0], valid)
        if not 0.0 < self.confirm_fraction < 1.0:
            raise ConfigError(f"tune.confirm_fraction must be in (0, 1), got {self.confirm_fraction}", fix="e.g. 0.5")
        for name in ("top_k_retriever", "k0"):
            value = getattr(self, name)
            if len(value) != 2 or not 1 <= value[0] <= value[1]:
                raise ConfigError(f"tune.{name} must be [low, high] with 1 <= low <= high, got {list(value)}", fix="e.g. [10, 200]")

    def space(self) -> dict[str, Any]:
        """What defines the search (part of the study's name)."""
        keep = ("run", "epsilon", "seed", "pruner", "stages", "split", "confirm_fraction", "top_k_retriever", "k0")
        return {k: getattr(self, k) for k in keep} | {
            "calibrations": self.calibrations,
            "fusions": self.fusions,
            "norms": self.norms,
            "gates": self.gates,
        }


@dataclasses.dataclass(frozen=True)
class Settings:
    """One point of the search space: how the system answers."""

    top_k_retriever: int
    top_k_rerank: int
    fusion: str = "none"
    k0: int = 60
    alpha: float = 1.0
    norm: str = "min-max"
    calibration: str = "sigmoid"
    gate: str = "reranker"
    threshold: float = 0.0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Settings:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names})


# --- the system over cached scores --------------------------------------------------------------


@dataclasses.dataclass
class QueryCandidates:
    """One query: the first-stage ranking and the reranker's raw scores for its head."""

    docs: list[str]  # first-stage order, best first
    first_stage: np.ndarray  # their first-stage scores
    reranker: np.ndarray  # raw reranker scores of docs[: len(reranker)]


def candidates(first_stage: Run, reranked: Run, query_ids: list[str], path: str = "runs") -> dict[str, QueryCandidates]:
    """Line up each query's first-stage ranking with the reranker's raw scores for its head.

    ``reranked`` holds the head scores of the score stage's ``scores.tsv``; the scored docs must be
    exactly the first-stage top of the query (what score reranks).
    """
    out: dict[str, QueryCandidates] = {}
    for qid in query_ids:
        order = ranked(first_stage.get(qid, {}))
        scored = reranked.get(qid, {})
        head = [d for d, _ in order[: len(scored)]]
        if set(head) != set(scored):
            raise InputError(
                f"the reranked docs of query {qid} are not the first stage's top {len(scored)}",
                path=path,
                record=f"query {qid}",
                fix="tune the run that score reranked (tune.run must be one of score.runs)",
            )
        out[qid] = QueryCandidates(
            [d for d, _ in order],
            np.array([s for _, s in order], dtype=float),
            np.array([scored[d] for d in head], dtype=float),
        )
    return out


def _normalise(x: np.ndarray, norm: str) -> np.ndarray:
    """Per-query score normalisation, as ranx's ``min-max``, ``zmuv`` and ``rank`` norms."""
    if norm == "min-max":
        span = x.max() - x.min()
        return (x - x.min()) / span if span > 0 else np.zeros_like(x)
    if norm == "zmuv":
        sd = x.std()
        return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)
    # rank: best = 1, then 1 - r/n, as ranx's "rank" norm
    order = np.argsort(-x, kind="stable")
    out = np.empty_like(x)
    out[order] = 1.0 - np.arange(x.size) / x.size
    return out


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, best first, ties in input order (the first stage's order)."""
    order = np.argsort(-x, kind="stable")
    ranks = np.empty(x.size, dtype=float)
    ranks[order] = np.arange(1, x.size + 1)
    return ranks


def head_scores(q: QueryCandidates, k: int, s: Settings) -> np.ndarray:
    """The fused score of each of the ``k`` reranked head docs under settings ``s``."""
    ce, fs = q.reranker[:k], q.first_stage[:k]
    if s.fusion == "none":
        return ce
    if s.fusion == "rrf":
        return 1.0 / (s.k0 + _ranks(ce)) + 1.0 / (s.k0 + _ranks(fs))
    return s.alpha * _normalise(ce, s.norm) + (1.0 - s.alpha) * _normalise(fs, s.norm)


def answer(q: QueryCandidates, probs: np.ndarray, s: Settings, answerable: float | None = None) -> dict[str, float]:
    """The ranked list the system returns for one query (empty when it abstains).

    ``probs`` are the calibrated probabilities of the reranked head and ``answerable`` the
    query's answerability probability (needed for ``gate="answerability"``). Returned scores only
    encode the order (:func:`rerank_lab.io.trec.ranked_scores`), as in the score stage's runs.
    """
    pool = q.docs[: max(s.top_k_retriever, 0)]
    k = min(s.top_k_rerank, q.reranker.size, len(pool))
    if k == 0:
        return {}
    if s.gate == "answerability":
        if answerable is None:
            raise ConfigError("gate 'answerability' needs the fitted answerability model", fix="tune with gates including it")
        gate = answerable
    else:
        gate = float(probs[:k].max())
    if gate < s.threshold:
        return {}
    fused = head_scores(q, k, s)
    head = [d for d, _ in ranked(dict(zip(pool[:k], fused.tolist())))]  # ties as trec_eval orders them
    return ranked_scores(head + pool[k:])


def system_run(
    cands: dict[str, QueryCandidates], probs: dict[str, dict[str, np.ndarray]], s: Settings, answerable: dict[str, float] | None = None
) -> Run:
    """The whole run under settings ``s`` (queries that abstain are absent)."""
    run: Run = {}
    for qid, q in cands.items():
        docs = answer(q, probs[s.calibration][qid], s, (answerable or {}).get(qid))
        if docs:
            run[qid] = docs
    return run


def false_evidence(run: Run, no_evidence: list[str]) -> float:
    """Share of no-evidence queries the system answers at all: evaluate's false-evidence rate with
    no score threshold (abstaining already removed them), 0 when there are none to answer."""
    return false_evidence_rate(run, set(no_evidence), threshold=-math.inf) if no_evidence else 0.0


# --- calibration over cached pairs --------------------------------------------------------------


def pair_labels(cands: dict[str, QueryCandidates], qrels: Qrels) -> tuple[np.ndarray, np.ndarray]:
    """Every reranked (query, doc) pair's raw score and 0/1 label (relevant = grade > 0)."""
    scores, labels = [], []
    for qid, q in cands.items():
        judged = qrels.get(qid, {})
        scores.extend(q.reranker.tolist())
        labels.extend(int(judged.get(d, 0) > 0) for d in q.docs[: q.reranker.size])
    return np.array(scores, dtype=float), np.array(labels, dtype=int)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The cross-encoder's own probability for raw logits."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def fit_calibrators(kinds: tuple[str, ...], scores: np.ndarray, labels: np.ndarray) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """``{kind: raw scores -> probabilities}``; platt and isotonic are fitted on the given pairs."""
    from rerank_lab.calibration import fit_calibrator

    out: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    for kind in kinds:
        if kind == "sigmoid":
            out[kind] = sigmoid
        else:
            out[kind] = fit_calibrator(kind, scores, labels).predict
    return out


def calibrated(cands: dict[str, QueryCandidates], calibrators: dict[str, Callable]) -> dict[str, dict[str, np.ndarray]]:
    """``{kind: {query: probabilities of its reranked head}}``."""
    return {kind: {qid: (f(q.reranker) if q.reranker.size else q.reranker) for qid, q in cands.items()} for kind, f in calibrators.items()}


# --- answerability: does this query have evidence at all? ---------------------------------------


def query_features(q: QueryCandidates) -> list[float]:
    """A query's score profile: top reranker score and its margin over the 2nd, top first-stage
    score and its margins over the 2nd and 5th (shorter lists repeat their last score)."""

    def at(a: np.ndarray, i: int) -> float:
        return float(a[min(i, a.size - 1)]) if a.size else 0.0

    ce, fs = np.sort(q.reranker)[::-1], q.first_stage
    return [at(ce, 0), at(ce, 0) - at(ce, 1), at(fs, 0), at(fs, 0) - at(fs, 1), at(fs, 0) - at(fs, 4)]


@dataclasses.dataclass(frozen=True)
class Answerability:
    """Logistic regression (scikit-learn, standardised features) of has-evidence on :func:`query_features`."""

    model: Any

    @classmethod
    def fit(cls, cands: dict[str, QueryCandidates], has_evidence: set[str]) -> Answerability:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        ids = sorted(cands)
        y = np.array([int(q in has_evidence) for q in ids])
        if y.min() == y.max():
            raise InputError("the answerability model needs has-evidence and no-evidence queries", fix="tune on a split with both")
        x = np.array([query_features(cands[q]) for q in ids])
        return cls(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y))

    def predict(self, cands: dict[str, QueryCandidates]) -> dict[str, float]:
        ids = sorted(cands)
        if not ids:
            return {}
        p = self.model.predict_proba(np.array([query_features(cands[q]) for q in ids]))[:, 1]
        return {q: float(v) for q, v in zip(ids, p)}

    def describe(self) -> dict[str, Any]:
        scaler, lr = self.model.steps[0][1], self.model.steps[1][1]
        names = ["reranker_top", "reranker_margin", "first_stage_top", "first_stage_margin_2", "first_stage_margin_5"]
        return {
            "features": names,
            "mean": scaler.mean_.tolist(),
            "scale": scaler.scale_.tolist(),
            "coef": lr.coef_[0].tolist(),
            "intercept": float(lr.intercept_[0]),
        }


# --- splitting the dev split into select and confirm --------------------------------------------


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


# --- scoring a trial ----------------------------------------------------------------------------


@dataclasses.dataclass
class Subset:
    """A query set a trial is scored on: has-evidence queries (nDCG) and no-evidence ones (FER)."""

    evidence: list[str]
    no_evidence: list[str]
    qrels: Qrels


def score(cands, probs, s: Settings, subset: Subset, answerable: dict[str, float] | None = None) -> tuple[float, float]:
    """(mean nDCG@10 over has-evidence queries, false-evidence rate over no-evidence queries)."""
    wanted = {q: cands[q] for q in subset.evidence + subset.no_evidence}
    run = system_run(wanted, probs, s, answerable)
    values = per_query(run, {q: subset.qrels[q] for q in subset.evidence}, (OBJECTIVE,))
    ndcg = sum(v[OBJECTIVE] for v in values.values()) / len(values) if values else 0.0
    return ndcg, false_evidence(run, subset.no_evidence)


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


# --- storage ------------------------------------------------------------------------------------


def open_storage(url: str):
    """An Optuna storage for ``url`` (``sqlite:///…``, ``postgresql://…``, ``journal:<file>``),
    or a :class:`ConfigError` naming the URL when it cannot be reached."""
    import optuna

    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            path = Path(url[len("journal:") :])
            if not path.parent.is_dir():
                raise FileNotFoundError(f"folder {path.parent} does not exist")
            return JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None)
    except Exception as exc:  # sqlalchemy / driver errors: report the URL, not a deep traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"cannot open the Optuna storage {url!r}: {first}",
            fix="check tune.storage: sqlite:///path.db, journal:path.log, or a reachable postgresql:// URL with its driver installed",
        ) from None


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
    """A digest of the source of every package module the objective executes (this module's
    import closure): part of the study name, so changed code never continues an old study."""
    from rerank_lab.deps import module_closure, source_digest

    return source_digest(module_closure(__name__))


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


def first_stage_score(cands: dict[str, QueryCandidates], subset: Subset) -> tuple[float, float]:
    """(nDCG@10, false-evidence rate) of the first stage alone on ``subset``: its whole list, no
    reranking, never abstaining -- the bar a tuned system must clear to be worth its cost."""
    run = {q: ranked_scores(cands[q].docs) for q in subset.evidence + subset.no_evidence if cands[q].docs}
    values = per_query(run, {q: subset.qrels[q] for q in subset.evidence}, (OBJECTIVE,))
    ndcg = sum(v[OBJECTIVE] for v in values.values()) / len(values) if values else 0.0
    return ndcg, false_evidence(run, subset.no_evidence)


def tune(
    cfg: TuneConfig,
    cands: dict[str, QueryCandidates],
    dev_qrels: Qrels,
    dev_ids: list[str],
    storage_url: str | None,
    fingerprint: str,
    depth: int,
) -> TuneResult:
    """Run the study (a fresh in-memory one, or fill a shared storage up to ``n_trials``) and
    return the chosen settings with their select/confirm scores."""
    import optuna

    has_evidence = {q for q, docs in dev_qrels.items() if any(g > 0 for g in docs.values())}
    select_ids, confirm_ids = select_confirm(dev_ids, has_evidence, cfg.confirm_fraction, cfg.seed)
    select = Subset([q for q in select_ids if q in has_evidence], [q for q in select_ids if q not in has_evidence], dev_qrels)
    confirm = Subset([q for q in confirm_ids if q in has_evidence], [q for q in confirm_ids if q not in has_evidence], dev_qrels)
    if cfg.epsilon < 1.0 and (not select.no_evidence or not confirm.no_evidence):
        raise InputError(
            f"the {cfg.split} split has {len(dev_ids) - len(has_evidence & set(dev_ids))} no-evidence queries, too few for a "
            f"false-evidence constraint (select {len(select.no_evidence)}, confirm {len(confirm.no_evidence)})",
            path=f"{cfg.split} split",
            fix="tune on a dataset with no-evidence queries (e.g. scifact_rationales' NOINFO claims) or set tune.epsilon: 1",
        )
    if not select.evidence or not confirm.evidence:
        raise InputError(f"the {cfg.split} split has too few has-evidence queries to tune on", fix="use a larger dev split")
    reranked_k = max((q.reranker.size for q in cands.values()), default=0)
    if reranked_k == 0:
        raise InputError(f"no reranked candidates for run {cfg.run!r}", fix="run the score stage for this run first")

    select_cands = {q: cands[q] for q in select_ids}
    cal_scores, cal_labels = pair_labels(select_cands, dev_qrels)
    calibrators = fit_calibrators(cfg.calibrations, cal_scores, cal_labels)
    probs = calibrated(cands, calibrators)
    stages = staged_subsets(select, cfg.stages, cfg.seed)
    gates = cfg.gates
    answerability, answerable = None, None
    if "answerability" in gates:
        if select.no_evidence:
            answerability = Answerability.fit(select_cands, has_evidence)
            answerable = answerability.predict(cands)
        else:  # nothing to learn it from (only possible without the constraint)
            gates = tuple(g for g in gates if g != "answerability")

    def objective(trial) -> float:
        s = suggest(trial, cfg, reranked_k, depth, gates)
        value = 0.0
        for step, subset in enumerate(stages):
            value, fer = score(cands, probs, s, subset, answerable)
            trial.set_user_attr("false_evidence", fer)
            if step < len(stages) - 1:
                # the pruner sees the constraint too: an infeasible trial must not look better than a feasible one
                trial.report(value - max(0.0, fer - cfg.epsilon), step)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        trial.set_constraint("false_evidence", fer - cfg.epsilon)  # feasible when <= 0; TPE models it
        return value

    storage = open_storage(storage_url) if storage_url else None  # None: in memory, fresh each run
    name = study_name(cfg, fingerprint)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=cfg.seed),
        pruner=make_pruner(cfg.pruner, cfg.stages),
        load_if_exists=True,
    )
    before = len(study.trials)
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
        study.enqueue_trial(first)
    # n_trials is the study's total: a shared study already holding trials only gets what is missing
    stop_at_total = optuna.study.MaxTrialsCallback(cfg.n_trials, states=None)
    study.optimize(objective, n_trials=max(0, cfg.n_trials - before), callbacks=[stop_at_total], gc_after_trial=False)
    best_trial = _feasible_best(study, cfg.epsilon)
    if best_trial is None:
        raise InputError(
            f"no trial of study {name!r} met false-evidence <= {cfg.epsilon} ({len(study.trials)} trials)",
            fix="raise tune.epsilon, or add trials (tune.n_trials)",
        )
    best = Settings.from_params(best_trial.params)
    full_select = stages[-1]
    results: dict[str, Any] = {}
    for part, subset in (("select", full_select), ("confirm", confirm)):
        for label, settings in (("default", default), ("best", best)):
            ndcg, fer = score(cands, probs, settings, subset, answerable)
            results[f"{label}_{part}_ndcg@10"] = round(ndcg, 6)
            results[f"{label}_{part}_false_evidence"] = round(fer, 6)
        ndcg, fer = first_stage_score(cands, subset)
        results[f"first_stage_{part}_ndcg@10"] = round(ndcg, 6)
        results[f"first_stage_{part}_false_evidence"] = round(fer, 6)
    states = [t.state.name.lower() for t in study.trials]
    summary = {
        "study": name,
        "trials": len(study.trials),
        "trials_this_run": len(study.trials) - before,
        "complete": states.count("complete"),
        "pruned": states.count("pruned"),
        "best_trial": best_trial.number,
        "epsilon": cfg.epsilon,
        "select_queries": len(select_ids),
        "confirm_queries": len(confirm_ids),
        "select_no_evidence": len(select.no_evidence),
        "confirm_no_evidence": len(confirm.no_evidence),
        **results,
        # does the choice hold up on the confirm half, which played no part in choosing it?
        "meets_epsilon_on_confirm": results["best_confirm_false_evidence"] <= cfg.epsilon + 1e-12,
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
            "feasible": t.user_attrs.get("false_evidence", 1.0) <= cfg.epsilon + 1e-12,
            "params": json.dumps(t.params, sort_keys=True),
        }
        for t in study.trials
    ]
    topk = []
    for k in range(1, reranked_k + 1):
        s = dataclasses.replace(best, top_k_rerank=k)
        row: dict[str, Any] = {"top_k_rerank": k}
        for part, subset in (("select", full_select), ("confirm", confirm)):
            row[f"{part}_ndcg@10"], row[f"{part}_false_evidence"] = score(cands, probs, s, subset, answerable)
        topk.append(row)
    return TuneResult(best, default, summary, trials, topk, calibrators, answerability)


# --- the stage ----------------------------------------------------------------------------------


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha1()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def tune_stage(
    cfg: TuneConfig,
    reranker_name: str,
    dataset: Path,
    qrels_dir: Path,
    runs_root: Path,
    scored_root: Path,
    storage_url: str | None,
    out: Path,
) -> dict[str, Any]:
    """Read the first-stage runs and the reranker's scores, tune on the dev split, write the tuned
    runs of every split (``storage_url``: None for a fresh in-memory study, see the module doc).

    Writes ``runs/<run>+<reranker>+tuned/<split>.trec``, ``probabilities/<split>.tsv`` (every
    reranked pair's raw score, sigmoid and calibrated probability: evaluate's ECE),
    ``answerability/<split>.tsv`` (each query's probability of having evidence),
    ``best.json``, ``trials.tsv`` and ``topk.tsv`` under ``out``; returns the metrics.
    """
    from rerank_lab.io.atomic import atomic_dir, write_text
    from rerank_lab.io.datasets import load_dataset
    from rerank_lab.io.qrels import read_qrels
    from rerank_lab.io.scores import read_scores
    from rerank_lab.io.trec import read_run, write_run

    dd = load_dataset(dataset)
    if cfg.split not in dd:
        raise InputError(f"the dataset has no {cfg.split!r} split to tune on", path=dataset, fix=f"use one of: {', '.join(dd)}")
    reranked_name = f"{cfg.run}+{reranker_name}"
    scores_path = scored_root / "scores.tsv"
    table = read_scores(scores_path)
    split_cands: dict[str, dict[str, QueryCandidates]] = {}
    inputs: list[Path] = [scores_path]
    for split in dd:
        fs_path = runs_root / cfg.run / f"{split}.trec"
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
            inputs.append(fs_path)
    dev_qrels_path = qrels_dir / f"{cfg.split}.tsv"
    dev_qrels = read_qrels(dev_qrels_path)
    dev_ids = sorted(dd[cfg.split]["id"])
    depth = max((len(q.docs) for c in split_cands.values() for q in c.values()), default=0)
    fingerprint = _digest([*inputs, dev_qrels_path]) + hashlib.sha1("\n".join(dev_ids).encode()).hexdigest()
    result = tune(cfg, split_cands[cfg.split], dev_qrels, dev_ids, storage_url, fingerprint, depth)
    best = result.best
    tuned_name = f"{reranked_name}+tuned"
    with atomic_dir(out) as tmp:
        for split, cands in split_cands.items():
            probs = calibrated(cands, result.calibrators)
            answerable = result.answerability.predict(cands) if result.answerability else None
            write_run(system_run(cands, probs, best, answerable), tmp / "runs" / tuned_name / f"{split}.trec", tag=tuned_name)
            if answerable is not None:
                rows = [f"{q}\t{answerable[q]!r}" for q in sorted(answerable)]
                write_text(tmp / "answerability" / f"{split}.tsv", "\n".join(["query_id\tp_answerable", *rows]) + "\n")
            sig = calibrated(cands, {"sigmoid": sigmoid})["sigmoid"]
            lines = ["run\tquery_id\tdoc_id\tscore\tp_sigmoid\tp"]
            for qid, q in cands.items():
                for i in range(q.reranker.size):
                    lines.append(
                        f"{tuned_name}\t{qid}\t{q.docs[i]}\t{float(q.reranker[i])!r}\t{float(sig[qid][i])!r}\t{float(probs[best.calibration][qid][i])!r}"
                    )
            write_text(tmp / "probabilities" / f"{split}.tsv", "\n".join(lines) + "\n")
        chosen = {"run": tuned_name, **dataclasses.asdict(best)}
        if result.answerability and best.gate == "answerability":
            chosen["answerability_model"] = result.answerability.describe()
        write_text(tmp / "best.json", json.dumps(chosen, indent=2, sort_keys=True) + "\n")
        cols = ["number", "state", "value", "false_evidence", "feasible", "params"]
        write_text(tmp / "trials.tsv", "\n".join(["\t".join(cols)] + ["\t".join(str(t[c]) for c in cols) for t in result.trials]) + "\n")
        cols = list(result.topk[0])
        write_text(tmp / "topk.tsv", "\n".join(["\t".join(cols)] + ["\t".join(repr(r[c]) for c in cols) for r in result.topk]) + "\n")
    return result.summary
