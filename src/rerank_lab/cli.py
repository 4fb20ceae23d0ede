"""The ``rerank-lab`` command line: one short command per DVC stage.

Each command parses its options (paths come from dvc.yaml), reads its own params section,
calls one library function and writes its outputs atomically. Heavy imports stay inside.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from rerank_lab.config import build, load_params, section
from rerank_lab.errors import RerankLabError

PARAMS = click.option(
    "--params", "params_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False), help="params file"
)


MODELS = click.option(
    "--models",
    "models_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="the folder of local model inputs that dvc.yaml declares as this stage's dep (models/pretrained); "
    "a model named in params by a local path must lie under it",
)


def _out_path(ctx, param, value):
    return Path(value) if value is not None else None


def _models_declared(models_dir: Path | None, named: dict[str, object]) -> None:
    """Every local model folder a stage loads by name from params is under its declared dep."""
    from rerank_lab.models import require_declared

    for key, component in named.items():
        name = getattr(component, "model", None) if not isinstance(component, str) else component
        if name:
            require_declared(str(name), models_dir, key)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
def cli(verbose: bool) -> None:
    """rerank-lab: reproducible retrieval-reranker experiments (run the stages with `dvc repro`)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "bm25s", "numba", "datasets", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@cli.command()
@PARAMS
@click.option("--source", required=True, help="the convert.sources entry to use (its format and split settings)")
@click.option("--input", "input_path", required=True, type=click.Path(), help="raw input folder or file")
@click.option("--output", required=True, type=click.Path(), callback=_out_path, help="output folder")
@click.option("--metrics", "metrics_path", required=True, type=click.Path(), callback=_out_path)
def convert(params_path: str, source: str, input_path: str, output: Path, metrics_path: Path) -> None:
    """Convert a raw source into the context-relevance dataset, a corpus and qrels."""
    from rerank_lab.config import ConvertConfig
    from rerank_lab.convert import convert as run_convert
    from rerank_lab.convert import summary, write_converted
    from rerank_lab.io.atomic import write_text

    params = load_params(params_path)
    cfg = build(
        ConvertConfig, section(params, f"convert.sources.{source}"), f"convert.sources.{source}", seed=section(params, "convert.seed")
    )
    converted = run_convert(input_path, cfg)
    write_converted(converted, output)
    write_text(metrics_path, json.dumps(summary(converted), indent=2, sort_keys=True) + "\n")


@cli.command()
@PARAMS
@click.option("--source", required=True, help="the convert.sources entry the dataset came from (its format decides)")
@click.option("--input", "input_path", required=True, type=click.Path(), help="a context-relevance dataset folder")
@click.option("--output", required=True, type=click.Path(), callback=_out_path)
@click.option("--metrics", "metrics_path", required=True, type=click.Path(), callback=_out_path)
def dedup(params_path: str, source: str, input_path: str, output: Path, metrics_path: Path) -> None:
    """Drop rows whose passages are duplicated more than dedup.max_duplicates times (mined sources)."""
    from rerank_lab.config import DedupConfig
    from rerank_lab.dedup import dedup as run_dedup
    from rerank_lab.io.atomic import write_text
    from rerank_lab.io.datasets import load_dataset, save_dataset

    params = load_params(params_path)
    cfg = build(DedupConfig, section(params, "dedup"), "dedup")
    fmt = section(params, f"convert.sources.{source}.format")
    filtered, metrics = run_dedup(load_dataset(input_path), cfg, fmt, path=input_path)
    save_dataset(filtered, output)
    write_text(metrics_path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")


@cli.command()
@PARAMS
@click.option("--retriever", required=True, help="a retrievers.<name> entry of params.yaml")
@click.option("--corpus", required=True, type=click.Path(), help="the corpus folder written by convert")
@click.option("--output", required=True, type=click.Path(), callback=_out_path)
@MODELS
def index(params_path: str, retriever: str, corpus: str, output: Path, models_dir: Path | None) -> None:
    """Build a retriever's index (Lucene collection, bm25s matrices, dense embeddings)."""
    from rerank_lab.retrieve import build_index
    from rerank_lab.retrievers import make_retriever

    model = make_retriever(retriever, section(load_params(params_path), f"retrievers.{retriever}"))
    _models_declared(models_dir, {f"retrievers.{retriever}.model": model})
    build_index(model, corpus, output)


@cli.command()
@PARAMS
@click.option("--retriever", required=True, help="a retrievers.<name> entry of params.yaml")
@click.option("--index", "index_path", required=True, type=click.Path())
@click.option("--dataset", required=True, type=click.Path(), help="the dataset whose queries are searched")
@click.option("--source", help="the dataset's convert.sources entry, for its remove_query setting (off when omitted)")
@click.option("--output", required=True, type=click.Path(), callback=_out_path)
@MODELS
def retrieve(
    params_path: str, retriever: str, index_path: str, dataset: str, source: str | None, output: Path, models_dir: Path | None
) -> None:
    """Search every split's queries; writes <output>/<split>.trec."""
    from rerank_lab.config import ConvertConfig, RetrieveConfig
    from rerank_lab.retrieve import run_retriever
    from rerank_lab.retrievers import make_retriever

    params = load_params(params_path)
    cfg = build(RetrieveConfig, section(params, "retrieve"), "retrieve")
    model = make_retriever(retriever, section(params, f"retrievers.{retriever}"))
    _models_declared(models_dir, {f"retrievers.{retriever}.model": model})
    where = f"convert.sources.{source}"
    remove_query = source is not None and build(ConvertConfig, section(params, where), where).remove_query
    run_retriever(model, index_path, dataset, cfg.splits, cfg.depth, output, tag=retriever, remove_query=remove_query)


@cli.command()
@PARAMS
@click.option("--fusion", required=True, help="a fusions.<name> entry of params.yaml")
@click.option("--runs", "runs_root", required=True, type=click.Path(), help="folder with one sub-folder of runs per retriever")
@click.option("--output", required=True, type=click.Path(), callback=_out_path)
def fuse(params_path: str, fusion: str, runs_root: str, output: Path) -> None:
    """Fuse the runs of the retrievers named in fusions.<name>.runs."""
    from rerank_lab.config import RetrieveConfig
    from rerank_lab.retrieve import fuse_runs
    from rerank_lab.retrievers import make_fusion

    params = load_params(params_path)
    cfg = build(RetrieveConfig, section(params, "retrieve"), "retrieve")
    model = make_fusion(fusion, section(params, f"fusions.{fusion}"))
    fuse_runs(model, [Path(runs_root) / name for name in model.runs], cfg.depth, output, tag=fusion)


@cli.command()
@PARAMS
@click.option("--runs", "run_roots", required=True, multiple=True, type=click.Path(), help="folder(s) with one sub-folder per run")
@click.option("--dataset", required=True, type=click.Path(), help="the dataset the runs answer")
@click.option("--qrels", "qrels_dir", required=True, type=click.Path(), help="folder of <split>.tsv qrels")
@click.option("--metrics", "metrics_path", required=True, type=click.Path(), callback=_out_path)
@click.option("--output", required=True, type=click.Path(), callback=_out_path, help="folder for per_query.tsv")
@click.option("--probabilities", "prob_dirs", multiple=True, type=click.Path(), help="tune's probabilities/ folder(s): ECE per split")
def evaluate(
    params_path: str, run_roots: tuple[str, ...], dataset: str, qrels_dir: str, metrics_path: Path, output: Path, prob_dirs: tuple[str, ...]
) -> None:
    """nDCG@10, MRR@10, Recall@K ... per run and split (trec_eval), plus per-query values."""
    from rerank_lab.config import EvaluateConfig
    from rerank_lab.evaluate import calibration_summary, compare_to_baseline, evaluate_runs, write_evaluation
    from rerank_lab.io.datasets import load_dataset

    cfg = build(EvaluateConfig, section(load_params(params_path), "evaluate"), "evaluate")
    dd = load_dataset(dataset)
    ids = {s: set(dd[s]["id"]) for s in dd}
    summary, rows = evaluate_runs([Path(r) for r in run_roots], Path(qrels_dir), ids, cfg.metrics, cfg.splits)
    if cfg.baseline:  # one call with every reference: the Holm family is all of its comparisons on a split
        compare_to_baseline(
            summary, rows, cfg.baseline, cfg.significance_metric, cfg.n_resamples, cfg.confidence, cfg.seed, compare_also=cfg.compare_also
        )
    bins = calibration_summary(summary, [Path(p) for p in prob_dirs], Path(qrels_dir), cfg.splits, cfg.n_bins)
    write_evaluation(summary, rows, cfg.metrics, metrics_path, output, bins)
    for run, splits in summary.items():
        for split, values in splits.items():
            sig = values.get(f"vs_{cfg.baseline}")
            extra = (
                f"  vs {cfg.baseline}: {sig['delta']:+.4f} [{sig['ci_low']:+.4f}, {sig['ci_high']:+.4f}] "
                f"p={sig['p_randomization']:.4f} (Holm {sig['p_randomization_holm']:.4f})"
                if sig
                else ""
            )
            more = "".join(f"  {k} {values[k]:.4f}" for k in ("false_evidence_rate", "ece") if k in values)
            click.echo(f"{run:>16} {split:<10} " + "  ".join(f"{m} {values[m]:.4f}" for m in cfg.metrics if m in values) + more + extra)


@cli.command()
@PARAMS
@click.option("--dataset", required=True, type=click.Path(), help="the dataset the runs answer")
@click.option("--qrels", "qrels_dir", required=True, type=click.Path(), help="folder of <split>.tsv qrels (only the dev split's is read)")
@click.option("--runs", "runs_root", required=True, type=click.Path(), help="folder with one sub-folder per first-stage run")
@click.option("--scores", "scored_root", required=True, type=click.Path(), help="the score stage's output folder")
@click.option("--output", required=True, type=click.Path(), callback=_out_path)
@click.option("--metrics", "metrics_path", required=True, type=click.Path(), callback=_out_path)
def tune(params_path: str, dataset: str, qrels_dir: str, runs_root: str, scored_root: str, output: Path, metrics_path: Path) -> None:
    """Optuna over cached scores: pool sizes, fusion, calibration, abstain threshold (dev split only)."""
    from rerank_lab.io.atomic import write_text
    from rerank_lab.score import ScoreConfig
    from rerank_lab.tune import TuneConfig, tune_stage

    params = load_params(params_path)
    cfg = build(TuneConfig, section(params, "tune"), "tune")
    score_cfg = build(ScoreConfig, section(params, "score"), "score")
    summary = tune_stage(cfg, score_cfg.name, Path(dataset), Path(qrels_dir), Path(runs_root), Path(scored_root), cfg.storage, output)
    write_text(metrics_path, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    click.echo(
        f"study {summary['study']}: {summary['trials']} trials ({summary['trials_this_run']} new, {summary['pruned']} pruned); "
        f"nDCG@10 select {summary['default_select_ndcg@10']:.4f} -> {summary['best_select_ndcg@10']:.4f}, "
        f"confirm {summary['default_confirm_ndcg@10']:.4f} -> {summary['best_confirm_ndcg@10']:.4f} "
        f"(first stage {summary['first_stage_confirm_ndcg@10']:.4f}); "
        f"false evidence select {summary['best_select_false_evidence']:.3f}, confirm {summary['best_confirm_false_evidence']:.3f} "
        f"(epsilon {summary['epsilon']}); on confirm: meets epsilon {summary['meets_epsilon_on_confirm']}, "
        f"beats untuned {summary['beats_untuned_on_confirm']}, beats first stage {summary['beats_first_stage_on_confirm']}"
    )


@cli.command()
@click.option("--output", default="report", show_default=True, type=click.Path(), help="folder for report.md, PNGs, leaderboard.*")
@click.option("--base", default="main", show_default=True, help="git revision the metric and param diffs compare against")
@click.option("--repo", default=".", show_default=True, type=click.Path(file_okay=False), help="the DVC repository")
@click.option("--all-commits/--head-only", default=True, show_default=True, help="experiments of every commit, or of HEAD only")
def report(output: str, base: str, repo: str, all_commits: bool) -> None:
    """The pull-request report: leaderboard (dvc exp show), diffs against a base, PNG plots."""
    from rerank_lab.report import build_report

    written = build_report(Path(repo), Path(output), base, all_commits)
    click.echo(
        f"{output}/report.md: {written['experiments']} revisions, {written['leaderboard_rows']} leaderboard rows, "
        f"{written['metrics_changed']} metrics changed vs {base}, plots: {', '.join(written['plots']) or 'none'}"
    )


@cli.command()
@PARAMS
@click.option("--input", "input_path", required=True, type=click.Path(), help="the dataset to add negatives to")
@click.option("--corpus", required=True, type=click.Path())
@click.option("--qrels", "qrels_dir", required=True, type=click.Path(), help="folder of <split>.tsv qrels")
@click.option("--runs", "runs_root", required=True, type=click.Path(), help="folder with one sub-folder per first-stage run")
@click.option("--cache", "cache_path", type=click.Path(dir_okay=False), help="score cache (sqlite) for the iterative miner")
@click.option("--output", required=True, type=click.Path(), callback=_out_path)
@click.option("--metrics", "metrics_path", required=True, type=click.Path(), callback=_out_path)
@MODELS
def mine(
    params_path: str,
    input_path: str,
    corpus: str,
    qrels_dir: str,
    runs_root: str,
    cache_path: str | None,
    output: Path,
    metrics_path: Path,
    models_dir: Path | None,
) -> None:
    """Append negatives with the miner named in mine.miner (random, retriever-hard, iterative-hard, mixed)."""
    from rerank_lab.io.atomic import write_text
    from rerank_lab.io.datasets import load_dataset, save_dataset
    from rerank_lab.mine import MineConfig
    from rerank_lab.mine import mine as run_mine
    from rerank_lab.miners import make_miner

    params = load_params(params_path)
    cfg = build(MineConfig, section(params, "mine"), "mine")
    miner = make_miner(cfg.miner, section(params, f"miners.{cfg.miner}"))
    _models_declared(models_dir, {f"miners.{cfg.miner}.model": miner})
    scorers = {}
    if getattr(miner, "model", None):
        from rerank_lab.scoring import PairScorer, ScoreCache

        scorers[miner.model] = PairScorer(miner.model, miner.max_length, cache=ScoreCache(cache_path))
    mined, metrics = run_mine(load_dataset(input_path), miner, cfg, Path(corpus), Path(qrels_dir), Path(runs_root), scorers)
    save_dataset(mined, output)
    write_text(metrics_path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")


@cli.command("teacher-score")
@PARAMS
@click.option("--input", "input_path", required=True, type=click.Path(), help="the dataset to score")
@click.option("--runs", "runs_root", type=click.Path(), help="folder of first-stage runs (for first-stage teachers)")
@click.option("--cache", "cache_path", type=click.Path(dir_okay=False), help="score cache (sqlite)")
@click.option("--output", required=True, type=click.Path(), callback=_out_path)
@MODELS
def teacher_score(
    params_path: str, input_path: str, runs_root: str | None, cache_path: str | None, output: Path, models_dir: Path | None
) -> None:
    """Append a teacher_scores.<name> column per teacher in teacher_score.teachers."""
    from rerank_lab.io.datasets import load_dataset, save_dataset
    from rerank_lab.scoring import ScoreCache
    from rerank_lab.teacher import add_teacher_scores, make_teacher

    params = load_params(params_path)
    names = section(params, "teacher_score.teachers") or []
    teachers = {n: make_teacher(n, section(params, f"teachers.{n}")) for n in names}
    _models_declared(models_dir, {f"teachers.{n}.model": t for n, t in teachers.items()})
    scored = add_teacher_scores(load_dataset(input_path), teachers, Path(runs_root) if runs_root else None, ScoreCache(cache_path))
    save_dataset(scored, output)


@cli.command()
@PARAMS
@click.option("--dataset", required=True, type=click.Path(), help="the training dataset (train and validation splits)")
@click.option("--output", required=True, type=click.Path(), callback=_out_path, help="the model folder (a CrossEncoder)")
@click.option("--checkpoints", required=True, type=click.Path(), callback=_out_path, help="kept between runs to resume")
@click.option("--metrics", "metrics_path", required=True, type=click.Path(), callback=_out_path)
@click.option("--plots", "plots_dir", required=True, type=click.Path(), callback=_out_path, help="folder for loss.tsv and dev.tsv")
@click.option(
    "--qrels", "qrels_dir", type=click.Path(exists=True, file_okay=False), help="folder of graded <split>.tsv qrels (train.gains: graded)"
)
@MODELS
def train(
    params_path: str,
    dataset: str,
    output: Path,
    checkpoints: Path,
    metrics_path: Path,
    plots_dir: Path,
    qrels_dir: str | None,
    models_dir: Path | None,
) -> None:
    """Train a cross-encoder reranker with the regime and loss in the train section."""
    from rerank_lab.io.atomic import write_text
    from rerank_lab.io.datasets import load_dataset
    from rerank_lab.io.qrels import read_qrels
    from rerank_lab.train import VOLATILE, TrainConfig, write_plots
    from rerank_lab.train import train as run_train

    cfg = build(TrainConfig, section(load_params(params_path), "train"), "train")
    _models_declared(models_dir, {"train.model": cfg.model})
    dd = load_dataset(dataset)
    qrels = None
    if qrels_dir:  # the graded judgments: one <split>.tsv per split the dataset has
        files = {split: Path(qrels_dir) / f"{split}.tsv" for split in dd}
        qrels = {split: read_qrels(f) for split, f in files.items() if f.is_file()}
    metrics, history = run_train(cfg, dd, output, checkpoints, dataset, qrels=qrels)
    write_plots(history, plots_dir)
    click.echo("train: " + ", ".join(f"{k} {metrics[k]}" for k in VOLATILE if k in metrics))
    write_text(metrics_path, json.dumps({k: v for k, v in metrics.items() if k not in VOLATILE}, indent=2, sort_keys=True) + "\n")


@cli.command()
@PARAMS
@click.option("--model", required=True, type=click.Path(), help="a cross-encoder folder (or hub id)")
@click.option("--runs", "runs_root", required=True, type=click.Path(), help="folder with one sub-folder per first-stage run")
@click.option("--dataset", required=True, type=click.Path())
@click.option("--corpus", required=True, type=click.Path())
@click.option("--cache", "cache_path", type=click.Path(dir_okay=False), help="score cache (sqlite) shared by experiments")
@click.option("--output", required=True, type=click.Path(), callback=_out_path)
@click.option("--metrics", "metrics_path", required=True, type=click.Path(), callback=_out_path)
def score(
    params_path: str, model: str, runs_root: str, dataset: str, corpus: str, cache_path: str | None, output: Path, metrics_path: Path
) -> None:
    """Rerank the top score.top_k of each run in score.runs; scores are cached across experiments."""
    from rerank_lab.io.atomic import write_text
    from rerank_lab.io.datasets import load_corpus, split_queries
    from rerank_lab.score import VOLATILE, ScoreConfig, score_runs
    from rerank_lab.scoring import PairScorer, ScoreCache

    cfg = build(ScoreConfig, section(load_params(params_path), "score"), "score")
    scorer = PairScorer(model, cfg.max_length, cfg.batch_tokens, cfg.dtype, cache=ScoreCache(cache_path))
    stats = score_runs(cfg, scorer, Path(runs_root), split_queries(dataset, cfg.splits), load_corpus(corpus), output)
    click.echo("score cache: " + ", ".join(f"{k} {stats[k]}" for k in VOLATILE))
    write_text(metrics_path, json.dumps({k: v for k, v in stats.items() if k not in VOLATILE}, indent=2, sort_keys=True) + "\n")


@cli.command()
@click.option("--table", "table_path", default="repro/beir.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--only", multiple=True, help="row ids (or dataset names) to check; all when omitted")
@click.option("--workdir", type=click.Path(file_okay=False), help="where the pipeline copies run (a temp folder when omitted)")
def repro(table_path: str, only: tuple[str, ...], workdir: str | None) -> None:
    """Re-run the reproduction table's pipelines and print OK / FAIL per row."""
    from rerank_lab.repro import check_table

    ok = check_table(Path(table_path), only, Path(workdir) if workdir else None, echo=click.echo)
    sys.exit(0 if ok else 1)


def main() -> None:
    """Entry point: user errors print one line and exit 2, never a traceback."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        cli(standalone_mode=False)
    except RerankLabError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
