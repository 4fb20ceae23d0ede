"""The ``rerank-lab`` command line: one short command per DVC stage, all run by one generic runner.

Each command declares its options (paths come from dvc.yaml) and a :class:`~rerank_lab.stage.Stage`
record saying which of them are inputs, outputs and metrics; :func:`~rerank_lab.stage.run_stage`
does the rest -- params, typed config, guarded outputs, ``run``, commit of outputs and metrics
together (see rerank_lab.stage). Each command imports its stage module inside the function: heavy
imports stay out of ``rerank-lab --help``, and rerank_lab.deps reads what each command executes.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from rerank_lab.errors import RerankLabError
from rerank_lab.stage import Stage, run_stage

PARAMS = click.option("--params", default="params.yaml", show_default=True, type=click.Path(dir_okay=False), help="params file")
OUTPUT = click.option("--output", required=True, type=click.Path(), help="output folder")
METRICS = click.option("--metrics", required=True, type=click.Path(), help="metrics JSON file")
MODELS = click.option(
    "--models",
    type=click.Path(file_okay=False),
    help="the folder of local model inputs that dvc.yaml declares as this stage's dep (models/pretrained); "
    "a model named in params by a local path must lie under it",
)


class _StagesAndTools(click.Group):
    """The stage commands are defined here; the tool commands (report, repro, grid, hpo, ...) live in
    :mod:`rerank_lab.cli_tools` and are imported only when one of them, or the command list, is asked
    for. A stage's command therefore never executes a tool's code, and editing a tool does not make
    every stage of dvc.yaml (which depends on this file) rerun."""

    @staticmethod
    def _tools() -> click.Group:
        from rerank_lab.cli_tools import tools

        return tools

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._tools().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._tools().get_command(ctx, cmd_name)


@click.group(cls=_StagesAndTools)
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
def cli(verbose: bool) -> None:
    """rerank-lab: reproducible retrieval-reranker experiments (run the stages with `dvc repro`)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "bm25s", "numba", "datasets", "sentence_transformers", "botocore", "aiobotocore", "s3fs"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


CHECK = Stage("check")


@cli.command()
@PARAMS
@OUTPUT
def check(**options: Any) -> None:
    """Check the whole params file (every section, and the sections against each other) before any stage runs."""
    from rerank_lab import check as stage

    run_stage(CHECK, stage, options)


CONVERT = Stage("convert", inputs=("input",), metrics="metrics", choices=("source",))


@cli.command()
@PARAMS
@click.option("--source", required=True, help="the convert.sources entry to use (its format and split settings)")
@click.option("--input", required=True, type=click.Path(), help="raw input folder or file")
@OUTPUT
@METRICS
def convert(**options: Any) -> None:
    """Convert a raw source into the context-relevance dataset, a corpus and qrels."""
    from rerank_lab import convert as stage

    run_stage(CONVERT, stage, options)


DEDUP = Stage("dedup", inputs=("input",), metrics="metrics", choices=("source",))


@cli.command()
@PARAMS
@click.option("--source", required=True, help="the convert.sources entry the dataset came from (its format decides)")
@click.option("--input", required=True, type=click.Path(), help="a context-relevance dataset folder")
@OUTPUT
@METRICS
def dedup(**options: Any) -> None:
    """Drop rows whose passages are duplicated more than dedup.max_duplicates times (mined sources)."""
    from rerank_lab import dedup as stage

    run_stage(DEDUP, stage, options)


INDEX = Stage("index", inputs=("corpus", "models"), choices=("retriever",))


@cli.command()
@PARAMS
@click.option("--retriever", required=True, help="a retrievers.<name> entry of params.yaml")
@click.option("--corpus", required=True, type=click.Path(), help="the corpus folder written by convert")
@OUTPUT
@MODELS
def index(**options: Any) -> None:
    """Build a retriever's index (Lucene collection, bm25s matrices, dense embeddings)."""
    from rerank_lab import retrieve

    run_stage(INDEX, retrieve.INDEX, options)


RETRIEVE = Stage("retrieve", inputs=("index", "dataset", "models"), choices=("retriever", "source"))


@cli.command()
@PARAMS
@click.option("--retriever", required=True, help="a retrievers.<name> entry of params.yaml")
@click.option("--index", required=True, type=click.Path(), help="the retriever's index folder")
@click.option("--dataset", required=True, type=click.Path(), help="the dataset whose queries are searched")
@click.option("--source", help="the dataset's convert.sources entry, for its remove_query setting (off when omitted)")
@OUTPUT
@MODELS
def retrieve(**options: Any) -> None:
    """Search every split's queries; writes <output>/<split>.trec."""
    from rerank_lab import retrieve

    run_stage(RETRIEVE, retrieve.RETRIEVE, options)


FUSE = Stage("fuse", inputs=("runs",), choices=("fusion",))


@cli.command()
@PARAMS
@click.option("--fusion", required=True, help="a fusions.<name> entry of params.yaml")
@click.option("--runs", required=True, type=click.Path(), help="folder with one sub-folder of runs per retriever")
@OUTPUT
def fuse(**options: Any) -> None:
    """Fuse the runs of the retrievers named in fusions.<name>.runs."""
    from rerank_lab import retrieve

    run_stage(FUSE, retrieve.FUSE, options)


EVALUATE = Stage("evaluate", inputs=("runs", "dataset", "qrels", "probabilities"), metrics="metrics")


@cli.command()
@PARAMS
@click.option("--runs", required=True, multiple=True, type=click.Path(), help="folder(s) with one sub-folder per run")
@click.option("--dataset", required=True, type=click.Path(), help="the dataset the runs answer")
@click.option("--qrels", required=True, type=click.Path(), help="folder of <split>.tsv qrels")
@METRICS
@click.option("--output", required=True, type=click.Path(), help="folder for per_query.tsv")
@click.option("--probabilities", multiple=True, type=click.Path(), help="tune's probabilities/ folder(s): ECE per split")
def evaluate(**options: Any) -> None:
    """nDCG@10, MRR@10, Recall@K ... per run and split (trec_eval), plus per-query values."""
    from rerank_lab import evaluate as stage

    run_stage(EVALUATE, stage, options)


HEADLINE = Stage("headline", inputs=("evaluate", "tune"), outputs=(), metrics="metrics")


@cli.command()
@PARAMS
@click.option("--evaluate", required=True, type=click.Path(), help="evaluate's metrics file (metrics/evaluate/<ds>.json)")
@click.option("--tune", required=True, type=click.Path(), help="tune's metrics file (metrics/tune/<ds>.json)")
@METRICS
def headline(**options: Any) -> None:
    """The few numbers a researcher compares (dev confirm and test nDCG@10, false evidence, Recall@100)."""
    from rerank_lab import headline as stage

    run_stage(HEADLINE, stage, options)


TUNE = Stage("tune", inputs=("dataset", "qrels", "runs", "scores"), metrics="metrics")


@cli.command()
@PARAMS
@click.option("--dataset", required=True, type=click.Path(), help="the dataset the runs answer")
@click.option("--qrels", required=True, type=click.Path(), help="folder of <split>.tsv qrels (only the dev split's is read)")
@click.option("--runs", required=True, multiple=True, type=click.Path(), help="folder(s) with one sub-folder per run: retrieve's, fuse's")
@click.option("--scores", required=True, type=click.Path(), help="the score stage's output folder")
@OUTPUT
@METRICS
def tune(**options: Any) -> None:
    """Optuna over cached scores: pool sizes, fusion, calibration, abstain threshold (dev split only)."""
    from rerank_lab import tune

    run_stage(TUNE, tune, options)


MINE = Stage("mine", inputs=("input", "corpus", "qrels", "runs", "models"), metrics="metrics", caches=("cache",))


@cli.command()
@PARAMS
@click.option("--input", required=True, type=click.Path(), help="the dataset to add negatives to")
@click.option("--corpus", required=True, type=click.Path())
@click.option("--qrels", required=True, type=click.Path(), help="folder of <split>.tsv qrels")
@click.option("--runs", required=True, type=click.Path(), help="folder with one sub-folder per first-stage run")
@click.option("--cache", type=click.Path(dir_okay=False), help="score cache (sqlite) for the iterative miner [default: the per-user cache]")
@OUTPUT
@METRICS
@MODELS
def mine(**options: Any) -> None:
    """Append negatives with the miner named in mine.miner (random, retriever-hard, iterative-hard, mixed)."""
    from rerank_lab import mine as stage
    from rerank_lab.score_cache import default_cache_path

    run_stage(MINE, stage, {**options, "cache": options["cache"] or default_cache_path()})


LABEL = Stage("label", inputs=("input", "reranker", "models"), metrics="metrics", caches=("cache",))


@cli.command()
@PARAMS
@click.option("--input", required=True, type=click.Path(), help="the dataset whose spans to label")
@click.option("--reranker", type=click.Path(), help="the train stage's model, for a pruner whose model is 'trained'")
@click.option("--cache", type=click.Path(dir_okay=False), help="score cache (sqlite) [default: the per-user cache]")
@OUTPUT
@METRICS
@MODELS
def label(**options: Any) -> None:
    """Fill context_spans_relevance with the pruner named in label.pruner; quality against gold spans."""
    from rerank_lab import label as stage
    from rerank_lab.score_cache import default_cache_path

    run_stage(LABEL, stage, {**options, "cache": options["cache"] or default_cache_path()})


TEACHER = Stage("teacher-score", inputs=("input", "runs", "models"), caches=("cache",))


@cli.command("teacher-score")
@PARAMS
@click.option("--input", required=True, type=click.Path(), help="the dataset to score")
@click.option("--runs", type=click.Path(), help="folder of first-stage runs (for first-stage teachers)")
@click.option("--cache", type=click.Path(dir_okay=False), help="score cache (sqlite) [default: the per-user cache]")
@OUTPUT
@MODELS
def teacher_score(**options: Any) -> None:
    """Append a teacher_scores.<name> column per teacher in teacher_score.teachers."""
    from rerank_lab import teacher as stage
    from rerank_lab.score_cache import default_cache_path

    run_stage(TEACHER, stage, {**options, "cache": options["cache"] or default_cache_path()})


TRAIN = Stage(
    "train",
    inputs=("dataset", "qrels", "models"),
    outputs=("output", "plots"),
    metrics="metrics",
    kept=("checkpoints",),
    stamp="settings.sha1",
)


@cli.command()
@PARAMS
@click.option("--dataset", required=True, type=click.Path(), help="the training dataset (train and validation splits)")
@click.option("--output", required=True, type=click.Path(), help="the model folder (a CrossEncoder)")
@click.option(
    "--checkpoints",
    type=click.Path(),
    help="kept between runs to resume [default: checkpoints/<settings key> in the per-user cache, see rerank_lab.cache]",
)
@METRICS
@click.option("--plots", required=True, type=click.Path(), help="folder for loss.tsv and dev.tsv")
@click.option("--qrels", type=click.Path(), help="folder of graded <split>.tsv qrels (train.gains: graded)")
@MODELS
def train(**options: Any) -> None:
    """Train a cross-encoder reranker with the regime and loss in the train section."""
    from rerank_lab import train as stage

    run_stage(TRAIN, stage, options)


LATE = Stage("train-late", inputs=("dataset", "models"), outputs=("output",), metrics="metrics")


@cli.command("train-late")
@PARAMS
@click.option("--dataset", required=True, type=click.Path(), help="the training dataset (its train split)")
@click.option("--output", required=True, type=click.Path(), help="the model folder (a sentence-transformers MultiVectorEncoder)")
@METRICS
@MODELS
def train_late(**options: Any) -> None:
    """Train a late-interaction (MaxSim) reranker with the late_train section: contrastive or distillation, with or without pooling."""
    from rerank_lab.late_interaction import train as stage

    run_stage(LATE, stage, options)


SCORE = Stage("score", inputs=("model", "late_model", "runs", "dataset", "corpus", "models"), metrics="metrics", caches=("cache",))


@cli.command()
@PARAMS
@click.option("--model", required=True, type=click.Path(), help="the train stage's model folder (a reranker's model: trained)")
@click.option("--late-model", type=click.Path(), help="the train-late stage's model folder (a late-interaction reranker's model: trained)")
@click.option("--runs", required=True, type=click.Path(), help="folder with one sub-folder per first-stage run")
@click.option("--dataset", required=True, type=click.Path())
@click.option("--corpus", required=True, type=click.Path())
@click.option(
    "--cache",
    type=click.Path(dir_okay=False),
    help="score cache (sqlite) shared by experiments [default: scores.sqlite in $RERANK_LAB_CACHE, else $XDG_CACHE_HOME/rerank-lab, "
    "else ~/.cache/rerank-lab]",
)
@MODELS
@OUTPUT
@METRICS
def score(**options: Any) -> None:
    """Rerank the top score.top_k of each run in score.runs with rerankers.<score.reranker>; scores are cached across experiments."""
    from rerank_lab import score as stage
    from rerank_lab.score_cache import default_cache_path

    run_stage(SCORE, stage, {**options, "cache": options["cache"] or default_cache_path()})


def main() -> None:
    """Entry point: user errors print one line and exit 2, never a traceback."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        cli(standalone_mode=False, prog_name="rerank-lab")
    except RerankLabError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # a bad command line: one line too, naming where the help is
        where = exc.ctx.command_path if exc.ctx else "rerank-lab"
        click.echo(f"error: {exc.format_message()} (fix: see {where} --help)", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
