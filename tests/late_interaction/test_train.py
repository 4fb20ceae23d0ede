"""train-late: a MultiVectorEncoder trained on the contract's rows (contrastive / distillation,
standard / pool-aware), on a tiny randomly initialised BERT base; the pooling module's gradients;
the trained model through the late-interaction scorer."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from rerank_lab.config import parse
from rerank_lab.errors import ConfigError, InputError
from rerank_lab.late_interaction import pool
from rerank_lab.late_interaction.token_pooling import ClusterTokenPooling
from rerank_lab.late_interaction.train import LateTrainConfig, train
from rerank_lab.rerankers import make_reranker
from rerank_lab.rerankers.late_interaction import is_multi_vector
from rerank_lab.score_cache import ScoreCache
from tests.tiny_models import MINILM, tiny_bert

WORDS = "cancer smoking heart diet sleep brain virus gene cell protein drug trial dose risk".split()


def _rows(n: int = 12, texts: int = 5) -> datasets.Dataset:
    """Rows of the contract: a query, its texts (the first relevant), a bm25-like teacher column."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        topic = WORDS[i % len(WORDS)]
        docs = [f"{topic} " + " ".join(rng.choice(WORDS, 12))] + [" ".join(rng.choice(WORDS, 12)) for _ in range(texts - 1)]
        rows.append(
            {
                "id": f"q{i}",
                "query": f"what about {topic}",
                "texts": docs,
                "text_ids": [f"d{i}-{j}" for j in range(texts)],
                "labels": [1] + [0] * (texts - 1),
                "teacher_scores.bm25": [5.0] + [float(x) for x in rng.uniform(0, 3, texts - 1)],
            }
        )
    return datasets.Dataset.from_list(rows)


def _cfg(base, **over) -> LateTrainConfig:
    settings = {
        "model": str(base),
        "dim": 16,
        "query_length": 8,
        "document_length": 24,
        "list_size": 4,
        "batch_size": 2,
        "logging_steps": 1,
    }
    return parse(LateTrainConfig, {**settings, **over}, "late_train")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("base"), labels=1)


def test_standard_contrastive_training_saves_a_multi_vector_model(base, tmp_path):
    metrics, history = train(_cfg(base, learning_rate=1e-3), _rows(), tmp_path / "late")
    assert metrics["train_examples"] == 12 and metrics["steps"] == 6 and metrics["dim"] == 16
    assert "pool_factor_batches" not in metrics and len([h for h in history if "loss" in h]) == 6
    assert is_multi_vector(str(tmp_path / "late"))
    saved = json.loads((tmp_path / "late" / "rerank_lab_train.json").read_text())
    assert saved["config"]["mode"] == "standard" and saved["metrics"]["steps"] == 6

    from sentence_transformers import MultiVectorEncoder

    model = MultiVectorEncoder(str(tmp_path / "late"), device="cpu")
    assert (model[0].query_length, model[0].document_length) == (8, 24)
    (q,) = model.encode_query(["what about cancer " + "cancer " * 20])
    assert q.shape == (8, 16) and torch.allclose(q.norm(dim=-1), torch.ones(8), atol=1e-5)


def test_the_same_seed_trains_the_same_model(base, tmp_path):
    cfg = _cfg(base, mode="pool-aware", pool_factor_max=3)
    first, _ = train(cfg, _rows(), tmp_path / "a")
    again, _ = train(cfg, _rows(), tmp_path / "b")
    assert first["pool_factor_batches"] == again["pool_factor_batches"]
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_pool_aware_training_draws_one_seeded_factor_per_batch(base, tmp_path):
    rows = _rows(n=24)
    draws = {}
    for seed in (1, 2):
        metrics, _ = train(_cfg(base, mode="pool-aware", pool_factor_max=3, seed=seed), rows, tmp_path / f"s{seed}")
        batches = metrics["pool_factor_batches"]
        assert set(batches) == {"1", "2", "3"} and sum(batches.values()) == metrics["steps"] == 12  # one factor per batch
        draws[seed] = batches
    assert draws[1] != draws[2]  # the seed draws the factors


def test_distillation_trains_on_the_teacher_column(base, tmp_path):
    metrics, _ = train(_cfg(base, loss="distillation", teacher="bm25"), _rows(), tmp_path / "kd")
    assert metrics["steps"] == 6 and metrics["last_logged_loss"] is not None
    with pytest.raises(InputError, match=r"no teacher column 'teacher_scores.minilm' \(teachers present: \['bm25'\]\)"):
        train(_cfg(base, loss="distillation", teacher="minilm"), _rows(), tmp_path / "none")
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"loss": "distillation"}, r"late_train\.teacher.*is needed by distillation"),
        ({"pool_factor_min": 3, "pool_factor_max": 2}, r"late_train\.pool_factor_max.*the range 3\.\.2 is empty"),
        ({"pool_method": "ward"}, r"late_train\.pool_method"),
        ({"mode": "pooled"}, r"late_train\.mode"),
    ],
)
def test_bad_settings_name_the_key(base, over, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(base, **over)


@pytest.mark.parametrize("method", ["kmeans", "hierarchical"])
def test_the_pooling_module_pools_like_the_score_stage_and_passes_gradients_to_every_token(method):
    rng = np.random.default_rng(3)
    doc = rng.normal(size=(13, 6))
    doc /= np.linalg.norm(doc, axis=1, keepdims=True)
    tokens = torch.tensor(doc, dtype=torch.float64, requires_grad=True)
    module = ClusterTokenPooling(3, method, seed=0)
    pooled = module.pool([tokens])[0]
    np.testing.assert_allclose(pooled.detach().numpy(), pool(doc, 3, method, seed=0, protected=1), atol=1e-12)
    assert torch.equal(pooled[0], tokens[0])  # the protected token as it was
    pooled[1:].sum().backward()
    assert tokens.grad[0].abs().sum() == 0 and bool((tokens.grad[1:].abs().sum(dim=1) > 0).all())
    queries = {"token_embeddings": tokens[None].detach(), "attention_mask": torch.ones(1, 13)}
    assert module(dict(queries), task="query")["token_embeddings"].shape == (1, 13, 6)  # queries pass through
    assert module(dict(queries), task="document")["token_embeddings"].shape == (1, 5, 6)  # 1 + 12 // 3
    assert module.calls == 1


def test_the_score_stage_scores_the_trained_model_by_maxsim_of_its_own_encodings(base, tmp_path):
    from sentence_transformers import MultiVectorEncoder

    train(_cfg(base, learning_rate=1e-3), _rows(), tmp_path / "late")
    folder = str(tmp_path / "late")
    pairs = [(r["query"], t) for r in _rows(n=3) for t in r["texts"][:3]]
    entry = make_reranker("colbert", {"type": "late-interaction", "model": "trained", "pool_factor": 2, "pool_method": "kmeans"})
    assert entry.trained_input == "late_model"
    got = entry.scorer(folder, ScoreCache(None)).score(pairs)
    model = MultiVectorEncoder(folder, device="cpu")
    want = []
    for q, d in pairs:
        qv = model.encode_query([q])[0].double().numpy()
        dv = pool(model.encode_document([d])[0].double().numpy(), 2, "kmeans", seed=0, protected=1)
        want.append(float((qv @ dv.T).max(axis=1).sum()))
    np.testing.assert_allclose(got, want, atol=1e-5)
    zero_shot = make_reranker("li", {"type": "late-interaction", "model": MINILM}).scorer(MINILM, None)
    assert not is_multi_vector(MINILM) and zero_shot.key != entry.scorer(folder, None).key


def test_the_train_late_command_writes_the_model_and_its_metrics_together(base, tmp_path, monkeypatch):
    import shutil

    import yaml

    from rerank_lab import cli
    from rerank_lab.io.datasets import save_dataset

    monkeypatch.chdir(tmp_path)  # paths as dvc.yaml gives them
    shutil.copytree(base, "models/pretrained/base")
    from rerank_lab.schema import to_dataset

    rows = [{**r, "context_spans": [[[0, len(t)]] for t in r["texts"]]} for r in _rows().to_list()]
    save_dataset(datasets.DatasetDict({"train": to_dataset(rows)}), "dataset")
    settings = {"model": "models/pretrained/base", "dim": 16, "query_length": 8, "document_length": 24, "list_size": 4, "batch_size": 4}
    Path("params.yaml").write_text(yaml.safe_dump({"late_train": {**settings, "mode": "pool-aware", "pool_factor_max": 2}}))
    args = ["train-late", "--params", "params.yaml", "--dataset", "dataset", "--models", "models/pretrained"]
    args += ["--output", "late", "--metrics", "m.json"]
    cli.cli.main(args, prog_name="rerank-lab", standalone_mode=False)
    metrics = json.loads(Path("m.json").read_text())
    assert metrics["steps"] == 3 and sum(metrics["pool_factor_batches"].values()) == 3 and "train_seconds" not in metrics
    assert is_multi_vector("late")
    Path("params.yaml").write_text(yaml.safe_dump({"late_train": {**settings, "model": str(base)}}))  # a folder outside models/pretrained
    with pytest.raises(ConfigError, match=r"late_train\.model names the local folder .* not under models/pretrained"):
        cli.cli.main([*args[:-4], "--output", "late2", "--metrics", "m2.json"], prog_name="rerank-lab", standalone_mode=False)
    assert not Path("late2").exists() and not Path("m2.json").exists()
