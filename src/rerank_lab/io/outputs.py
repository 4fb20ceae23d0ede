"""Guarded outputs: a stage writes where it may, all of its outputs appear together, and a user's
file is never replaced.

A stage's paths come from the command line, so a slip -- ``--output`` equal to ``--input``,
``--metrics params.yaml``, ``--output .`` -- must be refused before any work, not discovered
after a folder was deleted. :func:`guard` checks every path a stage will write against every path
it reads, and against what is already there:

* an output may neither be, lie inside, nor contain an input, nor another output;
* an output folder replaces only an empty folder or one that this stage wrote earlier, which the
  runner marks with a :data:`MARKER` file holding the stage's name; a file, or a folder of anything
  else, is refused (remove it yourself if you mean it);
* a metrics path must not be a folder; every path must lie under folders (not a file) that can be
  written.

:class:`Staging` then gives the stage a temporary path next to each output (same file system, so
the final rename is atomic), and :meth:`Staging.commit` puts all of them -- folders and metrics
file together -- in place last, after the stage returned. Temporaries are named
``.<name>.tmp-<pid>-<random>``: a run killed with SIGKILL leaves them behind, and the next run of
the same output removes every one whose process is gone (and the ``.<name>.old-*`` copies an
interrupted commit may leave).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rerank_lab.errors import ConfigError

_EXAMPLE = {"file": "metrics.json", "cache": "scores.sqlite"}
MARKER = ".rerank-lab-output"  # in every output folder: which command wrote it (so a rerun may replace it)


class OutputError(ConfigError):
    """An output path the stage must not or cannot write: one line with the path and the fix."""


@dataclass(frozen=True)
class Written:
    """One path a stage writes: ``flag`` names it in messages (``--output``), ``kind`` says how.

    ``folder``: written whole into a temporary, committed last, marked; ``file``: a metrics JSON,
    the same; ``kept``: a folder the stage updates in place and keeps between runs (train's
    checkpoints; ``stamp`` is a file that marks it as the stage's own); ``cache``: a file the stage
    updates in place (a score cache).
    """

    flag: str
    path: Path
    kind: str = "folder"
    stamp: str | None = None


@dataclass(frozen=True)
class Read:
    """One path a stage reads. ``around``: an output may lie inside it (report writes into its repo)."""

    flag: str
    path: Path
    around: bool = False


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _marker_of(folder: Path) -> str | None:
    try:
        return (folder / MARKER).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def marker_text(stage: str) -> str:
    """What :data:`MARKER` holds in a folder written by ``rerank-lab <stage>``."""
    return f"rerank-lab {stage}\n"


def _overlap(out: Path, other: Path) -> str | None:
    """How ``out`` overlaps ``other`` (both resolved): ``"is"``, ``"inside"``, ``"contains"``, or None."""
    if out == other:
        return "is"
    if other in out.parents:
        return "inside"
    if out in other.parents:
        return "contains"
    return None


def _ancestor(path: Path) -> Path:
    """The nearest existing folder-or-file at or above ``path`` (lexically: ``..`` is not a parent here)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _where(path: Path, flag: str) -> OutputError | None:
    """Whether ``path``'s folder can hold a new entry: not under a file, writable."""
    parent = Path(os.path.abspath(path)).parent
    top = _ancestor(parent)
    if not top.is_dir():
        return OutputError(f"{flag} lies under {top}, which is a file", path=path, fix=f"choose a {flag} path whose parents are folders")
    if not os.access(top, os.W_OK | os.X_OK):
        return OutputError(f"{flag} cannot be written: {top} is read-only", path=path, fix=f"choose a writable place for {flag}")
    return None


def _existing(w: Written, stage: str) -> OutputError | None:
    """Whether what is at ``w.path`` now may be replaced (folders, files) or updated (kept, cache)."""
    p = w.path
    if not os.path.lexists(p):
        return None
    if w.kind in ("file", "cache"):
        if p.is_dir():
            return OutputError(
                f"{w.flag} is a folder; it names a file", path=p, fix=f"give {w.flag} a file path, e.g. {p / _EXAMPLE[w.kind]}"
            )
        return None
    if not p.is_dir():
        return OutputError(
            f"{w.flag} is an existing file; rerank-lab {stage} writes a folder there and will not replace a file",
            path=p,
            fix=f"choose a new {w.flag} path, or remove the file yourself",
        )
    owner = _marker_of(p)
    if owner == marker_text(stage).strip() or (w.stamp and (p / w.stamp).exists()):
        return None
    try:
        empty = not any(p.iterdir())
    except OSError:
        empty = False
    if empty:
        return None
    what = f"holds the output of `{owner}`" if owner else f"holds files that rerank-lab {stage} did not write (no {MARKER} in it)"
    return OutputError(
        f"{w.flag} is an existing folder that {what}; refusing to replace it",
        path=p,
        fix=f"choose another {w.flag}, or remove the folder yourself if you no longer need it",
    )


def guard(stage: str, reads: Iterable[Read], writes: Iterable[Written]) -> None:
    """Refuse, with one :class:`OutputError`, any output that overlaps an input or another output,
    would replace something this stage did not write, or cannot be written. Reads nothing but
    the file system's metadata and the markers; writes nothing."""
    reads, writes = list(reads), list(writes)
    real_reads = [(r, _real(r.path)) for r in reads]
    real_writes = [(w, _real(w.path)) for w in writes]
    for i, (w, out) in enumerate(real_writes):
        for r, src in real_reads:
            how = _overlap(out, src)
            if how is None or (r.around and how == "inside"):
                continue
            what = {
                "is": f"is the same path as {r.flag}",
                "inside": f"lies inside {r.flag} {r.path}",
                "contains": f"contains {r.flag} {r.path}; replacing it would delete that input",
            }[how]
            raise OutputError(
                f"{w.flag} {what}", path=w.path, fix=f"write {w.flag} to a new path that neither is, lies inside, nor contains an input"
            )
        for other, dst in real_writes[:i]:
            how = _overlap(out, dst)
            if how is not None:
                where = {"is": "is the same path as", "inside": "lies inside", "contains": "contains"}[how]
                raise OutputError(
                    f"{w.flag} {where} {other.flag} {other.path}", path=w.path, fix=f"give {w.flag} and {other.flag} separate paths"
                )
    for w in writes:
        problem = _existing(w, stage) or _where(w.path, w.flag)
        if problem is not None:
            raise problem


def _alive(suffix: str) -> bool:
    """Whether the process that made a temporary (``<pid>-<random>`` after its prefix) may still be writing it."""
    pid, dash, _ = suffix.partition("-")
    if not (dash and pid.isdigit()):
        return False  # the library's own atomic_dir temporaries (no pid): a run that ended without removing them
    if int(pid) == os.getpid():
        return False  # an earlier run in this process: this run's own temporaries are made after the cleaning
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def clean_stale(path: Path) -> list[Path]:
    """Remove the temporaries an interrupted run left next to ``path`` (``.<name>.tmp-*``,
    ``.<name>.old-*``) whose process is gone; returns what was removed."""
    parent, name = Path(os.path.abspath(path)).parent, Path(os.path.abspath(path)).name
    if not parent.is_dir():
        return []
    removed = []
    for kind in ("tmp", "old"):
        prefix = f".{name}.{kind}-"
        for p in parent.glob(f"{glob_escape(prefix)}*"):
            if not _alive(p.name[len(prefix) :]):
                _remove(p)
                removed.append(p)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters taken literally (``glob.escape`` for one part)."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass
class Staging:
    """Temporaries for a stage's folders and files, committed together by :meth:`commit`.

    ``paths[flag]`` is where the stage writes what ``--flag`` names; it does not exist yet (the
    stage creates it, e.g. with :func:`rerank_lab.io.atomic.atomic_dir`).
    """

    stage: str
    targets: dict[str, Written]
    paths: dict[str, Path] = field(default_factory=dict)
    _temps: list[Path] = field(default_factory=list)
    _made: list[Path] = field(default_factory=list)
    committed: bool = False

    def open(self) -> None:
        for flag, w in self.targets.items():
            final = Path(os.path.abspath(w.path))
            self._mkdirs(final.parent, w)
            try:
                temp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
            except OSError as exc:
                raise OutputError(
                    f"{flag} cannot be written: {exc.strerror}", path=w.path, fix=f"choose a writable place for {flag}"
                ) from None
            os.chmod(temp, 0o777 & ~_umask())
            self._temps.append(temp)
            self.paths[flag] = temp / final.name

    def _mkdirs(self, folder: Path, w: Written) -> None:
        missing = []
        p = folder
        while not p.exists():
            missing.append(p)
            p = p.parent
        for p in reversed(missing):
            try:
                p.mkdir()
            except OSError as exc:
                raise OutputError(
                    f"{w.flag} cannot be written: {exc.strerror}", path=w.path, fix=f"choose a writable place for {w.flag}"
                ) from None
            self._made.append(p)

    def commit(self) -> None:
        """Mark every folder, then move each final path aside, put every temporary in place, and
        delete what was moved aside; a failure puts the old paths back."""
        pairs = []
        for flag, w in self.targets.items():
            new = self.paths[flag]
            if not new.exists():
                raise RuntimeError(f"rerank-lab {self.stage} wrote nothing for {flag}")  # a bug in the stage, not the user's
            if w.kind == "folder":
                (new / MARKER).write_text(marker_text(self.stage), encoding="utf-8")
            pairs.append((Path(os.path.abspath(w.path)), new, w))
        aside: list[tuple[Path, Path]] = []
        placed: list[Path] = []
        current = pairs[0][2] if pairs else None
        try:
            for final, _, w in pairs:
                current = w  # named in the error if this one fails
                if os.path.lexists(final):
                    old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-{os.getpid()}-", dir=final.parent))
                    os.replace(final, old / final.name)
                    aside.append((final, old))
            for final, new, w in pairs:
                current = w
                os.replace(new, final)
                placed.append(final)
        except OSError as exc:
            for final in placed:
                _remove(final)
            for final, old in aside:
                os.replace(old / final.name, final)
                _remove(old)
            flag, path = (current.flag, current.path) if current else ("output", None)
            raise OutputError(f"cannot put {flag} in place: {exc.strerror}", path=path, fix="check the folder's permissions") from None
        self.committed = True
        for _, old in aside:
            _remove(old)

    def discard(self) -> None:
        """Remove every temporary, and (when nothing was committed) the folders made for them."""
        for temp in self._temps:
            _remove(temp)
        if not self.committed:
            for p in reversed(self._made):
                with contextlib.suppress(OSError):
                    p.rmdir()


@contextlib.contextmanager
def staged(stage: str, writes: Iterable[Written]) -> Iterator[Staging]:
    """Temporaries for the stage's ``folder`` and ``file`` outputs (``kept`` and ``cache`` paths are
    written in place); commits them all when the block ends without error, removes them always."""
    writes = list(writes)
    for w in writes:
        clean_stale(w.path)
    staging = Staging(stage, {w.flag: w for w in writes if w.kind in ("folder", "file")})
    try:
        staging.open()
        yield staging
        staging.commit()
    finally:
        staging.discard()
