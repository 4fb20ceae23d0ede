"""tune.first_stages: a first stage (or fusion) tuned as a system of its own, gated on its own scores
under the same false-evidence budget as the reranked system -- the bar a reranker must clear."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rerank_lab.errors import InputError
from rerank_lab.io.trec import ranked, read_run, write_run
from rerank_lab.policy import Settings, answer
from rerank_lab.tune import TuneConfig, first_stage_alone, read_inputs, tune_stage
from tests.tune_world import HAS_EVIDENCE, write_stage_inputs


def _fused(root: Path, splits: dict) -> dict[str, dict[str, dict[str, float]]]:
    """A fusion's runs in a second root (as fuse writes data/fuse/<ds>/rrf): the same docs, scores
    whose top is higher for has-evidence queries, so a gate on them can abstain on the others."""
    rng = np.random.default_rng(7)
    runs = {}
    for split, cands in splits.items():
        run = {}
        for qid, c in cands.items():
            top = 0.05 if qid.lstrip("t") in HAS_EVIDENCE else 0.03  # test ids: "t" + a world id
            run[qid] = dict(zip(c.docs, (top - np.sort(rng.uniform(0, 0.02, len(c.docs)))).tolist()))
        write_run(run, root / "fused" / "rrf" / f"{split}.trec", tag="rrf")
        runs[split] = run
    return runs


def _stage(root: Path, cfg: TuneConfig, out: str) -> dict:
    roots = (root / "runs", root / "fused")
    return tune_stage(cfg, "minilm", root / "dataset", root / "qrels", roots, root / "scored", None, root / out)


def test_a_first_stage_is_tuned_alone_on_its_own_scores(tmp_path):
    splits = write_stage_inputs(tmp_path)
    fused = _fused(tmp_path, splits)
    cfg = TuneConfig(n_trials=30, epsilon=0.1, first_stages=("bm25", "rrf"))
    summary = _stage(tmp_path, cfg, "out")
    out = tmp_path / "out"
    for name in ("bm25", "rrf"):
        alone = summary["first_stages"][name]
        assert alone["trials"] == 30 and alone["study"].startswith(f"tune-{name}-")
        assert alone["best_select_false_evidence"] <= 0.1
        best = json.loads((out / "first_stages" / name / "best.json").read_text())
        assert best["run"] == f"{name}+tuned" and best["fusion"] == "none"
        assert (out / "first_stages" / name / "trials.tsv").is_file()
    # the fusion's top score tells has-evidence queries apart: tuned alone it abstains on the rest and keeps its ranking
    assert summary["first_stages"]["rrf"]["best_select_ndcg@10"] > 0 and summary["first_stages"]["rrf"]["best_confirm_false_evidence"] == 0
    best = Settings.from_params(json.loads((out / "first_stages" / "rrf" / "best.json").read_text()))
    probs = {}
    for line in (out / "first_stages" / "rrf" / "probabilities" / "validation.tsv").read_text().splitlines()[1:]:
        _, qid, _, raw, _, p = line.split("\t")
        probs.setdefault(qid, []).append(float(p))
    answerable_file = out / "first_stages" / "rrf" / "answerability" / "validation.tsv"
    answerable = {q: float(p) for q, p in (ln.split("\t") for ln in answerable_file.read_text().splitlines()[1:])}
    cfg_alone, inputs = first_stage_alone(
        cfg, "rrf", read_inputs(cfg, *_paths(tmp_path)), (tmp_path / "runs", tmp_path / "fused"), tmp_path / "qrels"
    )
    for split, run in fused.items():
        written = read_run(out / "runs" / "rrf+tuned" / f"{split}.trec")
        if split == "validation":
            assert written and set(written) <= HAS_EVIDENCE  # abstains on every no-evidence query, answers some
            # what it returns is what the policy answers with the first stage's scores as the gated ones
            expected = {q: a for q, c in inputs.splits[split].items() if (a := answer(c, np.array(probs[q]), best, answerable[q]))}
            assert {q: _order(d) for q, d in written.items()} == {q: _order(d) for q, d in expected.items()}
        for qid, docs in written.items():  # in the first stage's own order, cut at its tuned pool
            assert _order(docs) == [d for d, _ in ranked(run[qid])][: best.top_k_retriever]
    assert cfg_alone.fusions == ("none",) and cfg_alone.first_stages == ()


def _paths(root: Path) -> tuple[Path, Path, tuple[Path, Path], Path]:
    return root / "dataset", root / "qrels", (root / "runs", root / "fused"), root / "scored"


def _order(docs: dict[str, float]) -> list[str]:
    return [d for d, _ in ranked(docs)]


def test_first_stages_leave_the_reranked_system_s_outputs_as_they_were(tmp_path):
    splits = write_stage_inputs(tmp_path)
    _fused(tmp_path, splits)
    without = _stage(tmp_path, TuneConfig(n_trials=20), "without")
    with_them = _stage(tmp_path, TuneConfig(n_trials=20, first_stages=("rrf",)), "with")
    assert {k: v for k, v in with_them.items() if k != "first_stages"} == without
    mine = sorted(p.relative_to(tmp_path / "without") for p in (tmp_path / "without").rglob("*") if p.is_file())
    assert all((tmp_path / "with" / f).read_bytes() == (tmp_path / "without" / f).read_bytes() for f in mine)
    assert sorted(p.name for p in (tmp_path / "with" / "runs").iterdir()) == ["bm25+minilm+tuned", "rrf+tuned"]


def test_a_first_stage_without_a_dev_run_is_refused_naming_it(tmp_path):
    write_stage_inputs(tmp_path)
    with pytest.raises(
        InputError, match=r"dense/validation\.trec: no validation run 'dense' to tune alone \(fix: list dense in first_stage or fusion"
    ):
        _stage(tmp_path, TuneConfig(n_trials=5, first_stages=("dense",)), "out")
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_first_stage_that_cannot_meet_epsilon_never_answers_and_says_so(tmp_path):
    """One trial (the enqueued never-abstaining one) cannot meet epsilon 0: the reranked system's
    study stops with the error, a first stage tuned alone becomes the system that never answers."""
    from rerank_lab.study import ABSTAIN_EVERYWHERE, tune

    write_stage_inputs(tmp_path)
    cfg = TuneConfig(n_trials=1, epsilon=0.0)
    inputs = read_inputs(cfg, *_paths(tmp_path))
    with pytest.raises(InputError, match=r"no trial of study 'tune-bm25-\w+' met false-evidence <= 0\.0 \(1 trials\)"):
        tune(cfg, inputs)
    alone_cfg, alone_inputs = first_stage_alone(cfg, "bm25", inputs, (tmp_path / "runs",), tmp_path / "qrels")
    result = tune(alone_cfg, alone_inputs, or_abstain=True)
    assert result.best.threshold == ABSTAIN_EVERYWHERE and result.summary["no_trial_met_epsilon"] is True
    assert result.summary["best_trial"] is None
    assert result.summary["best_confirm_false_evidence"] == 0.0 and result.summary["best_confirm_ndcg@10"] == 0.0
    assert "no_trial_met_epsilon" not in tune(TuneConfig(n_trials=1, epsilon=1.0), inputs).summary
