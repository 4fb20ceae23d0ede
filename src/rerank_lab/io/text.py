"""Reading text inputs (plain or gzip) with errors that name the file and the line."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

from rerank_lab.errors import InputError


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, gunzipped when it ends in ``.gz``."""
    p = Path(path)
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


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, object)`` for each non-blank line; an empty file is an error."""
    lines = read_lines(path)
    if not any(line.strip() for line in lines):
        raise InputError("empty file", path=path, fix="the file must hold one JSON object per line")
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid JSON ({exc.msg})", path=path, record=f"line {no}", fix="one JSON object per line") from None
        if not isinstance(obj, dict):
            raise InputError("not a JSON object", path=path, record=f"line {no}", fix="one JSON object per line")
        missing = [k for k in required if k not in obj]
        if missing:
            raise InputError(f"missing field(s) {missing}", path=path, record=f"line {no}", fix=f"each line needs {list(required)}")
        yield no, obj
