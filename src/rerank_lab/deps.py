"""Which of rerank-lab's own source files a piece of code executes -- read from the source, not run.

Two uses share it:

* the test that keeps ``dvc.yaml`` honest: a stage's ``deps`` must list every ``src/rerank_lab``
  file its command imports, directly or through other modules, so that changing one module reruns
  exactly the stages that execute it;
* names that must change when code changes (tune's study name covers the code of its objective).

Imports are found statically with :mod:`ast`, at module level and inside functions alike (a
function-level import runs whenever the function does). Importing ``a.b.c`` runs the package
``__init__`` files of ``a`` and ``a.b`` too, so those count. Only this package's modules are
followed: third-party libraries are the environment, pinned by the install.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "rerank_lab"
ROOT = Path(__file__).resolve().parent  # src/rerank_lab


def module_file(name: str) -> Path | None:
    """The source file of module ``name`` of this package (``None`` for anything else).

    >>> module_file("rerank_lab.io.trec").relative_to(ROOT).as_posix()
    'io/trec.py'
    >>> module_file("rerank_lab.io").name, module_file("numpy")
    ('__init__.py', None)
    """
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, current: str, is_package: bool) -> set[str]:
    """Module names imported anywhere inside ``node`` (``from a import b`` yields ``a`` and ``a.b``)."""
    names: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Import):
            names.update(alias.name for alias in sub.names)
        elif isinstance(sub, ast.ImportFrom):
            if sub.level:  # relative: resolve against this module's package
                package = current.split(".") if is_package else current.split(".")[:-1]
                base = ".".join(package[: len(package) - (sub.level - 1)] + ([sub.module] if sub.module else []))
            else:
                base = sub.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in sub.names)  # a submodule, when it is one
    return names


def _with_parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


@functools.cache
def _direct(path: Path) -> frozenset[Path]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = _imported(tree, _module_name(path), path.name == "__init__.py")
    files = {module_file(p) for n in names for p in _with_parents(n)}
    return frozenset(f for f in files if f is not None)


def closure(files: set[Path]) -> set[Path]:
    """``files`` and every package file they import, transitively (package ``__init__`` files included)."""
    seen: set[Path] = set()
    todo = list(files)
    for f in files:
        todo += [p for p in (module_file(n) for n in _with_parents(_module_name(f))) if p is not None]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo.extend(_direct(f) - seen)
    return seen


def module_closure(*modules: str) -> set[Path]:
    """Every package source file that importing (and running) ``modules`` can execute.

    >>> sorted(p.relative_to(ROOT).as_posix() for p in module_closure("rerank_lab.errors"))
    ['__init__.py', 'errors.py']
    """
    files = {module_file(m) for m in modules}
    if None in files:
        raise ValueError(f"not modules of {PACKAGE}: {[m for m in modules if module_file(m) is None]}")
    return closure(files)  # type: ignore[arg-type]


def command_closure(cli_file: Path, function: str) -> set[Path]:
    """What one click command of ``cli_file`` executes: the CLI module's own top-level imports, the
    imports inside the command's function, and everything those import."""
    tree = ast.parse(cli_file.read_text(encoding="utf-8"))
    name = _module_name(cli_file)
    top = {n for stmt in tree.body if isinstance(stmt, ast.Import | ast.ImportFrom) for n in _imported(stmt, name, False)}
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
    if not funcs:
        raise ValueError(f"{cli_file} has no function {function!r}")
    inner = _imported(funcs[0], name, False)
    files = {module_file(p) for n in top | inner for p in _with_parents(n)}
    # the CLI file runs, but only this command's imports: not those of the other commands in it
    return {cli_file} | closure({f for f in files if f is not None and f != cli_file})


def source_digest(files: set[Path]) -> str:
    """A short hash of the files' contents, keyed by their path inside the package."""
    h = hashlib.sha1()
    for f in sorted(files):
        h.update(f.relative_to(ROOT).as_posix().encode())
        h.update(hashlib.sha1(f.read_bytes()).digest())
    return h.hexdigest()[:12]
