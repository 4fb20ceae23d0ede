"""Context-relevance datasets and corpora on disk: validated on every load and save.

Saved folders are byte-reproducible: ``datasets`` stamps each split with a random fingerprint,
which would make DVC see a new output on every rerun; we replace it by a hash of the data.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import datasets

from rerank_lab.errors import InputError
from rerank_lab.io.atomic import atomic_dir
from rerank_lab.schema import SPLITS, validate_corpus, validate_dataset

datasets.disable_progress_bars()
datasets.disable_caching()


def _pin_fingerprints(folder: Path) -> None:
    for state_file in folder.rglob("state.json"):
        digest = hashlib.sha256()
        for arrow in sorted(state_file.parent.glob("*.arrow")):
            digest.update(arrow.read_bytes())
        state = json.loads(state_file.read_text())
        state["_fingerprint"] = digest.hexdigest()[:16]
        state_file.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")


def save_dataset(dd: datasets.DatasetDict, path: str | Path) -> None:
    """Validate and write a DatasetDict to ``path`` atomically.

    Empty splits are left out: ``datasets`` cannot load a split saved with no rows.
    """
    dd = datasets.DatasetDict({s: dd[s] for s in SPLITS if s in dd and len(dd[s])})
    validate_dataset(dd, path=str(path))
    with atomic_dir(path) as tmp:
        dd.save_to_disk(str(tmp))
        _pin_fingerprints(tmp)


def save_corpus(corpus: datasets.Dataset, path: str | Path) -> None:
    """Validate and write a corpus Dataset to ``path`` atomically."""
    validate_corpus(corpus, path=str(path))
    with atomic_dir(path) as tmp:
        corpus.save_to_disk(str(tmp))
        _pin_fingerprints(tmp)


def _load(path: str | Path, what: str):
    p = Path(path)
    if not p.exists():
        raise InputError(f"no {what} here", path=p, fix="run the stage that writes it first (dvc repro)")
    if p.is_dir() and (p / "state.json").is_file() and not any(p.glob("*.arrow")):
        # a Dataset saved with no rows has no shard; datasets then fails with "list index out of range"
        raise InputError(f"the {what} holds no rows", path=p, fix="rewrite it with the stage that writes it (it refuses empty data now)")
    try:
        return datasets.load_from_disk(str(p))
    except Exception as exc:  # datasets raises several types for a damaged folder
        raise InputError(f"cannot read the {what}: {exc}", path=p, fix="rewrite it with rerank-lab convert") from None


def load_dataset(path: str | Path) -> datasets.DatasetDict:
    """Load and validate a context-relevance DatasetDict."""
    dd = _load(path, "context-relevance dataset")
    if not isinstance(dd, datasets.DatasetDict):
        raise InputError("expected a DatasetDict with splits", path=path, fix="save it with save_dataset")
    validate_dataset(dd, path=str(path))
    return dd


def split_queries(dataset_path: str | Path, splits: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """``{split: {query id: query text}}`` for the requested splits that the dataset has."""
    dd = load_dataset(dataset_path)
    return {s: dict(zip(dd[s]["id"], dd[s]["query"])) for s in splits if s in dd and len(dd[s])}


def split_scopes(dataset_path: str | Path, splits: tuple[str, ...]) -> dict[str, dict[str, list[str]]]:
    """``{split: {query id: its texts' ids}}``: what a query may retrieve in sentence mode."""
    dd = load_dataset(dataset_path)
    return {s: dict(zip(dd[s]["id"], dd[s]["text_ids"])) for s in splits if s in dd and len(dd[s])}


def load_corpus(path: str | Path) -> datasets.Dataset:
    """Load and validate a corpus Dataset."""
    corpus = _load(path, "corpus")
    if not isinstance(corpus, datasets.Dataset):
        raise InputError("expected a corpus Dataset", path=path, fix="save it with save_corpus")
    validate_corpus(corpus, path=str(path))
    return corpus
