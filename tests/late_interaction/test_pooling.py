"""Document token pooling (hierarchical and k-means), MaxSim and the pool factor sampler: counts
worked out by hand, hierarchical pooling against scipy's Ward clustering computed here, the torch
variant against the numpy one, gradients through the cluster means."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

from rerank_lab.errors import ConfigError
from rerank_lab.late_interaction import maxsim, maxsim_pair, pool, pool_torch, pooled_count

METHODS = ["hierarchical", "kmeans"]


def _unit_rows(n: int, d: int = 16, seed: int = 16) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _row_set(x: np.ndarray) -> set[tuple[float, ...]]:
    """Rows as a set, rounded so that float32 / float64 summation order does not matter."""
    return {tuple(np.round(row, 5)) for row in np.asarray(x, dtype=np.float64)}


DOC = _unit_rows(25)  # [CLS] + 24 poolable tokens


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("n", "factor", "expected"),
    [
        (25, 2, 13),  # 24 // 2 = 12 clusters + [CLS]
        (25, 3, 9),  # 8 + 1
        (25, 4, 7),  # 6 + 1
        (25, 6, 5),  # 4 + 1
        (25, 30, 2),  # max(24 // 30, 1) = 1 cluster + 1
        (11, 4, 3),  # 10 // 4 = 2 clusters + 1
        (2, 6, 2),  # one poolable token: nothing to pool
    ],
)
def test_pooling_leaves_the_documented_number_of_vectors(method, n, factor, expected):
    out = pool(DOC[:n], factor, method)
    assert out.shape == (expected, DOC.shape[1])
    assert pooled_count(n, factor) == expected
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)  # the means are re-normalised


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("protected", [1, 2])
def test_protected_tokens_are_kept_bit_equal_and_kept_out_of_the_clusters(method, protected):
    out = pool(DOC, 4, method, protected=protected)
    assert np.array_equal(out[:protected], DOC[:protected])
    assert out.shape[0] == (25 - protected) // 4 + protected
    # the rest is the pooling of the other tokens alone: the protected ones joined no cluster
    assert np.array_equal(out[protected:], pool(DOC[protected:], 4, method, protected=0))


@pytest.mark.parametrize("method", METHODS)
def test_pool_factor_one_is_the_identity(method):
    assert np.array_equal(pool(DOC, 1, method), DOC)  # every row, in the same order
    assert np.array_equal(pool(DOC, 1, method, protected=0), DOC)


def test_hierarchical_pooling_equals_scipy_ward_on_cosine_distances():
    rest = DOC[1:].astype(np.float64)
    labels = fcluster(linkage(pdist(rest, "cosine"), method="ward"), t=24 // 3, criterion="maxclust")
    means = np.stack([rest[labels == c].mean(axis=0) for c in np.unique(labels)])
    assert len(means) == 8
    unit = means / np.linalg.norm(means, axis=1, keepdims=True)

    out = pool(DOC, 3, "hierarchical")
    assert np.array_equal(out[0], DOC[0])
    assert _row_set(out[1:]) == _row_set(unit)
    assert _row_set(pool(DOC, 3, "hierarchical", normalize=False)[1:]) == _row_set(means)  # PyLate keeps the raw means
    # and not merely any 8 means: k-means on the same tokens groups them otherwise
    assert _row_set(pool(DOC, 3, "kmeans")[1:]) != _row_set(unit)


def test_kmeans_is_seeded_and_repeatable():
    first, again = pool(DOC, 3, "kmeans", seed=0), pool(DOC, 3, "kmeans", seed=0)
    assert np.array_equal(first, again)
    assert _row_set(pool(DOC, 3, "kmeans", seed=1)[1:]) != _row_set(first[1:])  # the seed is used


def test_maxsim_equals_the_hand_computed_score():
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    d = np.array([[0.6, 0.8], [1.0, 0.0], [0.0, -1.0]])
    # query token 1: max(0.6, 1.0, 0.0) = 1.0; query token 2: max(0.8, 0.0, -1.0) = 0.8
    assert maxsim_pair(q, d) == pytest.approx(1.8)

    # batched: the pair above, and a second pair whose document is padded by one row
    q2 = np.array([[0.0, 1.0], [0.6, 0.8]])
    d2 = np.array([[0.0, 1.0], [0.8, 0.6], [5.0, 5.0]])  # the last row is padding and must not count
    queries = torch.tensor(np.stack([q, q2]), dtype=torch.float32)
    docs = torch.tensor(np.stack([d, d2]), dtype=torch.float32)
    doc_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # pair 2: query token 1: max(1.0, 0.6) = 1.0; query token 2: max(0.8, 0.48 + 0.48) = 0.96
    assert maxsim(queries, docs, doc_mask=doc_mask).tolist() == pytest.approx([1.8, 1.96])
    assert maxsim(queries, docs).tolist() == pytest.approx([1.8, 5.0 + 7.0])  # unmasked, the padding row wins: 0*5 + 1*5, 0.6*5 + 0.8*5
    # a masked query token adds nothing: pair 1 keeps only its first token (1.0)
    query_mask = torch.tensor([[1, 0], [1, 1]])
    assert maxsim(queries, docs, query_mask=query_mask, doc_mask=doc_mask).tolist() == pytest.approx([1.0, 1.96])


def _batch() -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Two documents of 25 and 14 tokens, the second right-padded to 25."""
    lengths = [25, 14]
    emb = torch.zeros(2, 25, DOC.shape[1])
    emb[0] = torch.from_numpy(DOC)
    emb[1, :14] = torch.from_numpy(_unit_rows(14, seed=3))
    mask = torch.arange(25)[None, :] < torch.tensor(lengths)[:, None]
    return emb, mask.long(), lengths


@pytest.mark.parametrize("method", METHODS)
def test_torch_pooling_matches_numpy_and_passes_gradients_to_every_clustered_token(method):
    emb, mask, lengths = _batch()
    emb.requires_grad_(True)
    pooled, pooled_mask = pool_torch(emb, mask, 4, method, seed=5)

    expected = [pool(emb[i, :n].detach().numpy(), 4, method, seed=5) for i, n in enumerate(lengths)]
    assert pooled.shape == (2, 7, DOC.shape[1])  # 24 // 4 + 1 = 7; 13 // 4 + 1 = 4, padded to 7
    assert pooled_mask.tolist() == [[True] * 7, [True] * 4 + [False] * 3]
    for i, want in enumerate(expected):
        torch.testing.assert_close(pooled[i, : len(want)], torch.from_numpy(want))
    assert not pooled[1, 4:].any()  # padding rows are zeros

    weights = torch.randn(pooled.shape, generator=torch.Generator().manual_seed(0))
    (pooled * weights * pooled_mask[..., None]).sum().backward()
    grad_norm = emb.grad.norm(dim=-1)  # (2, 25)
    assert bool((grad_norm[0] > 0).all())
    assert bool((grad_norm[1, :14] > 0).all())
    assert not emb.grad[1, 14:].any()  # the padding got no gradient


def test_torch_pooling_factor_one_is_the_identity():
    emb, mask, _ = _batch()
    pooled, pooled_mask = pool_torch(emb, mask, 1, "kmeans")
    assert pooled is emb
    assert torch.equal(pooled_mask, mask.bool())


def test_bad_settings_say_what_to_use():
    with pytest.raises(ConfigError, match="pool factor 0 is not a whole number >= 1"):
        pool(DOC, 0, "kmeans")
    with pytest.raises(ConfigError, match="unknown pool method 'ward'.*hierarchical, kmeans"):
        pool(DOC, 2, "ward")
    with pytest.raises(ValueError, match=r"one document's token vectors \(n, d\)"):
        pool(DOC[None], 2, "kmeans")
    with pytest.raises(ValueError, match="a document has no unmasked token"):
        maxsim(torch.ones(1, 2, 2), torch.ones(1, 3, 2), doc_mask=torch.zeros(1, 3))
