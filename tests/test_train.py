"""train: R0 keeps the base, R4 switches loss, R5 distils toward the teacher, an interrupted run
resumes, bad settings fail clearly, the examples each loss format trains on are laid out as worked
out by hand (graded gains for list losses), rows dropped for want of a positive are capped, and the
dev metrics match an independent computation. That every loss learns in the right direction is
tests/losses/test_direction.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sentence_transformers import CrossEncoder

from rerank_lab.checkpoints import _last_checkpoint, checkpoint_folder, default_checkpoints, resume_fingerprint
from rerank_lab.errors import ConfigError, InputError
from rerank_lab.evaluate import mean, per_query
from rerank_lab.losses import LOSSES
from rerank_lab.schema import to_dataset
from rerank_lab.train import REGIMES, TrainConfig, build_examples, dev_samples, train, write_plots

ROOT = Path(__file__).resolve().parents[1]


def _row(rid: str, query: str, texts: list[str], labels: list[int], teacher: list[float] | None = None) -> dict:
    row = {
        "id": rid,
        "query": query,
        "texts": texts,
        "text_ids": [f"{rid}-{i}" for i in range(len(texts))],
        "context_spans": [[[0, len(t)]] for t in texts],
        "labels": labels,
    }
    if teacher is not None:
        row["teacher_scores.t"] = teacher
    return row


def _dd(rows: list[dict], validation: list[dict] | None = None) -> datasets.DatasetDict:
    dd = {"train": to_dataset(rows)}
    if validation:
        dd["validation"] = to_dataset(validation)
    return datasets.DatasetDict(dd)


def _cfg(**overrides) -> TrainConfig:
    """Tiny settings: 32 tokens, lists of 3, batches of 2, a log line per step, no mid-run checkpoints;
    binary gains, since these rows come without qrels (graded gains have their own tests)."""
    base = dict(
        batch_size=2, list_size=3, max_length=32, logging_steps=1, save_steps=1000, warmup_ratio=0.0, max_dev_queries=2, gains="binary"
    )
    return TrainConfig(**{**base, **overrides})


# Two queries, one positive and two negatives each; teacher scores are exact in float32.
TINY = [
    _row(
        "q1",
        "how do cats purr",
        ["Cats purr by vibrating the larynx.", "Dogs bark at strangers.", "Rivers carry sand to the sea."],
        [1, 0, 0],
        [4.0, 1.0, -2.0],
    ),
    _row(
        "q2",
        "why do volcanoes erupt",
        ["Volcanoes erupt when magma pressure rises.", "Bread rises with yeast.", "Pianos have 88 keys."],
        [1, 0, 0],
        [3.5, 0.5, -1.0],
    ),
]
# Two more queries of the same shape: four lists of three for the curriculum and resume runs.
FOUR = TINY + [
    _row(
        "q3",
        "what do satellites orbit",
        ["Satellites orbit the Earth.", "Tea is brewed with hot water.", "Owls hunt at night."],
        [1, 0, 0],
        [4.0, 0.0, -1.5],
    ),
    _row(
        "q4",
        "how do bees make honey",
        ["Bees make honey from nectar.", "Glaciers move slowly.", "Chess has sixty-four squares."],
        [1, 0, 0],
        [3.0, -0.5, -2.5],
    ),
]
PAIRS = [(r["query"], t) for r in TINY for t in r["texts"]]

# The regime each loss trains under (curriculum only wraps listwise losses; see its own test).
LOSS_REGIME = {
    "bce": "binary",
    "ce": "binary",
    "ranknet": "pairwise",
    "listnet": "listwise",
    "listmle": "listwise",
    "plistmle": "listwise",
    "lambda": "listwise",
    "mnrl": "listwise",
    "cmnrl": "listwise",
    "mse": "distillation",
    "margin_mse": "distillation",
}


def test_every_loss_has_a_regime_and_every_regime_loss_exists():
    assert set(LOSS_REGIME) == set(LOSSES)
    assert {name for names in REGIMES.values() for name in names} == set(LOSSES)
    for loss, regime in LOSS_REGIME.items():
        assert loss in REGIMES[regime]


# --- dev metrics -----------------------------------------------------------------------------


# Validation rows for the dev metrics: one positive among 3, two among 4, one among 4
VALIDATION = [
    _row("v1", "where do owls hunt", ["Owls hunt in forests at night.", "Tea is hot.", "Glaciers are cold."], [1, 0, 0]),
    _row(
        "v2",
        "how do plants make food",
        ["Chess has rules.", "Plants make food by photosynthesis.", "Leaves turn light into sugar.", "Trains run on rails."],
        [0, 1, 1, 0],
    ),
    _row("v3", "why is the sky blue", ["Bread needs flour.", "Cats sleep.", "Blue light scatters in air.", "Ice melts."], [0, 0, 1, 0]),
]


@pytest.mark.parametrize("loss", ["bce", "ce"])  # ce: a 2-class head, ranked by class 1 minus class 0
def test_dev_metrics_match_an_independent_computation(loss, tmp_path):
    cfg = _cfg(regime="binary", loss=loss, max_dev_queries=3)
    metrics, history = train(cfg, _dd(TINY, VALIDATION), tmp_path / "model", tmp_path / "ckpt")
    dev = {k: v for k, v in metrics.items() if k.startswith("dev")}
    assert set(dev) == {"dev_mined_ndcg@10", "dev_mined_mrr@10", "dev_mined_map"}  # named for what they rerank
    # the same numbers from trec_eval (the evaluate stage's code) on the saved model's scores of
    # each validation row's own texts
    model = CrossEncoder(str(tmp_path / "model"), device="cpu")
    run = {}
    for r in VALIDATION:
        scores = model.predict([(r["query"], t) for t in r["texts"]], show_progress_bar=False)
        scores = scores[:, 1] - scores[:, 0] if scores.ndim == 2 else scores
        run[r["id"]] = {d: float(s) for d, s in zip(r["text_ids"], scores)}
    qrels = {r["id"]: {d: 1 for d, label in zip(r["text_ids"], r["labels"]) if label} for r in VALIDATION}
    expected = mean(per_query(run, qrels, ("ndcg@10", "mrr@10", "map@10")), ("ndcg@10", "mrr@10", "map@10"))
    assert dev["dev_mined_ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=2e-6)
    assert dev["dev_mined_mrr@10"] == pytest.approx(expected["mrr@10"], abs=2e-6)
    assert dev["dev_mined_map"] == pytest.approx(expected["map@10"], abs=2e-6)  # <= 10 texts: AP = AP@10
    # eval_steps = max(logging_steps 1, 3 steps // 2) = 1: a dev evaluation after every step
    assert [h["step"] for h in history if "eval_dev_mined_ndcg@10" in h] == [1, 2, 3]


# --- R0 ----------------------------------------------------------------------------------------


def test_off_the_shelf_saves_the_base_model_unchanged(tmp_path, seeded_base_cross_encoder):
    # R0 trains nothing, so it needs no train split at all
    metrics, history = train(_cfg(regime="off-the-shelf"), datasets.DatasetDict(), tmp_path / "model", tmp_path / "ckpt")
    assert history == []
    assert set(metrics) == {"train_seconds"}
    assert not (tmp_path / "ckpt").exists()

    saved = CrossEncoder(str(tmp_path / "model"), device="cpu")
    new, old = saved.state_dict(), seeded_base_cross_encoder.state_dict()
    assert set(new) == set(old)
    assert all(torch.equal(new[k], old[k]) for k in old)  # encoder and the seed-42 head alike
    np.testing.assert_array_equal(
        saved.predict(PAIRS, show_progress_bar=False), seeded_base_cross_encoder.predict(PAIRS, show_progress_bar=False)
    )
    info = json.loads((tmp_path / "model" / "rerank_lab_train.json").read_text())
    assert info["config"]["regime"] == "off-the-shelf"
    assert info["config"]["loss"] is None


# --- R4 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fraction", "switch"),
    [
        (0.5, 2),  # 4 lists, batch 1 -> 4 steps per epoch; int(0.5 * 4) = 2
        (0.1, 1),  # int(0.1 * 4) = 0, raised to the minimum of 1 warm-up step
    ],
)
def test_curriculum_switches_loss_at_the_configured_step(fraction, switch, tmp_path):
    cfg = _cfg(regime="curriculum", loss="listnet", curriculum_fraction=fraction, batch_size=1)
    metrics, history = train(cfg, _dd(FOUR), tmp_path / "model", tmp_path / "ckpt")
    assert metrics["train_examples"] == 4
    assert metrics["steps"] == 4
    assert metrics["curriculum_switch_step"] == switch
    assert metrics["warmup_steps_used"] == switch
    assert [h["step"] for h in history if "loss" in h] == [1, 2, 3, 4]
    assert CrossEncoder(str(tmp_path / "model"), device="cpu").num_labels == 1


# --- R5 ----------------------------------------------------------------------------------------

TOPICS = ["cats", "rivers", "volcanoes", "pianos", "bread", "satellites"]


def _distill_rows() -> list[dict]:
    """6 queries x 4 texts; the teacher's rule: 3 for the text naming the topic three times, 2 for
    twice, 1 for once, 0 for the unrelated text (the first text is the labelled positive)."""
    rows = []
    for i, topic in enumerate(TOPICS):
        texts = [
            f"{topic} {topic} {topic} are described here.",
            f"{topic} {topic} appear in this note.",
            f"{topic} is mentioned once.",
            "Nothing related at all.",
        ]
        rows.append(_row(f"d{i}", f"what about {topic}?", texts, [1, 0, 0, 0], [3.0, 2.0, 1.0, 0.0]))
    return rows


@pytest.mark.parametrize(
    ("loss", "lr", "epochs", "steps"),
    [
        ("margin_mse", 3e-4, 2, 6),  # 6 groups of 4, batches of 2 -> 3 steps an epoch
        ("mse", 3e-4, 3, 36),  # 24 pairs, batches of 2 -> 12 steps an epoch
    ],
)
def test_distillation_moves_the_student_toward_the_teacher(loss, lr, epochs, steps, tmp_path, seeded_base_cross_encoder):
    rows = _distill_rows()
    pairs = [(r["query"], t) for r in rows for t in r["texts"]]
    teacher = [s for r in rows for s in r["teacher_scores.t"]]

    def agreement(model) -> float:
        return float(spearmanr(model.predict(pairs, show_progress_bar=False), teacher).statistic)

    before = agreement(seeded_base_cross_encoder)  # the student train() starts from (same seed)
    cfg = _cfg(regime="distillation", loss=loss, teacher="t", list_size=4, learning_rate=lr, epochs=epochs, logging_steps=3)
    metrics, _ = train(cfg, _dd(rows), tmp_path / "model", tmp_path / "ckpt")
    assert metrics["steps"] == steps
    after = agreement(CrossEncoder(str(tmp_path / "model"), device="cpu"))
    # seed 42's fresh head: about 0.05; trained: about 0.97, with either loss (also with seeds 1 and 2,
    # which start from 0.30 and 0.08)
    assert before < 0.5
    assert after > 0.8
    assert after > before + 0.4


# --- resume --------------------------------------------------------------------------------------

# (settings, rows, total steps, kill once a checkpoint at or after this step is complete)
RESUME_CASES = {
    # FOUR: 12 pairs, batches of 2 -> 6 steps; killed after its first checkpoint
    "binary": (dict(regime="binary", loss="bce", save_steps=1), 6, 1),
    # FOUR: 4 lists, batches of 1 -> 4 steps; int(0.75 * 4) = 3 warm-up steps. Killed at step 2
    # or 3, the rerun has fewer than 3 steps left: it only reports 3 warm-up steps if it goes on
    # with the schedule where the first run stopped instead of warming up again.
    "curriculum": (dict(regime="curriculum", loss="listnet", curriculum_fraction=0.75, batch_size=1, save_steps=1), 4, 2),
}


def _resume_job(case: str, out: str, ckpt: str | None) -> None:
    """The first, interrupted run (in a subprocess that the test kills); ``ckpt`` None: the default folder."""
    train(_cfg(**RESUME_CASES[case][0]), _dd(FOUR), Path(out), Path(ckpt) if ckpt else None)


def _complete_checkpoints(folder: Path) -> list[int]:
    steps = []
    for state in folder.glob("checkpoint-*/trainer_state.json"):
        try:
            json.loads(state.read_text())
        except (OSError, ValueError):
            continue  # still being written
        steps.append(int(state.parent.name.split("-")[1]))
    return sorted(steps)


def _run_and_kill(case: str, out: Path, ckpt: Path, log: Path, kill_from: int, default: bool = False) -> int:
    """Start the first run in a subprocess and SIGKILL it once checkpoint >= ``kill_from`` is saved in
    ``ckpt`` (``default``: the run is given no folder; ``ckpt`` is where it should put them)."""
    code = f"from tests.test_train import _resume_job; _resume_job({case!r}, {str(out)!r}, {None if default else str(ckpt)!r})"
    with log.open("w") as log_file:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while not [s for s in _complete_checkpoints(ckpt) if s >= kill_from]:
                if proc.poll() is not None:
                    pytest.fail(f"the first run ended (rc {proc.returncode}) before checkpoint {kill_from}:\n{log.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no checkpoint {kill_from} within 300 s")
                time.sleep(0.02)
        finally:
            proc.kill()  # SIGKILL: no cleanup runs, as in a crash
            proc.wait()
    return _complete_checkpoints(ckpt)[-1]


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_interrupted_run_resumes_from_its_last_checkpoint(case, tmp_path):
    overrides, total, kill_from = RESUME_CASES[case]
    out, ckpt = tmp_path / "model", tmp_path / "ckpt"
    interrupted_at = _run_and_kill(case, out, ckpt, tmp_path / "first_run.log", kill_from)
    assert kill_from <= interrupted_at < total
    assert not out.exists()  # the model is only written (atomically) at the end
    cfg = _cfg(**overrides)
    assert (ckpt / "settings.sha1").read_text().startswith(f"{cfg.fingerprint()}-")  # settings, then the data hash

    metrics, history = train(cfg, _dd(FOUR), out, ckpt)
    assert metrics["resumed"] == 1
    assert metrics["steps"] == total
    # the log comes back from the checkpoint and goes on from there: one loss line per step
    assert [h["step"] for h in history if "loss" in h] == list(range(1, total + 1))
    assert list(ckpt.iterdir()) == []
    assert CrossEncoder(str(out), device="cpu").num_labels == 1
    if case == "curriculum":
        assert metrics["curriculum_switch_step"] == 3
        assert metrics["warmup_steps_used"] == 3


def test_interrupted_run_resumes_from_the_per_user_cache_by_default(tmp_path, monkeypatch):
    """No checkpoints folder given (dvc.yaml declares none, so a queued experiment in a temporary
    workspace resumes too): checkpoints/<key of the resume fingerprint> in RERANK_LAB_CACHE."""
    monkeypatch.setenv("RERANK_LAB_CACHE", str(tmp_path / "cache"))  # the subprocess inherits it
    overrides, total, kill_from = RESUME_CASES["curriculum"]
    cfg, out = _cfg(**overrides), tmp_path / "model"
    ckpt = default_checkpoints(resume_fingerprint(cfg, _dd(FOUR)))
    assert ckpt.parent == tmp_path / "cache" / "checkpoints"
    interrupted_at = _run_and_kill("curriculum", out, ckpt, tmp_path / "first_run.log", kill_from, default=True)
    assert kill_from <= interrupted_at < total
    assert (ckpt / "settings.sha1").read_text() == resume_fingerprint(cfg, _dd(FOUR))

    metrics, history = train(cfg, _dd(FOUR), out)
    assert metrics["resumed"] == 1 and metrics["steps"] == total
    assert [h["step"] for h in history if "loss" in h] == list(range(1, total + 1))
    assert metrics["warmup_steps_used"] == 3  # the schedule went on where the first run stopped
    assert not ckpt.exists()  # finished: nothing left to resume
    assert [p.name for p in ckpt.parent.iterdir()] == [f"{ckpt.name}.lock"]


def test_default_checkpoints_are_one_folder_per_training(tmp_path, monkeypatch):
    monkeypatch.setenv("RERANK_LAB_CACHE", str(tmp_path / "cache"))
    one = resume_fingerprint(_cfg(), _dd(TINY))
    assert one == resume_fingerprint(_cfg(), _dd(TINY))  # the same training: the same folder (it resumes)
    others = [
        resume_fingerprint(_cfg(seed=43), _dd(TINY)),  # other settings
        resume_fingerprint(_cfg(), _dd(FOUR)),  # other data
        resume_fingerprint(_cfg(gains="graded"), _dd(TINY), {"train": {"q1": {"q1-0": 2}}}),  # other grades
    ]
    folders = [default_checkpoints(f) for f in [one, *others]]
    assert len(set(folders)) == 4
    assert {f.parent for f in folders} == {tmp_path / "cache" / "checkpoints"}
    assert resume_fingerprint(_cfg(regime="off-the-shelf"), _dd(TINY)) is None  # R0 trains nothing: no folder


def test_two_processes_of_one_training_take_turns_on_its_folder(tmp_path, monkeypatch):
    """The default folder is locked while a training uses it: a second process training the same
    settings (two queued experiments at once) waits instead of writing into the same checkpoints."""
    monkeypatch.setenv("RERANK_LAB_CACHE", str(tmp_path / "cache"))
    fingerprint = resume_fingerprint(_cfg(), _dd(TINY))
    entered = tmp_path / "entered"
    code = (
        "import logging, sys; from pathlib import Path; from rerank_lab.checkpoints import checkpoint_folder\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
        f"with checkpoint_folder(None, {fingerprint!r}) as folder: Path({str(entered)!r}).write_text(str(folder))\n"
    )
    with checkpoint_folder(None, fingerprint) as folder:
        folder.mkdir()
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        waiting = proc.stdout.readline()  # blocks until the second process says it waits
        assert "another process is training the same settings" in waiting, waiting
        assert not entered.exists()
    out, _ = proc.communicate(timeout=120)  # released: the second one goes on
    assert proc.returncode == 0, out
    assert entered.read_text() == str(folder)
    assert not folder.exists()  # each, finishing, leaves nothing to resume


def _checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_text("weights")
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_last_checkpoint_fresh_folder_is_stamped(tmp_path):
    folder = tmp_path / "ckpt"
    assert _last_checkpoint(folder, "abc") is None
    assert sorted(p.name for p in folder.iterdir()) == ["settings.sha1"]
    assert (folder / "settings.sha1").read_text() == "abc"


def test_last_checkpoint_same_settings_gives_the_newest_by_step(tmp_path):
    folder = tmp_path / "ckpt"
    _last_checkpoint(folder, "abc")
    _checkpoint(folder, 2)
    _checkpoint(folder, 10)  # "checkpoint-10" < "checkpoint-2" as strings: must sort by number
    assert _last_checkpoint(folder, "abc") == str(folder / "checkpoint-10")
    assert (folder / "checkpoint-2").is_dir()  # nothing is removed


def test_last_checkpoint_skips_a_checkpoint_cut_off_while_saving(tmp_path):
    folder = tmp_path / "ckpt"
    _last_checkpoint(folder, "abc")
    _checkpoint(folder, 4)
    _checkpoint(folder, 5, complete=False)  # killed before trainer_state.json was written
    assert _last_checkpoint(folder, "abc") == str(folder / "checkpoint-4")


def test_last_checkpoint_same_settings_without_checkpoints(tmp_path):
    folder = tmp_path / "ckpt"
    _last_checkpoint(folder, "abc")
    assert _last_checkpoint(folder, "abc") is None
    assert (folder / "settings.sha1").read_text() == "abc"


def test_last_checkpoint_other_settings_start_afresh(tmp_path):
    folder = tmp_path / "ckpt"
    _last_checkpoint(folder, "abc")
    _checkpoint(folder, 3)
    (folder / "stray.txt").write_text("x")
    assert _last_checkpoint(folder, "def") is None
    assert sorted(p.name for p in folder.iterdir()) == ["settings.sha1"]
    assert (folder / "settings.sha1").read_text() == "def"


def test_fingerprint_follows_every_setting():
    assert _cfg().fingerprint() == _cfg().fingerprint()
    assert _cfg().fingerprint() != _cfg(seed=43).fingerprint()
    assert _cfg().fingerprint() != _cfg(epochs=2.0).fingerprint()
    assert len(_cfg().fingerprint()) == 16


# --- errors ----------------------------------------------------------------------------------


def test_unknown_loss_lists_the_valid_names():
    valid = "bce, ce, cmnrl, lambda, listmle, listnet, margin_mse, mnrl, mse, plistmle, ranknet"
    with pytest.raises(
        ConfigError, match=rf"^train\.loss: unknown loss, got 'hinge' \(fix: (did you mean '\w+'\? )?use one of: {valid}\)$"
    ):
        TrainConfig(regime="listwise", loss="hinge")


@pytest.mark.parametrize(
    ("regime", "loss", "valid"),
    [
        ("binary", "listnet", "bce, ce"),
        ("pairwise", "bce", "ranknet"),
        ("distillation", "bce", "margin_mse, mse"),
        ("curriculum", "mnrl", "listnet, listmle, plistmle, lambda, ranknet"),  # groups cannot be flattened
    ],
)
def test_loss_must_fit_the_regime(regime, loss, valid):
    with pytest.raises(ConfigError, match=rf"^train\.loss: does not fit regime '{regime}', got '{loss}' \(fix: use one of: {valid}\)$"):
        TrainConfig(regime=regime, loss=loss, teacher="t")


def test_unknown_regime_lists_the_valid_ones():
    valid = "off-the-shelf, binary, pairwise, listwise, curriculum, distillation"
    with pytest.raises(ConfigError, match=rf"^train\.regime: unknown regime, got 'R3' \(fix: use one of: {valid}\)$"):
        TrainConfig(regime="R3")


def test_default_loss_is_the_regime_s_first():
    assert [TrainConfig(regime=r, teacher="t").loss_name for r in REGIMES] == ["", "bce", "ranknet", "listnet", "listnet", "margin_mse"]


def test_distillation_needs_a_teacher():
    with pytest.raises(ConfigError, match=r"^train\.teacher: is needed by distillation: .*, got null \(fix: run teacher-score"):
        TrainConfig(regime="distillation", loss="mse")


@pytest.mark.parametrize("warmup", ["listnet", "mnrl", "mse", "ce"])
def test_curriculum_warmup_must_be_pointwise(warmup):
    with pytest.raises(ConfigError, match=rf"^train\.warmup_loss: is not pointwise, got '{warmup}' \(fix: use bce\)$"):
        TrainConfig(regime="curriculum", warmup_loss=warmup)


def test_curriculum_unknown_warmup_lists_the_valid_names():
    with pytest.raises(
        ConfigError, match=r"^train\.warmup_loss: unknown loss, got 'hinge' \(fix: (did you mean '\w+'\? )?use one of: bce, ce,"
    ):
        TrainConfig(regime="curriculum", warmup_loss="hinge")


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
def test_curriculum_fraction_must_lie_strictly_between_0_and_1(fraction):
    with pytest.raises(ConfigError, match=rf"^train\.curriculum_fraction: must be in \(0, 1\), got {fraction}"):
        TrainConfig(regime="curriculum", curriculum_fraction=fraction)


def test_list_size_needs_a_positive_and_a_negative():
    with pytest.raises(ConfigError, match=r"^train\.list_size: must be >= 2, got 1"):
        TrainConfig(list_size=1)


def test_missing_teacher_column_names_it_and_the_present_ones(tmp_path):
    cfg = _cfg(regime="distillation", loss="margin_mse", teacher="bge")
    expected = r"^dataset \(train split\): no teacher column 'teacher_scores\.bge' \(teachers present: \['t'\]\)"
    with pytest.raises(InputError, match=expected):
        train(cfg, _dd(TINY), tmp_path / "model", tmp_path / "ckpt")
    assert not (tmp_path / "model").exists()


def test_missing_teacher_column_without_any_teacher():
    plain = [{k: v for k, v in r.items() if k != "teacher_scores.t"} for r in TINY]
    with pytest.raises(InputError, match=r"no teacher column 'teacher_scores\.t' \(teachers present: none\)"):
        build_examples(to_dataset(plain), "teacher-pairs", _cfg(regime="distillation", loss="mse", teacher="t"))


def test_listwise_loss_on_a_query_without_positive_names_the_record(tmp_path):
    rows = TINY + [_row("nopos", "a query nobody answered", ["One text.", "Another text.", "A third."], [0, 0, 0], [0.0, 0.0, 0.0])]
    expected = r"^dataset \(train split\): record nopos: query nopos has no positive text, which a lists-format loss needs"
    with pytest.raises(InputError, match=expected):
        train(_cfg(regime="listwise", loss="listnet"), _dd(rows), tmp_path / "model", tmp_path / "ckpt")


@pytest.mark.parametrize(("fmt", "word"), [("groups", "groups"), ("teacher-groups", "groups"), ("lists", "lists")])
def test_group_and_list_formats_need_a_positive(fmt, word):
    ds = to_dataset([_row("nopos", "q", ["a", "b", "c"], [0, 0, 0], [0.0, 0.0, 0.0])])
    with pytest.raises(InputError, match=rf"record nopos: query nopos has no positive text, which a {word}-format loss needs"):
        build_examples(ds, fmt, _cfg(teacher="t"))


def test_groups_format_with_too_few_negatives():
    # list_size 4 -> 3 negatives per group, but each of the 2 queries has only 2: dropping them all is refused, naming the keys
    expected = (
        r"train would drop 2 of 2 train rows \(100\.0%\), more than train\.max_drop_fraction = 0\.5 "
        r"\(fix: mine more negatives \(mine\.num_negatives\) or lower train\.list_size .*, or raise train\.max_drop_fraction\)"
    )
    with pytest.raises(ConfigError, match=expected):
        build_examples(to_dataset(TINY), "groups", _cfg(list_size=4))
    # the late-interaction stage's own section is named, not train's
    with pytest.raises(
        ConfigError, match=r"late_train would drop .* more than late_train\.max_drop_fraction .*lower late_train\.list_size"
    ):
        build_examples(to_dataset(TINY), "groups", _cfg(list_size=4), section="late_train")


@pytest.mark.parametrize("fmt", ["groups", "teacher-groups"])
def test_a_row_with_too_few_negatives_is_left_out_of_the_groups(fmt, caplog):
    """A short abstract's sentences (sentence mode) give a row fewer negatives than a group has:
    the row is left out (within max_drop_fraction) instead of stopping the stage."""
    rich = [
        _row(f"r{i}", f"query {i}", [f"pos {i}", *(f"neg {i}.{j}" for j in range(4))], [1, 0, 0, 0, 0], [1.0, 0, 0, 0, 0]) for i in range(3)
    ]
    short = _row("short", "a short abstract", ["pos", "neg a", "neg b"], [1, 0, 0], [1.0, 0.0, 0.0])
    with caplog.at_level("WARNING"):
        examples = build_examples(to_dataset([*rich, short]), fmt, _cfg(list_size=4, teacher="t"))
    assert examples["query"] == ["query 0", "query 1", "query 2"]
    assert all(len([c for c in examples.column_names if c.startswith("negative_")]) == 3 for _ in examples)
    assert "1 of 4 train rows have fewer than 3 negatives" in caplog.text


def test_unknown_model_path(tmp_path):
    cfg = _cfg(regime="binary", model=str(tmp_path / "no-such-model"))
    with pytest.raises(ConfigError, match=r"model path '.*no-such-model' does not exist"):
        train(cfg, _dd(TINY), tmp_path / "model", tmp_path / "ckpt")


def test_a_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = _cfg(regime="binary", model=str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"cannot load base model '.*empty'"):
        train(cfg, _dd(TINY), tmp_path / "model", tmp_path / "ckpt")


def test_no_train_split(tmp_path):
    dd = datasets.DatasetDict({"test": to_dataset(TINY)})
    with pytest.raises(InputError, match=r"^data/x: the dataset has no train split"):
        train(_cfg(regime="binary"), dd, tmp_path / "model", tmp_path / "ckpt", dataset_path="data/x")


def test_no_rows_no_examples():
    with pytest.raises(InputError, match=r"no training examples"):
        build_examples(to_dataset([], columns=list(TINY[0])), "pairs", _cfg())


# --- example layouts -----------------------------------------------------------------------------

# One positive (text 0) and three negatives (texts 1-3); list_size 3 keeps two of them.
# The seeded choice: random.Random("42:a").shuffle([1, 2, 3]) -> [1, 2, 3], keep [1, 2];
#                    random.Random("42:b").shuffle([1, 2, 3]) -> [2, 3, 1], keep [2, 3].
LAYOUT = [
    _row("a", "qa", ["a0", "a1", "a2", "a3"], [1, 0, 0, 0], [0.5, 1.5, 2.5, 3.5]),
    _row("b", "qb", ["b0", "b1", "b2", "b3"], [1, 0, 0, 0], [-0.5, -1.5, -2.5, -3.5]),
]


def test_pairs_layout():
    ds = build_examples(to_dataset(LAYOUT), "pairs", _cfg())
    assert ds.to_list() == [
        {"query": "qa", "text": "a0", "label": 1.0},
        {"query": "qa", "text": "a1", "label": 0.0},
        {"query": "qa", "text": "a2", "label": 0.0},
        {"query": "qb", "text": "b0", "label": 1.0},
        {"query": "qb", "text": "b2", "label": 0.0},
        {"query": "qb", "text": "b3", "label": 0.0},
    ]


def test_classes_layout_has_integer_labels():
    ds = build_examples(to_dataset(LAYOUT), "classes", _cfg())
    assert ds["label"] == [1, 0, 0, 1, 0, 0]
    assert all(isinstance(label, int) for label in ds["label"])


def test_teacher_pairs_layout_uses_the_teacher_scores():
    ds = build_examples(to_dataset(LAYOUT), "teacher-pairs", _cfg(teacher="t"))
    assert ds["text"] == ["a0", "a1", "a2", "b0", "b2", "b3"]
    assert ds["label"] == [0.5, 1.5, 2.5, -0.5, -2.5, -3.5]


def test_lists_layout():
    ds = build_examples(to_dataset(LAYOUT), "lists", _cfg())
    assert ds.to_list() == [
        {"query": "qa", "docs": ["a0", "a1", "a2"], "labels": [1.0, 0.0, 0.0]},
        {"query": "qb", "docs": ["b0", "b2", "b3"], "labels": [1.0, 0.0, 0.0]},
    ]


def test_groups_layout():
    ds = build_examples(to_dataset(LAYOUT), "groups", _cfg())
    assert ds.column_names == ["query", "positive", "negative_1", "negative_2"]
    assert ds.to_list() == [
        {"query": "qa", "positive": "a0", "negative_1": "a1", "negative_2": "a2"},
        {"query": "qb", "positive": "b0", "negative_1": "b2", "negative_2": "b3"},
    ]


def test_teacher_groups_layout():
    ds = build_examples(to_dataset(LAYOUT), "teacher-groups", _cfg(teacher="t"))
    assert ds.to_list() == [
        {"query": "qa", "positive": "a0", "negative_1": "a1", "negative_2": "a2", "label": [0.5, 1.5, 2.5]},
        {"query": "qb", "positive": "b0", "negative_1": "b2", "negative_2": "b3", "label": [-0.5, -2.5, -3.5]},
    ]


def test_two_positives_give_two_lists_sharing_the_negatives():
    # positives 0 and 2; negatives [1, 3]: random.Random("42:c").shuffle([1, 3]) -> [3, 1]
    row = _row("c", "qc", ["c0", "c1", "c2", "c3"], [1, 0, 1, 0])
    ds = build_examples(to_dataset([row]), "lists", _cfg())
    assert ds.to_list() == [
        {"query": "qc", "docs": ["c0", "c3", "c1"], "labels": [1.0, 0.0, 0.0]},
        {"query": "qc", "docs": ["c2", "c3", "c1"], "labels": [1.0, 0.0, 0.0]},
    ]


def test_short_lists_are_kept_but_pairs_need_no_positive():
    # a query with one negative makes a list of 2 (lists tolerate it, groups do not);
    # a query without a positive still gives pointwise examples: list_size 3 keeps 2 of its 3
    # negatives (random.Random("42:n").shuffle([0, 1, 2]) -> [2, 1, 0], keep [2, 1])
    short = _row("s", "qs", ["s0", "s1"], [1, 0])
    nopos = _row("n", "qn", ["n0", "n1", "n2"], [0, 0, 0])
    assert build_examples(to_dataset([short]), "lists", _cfg()).to_list() == [{"query": "qs", "docs": ["s0", "s1"], "labels": [1.0, 0.0]}]
    assert build_examples(to_dataset([nopos]), "pairs", _cfg()).to_list() == [
        {"query": "qn", "text": "n2", "label": 0.0},
        {"query": "qn", "text": "n1", "label": 0.0},
    ]


def test_negative_choice_is_seeded():
    # seed 7: random.Random("7:a") and ("7:b").shuffle([1, 2, 3]) -> [3, 2, 1], keep [3, 2]
    first = build_examples(to_dataset(LAYOUT), "lists", _cfg())
    assert build_examples(to_dataset(LAYOUT), "lists", _cfg()).to_list() == first.to_list()
    assert build_examples(to_dataset(LAYOUT), "lists", _cfg(seed=7))["docs"] == [["a0", "a3", "a2"], ["b0", "b3", "b2"]]
    assert first["docs"] == [["a0", "a1", "a2"], ["b0", "b2", "b3"]]


def test_max_queries_keeps_the_first_rows():
    ds = build_examples(to_dataset(LAYOUT), "lists", _cfg(max_queries=1))
    assert ds["query"] == ["qa"]


# --- dev samples and plots -----------------------------------------------------------------------


def test_dev_samples_keep_rows_with_a_positive_and_a_negative():
    rows = [
        _row("v1", "q1", ["p", "n"], [1, 0]),
        _row("v2", "q2", ["n1", "n2"], [0, 0]),  # no positive: nothing to rank
        _row("v3", "q3", ["p1", "p2"], [1, 1]),  # no negative: ranking is trivial
        _row("v4", "q4", ["n", "p"], [0, 1]),
        _row("v5", "q5", ["p", "n"], [1, 0]),
    ]
    ds = to_dataset(rows)
    assert dev_samples(ds, 10) == [
        {"query": "q1", "positive": ["p"], "documents": ["p", "n"]},
        {"query": "q4", "positive": ["p"], "documents": ["n", "p"]},
        {"query": "q5", "positive": ["p"], "documents": ["p", "n"]},
    ]
    assert [s["query"] for s in dev_samples(ds, 2)] == ["q1", "q4"]
    assert dev_samples(None, 10) == []


def test_write_plots(tmp_path):
    history = [
        {"step": 1, "loss": 0.7},
        {"step": 2, "loss": 0.5},
        {"step": 2, "eval_dev_mined_ndcg@10": 0.8, "eval_dev_mined_map": 0.6, "eval_dev_mined_base_map": 1.0},
        {"step": 2, "train_runtime": 1.0},
    ]
    write_plots(history, tmp_path / "plots")
    assert (tmp_path / "plots" / "loss.tsv").read_text() == "step\tloss\n1\t0.7\n2\t0.5\n"
    # columns named as in the metrics JSON; "base" (the input order) is left out
    assert (tmp_path / "plots" / "dev.tsv").read_text() == "step\tdev_mined_map\tdev_mined_ndcg@10\n2\t0.6\t0.8\n"


# --- rows dropped for want of a positive ---------------------------------------------------------


def _nopos(rid: str) -> dict:
    return _row(rid, f"unanswered {rid}", [f"{rid} one", f"{rid} two", f"{rid} three"], [0, 0, 0], [0.0, 0.0, 0.0])


def test_skipping_more_rows_than_max_drop_fraction_stops():
    rows = TINY[:1] + [_nopos("n1"), _nopos("n2")]  # 2 of 3 rows without a positive: 66.7% > 50%
    expected = (
        r"^dataset \(train split\): train would drop 2 of 3 train rows \(66\.7%\), more than train\.max_drop_fraction = 0\.5 "
        r"\(fix: these rows have no positive text: .*, or raise train\.max_drop_fraction\)$"
    )
    with pytest.raises(ConfigError, match=expected):
        build_examples(to_dataset(rows), "lists", _cfg(no_positive="skip"), path="dataset (train split)")
    with pytest.raises(ConfigError, match=r"would drop 2 of 3 train rows"):
        build_examples(to_dataset(rows), "groups", _cfg(no_positive="skip"))
    # a higher limit lets them go
    assert build_examples(to_dataset(rows), "lists", _cfg(no_positive="skip", max_drop_fraction=0.7))["query"] == ["how do cats purr"]


def test_skipping_up_to_max_drop_fraction_goes_on():
    rows = TINY + [_nopos("n1"), _nopos("n2")]  # 2 of 4: exactly the limit
    assert build_examples(to_dataset(rows), "lists", _cfg(no_positive="skip"))["query"] == ["how do cats purr", "why do volcanoes erupt"]
    # pointwise formats keep all-negative rows: nothing is dropped, whatever the share
    # (3 pairs from the first row, 2 from each all-negative row: list_size 3 keeps 2 of its 3 negatives)
    assert len(build_examples(to_dataset(TINY[:1] + [_nopos("n1"), _nopos("n2")]), "pairs", _cfg(no_positive="skip"))) == 7


def test_max_queries_is_not_a_drop():
    # 1 of 4 rows skipped (25%); max_queries then keeps 1 of the 3 left, which the guard does not count
    rows = FOUR[:3] + [_nopos("n1")]
    assert build_examples(to_dataset(rows), "lists", _cfg(no_positive="skip", max_queries=1))["query"] == ["how do cats purr"]


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_max_drop_fraction_must_be_a_share(fraction):
    with pytest.raises(ConfigError, match=rf"^train\.max_drop_fraction: must be in \[0, 1\], got {fraction}"):
        TrainConfig(max_drop_fraction=fraction)
