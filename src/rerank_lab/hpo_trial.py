"""The train stage's side of a tier-B trial: report the dev curve to the study, stop when pruned.

``rerank-lab hpo`` runs each trial as a DVC experiment with ``-S train.trial=<study>/<number>``.
The train stage then (:func:`link`) opens the study named by ``hpo`` (storage, pruner) and checks
that it is the one the trial belongs to; :class:`PruneOnDev` reports the ``hpo.metric`` value of
every dev evaluation (``train.eval_steps``) with the step, and stops training when the pruner says
so (under ``train.processes`` > 1, rank 0 reports and every rank stops). The model of a pruned
trial is the model at that step; train's metrics say ``trial_pruned: 1`` and ``trial_steps``, so
the experiment is marked pruned wherever it is shown.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from rerank_lab.errors import ConfigError
from rerank_lab.hpo_space import HpoConfig, make_pruner, parse_config, study_name


@dataclasses.dataclass(frozen=True)
class TrialLink:
    """Where a trial reports: the study (storage URL and name), its trial number, the pruner and the metric."""

    storage: str  # as params say it (env:NAME is read when the storage is opened: no password here)
    study: str
    number: int
    hpo: HpoConfig

    @property
    def eval_key(self) -> str:
        return f"eval_{self.hpo.metric}"  # the trainer's name for an evaluator metric


def parse_trial(value: str) -> tuple[str, int]:
    """``"<study>/<number>"`` -> (study, number).

    >>> parse_trial("hpo-ab12/3")
    ('hpo-ab12', 3)
    """
    study, _, number = value.rpartition("/")
    if not study or not number.isdigit():
        raise ConfigError(f"train.trial {value!r} is not <study>/<number>", fix="leave train.trial null: rerank-lab hpo sets it")
    return study, int(number)


def link(params: dict[str, Any], trial: str) -> TrialLink:
    """The study ``train.trial`` names, as the ``hpo`` section describes it; refuses a trial of
    another study (changed params or code since the study began)."""
    from rerank_lab.optuna_storage import resolve_storage_url

    study, number = parse_trial(trial)
    cfg = parse_config(params)
    expected = study_name(params, cfg)
    if study != expected:
        raise ConfigError(
            f"train.trial names study {study!r}, but these params and this code make study {expected!r}",
            fix="start trials with rerank-lab hpo run (it sets train.trial); leave train.trial null otherwise",
        )
    return TrialLink(resolve_storage_url(cfg.storage), study, number, cfg)


def callback(trial_link: TrialLink):
    """A ``transformers.TrainerCallback`` that reports each dev evaluation and stops a pruned trial.

    Under several processes (``train.processes``) rank 0 alone opens the study and reports; its
    prune decision is broadcast, so every rank stops at the same step.
    """
    import optuna
    from transformers import TrainerCallback

    from rerank_lab.optuna_storage import open_storage
    from rerank_lab.train_ddp import rank, world_size

    trial = None
    if rank() == 0:
        storage = open_storage(trial_link.storage, "hpo.storage")
        study = optuna.load_study(study_name=trial_link.study, storage=storage, pruner=make_pruner(trial_link.hpo))
        trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, trial_link.number)
        trial = optuna.trial.Trial(study, trial_id)

    class PruneOnDev(TrainerCallback):
        pruned_at: int | None = None

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            value = (metrics or {}).get(trial_link.eval_key)
            if value is None or not math.isfinite(value):  # the same on every rank: the dev values are broadcast
                return
            prune = False
            if trial is not None:
                trial.report(float(value), state.global_step)
                prune = trial.should_prune()
            if world_size() > 1:
                import torch.distributed as dist

                decision = [prune]
                dist.broadcast_object_list(decision, src=0)
                prune = bool(decision[0])
            if prune:
                self.pruned_at = state.global_step
                control.should_training_stop = True

    return PruneOnDev()
