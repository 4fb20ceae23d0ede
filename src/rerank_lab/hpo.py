"""Tier B: training settings searched by Optuna, each trial a DVC experiment -- ``rerank-lab hpo run``.

1. **Ask.** The study (``hpo.storage``, named by :func:`rerank_lab.hpo_space.study_name`, seeded
   sampler) is asked for the next point of ``hpo.space``; the values go through the ``check`` stage
   as the trial will read them (:func:`rerank_lab.grid.check_cell`) before anything runs.
2. **Run.** The trial is ``dvc exp run --temp -n <study>-t<NNN> -S <key>=<value> ... -S
   train.trial=<study>/<N> <hpo.stage>``: its stage and everything upstream of it, nothing after.
   Upstream outputs (retrieve, mine, teacher-score) come from the run-cache, as the log shows. The
   train stage reports its dev curve to the trial and stops when the pruner says so
   (:mod:`rerank_lab.hpo_trial`).
3. **Tell.** The experiment's train metrics decide: ``trial_pruned: 1`` -> pruned, else the value
   of ``hpo.metric``. A train stage restored from the run-cache reported nothing: its dev curve
   (the stage's ``dev.tsv`` plot) is reported from the experiment instead, so a rerun of the same
   study gives the same trials.

Until ``hpo.n_trials`` trials exist in the study -- several ``rerank-lab hpo run`` workers, on
several machines, fill one study in a shared storage. Then **tier C**: the ``hpo.finalists`` best
complete trials run the whole pipeline (``<study>-t<NNN>-full``; train restored, then score, the
tier-A tune and evaluate), and ``rerank-lab report`` ranks them on the dev confirm half.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rerank_lab.config import FieldError
from rerank_lab.config import show as show_value
from rerank_lab.errors import ConfigError, RerankLabError
from rerank_lab.exp_run import ExpRun, experiment_rev, read_at, run_experiment
from rerank_lab.hpo_space import TRIAL_KEY, HpoConfig, make_pruner, make_sampler, parse_config, study_name
from rerank_lab.optuna_storage import WORKER, WORKER_ATTR, counted, fail_orphans, over_budget, within_budget
from rerank_lab.optuna_storage import shown as shown_storage

RANGE_KEYS = ("low", "high", "log", "step")
MAX_FAILURES = 3  # trials failed one after another before a run gives up


def configure(params: dict[str, Any]) -> HpoConfig:
    """The ``hpo`` section, its space checked against params (:func:`distributions`)."""
    cfg = parse_config(params)
    distributions(params, cfg)
    return cfg


def distributions(params: dict[str, Any], cfg: HpoConfig) -> dict[str, Any]:
    """Each space key's Optuna distribution; one line for an unknown key, an empty range or list,
    a log range that reaches 0."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from rerank_lab.grid import _current, same

    if not cfg.space:
        raise FieldError(
            (), "names no key", {}, fix="add e.g. train.learning_rate: {low: 2.0e-5, high: 3.0e-4, log: true}", where="hpo.space"
        )
    out: dict[str, Any] = {}
    for key, spec in cfg.space.items():
        where = f"hpo.space.{key}"
        if key == TRIAL_KEY:
            raise ConfigError("is set by rerank-lab hpo itself", record=where, fix="search other keys")
        _current(params, key, where)  # a known params key, not a section
        if isinstance(spec, list):
            if not spec:
                raise FieldError((), "is an empty list: nothing to choose", [], fix="list at least two values", where=where)
            if any(isinstance(v, dict | list) for v in spec):
                raise FieldError((), "must list plain values", spec, fix="e.g. [4, 8, 16]", where=where)
            if any(same(v, w) for i, v in enumerate(spec) for w in spec[:i]):
                raise FieldError((), "repeats a value", spec, fix="list each value once", where=where)
            out[key] = CategoricalDistribution(spec)
            continue
        if not isinstance(spec, dict) or set(spec) - set(RANGE_KEYS) or not {"low", "high"} <= set(spec):
            fix = "write {low: L, high: H} (optionally log: true or step: S) or a list of choices"
            raise FieldError((), "must be a range or a list", spec, fix=fix, where=where)
        low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
        numbers = (low, high) if step is None else (low, high, step)
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in numbers) or not isinstance(log, bool):
            raise FieldError(
                (), "needs numbers for low, high and step, and true/false for log", spec, fix="e.g. {low: 1, high: 3}", where=where
            )
        if not low < high:
            fix = f"make low < high (a single value: set {key} in params.yaml instead)"
            raise FieldError(
                (), f"is an empty range: low {show_value(low)} is not below high {show_value(high)}", spec, fix=fix, where=where
            )
        if log and (low <= 0 or step is not None):
            raise FieldError((), "a log range needs low > 0 and no step", spec, fix="drop log, or the step, or raise low", where=where)
        if all(isinstance(v, int) for v in numbers):
            out[key] = IntDistribution(low, high, log=log, step=step or 1)
        else:
            out[key] = FloatDistribution(float(low), float(high), log=log, step=None if step is None else float(step))
    return out


def _stage_files(stage_name: str, metric: str) -> tuple[str, str]:
    """The stage's metrics file and the plot file whose header holds ``metric`` (the dev curve)."""
    from dvc.repo import Repo

    with Repo() as repo:
        stage = next((s for s in repo.index.stages if s.addressing == stage_name), None)
        if stage is None:
            raise ConfigError(f"dvc.yaml has no stage {stage_name!r}", record="hpo.stage", fix="name the train stage, e.g. train")
        metrics = [str(o.def_path) for o in stage.outs if o.metric]
        plots = [str(o.def_path) for o in stage.outs if o.plot]
    curve = [p for p in plots if Path(p).is_file() and metric in Path(p).read_text(encoding="utf-8").splitlines()[0].split("\t")]
    if not metrics or not curve:
        fix = "run dvc repro first; the stage must write a metrics file and a plot with a step column and that metric"
        raise ConfigError(f"stage {stage_name!r} has no metrics file, or no plot with a {metric!r} column", fix=fix)
    return metrics[0], curve[0]


def _curve(text: str | None, metric: str) -> list[tuple[int, float]]:
    """``(step, value)`` rows of a dev-curve plot.

    >>> _curve("step\\tdev_mined_ndcg@10\\n5\\t0.5\\n10\\t0.75\\n", "dev_mined_ndcg@10")
    [(5, 0.5), (10, 0.75)]
    """
    lines = (text or "").splitlines()
    if not lines:
        return []
    header = lines[0].split("\t")
    col = header.index(metric)
    return [(int(r[0]), float(r[col])) for r in (line.split("\t") for line in lines[1:]) if len(r) > col and r[col]]


def _yaml(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _stages_line(run: ExpRun) -> str:
    executed = [s for s, st, _ in run.stages if st == "executed"]
    reused = len(run.stages) - len(executed)
    restored, unchanged = run.count("restored"), run.count("unchanged")
    return f"executed: {', '.join(executed) or 'nothing'}; reused: {reused} stages (restored {restored}, unchanged {unchanged})"


def _tell(study, trial, run: ExpRun, metrics_path: str, curve_path: str, cfg: HpoConfig) -> tuple[str, float | None, int | None]:
    """Record the trial's outcome; returns (state, value, steps)."""
    from optuna.trial import TrialState

    rev = experiment_rev(run.name) if run.returncode == 0 else None
    text = read_at(rev, metrics_path) if rev else None
    if text is None:
        study.tell(trial, state=TrialState.FAIL)
        return "failed", None, None
    metrics = json.loads(text)
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
    if not frozen.intermediate_values:  # restored from the run-cache: report what the experiment holds
        for step, value in _curve(read_at(rev, curve_path), cfg.metric):
            trial.report(value, step)
    steps = metrics.get("trial_steps", metrics.get("steps"))
    if metrics.get("trial_pruned"):
        study.tell(trial, state=TrialState.PRUNED)
        return "pruned", None, steps
    if cfg.metric not in metrics:
        study.tell(trial, state=TrialState.FAIL)
        return "failed", None, steps
    study.tell(trial, float(metrics[cfg.metric]))
    return "complete", float(metrics[cfg.metric]), steps


def open_study(params: dict[str, Any], cfg: HpoConfig):
    import optuna

    from rerank_lab.optuna_storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(cfg.storage, "hpo.storage")
    name = study_name(params, cfg)
    return optuna.create_study(
        study_name=name, storage=storage, sampler=make_sampler(cfg), pruner=make_pruner(cfg), direction="maximize", load_if_exists=True
    )


def run(params_path: Path, trials: int | None = None, finalists: bool = True, echo: Callable[[str], Any] = print) -> dict[str, Any]:
    """Fill the study up to its budget (``trials`` overrides ``hpo.n_trials``), then run tier C."""
    from rerank_lab.grid import check_cell, hydra_value
    from rerank_lab.params_file import load_params

    params = load_params(params_path)
    cfg = configure(params)
    budget = cfg.n_trials if trials is None else trials
    if budget < 1:
        raise ConfigError(f"--trials {budget}: a study needs a budget of at least 1 trial", fix="give --trials 1 or more")
    dists = distributions(params, cfg)
    name = study_name(params, cfg)
    for key, dist in dists.items():  # every end of every range, and every choice, passes the check stage
        ends = dist.choices if hasattr(dist, "choices") else (dist.low, dist.high)
        for value in ends:
            check_cell(params_path, f"{key}={_yaml(value)}", {key: value, TRIAL_KEY: f"{name}/0"}, "hpo.space value", "hpo.space")
    metrics_path, curve_path = _stage_files(cfg.stage, cfg.metric)
    study = open_study(params, cfg)
    for number, pid in fail_orphans(study):
        echo(f"trial {number}: its worker (pid {pid} on this machine) is gone; marked failed, its place in the budget freed")
    echo(f"study {name} in {shown_storage(cfg.storage)}: {len(study.trials)} trials so far, {counted(study)} counted, budget {budget}")
    ran = failed = 0
    while counted(study) < budget:
        if failed >= MAX_FAILURES:
            raise RerankLabError(f"{failed} trials failed in a row in this run", fix="read the trial logs above; fix the cause, then rerun")
        trial = ask_next(study, cfg, dists)
        if not within_budget(study, trial, budget):  # another worker took the last place since the count
            break
        trial.set_user_attr(WORKER_ATTR, WORKER)
        exp = f"{name}-t{trial.number:03d}"
        cell = {k: trial.params[k] for k in dists} | {TRIAL_KEY: f"{name}/{trial.number}"}
        if experiment_rev(exp) is not None:
            from optuna.trial import TrialState

            study.tell(trial, state=TrialState.FAIL)
            raise RerankLabError(
                f"experiment {exp} already exists (this study ran here before, in another storage)",
                fix=f"dvc exp remove {exp}, or set hpo.study_name",
            )
        check_cell(params_path, exp, cell, "trial", "hpo.space")
        sets = [f"{k}={hydra_value(v)}" for k, v in cell.items()]
        echo(f"trial {trial.number}: {' '.join(f'{k}={_yaml(v)}' for k, v in cell.items() if k != TRIAL_KEY)}")
        result = run_experiment(exp, sets, [cfg.stage])
        state, value, steps = _tell(study, trial, result, metrics_path, curve_path, cfg)
        shown = f"{cfg.metric} {value:.4f}" if value is not None else ""
        echo(f"  {exp}: {state} {shown} at step {steps}, {result.seconds:.0f} s; {_stages_line(result)}")
        if state == "failed":
            echo(result.tail())
        ran += 1
        failed = failed + 1 if state == "failed" else 0
    summary = summarize(study)
    echo(f"study {name}: {summary['complete']} complete, {summary['pruned']} pruned, {summary['failed']} failed ({ran} run now)")
    if finalists and cfg.finalists:
        summary["finalists"] = run_finalists(study, cfg, list(params.get("datasets", [])), echo)
    return summary


def ask_next(study, cfg: HpoConfig, dists: dict[str, Any]):
    """The study's next trial, from a sampler seeded by (``hpo.seed``, trials the study holds).

    A sampler's random stream restarts with each process, so a worker that continues a study -- or a
    second worker -- seeded with the plain seed proposes the first run's points again. Seeding by the
    trials so far keeps one run reproducible (same study, same points) and a continued study new."""
    import numpy as np

    asked = len(study.get_trials(deepcopy=False))
    seed = int(np.random.SeedSequence([cfg.seed, asked]).generate_state(1)[0])
    study.sampler = make_sampler(dataclasses.replace(cfg, seed=seed))
    return study.ask(dists)


def summarize(study) -> dict[str, Any]:
    from optuna.trial import TrialState

    trials = [t for t in study.trials if not over_budget(t)]  # a trial asked past the budget never ran
    out: dict[str, Any] = {
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
    }
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if done:
        best = max(done, key=lambda t: (t.value, -t.number))
        out["best"] = {"number": best.number, "value": best.value, "params": best.params}
    return out


def best_trials(study, n: int) -> list:
    from optuna.trial import TrialState

    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    return sorted(done, key=lambda t: (-t.value, t.number))[:n]


def run_finalists(study, cfg: HpoConfig, datasets: list[str], echo: Callable[[str], Any] = print) -> list[dict[str, Any]]:
    """Tier C: each of the best ``hpo.finalists`` trials through the whole pipeline, once; echoes
    each dataset's headline (dev confirm and test nDCG@10 of the tuned system)."""
    from rerank_lab.grid import hydra_value

    out = []
    for trial in best_trials(study, cfg.finalists):
        exp = f"{study.study_name}-t{trial.number:03d}-full"
        if experiment_rev(exp) is not None:
            echo(f"finalist {trial.number}: {exp} exists")
            out.append({"trial": trial.number, "experiment": exp, "state": "exists"})
            continue
        cell = dict(trial.params) | {TRIAL_KEY: f"{study.study_name}/{trial.number}"}
        result = run_experiment(exp, [f"{k}={hydra_value(v)}" for k, v in cell.items()])
        state = "done" if result.returncode == 0 else "failed"
        echo(f"finalist {trial.number} ({cfg.metric} {trial.value:.4f}): {exp} {state}, {result.seconds:.0f} s; {_stages_line(result)}")
        if state == "failed":
            echo(result.tail())
        row: dict[str, Any] = {"trial": trial.number, "experiment": exp, "state": state}
        rev = experiment_rev(exp) if state == "done" else None
        for dataset in datasets if rev else ():
            text = read_at(rev, f"metrics/headline/{dataset}.json")
            headline = json.loads(text) if text else {}
            keys = ("dev_confirm_ndcg@10", "test_ndcg@10_tuned")
            row[dataset] = {k: headline.get(k) for k in keys}
            echo(f"  {dataset}: " + ", ".join(f"{k} {headline[k]:.4f}" for k in keys if isinstance(headline.get(k), int | float)))
        out.append(row)
    if out:
        echo("rank them on the dev confirm half: rerank-lab report --output report")
    return out


def show(params_path: Path, echo: Callable[[str], Any] = print) -> list[dict[str, Any]]:
    """The study's trials: number, state, values, value, last reported step."""
    from rerank_lab.params_file import load_params

    params = load_params(params_path)
    cfg = configure(params)
    study = open_study(params, cfg)
    rows = []
    for t in study.trials:
        last = max(t.intermediate_values) if t.intermediate_values else None
        state = "unrun" if over_budget(t) else t.state.name.lower()  # asked past the budget (another worker's place)
        rows.append({"number": t.number, "state": state, "value": t.value, "last_step": last, "params": t.params})
        value = f"{t.value:.4f}" if t.value is not None else "-"
        values = " ".join(f"{k}={_yaml(v)}" for k, v in t.params.items())
        echo(f"{t.number:>3}  {state:<8}  {value:>7}  step {last if last is not None else '-':>5}  {values}")
    return rows
