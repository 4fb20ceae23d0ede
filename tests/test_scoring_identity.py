"""The score cache's model key is a complete fingerprint, and every head scores as one number.

The key must change with anything that changes a score (model files of any kind, hub revision,
dtype, head, library versions) and stay put for what does not (model card, training report,
a second scorer). A 2-class head (``train.loss=ce``) scores ``logit[1] - logit[0]``.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rerank_lab.errors import ConfigError
from rerank_lab.models import resolve_model
from rerank_lab.scoring import SCORE_RULES, PairScorer, ScoringSpec, fingerprint, model_key
from tests.conftest import MINILM, MINILM_MAX_LENGTH, TRAIN_MAX_LENGTH
from tests.tiny_models import tiny_bert

PAIRS = [
    ("how do cats purr", "Cats purr by vibrating the larynx."),
    ("how do cats purr", "Rivers carry sand to the sea."),
    ("why do volcanoes erupt", "Volcanoes erupt when magma pressure rises and the gas in it expands."),
]
SHA_A = "a" * 40
SHA_B = "0123456789abcdef0123456789abcdef01234567"


def _tiny(folder: Path, labels: int, seed: int = 0) -> Path:
    return tiny_bert(folder, labels, seed)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {n: _tiny(root / f"labels{n}", n) for n in (1, 2)}


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


def _independent_logits(folder: Path, pairs: list[tuple[str, str]], max_length: int) -> np.ndarray:
    """Plain transformers, one pair at a time (no padding): the model's logits, (pairs, labels)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    rows = []
    with torch.inference_mode():
        for q, p in pairs:
            enc = tok(q, p, truncation="longest_first", max_length=max_length, return_tensors="pt")
            rows.append(model(**enc).logits[0].numpy())
    return np.array(rows, dtype=np.float64)


# --- what the key covers -------------------------------------------------------------------------


def test_key_changes_with_dtype(tiny_models):
    fp32 = PairScorer(str(tiny_models[1]), 32, dtype="float32", device="cpu")
    bf16 = PairScorer(str(tiny_models[1]), 32, dtype="bfloat16", device="cpu")
    assert fp32.key != bf16.key
    assert PairScorer(str(tiny_models[1]), 32, dtype="auto", device="cpu").key == fp32.key  # auto on a CPU is fp32
    # and the dtype the key names is the one that runs: bf16 scores differ from fp32 ones on a CPU too
    assert not np.array_equal(fp32.score(PAIRS), bf16.score(PAIRS))
    np.testing.assert_allclose(fp32.score(PAIRS), bf16.score(PAIRS), atol=0.05)


@pytest.mark.parametrize("name", ["spiece.model", "sentencepiece.bpe.model", "tokenizer.json", "vocab.txt", "merges.txt"])
def test_key_changes_with_any_tokenizer_file(name, tiny_models, tmp_path):
    folder = _copy(tiny_models[1], tmp_path)
    (folder / name).write_bytes(b"version one")
    before = model_key(str(folder), 32)
    (folder / name).write_bytes(b"version two")
    assert model_key(str(folder), 32) != before


def test_key_is_stable_and_ignores_card_report_and_checkpoints(tiny_models, tmp_path):
    folder = _copy(tiny_models[1], tmp_path)
    first, second = PairScorer(str(folder), 32, device="cpu"), PairScorer(str(folder), 32, device="cpu")
    assert first.key == second.key and len(first.key) == 16 and set(first.key) <= set("0123456789abcdef")
    (folder / "README.md").write_text("# a new model card\n")
    (folder / "rerank_lab_train.json").write_text(json.dumps({"metrics": {"steps": 3}}))
    (folder / "checkpoint-7").mkdir()
    (folder / "checkpoint-7" / "model.safetensors").write_bytes(b"a half-trained leftover")
    assert PairScorer(str(folder), 32, device="cpu").key == first.key
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes() + b" ")  # the weights do count
    assert PairScorer(str(folder), 32, device="cpu").key != first.key


def test_key_does_not_depend_on_where_the_folder_lies(tiny_models, tmp_path):
    assert model_key(str(_copy(tiny_models[1], tmp_path)), 32) == model_key(str(tiny_models[1]), 32)


def test_key_names_the_head_and_how_it_becomes_a_score(tiny_models):
    minilm = fingerprint(MINILM, MINILM_MAX_LENGTH)
    one, two = fingerprint(str(tiny_models[1]), 32), fingerprint(str(tiny_models[2]), 32)
    assert (minilm["head"], one["head"], two["head"]) == (0, 1, 2)
    assert minilm["score"] == "fresh 1-logit head (seed 0): logit"
    assert (one["score"], two["score"]) == ("logit", "logit[1] - logit[0]") == (SCORE_RULES[1], SCORE_RULES[2])
    assert minilm["model"]["source"] == "folder"  # the packaged model is hashed by content, not by name
    assert (minilm["truncation"], minilm["dtype"], minilm["device"], minilm["max_length"]) == ("longest_first", "float32", "cpu", 64)
    assert fingerprint(MINILM, MINILM_MAX_LENGTH, device="cuda:1")["device"] == "cuda"


def test_key_changes_with_a_library_version(tiny_models, monkeypatch):
    before = model_key(str(tiny_models[1]), 32)
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda dist: "99.0.0" if dist == "transformers" else real(dist))
    assert model_key(str(tiny_models[1]), 32) != before
    monkeypatch.undo()
    assert model_key(str(tiny_models[1]), 32) == before
    assert fingerprint(str(tiny_models[1]), 32)["libraries"]["transformers"] == importlib.metadata.version("transformers")


# --- hub ids -------------------------------------------------------------------------------------


def _cache_snapshot(hub: Path, repo_id: str, sha: str, config: dict) -> Path:
    """The layout huggingface_hub leaves in its cache after a download of ``repo_id`` at ``sha``."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(sha)
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "config.json").write_text(json.dumps(config))
    return snapshot


RERANKER_CONFIG = {"architectures": ["XLMRobertaForSequenceClassification"], "id2label": {"0": "LABEL_0"}, "model_type": "xlm-roberta"}


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty hub cache named by HF_HUB_CACHE, offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_hub_id_is_keyed_by_its_cached_revision(hub):
    _cache_snapshot(hub, "org/reranker", SHA_A, RERANKER_CONFIG)
    key_a = PairScorer("org/reranker", 256, device="cpu").key
    _cache_snapshot(hub, "org/reranker", SHA_B, RERANKER_CONFIG)  # a newer download moved main
    assert PairScorer("org/reranker", 256, device="cpu").key != key_a

    at_b = fingerprint("org/reranker", 256)
    assert at_b["model"] == {"source": "hub", "id": "org/reranker", "revision": SHA_B}
    assert at_b["head"] == 1 and at_b["score"] == "logit"  # read from the cached snapshot's config


def test_a_hub_ref_other_than_main_is_keyed_by_its_own_commit(hub):
    # a published reranker's sentence-transformers integration often lives on a PR ref (refs/pr/11)
    _cache_snapshot(hub, "org/reranker", SHA_A, RERANKER_CONFIG)
    repo = hub / "models--org--reranker"
    (repo / "refs" / "refs" / "pr").mkdir(parents=True)
    (repo / "refs" / "refs" / "pr" / "11").write_text(SHA_B)
    (repo / "snapshots" / SHA_B).mkdir()
    (repo / "snapshots" / SHA_B / "config.json").write_text(json.dumps(RERANKER_CONFIG))
    main, pr = fingerprint("org/reranker", 256), fingerprint("org/reranker", 256, spec=ScoringSpec(revision="refs/pr/11"))
    assert main["model"] == {"source": "hub", "id": "org/reranker", "revision": SHA_A}
    assert pr["model"] == {"source": "hub", "id": "org/reranker", "revision": SHA_B, "asked": "refs/pr/11"}
    at_pr = PairScorer("org/reranker", 256, device="cpu", spec=ScoringSpec(revision="refs/pr/11"))
    assert at_pr.key != PairScorer("org/reranker", 256, device="cpu").key


def test_hub_cache_named_by_hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    _cache_snapshot(tmp_path / "home" / "hub", "org/reranker", SHA_B, RERANKER_CONFIG)
    assert fingerprint("org/reranker", 256)["model"]["revision"] == SHA_B


def test_uncached_hub_id_offline_is_unresolved(hub):
    never = fingerprint("org/never-downloaded", 256)
    assert never["model"] == {"source": "hub", "id": "org/never-downloaded", "revision": "unresolved"}
    assert never["head"] == "unknown"
    scorer = PairScorer("org/never-downloaded", 256, device="cpu")  # keying never fails offline ...
    with pytest.raises(ConfigError, match=r"cannot load cross-encoder 'org/never-downloaded'"):
        scorer.score(PAIRS[:1])  # ... loading does


def test_hub_id_loads_the_revision_it_is_keyed_by(hub, tiny_models):
    """A real model in the cache layout: the hub id scores exactly as the same files in a folder."""
    snapshot = _cache_snapshot(hub, "org/tiny", SHA_A, {})
    for f in tiny_models[2].iterdir():
        shutil.copy(f, snapshot / f.name)
    by_id = PairScorer("org/tiny", TRAIN_MAX_LENGTH, device="cpu")
    assert by_id.identity["model"]["revision"] == SHA_A and by_id.identity["head"] == 2
    np.testing.assert_allclose(by_id.score(PAIRS), PairScorer(str(tiny_models[2]), TRAIN_MAX_LENGTH, device="cpu").score(PAIRS), atol=1e-6)


# --- heads ---------------------------------------------------------------------------------------


def test_a_two_class_head_trained_with_ce_scores_its_log_odds(tmp_path):
    from rerank_lab.train import train
    from tests.test_train import TINY, _cfg, _dd

    train(_cfg(regime="binary", loss="ce"), _dd(TINY), tmp_path / "model", tmp_path / "ckpt")
    scorer = PairScorer(str(tmp_path / "model"), TRAIN_MAX_LENGTH, device="cpu")
    scores = scorer.score(PAIRS)

    logits = _independent_logits(tmp_path / "model", PAIRS, TRAIN_MAX_LENGTH)
    assert logits.shape == (3, 2)
    np.testing.assert_allclose(scores, logits[:, 1] - logits[:, 0], atol=1e-5)
    # the sigmoid of the score is softmax's P(class 1 = relevant)
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(1 / (1 + np.exp(-scores)), softmax[:, 1], atol=1e-6)
    assert scorer.identity["head"] == 2


def test_a_one_logit_head_scores_its_logit(tiny_models):
    scores = PairScorer(str(tiny_models[1]), TRAIN_MAX_LENGTH, device="cpu").score(PAIRS)
    logits = _independent_logits(tiny_models[1], PAIRS, TRAIN_MAX_LENGTH)
    assert logits.shape == (3, 1)
    np.testing.assert_allclose(scores, logits[:, 0], atol=1e-5)


def test_the_packaged_minilm_keeps_its_seeded_fresh_head(minilm_scorer_factory):
    """No head of its own: a 1-logit head drawn after torch seed 0, as before the fingerprint."""
    from sentence_transformers import CrossEncoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        reference = CrossEncoder(resolve_model(MINILM), num_labels=1, max_length=MINILM_MAX_LENGTH, device="cpu")
    reference.model.eval()
    want = []
    with torch.inference_mode():
        for q, p in PAIRS:
            enc = reference.tokenizer(q, p, truncation="longest_first", max_length=MINILM_MAX_LENGTH, return_tensors="pt")
            want.append(float(reference.model(**enc).logits[0, 0]))
    scorer = PairScorer(MINILM, MINILM_MAX_LENGTH, device="cpu")  # its own load, not the shared fixture
    np.testing.assert_allclose(scorer.score(PAIRS), want, atol=1e-5)
    assert scorer._model.num_labels == 1


def test_a_head_of_three_labels_is_refused(tmp_path):
    folder = _tiny(tmp_path / "three", 3)
    with pytest.raises(ConfigError, match=r"model '.*three' has a 3-label classification head.*\(fix: .*train.loss=bce or ce\)"):
        PairScorer(str(folder), 32, device="cpu")


def test_a_causal_lm_is_refused_as_a_cross_encoder_and_a_classifier_as_a_causal_lm(tmp_path):
    (tmp_path / "llm").mkdir()
    (tmp_path / "llm" / "config.json").write_text(json.dumps({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"}))
    with pytest.raises(ConfigError, match=r"is a causal LM \(Qwen3ForCausalLM\).*\(fix: use a rerankers entry of type: causal-lm"):
        PairScorer(str(tmp_path / "llm"), 32, device="cpu")
    folder = _tiny(tmp_path / "one", 1)
    with pytest.raises(ConfigError, match=r"is not a causal LM \(BertForSequenceClassification\).*\(fix: .*type: cross-encoder"):
        PairScorer(str(folder), 32, device="cpu", spec=ScoringSpec(family="causal-lm"))


def test_the_stage_runner_s_marker_is_not_part_of_the_key(tmp_path):
    """Every output folder holds the runner's marker file; a model folder's key must not depend on it."""
    from rerank_lab.io.outputs import MARKER
    from rerank_lab.scoring import model_key

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["BertForSequenceClassification"], "num_labels": 1}')
    before = model_key(str(folder))
    (folder / MARKER).write_text("rerank-lab train\n")
    assert model_key(str(folder)) == before
