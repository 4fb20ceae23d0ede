"""The inference policy: how a system answers a query from cached scores -- no model forward passes.

A *system* is a first-stage run plus the reranker's raw scores for its head (the score stage's
``scores.tsv``). :class:`Settings` say how it turns them into the ranked list it returns, or into
no answer at all:

==================  ===========================================================================
setting             meaning
==================  ===========================================================================
``top_k_retriever`` candidates returned from the first stage (the pool; sets Recall@K)
``top_k_rerank``    how many of the pool's head the reranker reorders (<= the cached ``top_k``)
``fusion``          ``none`` (reranker order), ``rrf`` (``k0``) or ``weighted`` (``alpha`` x the
                    normalised reranker score + (1 - ``alpha``) x the normalised first-stage score)
``calibration``     raw scores -> probabilities: ``sigmoid`` (the cross-encoder's own), ``platt``
                    or ``isotonic`` (scikit-learn, fitted on labelled pairs: :func:`fit_calibrators`)
``gate``            what the abstain decision reads: ``reranker`` (the best calibrated probability
                    in the reranked head) or ``answerability`` (a query-level probability of "this
                    query has evidence": :mod:`rerank_lab.answerability`)
``threshold``       evidence is returned only when the gate's probability reaches it; otherwise
                    the system abstains (returns nothing)
==================  ===========================================================================

:class:`System` holds what a setting is applied to (candidates, calibrated head probabilities,
answerability); :meth:`System.run` is the run the system returns and :meth:`System.score` its
nDCG@10 and false-evidence rate on a query set. tune searches the settings; the chosen system's
runs are what evaluate scores.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from rerank_lab.errors import ConfigError, InputError
from rerank_lab.evaluate import false_evidence_rate, per_query
from rerank_lab.io.qrels import Qrels
from rerank_lab.io.trec import Run, ranked, ranked_scores

CALIBRATIONS = ("sigmoid", "platt", "isotonic")
FUSIONS = ("none", "rrf", "weighted")
NORMS = ("min-max", "zmuv", "rank")
GATES = ("reranker", "answerability")
OBJECTIVE = "ndcg@10"


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
        """Settings from a trial's params; the ones a trial did not draw keep their defaults.

        >>> Settings.from_params({"top_k_retriever": 50, "top_k_rerank": 10, "k0": 5, "other": 1}).k0
        5
        """
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names})


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


# --- fusion and the answer ----------------------------------------------------------------------


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


# --- a system and its score on a query set ------------------------------------------------------


class QueryModel(Protocol):
    """A query-level answerability model (:class:`rerank_lab.answerability.Answerability`)."""

    def predict(self, cands: dict[str, QueryCandidates]) -> dict[str, float]: ...


@dataclasses.dataclass
class Subset:
    """A query set a system is scored on: has-evidence queries (nDCG) and no-evidence ones (FER)."""

    evidence: list[str]
    no_evidence: list[str]
    qrels: Qrels


@dataclasses.dataclass(frozen=True)
class System:
    """Everything a setting is applied to, computed once: the candidates, their head probabilities
    under each fitted calibration, and each query's answerability probability (when fitted)."""

    cands: dict[str, QueryCandidates]
    probs: dict[str, dict[str, np.ndarray]]  # {calibration: {query: probabilities of its reranked head}}
    answerable: dict[str, float] | None = None

    @classmethod
    def build(cls, cands: dict[str, QueryCandidates], calibrators: dict[str, Callable], answerability: QueryModel | None = None) -> System:
        return cls(cands, calibrated(cands, calibrators), answerability.predict(cands) if answerability else None)

    def run(self, s: Settings, queries: list[str] | None = None) -> Run:
        """The run under settings ``s``, over ``queries`` (default: all; abstaining queries are absent)."""
        cands = self.cands if queries is None else {q: self.cands[q] for q in queries}
        return system_run(cands, self.probs, s, self.answerable)

    def score(self, s: Settings, subset: Subset) -> tuple[float, float]:
        """(mean nDCG@10 over has-evidence queries, false-evidence rate over no-evidence queries)."""
        run = self.run(s, subset.evidence + subset.no_evidence)
        return _ndcg(run, subset), false_evidence(run, subset.no_evidence)


def first_stage_score(cands: dict[str, QueryCandidates], subset: Subset) -> tuple[float, float]:
    """(nDCG@10, false-evidence rate) of the first stage alone on ``subset``: its whole list, no
    reranking, never abstaining -- the bar a tuned system must clear to be worth its cost."""
    run = {q: ranked_scores(cands[q].docs) for q in subset.evidence + subset.no_evidence if cands[q].docs}
    return _ndcg(run, subset), false_evidence(run, subset.no_evidence)


def _ndcg(run: Run, subset: Subset) -> float:
    values = per_query(run, {q: subset.qrels[q] for q in subset.evidence}, (OBJECTIVE,))
    return sum(v[OBJECTIVE] for v in values.values()) / len(values) if values else 0.0
