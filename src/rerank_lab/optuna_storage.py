"""Optuna storages by URL, shared by every study of the project: tune's (tier A) and hpo's (tier B).

A relative file path (``sqlite:///optuna.db``, ``journal:studies/j.log``) lies in the per-user cache
(:func:`rerank_lab.cache.cache_dir`), so experiments DVC runs in temporary workspaces, and a
tier-B trial's train stage, reach the same study; absolute paths and servers are used as given.
"""

from __future__ import annotations

import re
from pathlib import Path

from rerank_lab.errors import ConfigError

_SQLITE = re.compile(r"^(sqlite(?:\+\w+)?:///)(.*)$")


def resolve_storage_url(url: str, base: Path | None = None) -> str:
    """``url`` with a relative file path made absolute under ``base`` (default: the per-user cache,
    :func:`rerank_lab.cache.cache_dir`), so that experiments DVC runs in temporary workspaces
    (``dvc exp run --queue``) share one study; absolute paths, in-memory and server URLs unchanged.

    >>> resolve_storage_url("sqlite:///optuna.db", Path("/c"))
    'sqlite:////c/optuna.db'
    >>> resolve_storage_url("journal:studies/j.log", Path("/c"))
    'journal:/c/studies/j.log'
    >>> [resolve_storage_url(u, Path("/c")) for u in ("sqlite:////abs/o.db", "journal:/abs/j.log", "sqlite:///:memory:")]
    ['sqlite:////abs/o.db', 'journal:/abs/j.log', 'sqlite:///:memory:']
    >>> resolve_storage_url("postgresql://u@db:5432/optuna", Path("/c"))
    'postgresql://u@db:5432/optuna'
    """
    if url.startswith("journal:"):
        prefix, path = "journal:", url[len("journal:") :]
    elif m := _SQLITE.match(url):
        prefix, path = m.group(1), m.group(2)
    else:
        return url  # a server (postgresql://, mysql://): no local path
    if not path or path.startswith((":memory:", "/", "~")) or Path(path).is_absolute():
        return url
    if base is None:
        from rerank_lab.cache import cache_dir

        base = cache_dir()
    return prefix + str(base / path)


def open_storage(url: str):
    """An Optuna storage for ``url`` (``sqlite:///…``, ``postgresql://…``, ``journal:<file>``; a
    relative file path lies in the per-user cache, :func:`resolve_storage_url`), or a
    :class:`ConfigError` naming the URL when it cannot be reached."""
    import optuna

    url = resolve_storage_url(url)
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            path = Path(url[len("journal:") :])
            if not path.parent.is_dir():
                raise FileNotFoundError(f"folder {path.parent} does not exist")
            return JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None)
    except Exception as exc:  # sqlalchemy / driver errors: report the URL, not a deep traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"cannot open the Optuna storage {url!r}: {first}",
            fix="check tune.storage: sqlite:///path.db, journal:path.log, or a reachable postgresql:// URL with its driver installed",
        ) from None
