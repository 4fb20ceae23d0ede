"""Reading text inputs (plain or gzip) with errors that name the file and the line.

What no reader may let through, checked here once for every file:

- a directory where a file belongs, a missing file, a truncated gzip, invalid UTF-8;
- in JSON lines: ``NaN``/``Infinity`` (Python's json accepts them, JSON does not) and numbers too
  large for a float (``1e999`` would become ``inf``), and a lone UTF-16 surrogate such as
  ``"\\ud800"`` (valid JSON escape, invalid Unicode: it would crash the first write of the text).
"""

from __future__ import annotations

import gzip
import json
import math
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

from rerank_lab.errors import InputError


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, gunzipped when it ends in ``.gz``."""
    p = Path(path)
    if p.is_dir():
        raise InputError("is a directory, not a file", path=p, fix="give the path of the file itself (check dvc.yaml or the option)")
    if not p.is_file():
        raise InputError("file not found", path=p, fix="check the path in dvc.yaml or the --input option")
    raw = p.read_bytes()
    if p.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise InputError(f"corrupt or truncated gzip ({exc})", path=p, fix="re-download or re-compress the file") from None
    return raw


def read_lines(path: str | Path) -> list[str]:
    """Decode a (gzipped) UTF-8 file into lines; invalid UTF-8 is reported with its line."""
    raw = read_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(
            f"invalid UTF-8 at byte {exc.start}", path=path, record=f"line {line}", fix="re-encode the file as UTF-8"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.split("\n") if text else []


class _BadNumber(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise _BadNumber(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"number {text} is too large for a float")
    return value


# a \uD800-\uDFFF escape: only with one can json.loads return a string holding a lone surrogate
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _lone_surrogate(value: object, where: str) -> str | None:
    """The field (``text``, ``pos[2]``) whose string (or key) is not valid Unicode, or None.

    >>> _lone_surrogate({"query": "ok", "pos": ["ok", "bad \\ud800"]}, "")
    'pos[1]'
    >>> _lone_surrogate({"query": "fine \\U0001f600"}, "") is None
    True
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "value"
        return None
    if isinstance(value, dict):
        items = [(f"{where}.{k}" if where else str(k), k, v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{where}[{i}]", None, v) for i, v in enumerate(value)]
    else:
        return None
    for field, key, item in items:
        found = _lone_surrogate(key, field) if key is not None else None
        found = found or _lone_surrogate(item, field)
        if found is not None:
            return found
    return None


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, object)`` for each non-blank line; an empty file is an error.

    Non-finite numbers and strings that are not valid Unicode are refused here, with their line,
    so no reader downstream can store them.
    """
    lines = read_lines(path)
    if not any(line.strip() for line in lines):
        raise InputError("empty file", path=path, fix="the file must hold one JSON object per line")
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, parse_constant=_refuse_constant, parse_float=_finite_float)
        except _BadNumber as exc:
            raise InputError(str(exc), path=path, record=f"line {no}", fix="write a finite number (JSON has no NaN or Infinity)") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid JSON ({exc.msg})", path=path, record=f"line {no}", fix="one JSON object per line") from None
        if not isinstance(obj, dict):
            raise InputError("not a JSON object", path=path, record=f"line {no}", fix="one JSON object per line")
        if "\\u" in line and _SURROGATE_ESCAPE.search(line):  # the substring test is the cheap common case
            field = _lone_surrogate(obj, "")
            if field is not None:
                raise InputError(
                    f"field {field!r} holds a lone UTF-16 surrogate (a \\ud800-\\udfff escape without its pair): not valid Unicode",
                    path=path,
                    record=f"line {no}",
                    fix="repair or drop that text (re-export the file as UTF-8 text)",
                )
        missing = [k for k in required if k not in obj]
        if missing:
            raise InputError(f"missing field(s) {missing}", path=path, record=f"line {no}", fix=f"each line needs {list(required)}")
        yield no, obj
