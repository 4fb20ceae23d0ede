"""DenseRetriever with the real packaged all-MiniLM-L6-v2 (loaded once per session), and resolve_model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from rerank_lab.errors import ConfigError
from rerank_lab.io.trec import ranked
from rerank_lab.models import resolve_model
from rerank_lab.retrievers.dense import DenseRetriever

# Lengths differ on purpose: the index encodes longest first and must restore the corpus order.
CORPUS = {
    "bake": "To bake bread, mix flour, water, yeast and salt, let the dough rise for a few hours, then bake it in a hot oven.",
    "photo": "Plants use photosynthesis to turn sunlight, water and carbon dioxide into sugar and oxygen.",
    "volcano": "A volcano erupts when molten rock rises.",
    "bank": "Interest rates were raised by the central bank to fight inflation.",
    "football": "The striker scored twice in the second half and the home team won the match.",
}
QUERIES = {
    "q-photo": "How do green plants make food from light?",
    "q-bank": "Why did the monetary authority increase borrowing costs?",
    "q-volcano": "What happens when magma comes up to the surface?",
}


@pytest.fixture(scope="session")
def dense_index(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dense-index")
    DenseRetriever().index(list(CORPUS), list(CORPUS.values()), out)
    return out


@pytest.fixture(scope="session")
def dense_run(dense_index) -> dict:
    return DenseRetriever().search(dense_index, QUERIES, depth=3)


@pytest.fixture(scope="session")
def reference_model():
    """The same model loaded straight with sentence-transformers, independent of rerank_lab's cache."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device="cpu")
    model.max_seq_length = 256
    return model


def test_index_files(dense_index):
    assert {p.name for p in dense_index.iterdir()} == {"embeddings.npy", "doc_ids.json"}
    emb = np.load(dense_index / "embeddings.npy")
    assert emb.shape == (5, 384)
    assert emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), np.ones(5), atol=1e-5)
    assert json.loads((dense_index / "doc_ids.json").read_text()) == list(CORPUS)


def test_embeddings_are_stored_in_corpus_order(dense_index, reference_model):
    emb = np.load(dense_index / "embeddings.npy")
    want = reference_model.encode(list(CORPUS.values()), normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(emb, want, atol=1e-5)


def test_paraphrase_ranks_the_right_doc_first(dense_run):
    assert {q: ranked(docs)[0][0] for q, docs in dense_run.items()} == {"q-photo": "photo", "q-bank": "bank", "q-volcano": "volcano"}


def test_depth_is_respected(dense_run, dense_index):
    assert all(len(docs) == 3 for docs in dense_run.values())
    full = DenseRetriever().search(dense_index, QUERIES, depth=50)
    assert all(len(docs) == 5 for docs in full.values())  # depth larger than the corpus: every doc
    assert all(dense_run[q] == dict(ranked(full[q])[:3]) for q in QUERIES)


def test_scores_equal_cosine_similarities(dense_index, reference_model):
    run = DenseRetriever().search(dense_index, QUERIES, depth=5)
    docs = reference_model.encode(list(CORPUS.values()), convert_to_numpy=True)
    queries = reference_model.encode(list(QUERIES.values()), convert_to_numpy=True)
    for q, qid in zip(queries, QUERIES):
        for i, did in enumerate(CORPUS):
            cosine = float(q @ docs[i] / (np.linalg.norm(q) * np.linalg.norm(docs[i])))
            assert run[qid][did] == pytest.approx(cosine, abs=1e-5), (qid, did)
            assert type(run[qid][did]) is float


def test_prefixes_change_the_encoding(dense_index):
    plain = DenseRetriever().search(dense_index, {"q": "volcano"}, depth=1)
    prefixed = DenseRetriever(query_prefix="query: ").search(dense_index, {"q": "volcano"}, depth=1)
    assert list(plain["q"]) == list(prefixed["q"]) == ["volcano"]
    assert plain["q"]["volcano"] != prefixed["q"]["volcano"]


# -- resolve_model --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"])
def test_packaged_name_resolves_to_a_local_folder(name):
    path = Path(resolve_model(name))
    assert path.is_dir()
    assert (path / "config.json").is_file() and (path / "modules.json").is_file()


def test_existing_folder_is_returned(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path)


def test_hub_id_is_returned_unchanged():
    assert resolve_model("BAAI/bge-reranker-v2-m3") == "BAAI/bge-reranker-v2-m3"
    assert resolve_model("bert-base-uncased") == "bert-base-uncased"


@pytest.mark.parametrize("name", ["./no/such/model", "/no/such/model", "org/name/extra"])
def test_missing_path_raises(name):
    with pytest.raises(ConfigError, match=re.escape(f"model path '{name}' does not exist (fix: give an existing folder")):
        resolve_model(name)
