"""One error type for every problem a user can fix.

Every stage raises :class:`RerankLabError` (or a subclass) for bad input; the CLI prints it
as one line -- what was wrong, where, how to fix it -- and exits with status 2, instead of
letting a traceback from deep inside a library reach the user.

:func:`redact` is the one place a password in a URL (an Optuna storage, a DVC remote) is masked;
every error message passes through it, and so does every line that shows a storage URL.
"""

from __future__ import annotations

import re
from pathlib import Path

# scheme://user:password@ -- the password is whatever lies between the user's colon and the
# first "@" (SQLAlchemy's own rule), so an unescaped "/" or ":" in it is masked too
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:)[^\s@]*@")


def redact(text: str, *secrets: str) -> str:
    """``text`` with the password of every URL in it, and every one of ``secrets``, shown as ``***``.

    >>> redact("cannot open 'postgresql://rl:s3cr%2Ft@db:5432/optuna': refused")
    "cannot open 'postgresql://rl:***@db:5432/optuna': refused"
    >>> redact("postgresql://rl@db/optuna s3://bucket/x host:5432 mysql+pymysql://u:p@h/d")
    'postgresql://rl@db/optuna s3://bucket/x host:5432 mysql+pymysql://u:***@h/d'
    >>> redact("password authentication failed: s3cr/t", "s3cr/t")
    'password authentication failed: ***'
    """
    text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def has_password(url: str) -> bool:
    """Whether ``url`` carries a password (``scheme://user:password@host``).

    >>> has_password("postgresql://rl:pw@db/o"), has_password("postgresql://rl@db/o"), has_password("journal:/a:b@c")
    (True, False, False)
    """
    return redact(url) != url


class RerankLabError(Exception):
    """A problem with the user's input or configuration.

    >>> str(RerankLabError("empty query text", path="q.jsonl", record="line 3", fix="give it text"))
    'q.jsonl: line 3: empty query text (fix: give it text)'
    >>> str(RerankLabError("cannot open 'postgresql://rl:pw@db/o'"))  # every message is redacted
    "cannot open 'postgresql://rl:***@db/o'"
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
        return redact(f"{msg} (fix: {self.fix})" if self.fix else msg)  # a URL's password never reaches a message


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
