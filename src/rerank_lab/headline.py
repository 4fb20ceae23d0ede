"""headline: the few numbers a researcher compares, one small metrics file per dataset.

``metrics/evaluate/<ds>.json`` holds ~350 values and ``metrics/tune/<ds>.json`` ~35; ``dvc exp show``
prints them all. This stage copies out seven, flat, so the grid reads at a glance
(README: the ``dvc exp show`` command line that keeps only them and the changed params):

* ``dev_confirm_ndcg@10`` -- the tuned system on the confirm half of dev (what the report ranks by; tune);
* ``test_ndcg@10_first_stage`` / ``_untuned`` / ``_tuned`` -- test nDCG@10 of the first stage (``tune.run``),
  the untuned reranker (``<tune.run>+<score.name>``) and the tuned system (``...+tuned``; evaluate);
* ``test_false_evidence_tuned`` -- the tuned system's false-evidence rate on test (evaluate);
* ``test_recall@100_first_stage`` / ``test_recall@100_reranker`` -- Recall@100 on test of the first
  stage and of the untuned reranker (evaluate).

A value the inputs lack (no ``recall@100`` in ``evaluate.metrics``, no no-evidence query in the test
split, no confirm score) is left out -- ``dvc exp show`` prints ``-`` -- and named in the stage's line;
a system the evaluation lacks is an error (``tune.run`` / ``score.name`` name runs evaluate never saw).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rerank_lab.config import section
from rerank_lab.errors import ConfigError, InputError

# key -> (system role, metric); role None: tune's metrics file
KEYS: dict[str, tuple[str | None, str]] = {
    "dev_confirm_ndcg@10": (None, "best_confirm_ndcg@10"),
    "test_ndcg@10_first_stage": ("first_stage", "ndcg@10"),
    "test_ndcg@10_untuned": ("untuned", "ndcg@10"),
    "test_ndcg@10_tuned": ("tuned", "ndcg@10"),
    "test_false_evidence_tuned": ("tuned", "false_evidence_rate"),
    "test_recall@100_first_stage": ("first_stage", "recall@100"),
    "test_recall@100_reranker": ("untuned", "recall@100"),
}


@dataclass(frozen=True)
class HeadlineConfig:
    """The run names the headline reads, from ``tune.run`` and ``score.name`` (as tune names them)."""

    first_stage: str
    reranker: str

    @property
    def systems(self) -> dict[str, str]:
        untuned = f"{self.first_stage}+{self.reranker}"
        return {"first_stage": self.first_stage, "untuned": untuned, "tuned": f"{untuned}+tuned"}


def configure(params: dict[str, Any]) -> HeadlineConfig:
    """``tune.run`` and ``score.name``: the two keys dvc.yaml lists for this stage."""
    names = []
    for key in ("tune.run", "score.name"):
        value = section(params, key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key} must be a run name, got {value!r}", fix=f"set {key} in params.yaml, e.g. bm25 / ce")
        names.append(value)
    return HeadlineConfig(*names)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the metrics: {exc.__class__.__name__}", path=path, fix="run the stage that writes it") from None
    if not isinstance(data, dict):
        raise InputError("metrics must be a JSON object", path=path, fix="run the stage that writes it")
    return data


def headline(cfg: HeadlineConfig, evaluation: dict[str, Any], tuning: dict[str, Any], where: str = "evaluate") -> dict[str, float]:
    """The headline numbers (see the module doc); keys whose value the inputs lack are left out.

    >>> ev = {"bm25": {"test": {"ndcg@10": 0.6, "recall@100": 0.9}}, "bm25+ce": {"test": {"ndcg@10": 0.62}},
    ...       "bm25+ce+tuned": {"test": {"ndcg@10": 0.65, "false_evidence_rate": 0.4}}}
    >>> headline(HeadlineConfig("bm25", "ce"), ev, {"best_confirm_ndcg@10": 0.7})
    {'dev_confirm_ndcg@10': 0.7, 'test_ndcg@10_first_stage': 0.6, 'test_ndcg@10_untuned': 0.62, \
'test_ndcg@10_tuned': 0.65, 'test_false_evidence_tuned': 0.4, 'test_recall@100_first_stage': 0.9}
    """
    systems = dict(cfg.systems)
    if tuning.get("tuned") is False:  # a dataset without dev queries (ArguAna zero-shot): tune wrote no tuned system
        del systems["tuned"]
    for role, run in systems.items():
        if run not in evaluation:
            raise InputError(
                f"the evaluation has no run {run!r} (the {role.replace('_', ' ')})",
                path=where,
                fix=f"evaluate the runs tune.run / score.name name; evaluated: {', '.join(sorted(evaluation)) or 'none'}",
            )
    out: dict[str, float] = {}
    for key, (role, metric) in KEYS.items():
        if role is not None and role not in systems:
            continue
        source = tuning if role is None else ((evaluation[systems[role]] or {}).get("test") or {})
        value = source.get(metric)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = value
    return out


# --- the stage contract (rerank_lab.stage) ------------------------------------------------------


def run(cfg: HeadlineConfig, inputs: dict[str, Any], outputs: dict[str, Path]) -> dict[str, float]:
    """``--evaluate`` and ``--tune`` (their metrics files) into the headline metrics."""
    return headline(cfg, _read(inputs["evaluate"]), _read(inputs["tune"]), str(inputs["evaluate"]))


def describe(cfg: HeadlineConfig, metrics: dict[str, float]) -> str:
    missing = [k for k in KEYS if k not in metrics]
    shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    return shown + (f"  (not in the inputs: {', '.join(missing)})" if missing else "")
