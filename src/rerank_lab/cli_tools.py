"""The ``rerank-lab`` tool commands: everything that is not a DVC stage (report, repro, grid, hpo).

They are looked up through :class:`rerank_lab.cli._StagesAndTools` only when asked for, so the
stage commands in :mod:`rerank_lab.cli` -- every one of which dvc.yaml's stages depend on -- never
import this file: adding or changing a tool reruns no stage.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from rerank_lab.cli import PARAMS
from rerank_lab.stage import Stage, run_stage


@click.group()
def tools() -> None:
    """rerank-lab's commands that are not stages."""


REPORT = Stage("report", inputs=("repo",), choices=("base", "all_commits", "output"), around=("repo",), params=False)


@tools.command()
@click.option("--output", default="report", show_default=True, type=click.Path(), help="folder for report.md, PNGs, leaderboard.*")
@click.option("--base", default="main", show_default=True, help="git revision the metric and param diffs compare against")
@click.option("--repo", default=".", show_default=True, type=click.Path(file_okay=False), help="the DVC repository")
@click.option("--all-commits/--head-only", default=True, show_default=True, help="experiments of every commit, or of HEAD only")
def report(**options: Any) -> None:
    """The pull-request report: leaderboard (dvc exp show), diffs against a base, PNG plots."""
    from rerank_lab import report as stage

    run_stage(REPORT, stage, options)


@tools.command()
@click.option("--table", "table_path", default="repro/beir.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--only", multiple=True, help="row ids (or dataset names) to check; all when omitted")
@click.option("--workdir", type=click.Path(file_okay=False), help="where the pipeline copies run (a temp folder when omitted)")
def repro(table_path: str, only: tuple[str, ...], workdir: str | None) -> None:
    """Re-run the reproduction table's pipelines and print OK / FAIL per row."""
    from rerank_lab.repro import check_table

    ok = check_table(Path(table_path), only, Path(workdir) if workdir else None, echo=click.echo)
    sys.exit(0 if ok else 1)


@tools.group()
def grid() -> None:
    """The factor grid of params.yaml (grid.axes, grid.subsets) as queued DVC experiments."""


@grid.command("queue")
@PARAMS
@click.option("--subset", help="a grid.subsets entry: its values replace those of the axes it names")
@click.option("--where", multiple=True, metavar="AXIS=VALUE", help="keep the cells whose AXIS (a params key or its label) has VALUE")
@click.option("--dry-run", is_flag=True, help="print the dvc commands instead of running them")
@click.option("--skip-existing", is_flag=True, help="queue only the cells that are not already experiments, queued or running")
def grid_queue(params: str, subset: str | None, where: tuple[str, ...], dry_run: bool, skip_existing: bool) -> None:
    """Check every cell, then queue each as `dvc exp run --queue -n <cell name> -S ...` (run: dvc queue start -j 2)."""
    from rerank_lab.grid import queue

    queue(Path(params), subset, where, dry_run=dry_run, skip_existing=skip_existing, echo=click.echo)


@tools.group()
def hpo() -> None:
    """Tier B: training settings (hpo.space) searched by Optuna, each trial a DVC experiment."""


@hpo.command("run")
@PARAMS
@click.option("--trials", type=int, help="the study's budget (default hpo.n_trials): trials in total, counting earlier runs")
@click.option("--no-finalists", is_flag=True, help="skip tier C (the best trials through the whole pipeline)")
def hpo_run(params: str, trials: int | None, no_finalists: bool) -> None:
    """Run trials until the study holds its budget, then the finalists through tune and evaluate."""
    from rerank_lab.hpo import run

    run(Path(params), trials, finalists=not no_finalists, echo=click.echo)


@hpo.command("show")
@PARAMS
def hpo_show(params: str) -> None:
    """The study's trials: state, dev value, last reported step, values."""
    from rerank_lab.hpo import show

    show(Path(params), echo=click.echo)


def _register() -> None:
    """Commands defined next to their code (also runnable as ``python -m rerank_lab.<module>``)."""
    from rerank_lab.pr_report import cli as pr_report
    from rerank_lab.remote import cli as remote_check

    tools.add_command(remote_check, "remote-check")
    tools.add_command(pr_report, "pr-report")


_register()
