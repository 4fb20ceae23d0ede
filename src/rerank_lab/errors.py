"""One error type for every problem a user can fix.

Every stage raises :class:`RerankLabError` (or a subclass) for bad input; the CLI prints it
as one line -- what was wrong, where, how to fix it -- and exits with status 2, instead of
letting a traceback from deep inside a library reach the user.
"""

from __future__ import annotations

from pathlib import Path


class RerankLabError(Exception):
    """A problem with the user's input or configuration.

    >>> str(RerankLabError("empty query text", path="q.jsonl", record="line 3", fix="give it text"))
    'q.jsonl: line 3: empty query text (fix: give it text)'
    """

    def __init__(
        self,
        problem: str,
        *,
        path: str | Path | None = None,
        record: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.path = str(path) if path is not None else None
        self.record = record
        self.fix = fix
        super().__init__(self._message())

    def _message(self) -> str:
        parts = [p for p in (self.path, self.record) if p]
        where = ": ".join(parts)
        msg = f"{where}: {self.problem}" if where else self.problem
        return f"{msg} (fix: {self.fix})" if self.fix else msg


class InputError(RerankLabError):
    """A malformed input file or record."""


class ConfigError(RerankLabError):
    """An invalid parameter or an unknown registry name."""


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...], *, path: str | None = None) -> ConfigError:
    """The error for a name that is not in a registry; it lists the valid names.

    >>> str(unknown_name("loss", "foo", ["bce", "listnet"]))
    "unknown loss 'foo' (fix: use one of: bce, listnet)"
    """
    return ConfigError(f"unknown {kind} {name!r}", path=path, fix=f"use one of: {', '.join(sorted(valid))}")
