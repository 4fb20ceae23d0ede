"""Evaluate's per-revision outputs, read through DVC's own API.

An experiment's ``data/evaluate/<ds>/`` folder lives in DVC's cache, addressed by that experiment's
commit: :class:`RevisionFiles` opens it with ``dvc.api.DVCFileSystem(repo, rev=<sha>)`` (one per
revision), and the workspace from disk. Two files matter to the report:

* ``per_query.tsv`` -- ``run, split, query_id, <metric>...``: every run's per-query values;
* ``runs.tsv`` -- ``run, split, sha256``: the content hash of each run file evaluate read (a system's
  identity, for the test-read accounting; written since issue 11, absent in older revisions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rerank_lab.errors import InputError

PerQuery = dict[tuple[str, str], dict[str, dict[str, float]]]  # (run, split) -> {query id: {metric: value}}


def parse_per_query(text: str, where: str = "per_query.tsv") -> PerQuery:
    """``per_query.tsv`` as ``{(run, split): {query id: {metric: value}}}``.

    >>> parse_per_query("run\\tsplit\\tquery_id\\tndcg@10\\nbm25\\ttest\\tq1\\t0.5\\n")
    {('bm25', 'test'): {'q1': {'ndcg@10': 0.5}}}
    """
    lines = text.splitlines()
    header = lines[0].split("\t") if lines else []
    if header[:3] != ["run", "split", "query_id"]:
        raise InputError("not a per-query table (header run, split, query_id, <metrics>)", path=where, fix="write it with evaluate")
    metrics = header[3:]
    out: PerQuery = {}
    for no, line in enumerate(lines[1:], start=2):
        cols = line.split("\t")
        try:
            values = dict(zip(metrics, map(float, cols[3:]), strict=True))
        except ValueError:
            fix = "write it with evaluate"
            raise InputError(f"expected {len(header)} columns of numbers", path=where, record=f"line {no}", fix=fix) from None
        out.setdefault((cols[0], cols[1]), {})[cols[2]] = values
    return out


def parse_run_hashes(text: str) -> dict[tuple[str, str], str]:
    """``runs.tsv`` as ``{(run, split): sha256}``.

    >>> parse_run_hashes("run\\tsplit\\tsha256\\nbm25\\ttest\\tab12\\n")
    {('bm25', 'test'): 'ab12'}
    """
    rows = [line.split("\t") for line in text.splitlines()[1:] if line]
    return {(r[0], r[1]): r[2] for r in rows if len(r) == 3}


class RevisionFiles:
    """Files of ``repo`` at a revision: the workspace from disk, any commit through DVC."""

    def __init__(self, repo: Path) -> None:
        self.repo = Path(repo)
        self._fs: dict[str, Any] = {}
        self.unreadable: list[tuple[str, str]] = []  # (rev, path) that could not be read: said in the report

    def read(self, rev: str, path: str) -> str | None:
        """The text of ``path`` at ``rev`` (``"workspace"``: the working tree), None when absent."""
        if rev == "workspace":
            p = self.repo / path
            return p.read_text(encoding="utf-8") if p.is_file() else None
        from dvc.api import DVCFileSystem
        from dvc.exceptions import DvcException
        from dvc_data.index.index import DataIndexDirError

        try:
            if rev not in self._fs:
                self._fs[rev] = DVCFileSystem(str(self.repo), rev=rev)
            return self._fs[rev].read_text(path, encoding="utf-8")
        except (FileNotFoundError, DvcException, DataIndexDirError):  # not in that commit, or its cache object is missing
            self.unreadable.append((rev, path))
            return None

    def per_query(self, rev: str, dataset: str) -> PerQuery | None:
        path = f"data/evaluate/{dataset}/per_query.tsv"
        text = self.read(rev, path)
        return None if text is None else parse_per_query(text, f"{path} at {rev[:7]}")

    def run_hashes(self, rev: str, dataset: str) -> dict[tuple[str, str], str]:
        text = self.read(rev, f"data/evaluate/{dataset}/runs.tsv")
        return {} if text is None else parse_run_hashes(text)
