"""The LLM pruner against a real OpenAI-compatible server (``transformers serve`` with a tiny random
Llama, tests/llm_server.py): answers become 0/1 labels through the label stage, finished batches
are cached so a killed run resumes where it stopped, ``force`` asks again, and a malformed or empty
answer stops with the record named."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pytest

from rerank_lab.errors import InputError
from rerank_lab.label import LabelConfig, label
from rerank_lab.pruners import make_pruner
from rerank_lab.pruners.llm import LLMPruner
from rerank_lab.schema import to_dataset
from tests.llm_server import ALWAYS_MAYBE, STOP_AT_ONCE, YES_NO_ONLY, build_tiny_llm, transformers_serve

ROOT = Path(__file__).resolve().parents[2]
PAIRS = [(f"query number {i}", " ".join(["word"] * (i % 7 + 1)) + f" sentence {i}") for i in range(24)]
RECORDS = [f"record q{i}, text 0, span 0" for i in range(24)]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("llm")
    model = build_tiny_llm(root / "tiny-llama")
    with transformers_serve(model, root / "serve.log") as url:
        yield url, str(model)


def _pruner(server, cache: Path, **settings) -> LLMPruner:
    url, model = server
    return make_pruner("llm", {"type": "llm", "base_url": url, "model": model, "cache": str(cache), "logit_bias": YES_NO_ONLY, **settings})


def test_answers_become_labels_and_a_rerun_asks_nothing(server, tmp_path):
    pruner = _pruner(server, tmp_path / "cache", batch_size=5, concurrency=2)
    scores = pruner.scores(PAIRS, RECORDS)
    assert set(scores) <= {0.0, 1.0} and len(scores) == len(PAIRS)
    assert (pruner.requests, pruner.cached_batches) == (24, 0)
    assert len(list((tmp_path / "cache").glob("*.json"))) == 5  # ceil(24 / 5) finished batches
    again = _pruner(server, tmp_path / "cache", batch_size=5, concurrency=2)
    assert again.scores(PAIRS, RECORDS) == scores
    assert (again.requests, again.cached_batches) == (0, 5)
    forced = _pruner(server, tmp_path / "cache", batch_size=5, concurrency=2, force=True)
    assert forced.scores(PAIRS, RECORDS) == scores  # greedy decoding: the same answers
    assert (forced.requests, forced.cached_batches) == (24, 0)


def test_the_label_stage_labels_spans_with_the_llm(server, tmp_path):
    row = {
        "id": "q1",
        "query": "how do cats purr",
        "texts": ["Cats purr. Rivers flow."],
        "text_ids": ["d1"],
        "context_spans": [[[0, 10], [11, 23]]],
        "labels": [1],
        "context_spans_relevance": [[1, 0]],
    }
    dd = datasets.DatasetDict({"test": to_dataset([row])})
    pruner = _pruner(server, tmp_path / "cache")
    out, metrics = label(dd, pruner, LabelConfig(threshold=0.5, splits=("test",)), None)
    direct = np.array(
        _pruner(server, tmp_path / "other").scores([("how do cats purr", "Cats purr."), ("how do cats purr", "Rivers flow.")], ["a", "b"])
    )
    assert out["test"][0]["context_spans_relevance"] == [(direct >= 0.5).astype(int).tolist()]
    assert metrics["test"]["spans"] == 2


def test_a_killed_run_resumes_after_its_last_finished_batch(server, tmp_path):
    url, model = server
    cache = tmp_path / "cache"
    pairs = [(f"query {i}", f"sentence {i}") for i in range(240)]  # 120 distinct batches of 2: long enough to be killed midway
    records = [f"record q{i}, text 0, span 0" for i in range(len(pairs))]
    script = (
        "import json, sys\n"
        "from rerank_lab.pruners import make_pruner\n"
        "s = json.loads(sys.argv[1])\n"
        "make_pruner('llm', s['settings']).scores([tuple(p) for p in s['pairs']], s['records'])\n"
    )
    settings = {
        "type": "llm",
        "base_url": url,
        "model": model,
        "cache": str(cache),
        "logit_bias": YES_NO_ONLY,
        "batch_size": 2,
        "concurrency": 1,
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps({"settings": settings, "pairs": pairs, "records": records})], cwd=ROOT
    )
    deadline = time.monotonic() + 120
    while len(list(cache.glob("*.json"))) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    done = len(list(cache.glob("*.json")))
    assert 3 <= done < 120, "the run was to be killed midway"
    resumed = make_pruner("llm", settings)
    scores = resumed.scores(pairs, records)
    assert resumed.cached_batches == done and resumed.requests == len(pairs) - 2 * done
    assert scores == _pruner(server, tmp_path / "fresh", batch_size=2).scores(pairs, records)


@pytest.mark.parametrize(
    ("bias", "said"),
    [
        (ALWAYS_MAYBE, r"the LLM's answer 'maybe maybe maybe maybe' \(cut off at max_tokens\) is not yes or no"),
        (STOP_AT_ONCE, r"the LLM's answer '' is not yes or no"),
    ],
)
def test_a_malformed_or_empty_answer_names_the_record(server, tmp_path, bias, said):
    pruner = _pruner(server, tmp_path / "cache", logit_bias=bias, batch_size=4, concurrency=1)
    with pytest.raises(InputError, match=rf"tiny-llama\): record q0, text 0, span 0: {said} \(fix: "):
        pruner.scores(PAIRS[:4], RECORDS[:4])
    assert not list((tmp_path / "cache").glob("*.json"))  # a failed batch is not cached


def test_the_api_key_comes_from_the_environment_only(monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", "secret-from-env")
    pruner = make_pruner("llm", {"type": "llm", "model": "m", "api_key_env": "MY_LLM_KEY"})
    assert pruner._client().api_key == "secret-from-env"
    assert "secret" not in json.dumps(pruner.batch_key([("q", "s")]))
