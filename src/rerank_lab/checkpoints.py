"""Where train keeps its checkpoints, and when it resumes from them.

The folder is ``--checkpoints`` if given, else ``checkpoints/<key>`` in the per-user cache
(:func:`rerank_lab.cache.cache_dir`), ``<key>`` a hash of the resume fingerprint (settings, data,
grades): outside the workspace and DVC's outputs, so an experiment DVC runs in a temporary
workspace (``dvc exp run --queue``) resumes too, and two trainings never share a folder. Two runs
of the same training at once (``dvc queue start -j 2``) take turns on its folder: the second waits.
A rerun with the same settings resumes from the folder's last checkpoint, other settings start afresh.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets

    from rerank_lab.io.qrels import Qrels
    from rerank_lab.train import TrainConfig

log = logging.getLogger(__name__)


def _last_checkpoint(folder: Path, fingerprint: str) -> str | None:
    """The newest checkpoint in ``folder`` if it was written with the same settings."""
    stamp = folder / "settings.sha1"
    if not stamp.is_file() or stamp.read_text().strip() != fingerprint:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(fingerprint)
        return None
    # a checkpoint cut off while saving has no trainer_state.json (written last): skip it
    ckpts = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    ckpts.sort(key=lambda p: int(p.name.split("-")[1]))
    return str(ckpts[-1]) if ckpts else None


def _train_qrels(cfg: TrainConfig, qrels: dict[str, Qrels] | None) -> Qrels | None:
    return (qrels or {}).get("train") if cfg.uses_grades else None


def resume_fingerprint(cfg: TrainConfig, dd: datasets.DatasetDict, qrels: dict[str, Qrels] | None = None) -> str | None:
    """What a checkpoint must have been written with to be resumed: the settings, the train
    split's content (saved splits carry content hashes) and the grades; ``None`` when nothing is
    trained (R0, or no train split: an error later)."""
    if cfg.regime == "off-the-shelf" or "train" not in dd:
        return None
    train_qrels = _train_qrels(cfg, qrels)
    grades = hashlib.sha1(json.dumps(train_qrels, sort_keys=True).encode()).hexdigest()[:16] if train_qrels is not None else "binary"
    return f"{cfg.fingerprint()}-{dd['train']._fingerprint}-{grades}"


def default_checkpoints(fingerprint: str) -> Path:
    """``checkpoints/<key>`` in the per-user cache, ``<key>`` a hash of :func:`resume_fingerprint`."""
    from rerank_lab.cache import cache_dir

    return cache_dir() / "checkpoints" / hashlib.sha1(fingerprint.encode()).hexdigest()[:16]


@contextlib.contextmanager
def checkpoint_folder(checkpoints: Path | None, fingerprint: str | None) -> Iterator[Path | None]:
    """The folder a training writes its checkpoints to, emptied once it has finished.

    ``checkpoints`` given: that folder (left empty at the end, as DVC's persisted output was).
    ``None``: :func:`default_checkpoints`, held under an exclusive lock for the whole run (the
    kernel drops it when the process dies, even by SIGKILL), so that two processes training the
    same settings never write one folder at once; removed at the end. ``fingerprint`` None:
    nothing is trained, no folder.
    """
    if fingerprint is None:
        yield checkpoints
        return
    if checkpoints is not None:
        yield checkpoints
        shutil.rmtree(checkpoints, ignore_errors=True)  # finished: nothing left to resume
        checkpoints.mkdir(parents=True, exist_ok=True)
        return
    folder = default_checkpoints(fingerprint)
    folder.parent.mkdir(exist_ok=True)
    with (folder.parent / f"{folder.name}.lock").open("a") as lock:  # kept: unlinking a lock file others wait on races
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another process is training the same settings in %s; waiting for it to finish", folder)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield folder
        shutil.rmtree(folder, ignore_errors=True)  # finished: nothing left to resume
