"""Optuna storages by URL, shared by every study of the project: tune's (tier A) and hpo's (tier B).

A relative file path (``sqlite:///optuna.db``, ``journal:studies/j.log``) lies in the per-user cache
(:func:`rerank_lab.cache.cache_dir`), so experiments DVC runs in temporary workspaces, and a
tier-B trial's train stage, reach the same study; absolute paths and servers are used as given.

A server's URL carries a password, so it never lies in params.yaml (tracked by git; the configs
refuse one): the setting names an environment variable instead, ``env:RERANK_LAB_OPTUNA_URL``,
read when the storage is opened (:func:`expand`), or the URL has no password and libpq finds it
(``PGPASSWORD``, ``~/.pgpass``). Whatever shows a URL -- an error, a log line -- shows it through
:func:`rerank_lab.errors.redact` (``postgresql://user:***@host/db``).
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

from rerank_lab.errors import ConfigError, redact

WORKER_ATTR = "worker"  # a trial's user attribute: the worker process that ran it, "<host>:<pid>"
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # this process, as a worker of a shared study


def worker_of(trial) -> tuple[str, int] | None:
    """(host, pid) of the worker that ran ``trial`` (a FrozenTrial), if it recorded one.

    >>> import optuna; t = optuna.trial.create_trial(value=1.0, user_attrs={"worker": "box:12"})
    >>> worker_of(t), worker_of(optuna.trial.create_trial(value=1.0))
    (('box', 12), None)
    """
    host, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
    return (host, int(pid)) if host and pid.isdigit() else None


def budget_states() -> tuple:
    """The states of the trials that use up a study's budget: finished (complete or pruned) and
    running ones. A failed trial (a crash, or a worker that died) does not: its point is asked again."""
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def counted(study) -> int:
    """The trials of ``study`` that use up its budget (:func:`budget_states`)."""
    return len(study.get_trials(deepcopy=False, states=budget_states()))


OVER_BUDGET_ATTR = "over_budget"  # a trial's user attribute: asked past the budget, failed unrun


def within_budget(study, trial, budget: int) -> bool:
    """Whether the just-asked ``trial`` lies within the study's ``budget``: fewer than ``budget``
    trials that count (:func:`budget_states`) were asked before it. Otherwise it is failed unrun,
    marked ``over_budget``, and False returned.

    Workers of a shared study check the budget and then ask, so two may both see one place left and
    both ask. Trial numbers are handed out atomically by the storage, so the order they give settles
    who had the place: the later trial is never run, and every worker ends with the same trials."""
    from optuna.trial import TrialState

    ahead = sum(t.number < trial.number for t in study.get_trials(deepcopy=False, states=budget_states()))
    if ahead < budget:
        return True
    trial.set_user_attr(OVER_BUDGET_ATTR, True)
    study.tell(trial, state=TrialState.FAIL)
    return False


def over_budget(trial) -> bool:
    """Whether ``trial`` (a FrozenTrial) was asked past the budget and never run (:func:`within_budget`)."""
    return bool(trial.user_attrs.get(OVER_BUDGET_ATTR))


def run_trials(study, objective, budget: int) -> list[int]:
    """Run ``objective`` on new trials until ``study`` holds ``budget`` trials that count (its
    total, however many workers fill it); returns the numbers of the trials this call ran.

    ``study.optimize`` with Optuna's ``MaxTrialsCallback`` checks the count after a trial and asks
    the next one later, so a worker can ask a trial past the budget after another worker has
    already counted the study full and reported; here each asked trial is checked against the
    trials asked before it (:func:`within_budget`). The same asks and tells as ``optimize``, so a
    study of one worker draws the same points."""
    import optuna
    from optuna.trial import TrialState

    ran: list[int] = []
    while counted(study) < budget:
        trial = study.ask()
        if not within_budget(study, trial, budget):
            break
        ran.append(trial.number)
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            continue
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        study.tell(trial, value)
    return ran


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def fail_orphans(study) -> list[tuple[int, int]]:
    """Mark failed the running trials whose worker ran on this machine and is gone (killed mid-trial);
    returns (trial number, pid) of each. A running trial of another machine's worker, or of one still
    alive here, is left alone: it may still finish."""
    from optuna.trial import TrialState

    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, pid = worker_of(t) or ("", 0)
        if host == socket.gethostname() and pid != os.getpid() and not _alive(pid):
            study.tell(t.number, state=TrialState.FAIL)
            out.append((t.number, pid))
    return out


_SQLITE = re.compile(r"^(sqlite(?:\+\w+)?:///)(.*)$")
_ENV = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")
ENV_EXAMPLE = "env:RERANK_LAB_OPTUNA_URL"


def expand(url: str, setting: str = "tune.storage") -> str:
    """``url``, or the value of the environment variable an ``env:NAME`` setting names.

    >>> os.environ["RL_DOCTEST_URL"] = "postgresql://rl:pw@db/optuna"
    >>> expand("env:RL_DOCTEST_URL"), expand("sqlite:///optuna.db")
    ('postgresql://rl:pw@db/optuna', 'sqlite:///optuna.db')
    >>> del os.environ["RL_DOCTEST_URL"]
    >>> expand("env:RL_DOCTEST_UNSET")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rerank_lab.errors.ConfigError: tune.storage is env:RL_DOCTEST_UNSET, but $RL_DOCTEST_UNSET is not set (fix: export RL_DOCTEST_UNSET=...)
    """
    if not url.startswith("env:"):
        return url
    m = _ENV.match(url)
    if m is None:
        raise ConfigError(f"{setting} {url!r} does not name an environment variable", fix=f"write e.g. {ENV_EXAMPLE}")
    value = os.environ.get(m.group(1), "").strip()
    if not value:
        raise ConfigError(
            f"{setting} is {url}, but ${m.group(1)} is not set",
            fix=f"export {m.group(1)}=<the storage URL> in the worker's environment, e.g. from a git-ignored .env file",
        )
    return value


def shown(url: str) -> str:
    """How a storage setting is shown in a message: the URL it opens, its password masked.

    >>> os.environ["RL_DOCTEST_URL"] = "postgresql://rl:pw@db/optuna"
    >>> shown("env:RL_DOCTEST_URL"), shown("postgresql://rl:pw@db/o"), shown("env:RL_DOCTEST_UNSET")
    ('postgresql://rl:***@db/optuna (from $RL_DOCTEST_URL)', 'postgresql://rl:***@db/o', 'env:RL_DOCTEST_UNSET (not set)')
    >>> del os.environ["RL_DOCTEST_URL"]
    """
    try:
        value = expand(url)
    except ConfigError:
        return f"{url} (not set)"
    return redact(value) + (f" (from ${url[len('env:') :]})" if value != url else "")


def refuse_password(value: str | None, section: str) -> None:
    """The configs' check of ``<section>.storage``: a URL with a password in params.yaml would be
    committed to git (and to every experiment's commit).

    >>> refuse_password("postgresql://rl@db/optuna", "tune")  # no password: libpq finds it
    >>> refuse_password("postgresql://rl:pw@db/optuna", "tune")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rerank_lab.config.FieldError: storage: holds a password, ..., got 'postgresql://rl:***@db/optuna' (fix: write tune.storage: env:...)
    """
    from rerank_lab.config import FieldError
    from rerank_lab.errors import has_password

    if value and has_password(value):
        raise FieldError(
            ("storage",),
            "holds a password, which params.yaml would commit to git",
            redact(value),
            fix=f"write {section}.storage: {ENV_EXAMPLE} and export RERANK_LAB_OPTUNA_URL=<the URL> where the workers run, "
            "or leave the password out of the URL: libpq reads PGPASSWORD or ~/.pgpass",
        )


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


def _password(url: str) -> tuple[str, ...]:
    """The password of a server URL as written and as decoded (a driver's message may quote either)."""
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return ()
    return (password, unquote(password)) if password else ()


def _rdb(url: str):
    """An RDBStorage; two workers creating the tables of a fresh database at the same moment make
    one of them fail on PostgreSQL (a duplicate type or version row): it retries, then sees the tables."""
    import optuna
    import sqlalchemy.exc

    kwargs = {"pool_pre_ping": True} if not url.startswith("sqlite") else None
    for attempt in range(4):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == 3:
                raise
            time.sleep(0.2 * (attempt + 1))


def open_storage(url: str, setting: str = "tune.storage"):
    """An Optuna storage for ``url`` (``sqlite:///…``, ``postgresql://…``, ``journal:<file>``, or
    ``env:NAME``: the URL in that environment variable; a relative file path lies in the per-user
    cache, :func:`resolve_storage_url`), or a one-line :class:`ConfigError` naming the URL, its
    password masked, when it cannot be opened (``setting``: the params key the fix names)."""
    given = url
    url = resolve_storage_url(expand(url, setting))
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            path = Path(url[len("journal:") :])
            if not path.parent.is_dir():
                raise FileNotFoundError(f"folder {path.parent} does not exist")
            return JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        return _rdb(url)
    except Exception as exc:  # sqlalchemy / driver errors: report the URL, not a deep traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        source = f" (from ${given[len('env:') :]})" if given != url and given.startswith("env:") else ""
        fix = f"check {setting}: sqlite:///path.db, journal:path.log, or a reachable postgresql:// URL"
        if isinstance(exc, ImportError):  # SQLAlchemy 2.1 reads postgresql:// with psycopg 3 (2.0: psycopg2)
            fix = f"install the database driver: pip install 'psycopg[binary]' (rerank-lab's postgres extra), or {fix}"
        elif url.startswith(("postgresql", "mysql")):
            fix += " (is the server running and listening there? are the user and password right?)"
        raise ConfigError(f"cannot open the Optuna storage {redact(url)!r}{source}: {redact(first, *_password(url))}", fix=fix) from None
