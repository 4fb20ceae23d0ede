"""tune, the stage: its config, reading the inputs once, and the stage end to end on the seeded
synthetic world written to disk (the study itself: test_study; the policy: test_policy)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from rerank_lab.errors import ConfigError, InputError
from rerank_lab.policy import Settings, answer, sigmoid
from rerank_lab.tune import TuneConfig, read_inputs, tune_stage
from tests.tune_world import DEPTH, QRELS, RERANKED, write_stage_inputs


def _order(docs: dict[str, float]) -> list[str]:
    return sorted(docs, key=lambda d: -docs[d])


# --- TuneConfig ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epsilon", "pattern"),
    [
        (-0.1, r"tune\.epsilon: must be in \[0, 1\], got -0\.1"),
        (1.5, r"tune\.epsilon: must be in \[0, 1\], got 1\.5"),
        ("0.2", r"tune\.epsilon: must be a number, got '0\.2' \(fix: write a number: 0\.2, without quotes\)"),
        (True, r"tune\.epsilon: must be a number, got true"),
        (float("nan"), r"tune\.epsilon: must be a finite number, got nan"),
        (None, r"tune\.epsilon: must be a number, got null"),
    ],
)
def test_config_rejects_bad_epsilon(epsilon, pattern):
    with pytest.raises(ConfigError, match=pattern):
        TuneConfig(epsilon=epsilon)


@pytest.mark.parametrize("epsilon", [0, 0.0, 0.2, 1, 1.0])
def test_config_accepts_epsilon_in_range(epsilon):
    assert TuneConfig(epsilon=epsilon).epsilon == epsilon


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"pruner": "random"}, r"tune\.pruner: unknown value, got 'random' \(fix: .*use one of: none, median, successive-halving, hyperband\)"),  # noqa: E501
        ({"calibrations": ["sigmoid", "temperature"]}, r"tune\.calibrations\[1\]: unknown value, got 'temperature' \(fix: use one of: sigmoid, platt, isotonic\)"),  # noqa: E501
        ({"fusions": ("rrf", "combmnz")}, r"tune\.fusions\[1\]: unknown value, got 'combmnz'"),
        ({"norms": ("max",)}, r"tune\.norms\[0\]: unknown value, got 'max' \(fix: did you mean 'min-max'\? use one of: min-max, zmuv, rank\)"),  # noqa: E501
        ({"fusions": ()}, r"tune\.fusions: must list at least 1 item"),
        ({"gates": "reranker"}, r"tune\.gates: must be a list, got 'reranker' \(fix: write a YAML list: \[reranker\]\)"),
        ({"split": "dev"}, r"tune\.split: unknown value, got 'dev' \(fix: use one of: train, validation, test\)"),
    ],
)  # fmt: skip
def test_config_rejects_unknown_names(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        TuneConfig(**kwargs)


def test_config_choices_are_the_policy_s():
    from typing import get_args

    from rerank_lab import policy, study, tune

    assert get_args(tune.Calibration) == policy.CALIBRATIONS and get_args(tune.Fusion) == policy.FUSIONS
    assert get_args(tune.Norm) == policy.NORMS and get_args(tune.Gate) == policy.GATES
    assert get_args(TuneConfig.__pydantic_fields__["pruner"].annotation) == study.PRUNERS


@pytest.mark.parametrize(("bad", "shown"), [((20, 10), r"\[20, 10\]"), ((5,), r"\[5\]"), ((1, 2, 3), r"\[1, 2, 3\]")])
@pytest.mark.parametrize("name", ["top_k_retriever", "k0"])
def test_config_rejects_bad_ranges(name, bad, shown):
    with pytest.raises(ConfigError, match=rf"tune\.{name}: must be \[low, high\] with 1 <= low <= high, got {shown}"):
        TuneConfig(**{name: bad})


@pytest.mark.parametrize("name", ["top_k_retriever", "k0"])
def test_config_rejects_ranks_below_1(name):
    with pytest.raises(ConfigError, match=rf"tune\.{name}\[0\]: must be >= 1, got 0"):
        TuneConfig(**{name: (0, 10)})


def test_config_accepts_lists_and_a_single_point_range():
    cfg = TuneConfig(top_k_retriever=[5, 5], k0=[1, 200], fusions=["none"])
    assert cfg.top_k_retriever == (5, 5) and cfg.k0 == (1, 200) and cfg.fusions == ("none",)
    hash(cfg)  # frozen with tuples: usable as a key


@pytest.mark.parametrize("kwargs", [{"confirm_fraction": 0.0}, {"confirm_fraction": 1.0}, {"n_trials": -1}, {"stages": 0}])
def test_config_rejects_other_bad_numbers(kwargs):
    with pytest.raises(ConfigError, match=rf"tune\.{next(iter(kwargs))}: must be"):
        TuneConfig(**kwargs)


# --- the stage ---------------------------------------------------------------------------------


def _read(root: Path, cfg: TuneConfig | None = None):
    return read_inputs(cfg or TuneConfig(), root / "dataset", root / "qrels", root / "runs", root / "scored")


def test_read_inputs_reads_every_scored_split_once(tmp_path):
    splits = write_stage_inputs(tmp_path)
    inputs = _read(tmp_path)
    assert list(inputs.splits) == ["validation", "test"]  # the dataset's split order
    for split, cands in splits.items():
        assert list(inputs.splits[split]) == sorted(cands)
        for qid, q in cands.items():
            got = inputs.splits[split][qid]
            assert got.docs == q.docs
            assert got.first_stage.tolist() == q.first_stage.tolist() and got.reranker.tolist() == q.reranker.tolist()
    assert inputs.dev_qrels == QRELS and inputs.depth == DEPTH
    assert _read(tmp_path).fingerprint == inputs.fingerprint  # a digest of the files: the same files, the same digest
    qrels = tmp_path / "qrels" / "validation.tsv"
    qrels.write_text(qrels.read_text() + "q00\tq00-d05\t0\n")
    assert _read(tmp_path).fingerprint != inputs.fingerprint


def test_read_inputs_needs_the_dev_split_scored(tmp_path):
    write_stage_inputs(tmp_path)
    with pytest.raises(InputError, match=r"scores\.tsv: no reranker scores for the validation split of run 'dense'.*add dense to score"):
        _read(tmp_path, TuneConfig(run="dense"))
    with pytest.raises(InputError, match=r"the dataset has no 'train' split to tune on \(fix: use one of: validation, test\)"):
        _read(tmp_path, TuneConfig(split="train"))


def test_the_study_name_digests_every_module_of_the_stage():
    """The default study name digests the source of tune's import closure: after the split into
    policy / answerability / study it still covers all of them (and the metrics they call)."""
    from rerank_lab.deps import ROOT, module_closure

    closure = {p.relative_to(ROOT).as_posix() for p in module_closure("rerank_lab.tune")}
    assert {"tune.py", "study.py", "policy.py", "answerability.py", "evaluate.py", "calibration.py"} <= closure


def test_tune_stage_end_to_end(tmp_path):
    from rerank_lab.io.trec import read_run

    splits = write_stage_inputs(tmp_path)
    cfg = TuneConfig(n_trials=10)

    def stage(out: str, url: str | None = None) -> dict:
        return tune_stage(
            cfg, "minilm", tmp_path / "dataset", tmp_path / "qrels", tmp_path / "runs", tmp_path / "scored", url, tmp_path / out
        )

    summary = stage("out")
    out = tmp_path / "out"
    best = Settings.from_params(summary["best"])
    written = json.loads((out / "best.json").read_text())
    model = written.pop("answerability_model", None)
    assert written == {"run": "bm25+minilm+tuned", **summary["best"]}
    assert (model is not None) == (best.gate == "answerability")
    assert summary["best_select_false_evidence"] <= cfg.epsilon
    trials = (out / "trials.tsv").read_text().splitlines()
    assert trials[0].split("\t") == ["number", "state", "value", "false_evidence", "feasible", "params"] and len(trials) == 11
    assert len((out / "topk.tsv").read_text().splitlines()) == RERANKED + 1
    for split, cands in splits.items():
        lines = [ln.split("\t") for ln in (out / "probabilities" / f"{split}.tsv").read_text().splitlines()]
        assert lines[0] == ["run", "query_id", "doc_id", "score", "p_sigmoid", "p"]
        assert len(lines) == 1 + len(cands) * RERANKED
        probs: dict[str, list[float]] = {}
        for _, qid, doc, raw, p_sigmoid, p in lines[1:]:
            assert doc == cands[qid].docs[len(probs.get(qid, []))] and float(raw) in cands[qid].reranker
            assert float(p_sigmoid) == pytest.approx(float(sigmoid(np.array(float(raw)))), abs=1e-12)
            probs.setdefault(qid, []).append(float(p))
        answer_lines = (out / "answerability" / f"{split}.tsv").read_text().splitlines()
        assert answer_lines[0] == "query_id\tp_answerable" and len(answer_lines) == 1 + len(cands)
        answerable = {q: float(p) for q, p in (ln.split("\t") for ln in answer_lines[1:])}
        # the written run is what answer() gives with the written probabilities (abstaining queries absent)
        run = read_run(out / "runs" / "bm25+minilm+tuned" / f"{split}.trec")
        if split == "validation":
            assert 0 < len(run) < len(cands)  # it answers some queries and abstains on others
        assert {q: _order(docs) for q, docs in run.items()} == {
            q: _order(a) for q in cands if (a := answer(cands[q], np.array(probs[q]), best, answerable.get(q)))
        }
    # a rerun with the same inputs gives the same bytes: the study is no state outside the inputs
    assert stage("out2") == summary
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "out2") for p in (tmp_path / "out2").rglob("*") if p.is_file())
    assert all((out / f).read_bytes() == (tmp_path / "out2" / f).read_bytes() for f in files)
    # new qrels are new inputs: another study; a shared storage is filled up to n_trials, not past it
    qrels = tmp_path / "qrels" / "validation.tsv"
    qrels.write_text(qrels.read_text() + "q00\tq00-d05\t0\n")
    url = f"journal:{tmp_path}/optuna.log"
    again = stage("out3", url)
    assert again["trials"] == 10 and again["study"] != summary["study"]
    assert stage("out4", url)["trials"] == 10


# sha256 (first 16 hex digits) of the files the default study writes on the shared world whose bytes are the same on
# every CPU seen (its runs, top-k choice, one answerability file and the metrics without "study"), recorded by the code
# before tune.py was split into policy / answerability / study (issue 10): the split changed no output byte. The
# calibration fits' last bits differ between CPUs (2026-12-04: best.json, trials.tsv, probabilities/ and
# answerability/validation.tsv differed from the pins below on another machine while every run, top-k and metric
# matched), so those files are checked for byte-identity between two runs on the machine instead. The study name is
# left out because it digests the code itself. bench/tune_identity.py shows the same on a 600-query world. Update
# these only for an intended change of tune's results, and say so.
PINNED = {
    "answerability/test.tsv": "3477eaebccc0af4f",
    "runs/bm25+minilm+tuned/test.trec": "a9771aa812ce03a1",
    "runs/bm25+minilm+tuned/validation.trec": "69da65f4fd5290f9",
    "topk.tsv": "17ea1380b6aa7f47",
    "metrics without study": "fac2ec7dcf675fe9",  # issue 11 added "tuned" and "false_evidence_constrained"; was 705d99ca69da3a77
}
CPU_DEPENDENT = ("answerability/validation.tsv", "best.json", "probabilities/test.tsv", "probabilities/validation.tsv", "trials.tsv")


def _default_study(root: Path) -> dict[str, str]:
    write_stage_inputs(root)
    cfg = TuneConfig()  # the defaults: 300 trials, median pruner, epsilon 0.2, every calibration, fusion and gate
    out = root / "out"
    summary = tune_stage(cfg, "minilm", root / "dataset", root / "qrels", root / "runs", root / "scored", None, out)
    assert summary["best"]["gate"] == "answerability" and summary["pruned"] > 0  # the pin covers the model and the pruner
    got = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sorted(out.rglob("*")) if p.is_file()}
    metrics = json.dumps({k: v for k, v in summary.items() if k != "study"}, sort_keys=True)
    return {**got, "metrics without study": hashlib.sha256(metrics.encode()).hexdigest()[:16]}


def test_the_default_study_s_outputs_are_pinned(tmp_path):
    got = _default_study(tmp_path / "one")
    assert set(got) == set(PINNED) | set(CPU_DEPENDENT)
    assert {k: got[k] for k in PINNED} == PINNED
    again = _default_study(tmp_path / "two")
    assert {k: again[k] for k in CPU_DEPENDENT} == {k: got[k] for k in CPU_DEPENDENT}


def test_a_dataset_without_dev_queries_is_not_tuned_and_says_so(tmp_path):
    # ArguAna evaluated zero-shot has test queries only: no study, no tuned run, the metrics say why
    import datasets

    from rerank_lab.io.datasets import save_dataset
    from rerank_lab.schema import to_dataset

    row = {"id": "q1", "query": "q", "texts": ["Some text."], "text_ids": ["x"], "context_spans": [[[0, 10]]], "labels": [1]}
    save_dataset(datasets.DatasetDict({"validation": to_dataset([]), "test": to_dataset([row])}), tmp_path / "dataset")
    out = tmp_path / "out"
    paths = (tmp_path / "dataset", tmp_path / "qrels", tmp_path / "runs", tmp_path / "scored")
    summary = tune_stage(TuneConfig(n_trials=5), "ce", *paths, None, out)
    assert summary == {"tuned": False, "dev_queries": 0, "epsilon": 0.2}
    assert json.loads((out / "best.json").read_text()) == {"tuned": False, "reason": "the validation split has no queries", "epsilon": 0.2}
    assert sorted(p.name for p in out.iterdir()) == ["best.json"]
