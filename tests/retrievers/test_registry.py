"""make_retriever / make_fusion: params.yaml entries to objects, with errors that list the valid names."""

from __future__ import annotations

import pytest

from rerank_lab.errors import ConfigError
from rerank_lab.retrievers import make_fusion, make_retriever
from rerank_lab.retrievers.bm25_bm25s import Bm25sBM25
from rerank_lab.retrievers.dense import DenseRetriever
from rerank_lab.retrievers.fusion import RRF, WeightedFusion


def test_builds_the_configured_classes():
    assert make_retriever("bm25", {"type": "bm25-bm25s", "k1": 1.2}) == Bm25sBM25(k1=1.2)
    assert make_retriever("dense", {"type": "dense", "batch_size": 8}) == DenseRetriever(batch_size=8)
    assert make_fusion("rrf", {"type": "rrf", "runs": ["bm25", "dense"], "k0": 10}) == RRF(runs=("bm25", "dense"), k0=10)
    fusion = make_fusion("mix", {"type": "weighted", "runs": ["a", "b"], "weights": [0.3, 0.7]})
    assert fusion == WeightedFusion(runs=("a", "b"), weights=(0.3, 0.7))  # lists become tuples


def test_settings_are_not_modified():
    settings = {"type": "weighted", "runs": ["a", "b"], "weights": [0.5, 0.5]}
    make_fusion("mix", settings)
    assert settings == {"type": "weighted", "runs": ["a", "b"], "weights": [0.5, 0.5]}


def test_unknown_retriever_type_lists_valid_types():
    expected = r"^retrievers\.sp\.type: unknown retriever type, got 'splade' \(fix: use one of: bm25-bm25s, bm25-pyserini, dense\)$"
    with pytest.raises(ConfigError, match=expected):
        make_retriever("sp", {"type": "splade"})


def test_unknown_fusion_type_lists_valid_types():
    with pytest.raises(ConfigError, match=r"^fusions\.f\.type: unknown fusion type, got 'combsum' \(fix: use one of: rrf, weighted\)$"):
        make_fusion("f", {"type": "combsum"})


@pytest.mark.parametrize("settings", [{}, None, {"k1": 0.9}])
def test_missing_type(settings):
    with pytest.raises(ConfigError, match=r"^retrievers\.bm25\.type: missing \(fix: set type to one of: bm25-pyserini, bm25-bm25s, dense"):
        make_retriever("bm25", settings)
    with pytest.raises(ConfigError, match=r"^fusions\.f\.type: missing \(fix: set type to one of: rrf, weighted\)$"):
        make_fusion("f", settings)


def test_unknown_key_lists_valid_keys():
    expected = r"^retrievers\.bm25\.k2: unknown key \(fix: did you mean 'k1'\? valid keys: b, k1, method, stemmer, stopwords\)$"
    with pytest.raises(ConfigError, match=expected):
        make_retriever("bm25", {"type": "bm25-bm25s", "k2": 1.0})
    with pytest.raises(ConfigError, match=r"^fusions\.f\.weight: unknown key \(fix: valid keys: k0, runs\)$"):  # the first one
        make_fusion("f", {"type": "rrf", "weight": 1, "k": 60})


def test_invalid_values_surface_as_config_errors():
    with pytest.raises(ConfigError, match=r"^fusions\.f\.weights: must list one weight per run \(2 runs\), got \[1\.0\]"):
        make_fusion("f", {"type": "weighted", "runs": ["a", "b"], "weights": [1.0]})
