"""The per-user cache folder: what experiments share that is not a DVC output.

The score cache (``scores.sqlite``), train's resumable checkpoints (``checkpoints/<key>``) and a
relative ``tune.storage`` live here, outside the workspace, so that an experiment DVC runs in a
temporary workspace (``dvc exp run --queue``, under ``.dvc/tmp/exps``) finds what the workspace
and every other experiment computed. Where, in the ecosystem's manner (pip, huggingface_hub):

1. ``$RERANK_LAB_CACHE`` if set (an absolute path; ``~`` is expanded);
2. else ``$XDG_CACHE_HOME/rerank-lab`` (when that is an absolute path, as the XDG spec requires);
3. else ``~/.cache/rerank-lab``.

Nothing here decides an output: every entry is keyed by everything that decides its content
(the scoring fingerprint, train's resume fingerprint), so deleting the folder costs only time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from rerank_lab.errors import ConfigError

ENV = "RERANK_LAB_CACHE"
NAME = "rerank-lab"


def cache_location(environ: Mapping[str, str] | None = None) -> Path:
    """Where the cache folder is, by the precedence above; creates and checks nothing.

    >>> str(cache_location({"RERANK_LAB_CACHE": "/data/rl", "XDG_CACHE_HOME": "/x"}))
    '/data/rl'
    >>> str(cache_location({"XDG_CACHE_HOME": "/x", "HOME": "/home/u"}))
    '/x/rerank-lab'
    >>> str(cache_location({"XDG_CACHE_HOME": "relative/ignored", "HOME": "/home/u"}))  # XDG: relative is invalid
    '/home/u/.cache/rerank-lab'
    >>> str(cache_location({"RERANK_LAB_CACHE": "", "HOME": "/home/u"}))  # set but empty: unset
    '/home/u/.cache/rerank-lab'
    >>> str(cache_location({"RERANK_LAB_CACHE": "~/rl", "HOME": "/home/u"}))
    '/home/u/rl'
    """
    env = os.environ if environ is None else environ
    own = env.get(ENV, "")
    if own:
        path = Path(_home(env) + own[1:] if own == "~" or own.startswith("~/") else own)
        if not path.is_absolute():
            # a relative path would name a different folder in each temporary workspace DVC runs a queued experiment in
            raise ConfigError(
                f"{ENV}={own!r} is a relative path; queued experiments run in other folders and would not share it",
                fix=f"set {ENV} to an absolute path, e.g. {ENV}=$HOME/.cache/{NAME}",
            )
        return path
    xdg = env.get("XDG_CACHE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / NAME
    return Path(_home(env)) / ".cache" / NAME


def _home(env: Mapping[str, str]) -> str:
    return env.get("HOME") or str(Path.home())


def cache_dir() -> Path:
    """The cache folder (:func:`cache_location`), created on demand and checked writable; a
    :class:`ConfigError` naming the folder, why, and the fix when it is not."""
    path = cache_location()

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"the rerank-lab cache folder cannot be written: {why}", path=path, fix=f"set {ENV} to a writable folder")

    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise refuse("it is a file") from None
    except NotADirectoryError:
        raise refuse("a parent of it is a file") from None
    except OSError as exc:
        raise refuse(exc.strerror or type(exc).__name__) from None
    # write, do not ask os.access: root passes every access check, and read-only mounts fool it
    try:
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=path)
    except OSError as exc:
        raise refuse(exc.strerror or type(exc).__name__) from None
    os.close(fd)
    os.unlink(probe)
    return path
