"""report: DVC-shaped JSON through the pure functions, real PNGs, and one real git + DVC repository end to end."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import matplotlib.image
import pytest
import yaml

from rerank_lab.errors import InputError
from rerank_lab.report import (
    best_per_combination,
    build_report,
    diff_rows,
    experiments,
    leaderboard_rows,
    markdown_table,
    plot_history,
    plot_reliability,
    plot_topk,
    write_leaderboard,
)
from tests.dvc_toy import DVC, GIT_ENV, RELIABILITY_TSV, TOPK_TSV, TRIALS_TSV, commit_toy_pipeline, report_stage, run

EVAL = "metrics/evaluate/scifact_rationales.json"
TUNE = "metrics/tune/scifact_rationales.json"
TUNED = "bm25+ce+tuned"


def _params(loss: str = "listnet", **over) -> dict:
    """params.yaml as nested dicts, the keys the leaderboard reads."""
    p = {
        "datasets": ["scifact_rationales"],
        "mine": {"miner": "mixed"},
        "train": {"model": "all-MiniLM-L6-v2", "regime": "listwise", "loss": loss},
        "score": {"name": "ce"},
        "tune": {"run": "bm25", "epsilon": 0.5},
        "evaluate": {"baseline": "bm25"},
    }
    p.update(over)
    return p


def _evaluation(dev: float, test: float) -> dict:
    """metrics/evaluate/<ds>.json: the first stage and the tuned system, with a vs_bm25 comparison."""
    return {
        "bm25": {"validation": {"ndcg@10": 0.5}, "test": {"ndcg@10": 0.55, "recall@100": 0.8}},
        TUNED: {
            "validation": {"ndcg@10": dev},
            "test": {
                "ndcg@10": test,
                "false_evidence_rate": 0.1,
                "ece": 0.05,
                "recall@100": 0.9,
                "vs_bm25": {
                    "metric": "ndcg@10",
                    "delta": test - 0.55,
                    "ci_low": 0.0123,
                    "ci_high": 0.2,
                    "p_randomization": 0.004,
                    "p_randomization_holm": 0.012,
                },
            },
        },
    }


def _tune(confirm: float | None, untuned: bool = True, first_stage: bool = True, **best) -> dict:
    """metrics/tune/<ds>.json: the tuned system on the held-out confirm half, and what it beat there."""
    out = {"best": best, "best_select_ndcg@10": 0.9, "meets_epsilon_on_confirm": True}  # select: optimistic, never read
    out.update(beats_untuned_on_confirm=untuned, beats_first_stage_on_confirm=first_stage)
    return out if confirm is None else {**out, "best_confirm_ndcg@10": confirm}


def _data(params: dict, metrics: dict, rev: str) -> dict:
    """The ``data`` block DVC 3.67 writes for one revision."""
    return {
        "rev": rev,
        "timestamp": None if rev == "workspace" else "2025-01-01T00:00:00",
        "params": {"params.yaml": {"data": params}},
        "metrics": {f: {"data": m} for f, m in metrics.items()},
        "deps": {},
        "outs": {},
        "meta": {},
    }


def _exp(rev: str, name: str, params: dict, metrics: dict) -> dict:
    """One ``experiments`` item: a single-rev experiment, as `dvc exp show --json` lists a finished one."""
    rev_entry = {"rev": rev, "name": name, "data": _data(params, metrics, rev), "error": None, "experiments": None}
    return {"revs": [rev_entry], "executor": None, "name": name}


def _show(baseline: tuple[dict, dict], exps: list[tuple[str, str, dict, dict]], workspace: tuple[dict, dict] | None = None) -> list:
    """`dvc exp show --json` output: workspace first, then the baseline commit with its experiments."""
    ws_params, ws_metrics = workspace or baseline
    return [
        {"rev": "workspace", "name": None, "data": _data(ws_params, ws_metrics, "workspace"), "error": None, "experiments": None},
        {
            "rev": "1d5303489d24f65865ddd6eb1e4c9dc827961d97",
            "name": "main",
            "data": _data(*baseline, "1d5303489d24f65865ddd6eb1e4c9dc827961d97"),
            "error": None,
            "experiments": [_exp(*e) for e in exps],
        },
    ]


# --- experiments() ------------------------------------------------------------------------------


def test_experiments_flattens_dvc_exp_show():
    show = _show(
        (_params("bce"), {EVAL: _evaluation(0.5, 0.5)}),
        [
            ("a9f4a9e0ba22a4a8e08d9dac4a072f43baf38ad3", "exp-1", _params("listnet"), {EVAL: _evaluation(0.6, 0.7)}),
            ("b0e5b0f1cb33b5b9f19e0ebd5b183f54cbf49be4", "exp-2", _params("ranknet"), {EVAL: _evaluation(0.55, 0.6)}),
        ],
        workspace=(_params("ranknet"), {EVAL: _evaluation(0.55, 0.6)}),
    )
    recs = experiments(show)
    assert [(r["kind"], r["name"]) for r in recs] == [
        ("workspace", "workspace"),
        ("baseline", "main"),
        ("experiment", "exp-1"),
        ("experiment", "exp-2"),
    ]
    assert [r["rev"] for r in recs] == [
        "workspace",
        "1d5303489d24f65865ddd6eb1e4c9dc827961d97",
        "a9f4a9e0ba22a4a8e08d9dac4a072f43baf38ad3",
        "b0e5b0f1cb33b5b9f19e0ebd5b183f54cbf49be4",
    ]
    # params are flattened to dotted keys; lists stay values
    assert recs[2]["params"]["train.loss"] == "listnet"
    assert recs[1]["params"]["train.loss"] == "bce"
    assert recs[0]["params"]["train.loss"] == "ranknet"
    assert recs[2]["params"]["datasets"] == ["scifact_rationales"]
    assert recs[2]["params"]["tune.run"] == "bm25"
    assert "train" not in recs[2]["params"]
    # metrics stay parsed, keyed by file
    assert recs[2]["metrics"][EVAL][TUNED]["validation"]["ndcg@10"] == 0.6
    assert recs[3]["metrics"][EVAL][TUNED]["test"]["ndcg@10"] == 0.6


def test_experiments_tolerates_errors_and_unnamed_revs():
    show = _show((_params(), {EVAL: _evaluation(0.5, 0.5)}), [("c" * 40, "exp-1", _params(), {})])
    # a metrics file DVC could not read, and a baseline commit without a branch name
    show[1]["data"]["metrics"][TUNE] = {"error": {"type": "FileNotFoundError", "msg": "missing"}}
    show[1]["name"] = None
    # a failed experiment: DVC gives no data
    show[1]["experiments"][0]["revs"][0].update(name=None, data=None, error={"type": "ReproductionError", "msg": "failed"})
    recs = experiments(show)
    assert recs[1]["name"] == "1d53034"  # short rev when there is no name
    assert recs[1]["metrics"][TUNE] == {}
    assert recs[1]["metrics"][EVAL][TUNED]["test"]["ndcg@10"] == 0.5
    assert recs[2]["name"] == "exp-1"  # the experiment's name when its rev has none
    assert recs[2]["params"] == {} and recs[2]["metrics"] == {}


# --- leaderboard_rows() + best_per_combination() ------------------------------------------------


def _records() -> list[dict]:
    show = _show(
        (_params("bce"), {EVAL: _evaluation(0.50, 0.90), TUNE: _tune(0.49, untuned=False, first_stage=False)}),
        [
            # same combination (listnet): exp-test has the best test score, exp-dev the best full-dev score (which
            # includes the select half tune fitted on), exp-confirm the best score on the held-out confirm half
            ("1" * 40, "exp-test", _params("listnet"), {EVAL: _evaluation(0.55, 0.95), TUNE: _tune(0.50, top_k_rerank=20)}),
            ("2" * 40, "exp-dev", _params("listnet"), {EVAL: _evaluation(0.60, 0.70), TUNE: _tune(0.52, top_k_rerank=5)}),
            (
                "6" * 40,
                "exp-confirm",
                _params("listnet"),
                {EVAL: _evaluation(0.56, 0.72), TUNE: _tune(0.58, first_stage=False, top_k_rerank=10, fusion="none")},
            ),
            # evaluated, but no confirm-half score: ranks last, however good its full-dev and test numbers
            ("7" * 40, "exp-no-confirm", _params("listnet"), {EVAL: _evaluation(0.90, 0.99)}),
            # another loss: its own combination
            ("3" * 40, "exp-ranknet", _params("ranknet"), {EVAL: _evaluation(0.58, 0.65), TUNE: _tune(0.54)}),
            # no tuned system in its metrics: nothing to rank
            ("4" * 40, "exp-untuned", _params("lambdaloss"), {EVAL: {"bm25": _evaluation(0, 0)["bm25"]}}),
            # no metrics at all (e.g. a failed run)
            ("5" * 40, "exp-empty", _params("lambdaloss"), {}),
        ],
    )
    return experiments(show)


def test_leaderboard_rows_read_the_tuned_system():
    rows = leaderboard_rows(_records())
    # untuned ones skipped
    assert [r["experiment"] for r in rows] == ["workspace", "main", "exp-test", "exp-dev", "exp-confirm", "exp-no-confirm", "exp-ranknet"]
    row = rows[4]
    assert row == {
        "experiment": "exp-confirm",
        "rev": "6666666",
        "kind": "experiment",
        "dataset": "scifact_rationales",
        "trained_on": "scifact_rationales",
        "generator": "bm25",
        "reranker": "all-MiniLM-L6-v2",
        "regime": "listwise",
        "loss": "listnet",
        "negatives": "mixed",
        "epsilon": 0.5,
        "dev_confirm_ndcg@10": 0.58,  # from metrics/tune, not evaluate's full-dev 0.56
        "beats_untuned_on_confirm": True,
        "beats_first_stage_on_confirm": False,
        "meets_epsilon_on_confirm": True,
        "test_ndcg@10": 0.72,
        "test_ci": "[+0.0123, +0.2000]",
        "test_p_vs_first_stage": 0.004,
        "test_p_holm_test_reads": None,  # filled over every test read by the report (tests/test_report_seeds.py)
        "test_false_evidence": 0.1,
        "test_ece": 0.05,
        "test_recall@100": 0.9,
        "first_stage_test_ndcg@10": 0.55,
        "settings": '{"fusion": "none", "top_k_rerank": 10}',
    }
    no_tune = rows[5]  # no tune metrics file: nothing from it
    assert no_tune["settings"] == "{}"
    assert [no_tune[k] for k in ("dev_confirm_ndcg@10", "beats_untuned_on_confirm", "beats_first_stage_on_confirm")] == [None] * 3


def test_leaderboard_row_from_tune_metrics_alone():
    """A tuned experiment whose evaluate metrics are missing is still listed, by its confirm-half score."""
    rows = leaderboard_rows(experiments(_show((_params(), {TUNE: _tune(0.6)}), [])))
    assert [(r["experiment"], r["dev_confirm_ndcg@10"], r["test_ndcg@10"]) for r in rows] == [("workspace", 0.6, None), ("main", 0.6, None)]


def test_leaderboard_follows_the_configured_names():
    """tune.run / score.name / evaluate.baseline pick the tuned run and the comparison it is read from."""
    params = _params("listnet", tune={"run": "dense"}, score={"name": "mini"}, evaluate={"baseline": "dense"})
    ev = _evaluation(0.6, 0.7)
    metrics = {
        EVAL: {"dense": ev["bm25"], "dense+mini+tuned": {**ev[TUNED], "test": {"ndcg@10": 0.7, "vs_dense": ev[TUNED]["test"]["vs_bm25"]}}}
    }
    rows = leaderboard_rows(experiments(_show((params, metrics), [])))
    assert len(rows) == 2
    assert rows[1]["generator"] == "dense"
    assert rows[1]["test_ci"] == "[+0.0123, +0.2000]"
    assert rows[1]["first_stage_test_ndcg@10"] == 0.55
    # the same metrics under the default names hold no tuned system for these params
    assert leaderboard_rows(experiments(_show((_params(), metrics), []))) == []


def test_best_per_combination_chooses_by_the_confirm_half_not_full_dev_or_test():
    board = best_per_combination(leaderboard_rows(_records()))
    by_loss = {r["loss"]: r for r in board}
    assert sorted(by_loss) == ["bce", "listnet", "ranknet"]  # one row per loss; lambdaloss had nothing tuned
    assert len(board) == 3
    # listnet: exp-confirm (full dev 0.56, confirm 0.58, test 0.72) beats exp-dev (full dev 0.60, confirm 0.52),
    # exp-test (confirm 0.50, test 0.95) and exp-no-confirm (full dev 0.90, test 0.99, no confirm score)
    assert by_loss["listnet"]["experiment"] == "exp-confirm"
    assert by_loss["listnet"]["test_ndcg@10"] == 0.72
    assert (by_loss["listnet"]["beats_untuned_on_confirm"], by_loss["listnet"]["beats_first_stage_on_confirm"]) == (True, False)
    # bce is listed twice (workspace and main, same numbers): the committed revision wins the tie
    assert by_loss["bce"]["experiment"] == "main"
    assert (by_loss["bce"]["beats_untuned_on_confirm"], by_loss["bce"]["beats_first_stage_on_confirm"]) == (False, False)
    # sorted best confirm-half score first
    assert [r["dev_confirm_ndcg@10"] for r in board] == [0.58, 0.54, 0.49]
    assert [r["experiment"] for r in board] == ["exp-confirm", "exp-ranknet", "main"]


def test_best_per_combination_ranks_a_missing_confirm_score_last():
    rows = [r for r in leaderboard_rows(_records()) if r["loss"] == "listnet"]
    no_confirm = next(r for r in rows if r["experiment"] == "exp-no-confirm")
    assert [r["experiment"] for r in best_per_combination([no_confirm])] == ["exp-no-confirm"]  # alone, it is still listed
    worst = next(r for r in rows if r["experiment"] == "exp-test")
    assert [r["experiment"] for r in best_per_combination([no_confirm, worst])] == ["exp-test"]
    other_ds = {**no_confirm, "dataset": "aaa", "experiment": "other-ds"}
    assert [r["experiment"] for r in best_per_combination([no_confirm, other_ds])] == ["other-ds", "exp-no-confirm"]  # by dataset


def test_best_per_combination_separates_every_axis_and_dataset():
    base = leaderboard_rows(experiments(_show((_params(), {EVAL: _evaluation(0.5, 0.5)}), [])))[1]
    rows = []
    for i, (axis, value) in enumerate(
        [(None, None), ("regime", "pairwise"), ("negatives", "hard"), ("reranker", "other"), ("generator", "dense")]
    ):
        rows.append({**base, "experiment": f"e{i}", "dev_confirm_ndcg@10": 0.5 + i / 100, **({axis: value} if axis else {})})
    rows.append({**base, "experiment": "other-ds", "dataset": "nfcorpus", "dev_confirm_ndcg@10": 0.9})
    rows.append({**base, "experiment": "no-confirm", "dev_confirm_ndcg@10": None})  # loses to e0 (same combination)
    board = best_per_combination(rows)
    assert [r["experiment"] for r in board] == ["other-ds", "e4", "e3", "e2", "e1", "e0"]  # by dataset, then best confirm first


def test_best_per_combination_ties():
    base = leaderboard_rows(experiments(_show((_params(), {EVAL: _evaluation(0.5, 0.5), TUNE: _tune(0.5)}), [])))[0]
    ws = {**base, "experiment": "workspace", "kind": "workspace"}
    e1 = {**base, "experiment": "exp-1", "kind": "experiment", "rev": "1111111"}
    e2 = {**base, "experiment": "exp-2", "kind": "experiment", "rev": "2222222"}
    assert [r["experiment"] for r in best_per_combination([ws, e1, e2])] == ["exp-1"]  # committed beats workspace, then first listed
    assert [r["experiment"] for r in best_per_combination([e2, ws, e1])] == ["exp-2"]
    missing = [{**r, "dev_confirm_ndcg@10": None} for r in (ws, e2, e1)]  # tied on a missing score: the same rule
    assert [r["experiment"] for r in best_per_combination(missing)] == ["exp-2"]
    better_ws = {**ws, "dev_confirm_ndcg@10": 0.51}
    assert [r["experiment"] for r in best_per_combination([e1, better_ws])] == ["workspace"]  # a better workspace still wins


# --- write_leaderboard() + markdown_table() -----------------------------------------------------


def test_write_leaderboard_files_read_back(tmp_path: Path):
    board = best_per_combination(leaderboard_rows(_records()))
    write_leaderboard(board, tmp_path)
    columns = [
        "experiment", "rev", "dataset", "trained_on", "generator", "reranker", "regime", "loss", "negatives", "epsilon",
        "dev_confirm_ndcg@10", "beats_untuned_on_confirm", "beats_first_stage_on_confirm", "meets_epsilon_on_confirm",
        "test_ndcg@10", "test_ci", "test_p_vs_first_stage", "test_p_holm_test_reads", "test_false_evidence", "test_ece",
        "test_recall@100", "first_stage_test_ndcg@10", "settings",
    ]  # fmt: skip
    with open(tmp_path / "leaderboard.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == columns
        read = list(reader)
    assert [r["experiment"] for r in read] == ["exp-confirm", "exp-ranknet", "main"]
    assert read[0]["loss"] == "listnet"
    assert float(read[0]["dev_confirm_ndcg@10"]) == 0.58
    assert (read[0]["beats_untuned_on_confirm"], read[0]["beats_first_stage_on_confirm"]) == ("True", "False")
    assert float(read[0]["test_ndcg@10"]) == 0.72
    assert read[0]["test_ci"] == "[+0.0123, +0.2000]"
    assert json.loads(read[0]["settings"]) == {"fusion": "none", "top_k_rerank": 10}

    assert json.loads((tmp_path / "leaderboard.json").read_text(encoding="utf-8")) == board

    md = (tmp_path / "leaderboard.md").read_text(encoding="utf-8").splitlines()
    assert md[0] == "| " + " | ".join(columns[:-1]) + " |"  # settings (raw JSON) is left out of the table
    assert md[1] == "|" + "---|" * (len(columns) - 1)
    assert len(md) == 2 + len(board)
    assert md[2].startswith(
        "| exp-confirm | 6666666 | scifact_rationales | scifact_rationales | bm25 | all-MiniLM-L6-v2 "
        "| listwise | listnet | mixed | 0.5000 | 0.5800 "
        "| yes | no | yes | 0.7200 |"
    )


def test_markdown_table_escapes_pipes_and_formats_cells():
    rows = [{"name": "a|b", "value": 0.123456, "n": 3, "missing": None}]
    lines = markdown_table(rows, ["name", "value", "n", "missing"]).splitlines()
    assert lines[2] == "| a\\|b | 0.1235 | 3 | – |"
    # the escaped pipe does not open a new cell: split on unescaped pipes only
    cells = [c.strip() for c in lines[2].replace("\\|", "\0").strip("|").split("|")]
    assert cells == ["a\0b", "0.1235", "3", "–"]
    assert markdown_table([], ["name"]) == "_(none)_\n"


# --- diff_rows() --------------------------------------------------------------------------------


def test_diff_rows_from_dvc_diff_json():
    diff = {
        "metrics/evaluate/toy.json": {
            "bm25+ce+tuned.validation.ndcg@10": {"old": 0.5, "new": 0.6, "diff": 0.1},
            "bm25+ce+tuned.test.ece": {"old": 0.2, "new": 0.1, "diff": -0.1},
        },
        "metrics/convert/toy.json": {"queries": {"old": 10, "new": 12, "diff": 2}},
        "params.yaml": {"train.loss": {"old": "bce", "new": "listnet"}},  # DVC writes no diff for strings
    }
    assert diff_rows(diff) == [
        {"file": "metrics/convert/toy.json", "key": "queries", "base": 10, "this change": 12, "diff": 2},
        {"file": "metrics/evaluate/toy.json", "key": "bm25+ce+tuned.test.ece", "base": 0.2, "this change": 0.1, "diff": -0.1},
        {"file": "metrics/evaluate/toy.json", "key": "bm25+ce+tuned.validation.ndcg@10", "base": 0.5, "this change": 0.6, "diff": 0.1},
        {"file": "params.yaml", "key": "train.loss", "base": "bce", "this change": "listnet", "diff": None},
    ]
    assert diff_rows({}) == []


# --- plots --------------------------------------------------------------------------------------


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image.min() < image.max()  # something was drawn


@pytest.mark.parametrize(
    ("plot", "tsv"),
    [(plot_topk, TOPK_TSV), (plot_history, TRIALS_TSV), (plot_reliability, RELIABILITY_TSV)],
    ids=["topk", "history", "reliability"],
)
def test_plots_write_real_pngs(tmp_path: Path, plot, tsv: str):
    src = tmp_path / "in.tsv"
    src.write_text(tsv, encoding="utf-8")
    out = tmp_path / "out.png"
    assert plot(src, out, "toy: title") is True
    _assert_png(out)
    # a missing input draws nothing
    missing = tmp_path / "missing.png"
    assert plot(tmp_path / "absent.tsv", missing, "toy") is False
    assert not missing.exists()


def test_plot_reliability_needs_rows_of_its_split(tmp_path: Path):
    src = tmp_path / "reliability.tsv"
    src.write_text(RELIABILITY_TSV, encoding="utf-8")
    assert plot_reliability(src, tmp_path / "v.png", "toy", split="validation") is True
    assert plot_reliability(src, tmp_path / "t.png", "toy", split="train") is False
    assert not (tmp_path / "t.png").exists()


# --- build_report() -----------------------------------------------------------------------------


def test_build_report_outside_a_dvc_repo(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    expected = r"`dvc exp show --no-pager --all-commits` failed: ERROR: you are not inside of a DVC repository"
    with pytest.raises(InputError, match=expected) as err:
        build_report(tmp_path, tmp_path / "report")
    assert str(tmp_path) in str(err.value)
    assert "fix: run the report from the root of a DVC repository" in str(err.value)
    assert "Traceback" not in str(err.value)
    assert not (tmp_path / "report").exists()


def test_build_report_end_to_end(tmp_path: Path, monkeypatch):
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)
    repo = tmp_path
    params = copy.deepcopy(_params("bce", datasets=["toy"]))
    (repo / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    commit_toy_pipeline(repo, report_stage(repo), "toy pipeline")
    run([*DVC, "exp", "run", "-q", "-n", "exp-listnet", "-S", "train.loss=listnet"], repo)
    run([*DVC, "exp", "run", "-q", "-n", "exp-ranknet", "-S", "train.loss=ranknet"], repo)

    written = build_report(repo, repo / "report", base="main")

    out = repo / "report"
    assert written["experiments"] == 4  # workspace, main, two experiments
    assert written["leaderboard_rows"] == 3
    assert written["plots"] == ["toy-ndcg-vs-topk.png", "toy-reliability.png", "toy-optuna-history.png"]
    for name in written["plots"]:
        _assert_png(out / name)
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| exp-listnet | experiment |" in md and "| exp-ranknet | experiment |" in md
    assert "| main | baseline |" in md
    for name in written["plots"]:
        assert f"![{name}]({name})" in md
    # the workspace holds the last experiment's results: its metrics and params differ from main
    assert written["metrics_changed"] >= 3
    assert "| metrics/evaluate/toy.json | bm25+ce+tuned.validation.ndcg@10 | 0.5000 | 0.5500 |" in md
    assert "| params.yaml | train.loss | bce | ranknet |" in md

    with open(out / "leaderboard.csv", newline="", encoding="utf-8") as fh:
        board = list(csv.DictReader(fh))
    assert sorted(r["loss"] for r in board) == ["bce", "listnet", "ranknet"]
    assert [(r["loss"], float(r["dev_confirm_ndcg@10"])) for r in board] == [("ranknet", 0.57), ("listnet", 0.52), ("bce", 0.48)]
    assert [r["beats_untuned_on_confirm"] for r in board] == ["True", "True", "False"]
    # the workspace repeats exp-ranknet's numbers: the leaderboard names the experiment, not the workspace
    assert [r["experiment"] for r in board] == ["exp-ranknet", "exp-listnet", "main"]
    assert json.loads(board[1]["settings"]) == {"top_k_rerank": 3, "loss_seen": "listnet"}
    assert "(chosen on the held-out confirm half of dev)" in md
    assert md.index("| exp-ranknet | ") < md.index("| exp-listnet | ") < md.index("## Every experiment")  # report.md's board, same order
