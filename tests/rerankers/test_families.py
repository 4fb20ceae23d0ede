"""Every reranker family through the one engine: the scores sentence-transformers itself gives on
the same model (CrossEncoder.predict; a bi-encoder's cosine), on tiny models of the real
architectures built here; the score cache's key tells the families, prompts and templates apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rerank_lab.errors import ConfigError
from rerank_lab.rerankers import make_reranker
from rerank_lab.score_cache import ScoreCache
from tests.tiny_models import CHAT_TEMPLATE, MINILM, tiny_bert, tiny_qwen3

PAIRS = [
    ("what is a cat", "a cat is a small animal that purrs and sleeps most of the day"),
    ("dogs bark", "the weather today is sunny and warm"),
    ("short", "x"),
    ("what is a cat", "a cat is a small animal that purrs and sleeps most of the day"),  # again: scored once
    ("a much longer query about the chemistry of proteins in cells", "proteins fold " * 30),  # truncated
    ("dogs bark", "dogs bark at night when they hear a noise outside"),
]
MAX_LENGTH = 48
INIT = 0.3  # weights large enough that the pairs score far apart (the check is not a constant)
PROMPT = "Judge whether the document answers the query"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {
        "bert1": tiny_bert(root / "bert1", 1, init_range=INIT),
        "bert2": tiny_bert(root / "bert2", 2, init_range=INIT),
        "qwen": tiny_qwen3(root / "qwen", init_range=INIT),
        "qwen-chat": tiny_qwen3(root / "qwen-chat", chat_template=CHAT_TEMPLATE, init_range=INIT),
    }


def _predict(folder, settings: dict) -> np.ndarray:
    """sentence-transformers' own scores: CrossEncoder.predict, no activation; a 2-class head's log-odds."""
    from sentence_transformers import CrossEncoder

    extra = {"processor_kwargs": {"chat_template": settings["chat_template"]}} if settings.get("chat_template") else {}
    model = CrossEncoder(str(folder), max_length=MAX_LENGTH, device="cpu", **extra)
    out = model.predict(PAIRS, activation_fn=torch.nn.Identity(), prompt=settings.get("prompt"), batch_size=2)
    return out[:, 1] - out[:, 0] if out.ndim == 2 else out


CASES = {
    "cross-encoder, 1 logit": ("bert1", {"type": "cross-encoder"}),
    "cross-encoder, 2 classes": ("bert2", {"type": "cross-encoder"}),
    "causal-lm": ("qwen", {"type": "causal-lm"}),
    "causal-lm, prompt": ("qwen", {"type": "causal-lm", "prompt": PROMPT}),
    "causal-lm, its chat template, prompt": ("qwen-chat", {"type": "causal-lm", "prompt": PROMPT}),
    "causal-lm, template from params": ("qwen", {"type": "causal-lm", "prompt": PROMPT, "chat_template": CHAT_TEMPLATE}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_engine_scores_equal_sentence_transformers_predict(models, case, tmp_path):
    name, settings = CASES[case]
    folder = models[name]
    reranker = make_reranker("r", {**settings, "model": str(folder), "max_length": MAX_LENGTH, "batch_tokens": 100})  # several batches
    scorer = reranker.scorer(str(folder), ScoreCache(tmp_path / "scores.sqlite"))
    want = _predict(folder, settings)
    np.testing.assert_allclose(scorer.score(PAIRS), want, atol=1e-4)
    assert scorer.pairs_scored == 5 and scorer.forward_calls > 1  # the repeated pair once; a token budget, not one batch
    assert np.ptp(want) > 0.05  # the pairs score differently: equality is not a constant


def test_a_bi_encoder_scores_the_cosine_of_its_embeddings(tmp_path):
    from sentence_transformers import SentenceTransformer

    from rerank_lab.models import resolve_model

    scorer = make_reranker("bi", {"type": "bi-encoder", "model": MINILM, "max_length": MAX_LENGTH}).scorer(MINILM, ScoreCache(None))
    model = SentenceTransformer(resolve_model(MINILM), device="cpu")
    model.max_seq_length = MAX_LENGTH
    q = model.encode([q for q, _ in PAIRS], convert_to_tensor=True)
    p = model.encode([p for _, p in PAIRS], convert_to_tensor=True)
    want = torch.nn.functional.cosine_similarity(q, p).numpy()
    np.testing.assert_allclose(scorer.score(PAIRS), want, atol=1e-4)
    assert scorer.pairs_scored == 5


def test_the_key_tells_families_prompts_templates_and_casts_apart(models):
    def key(settings, folder="qwen"):
        return make_reranker("r", {**settings, "model": str(models[folder])}).scorer(str(models[folder]), None).key

    causal = {"type": "causal-lm"}
    keys = [
        key(causal),
        key({**causal, "prompt": PROMPT}),
        key({**causal, "prompt": PROMPT + "."}),
        key({**causal, "chat_template": CHAT_TEMPLATE}),
        key({**causal, "dtype": "bfloat16"}),
        key({**causal, "dtype": "bfloat16", "cast": True}),
        key({"type": "cross-encoder"}, "bert1"),
        key({"type": "bi-encoder"}, "bert1"),
    ]
    assert len(set(keys)) == len(keys)
    assert key({**causal, "prompt": PROMPT}) == key({**causal, "prompt": PROMPT})


def test_cast_runs_the_weights_in_bf16_close_to_fp32(models):
    folder = str(models["bert1"])
    fp32 = make_reranker("r", {"type": "cross-encoder", "model": folder, "max_length": MAX_LENGTH}).scorer(folder, None)
    fast = make_reranker("r", {"type": "cross-encoder", "model": folder, "max_length": MAX_LENGTH, "dtype": "bfloat16", "cast": True})
    fast = fast.scorer(folder, None)
    np.testing.assert_allclose(fast.score(PAIRS), fp32.score(PAIRS), atol=5e-2)
    assert {p.dtype for p in fast._load().parameters()} == {torch.bfloat16}
    assert fast.identity["weights"] == "bfloat16" and "weights" not in fp32.identity


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"type": "causal-lm"}, r"^rerankers\.r\.model: "),
        (
            {"type": "listwise"},
            r"^rerankers\.r\.type: unknown reranker type, got 'listwise' \(fix: did you mean 'listwise-llm'\? use one of: bi-encoder, ",
        ),
        ({"type": "cross-encoder", "dtype": "int4"}, r"^rerankers\.r\.dtype: "),
    ],
)
def test_a_bad_entry_is_one_line_naming_its_key(settings, message):
    with pytest.raises(ConfigError, match=message) as err:
        make_reranker("r", settings)
    assert "\n" not in str(err.value)


def test_a_family_refuses_a_model_of_another_architecture(models):
    with pytest.raises(ConfigError, match=r"is not a causal LM .*type: cross-encoder"):
        make_reranker("r", {"type": "causal-lm", "model": "x"}).scorer(str(models["bert1"]), None)
