"""Document token pooling and MaxSim for late-interaction (ColBERT-style) rerankers.

A document's token embeddings are clustered and each cluster replaced by its mean, so an index
holds about ``1/factor`` of the vectors. The first ``protected`` tokens (the [CLS] / document
marker) are never pooled. Vectors per document::

    n' = n - protected                      # the poolable tokens
    k  = max(n' // factor, 1)               # clusters asked for
    vectors = n             if k >= n'      # factor 1, or n' <= 1: nothing to pool, rows unchanged
              k + protected otherwise       # at most: tied merge heights or duplicate tokens can leave fewer

``hierarchical`` follows PyLate 1.6.0's ``ColBERT.pool_embeddings_hierarchical`` (inference only
there): Ward linkage (scipy) on the condensed matrix of cosine distances ``1 - cos`` between the
poolable tokens, cut by ``fcluster(criterion="maxclust", t=k)``, the protected tokens put back in
front, empty clusters dropped, clusters in label order. Two differences, both deliberate: distances
are computed in float64 and clipped at 0 (float32 rounding can make ``1 - cos`` of near-duplicates
negative), and the means are L2-normalised again (PyLate keeps the raw means, whose norm is below 1;
``normalize=False`` reproduces that). ``kmeans`` (the "Learn to Pool" fork's method, absent from
PyLate) is scikit-learn's ``KMeans`` with k-means++ and a fixed ``n_init``, seeded.

References: Clavié et al., "Reducing the Footprint of Multi-Vector Retrieval with Minimal
Performance Impact via Token Pooling" (2024); PyLate (lightonai/pylate, pylate/models/colbert.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from rerank_lab.errors import ConfigError, unknown_name

if TYPE_CHECKING:
    import torch

KMEANS_N_INIT = 1  # scikit-learn's "auto" for k-means++ made explicit, so a library upgrade cannot move it


def _hierarchical_labels(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Ward on cosine distances (as PyLate), cut into at most ``k`` clusters; ``seed`` is unused."""
    from scipy.cluster.hierarchy import fcluster, linkage

    unit = x.astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    distance = np.clip(1.0 - unit @ unit.T, 0.0, None)
    condensed = distance[np.triu_indices(len(x), k=1)]  # scipy's condensed order: row-major upper triangle
    return fcluster(linkage(condensed, method="ward"), t=k, criterion="maxclust")


def _kmeans_labels(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, init="k-means++", n_init=KMEANS_N_INIT, random_state=seed).fit(x).labels_


POOL_METHODS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "hierarchical": _hierarchical_labels,
    "kmeans": _kmeans_labels,
}


def _check(factor: int, method: str, protected: int) -> None:
    if isinstance(factor, bool) or not isinstance(factor, int | np.integer) or factor < 1:
        raise ConfigError(f"pool factor {factor!r} is not a whole number >= 1", fix="use 1 (no pooling), 2, 3, 4, 6, ...")
    if method not in POOL_METHODS:
        raise unknown_name("pool method", method, list(POOL_METHODS))
    if protected < 0:
        raise ConfigError(f"protected={protected} is negative", fix="use 0, or 1 to keep the [CLS]/marker token")


def pooled_count(n: int, factor: int, protected: int = 1) -> int:
    """How many vectors :func:`pool` leaves of a document of ``n`` token vectors (see the module doc).

    >>> pooled_count(301, 6)  # [CLS] + 300 tokens: 50 clusters + [CLS]
    51
    >>> [pooled_count(11, f) for f in (1, 2, 3, 4, 6, 20)]
    [11, 6, 4, 3, 2, 2]
    >>> pooled_count(2, 6), pooled_count(1, 6)  # one or no poolable token: unchanged
    (2, 1)
    """
    rest = max(n - protected, 0)
    k = max(rest // factor, 1)
    return n if k >= rest else k + protected


def cluster_labels(vectors: np.ndarray, factor: int, method: str, seed: int = 0) -> np.ndarray | None:
    """Cluster ids 0..m-1 of the rows of ``vectors`` (the poolable tokens only, (n', d)), numbered
    in the order of the method's own labels; ``None`` when there is nothing to pool (k >= n')."""
    _check(factor, method, 0)
    k = max(len(vectors) // factor, 1)
    if k >= len(vectors):
        return None
    labels = POOL_METHODS[method](np.asarray(vectors), k, seed)
    return np.unique(labels, return_inverse=True)[1].reshape(-1)  # empty clusters dropped, ids made contiguous


def pool(vectors: np.ndarray, factor: int, method: str, seed: int = 0, protected: int = 1, normalize: bool = True) -> np.ndarray:
    """Pool one document's L2-normalised token vectors ``(n, d)`` into ``(pooled_count(n), d)``:
    the first ``protected`` rows as they are, then one (re-normalised) mean per cluster of the rest.

    >>> rng = np.random.default_rng(0)
    >>> doc = rng.normal(size=(11, 8)).astype(np.float32)
    >>> doc /= np.linalg.norm(doc, axis=1, keepdims=True)
    >>> pool(doc, 3, "hierarchical").shape, pool(doc, 3, "kmeans").shape  # [CLS] + max(10 // 3, 1)
    ((4, 8), (4, 8))
    >>> bool((pool(doc, 3, "kmeans")[0] == doc[0]).all()), pool(doc, 1, "kmeans") is doc
    (True, True)
    """
    _check(factor, method, protected)
    if vectors.ndim != 2:
        raise ValueError(f"pool takes one document's token vectors (n, d), got shape {vectors.shape}")
    head, rest = vectors[:protected], vectors[protected:]
    labels = cluster_labels(rest, factor, method, seed)
    if labels is None:  # factor 1, or one poolable token at most: the document as it is
        return vectors
    sums = np.zeros((labels.max() + 1, vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, rest)
    means = sums / np.bincount(labels)[:, None]
    if normalize:
        means /= np.linalg.norm(means, axis=1, keepdims=True)
    return np.concatenate([head, means.astype(vectors.dtype)])


def pool_tokens_torch(
    tokens: torch.Tensor, factor: int, method: str, seed: int = 0, protected: int = 1, normalize: bool = True
) -> torch.Tensor:
    """:func:`pool` of one document's token embeddings ``(n, d)`` inside a training forward: the
    clusters are found on a detached copy (no gradient through the assignment), the outputs are
    means of the differentiable embeddings, so every token of a cluster gets a gradient."""
    import torch
    import torch.nn.functional as F

    _check(factor, method, protected)
    rest = tokens[protected:]
    labels = cluster_labels(rest.detach().float().cpu().numpy(), factor, method, seed)
    if labels is None:
        return tokens
    index = torch.as_tensor(labels, device=tokens.device)
    sums = tokens.new_zeros(int(labels.max()) + 1, tokens.shape[1]).index_add(0, index, rest)
    means = sums / torch.bincount(index).unsqueeze(1).to(sums.dtype)
    return torch.cat([tokens[:protected], F.normalize(means, dim=-1) if normalize else means])


def pool_torch(
    embeddings: torch.Tensor,
    mask: torch.Tensor,
    factor: int,
    method: str,
    seed: int = 0,
    protected: int = 1,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pool_tokens_torch` of a padded batch: ``embeddings`` (B, L, d) with ``mask`` (B, L) ->
    pooled (B, K, d) and its mask (B, K), K the batch's largest pooled count; padding rows are
    zeros. Factor 1 returns the inputs unchanged.
    """
    import torch
    from torch.nn.utils.rnn import pad_sequence

    _check(factor, method, protected)
    if embeddings.dim() != 3 or mask.shape != embeddings.shape[:2]:
        raise ValueError(f"pool_torch takes embeddings (B, L, d) and mask (B, L), got {tuple(embeddings.shape)} and {tuple(mask.shape)}")
    if factor == 1:
        return embeddings, mask.bool()
    docs = [pool_tokens_torch(emb[keep], factor, method, seed, protected, normalize) for emb, keep in zip(embeddings, mask.bool())]
    counts = torch.tensor([len(d) for d in docs], device=embeddings.device)
    pooled_mask = torch.arange(int(counts.max()), device=embeddings.device)[None, :] < counts[:, None]
    return pad_sequence(docs, batch_first=True), pooled_mask


def maxsim(
    query: torch.Tensor,
    doc: torch.Tensor,
    query_mask: torch.Tensor | None = None,
    doc_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """ColBERT late interaction of B (query, document) pairs: query (B, Lq, d), doc (B, Ld, d) ->
    (B,), for each unmasked query token its largest dot product with an unmasked document token,
    summed over the query tokens.

    >>> import torch
    >>> q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> d = torch.tensor([[[0.6, 0.8], [1.0, 0.0], [0.0, -1.0]]])
    >>> maxsim(q, d).tolist()  # max(0.6, 1, 0) + max(0.8, 0, -1)
    [1.7999999523162842]
    """
    import torch

    sim = torch.einsum("bqd,bkd->bqk", query, doc)  # (B, Lq, Ld)
    if doc_mask is not None:
        doc_mask = doc_mask.bool()
        if not bool(doc_mask.any(dim=1).all()):
            raise ValueError("maxsim: a document has no unmasked token (every row of doc_mask needs at least one 1)")
        sim = sim.masked_fill(~doc_mask[:, None, :], float("-inf"))
    best = sim.max(dim=-1).values  # (B, Lq)
    if query_mask is not None:
        best = best.masked_fill(~query_mask.bool(), 0.0)
    return best.sum(dim=-1)


def maxsim_pair(query: np.ndarray, doc: np.ndarray) -> float:
    """:func:`maxsim` of one pair in numpy: query (Lq, d), doc (Ld, d), no padding.

    >>> maxsim_pair(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.6, 0.8], [1.0, 0.0], [0.0, -1.0]]))
    1.8
    """
    return float((query @ doc.T).max(axis=1).sum())
