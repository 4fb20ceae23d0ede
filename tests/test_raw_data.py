"""The shipped raw data is what data/raw/README.md says it is (sha256 of the stored files)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

RAW = Path(__file__).resolve().parents[1] / "data" / "raw"
MOVED = {
    "train_samples/msmarco_triples_sample.tsv": "msmarco_triples/msmarco_triples_sample.tsv",
    "train_samples/msmarco_hardneg_sample.jsonl.gz": "msmarco_hardneg/msmarco_hardneg_sample.jsonl.gz",
    "train_samples/nq_hardneg_sample.jsonl.gz": "nq_hardneg/nq_hardneg_sample.jsonl.gz",
}


def _listed() -> list[tuple[str, str]]:
    text = (RAW / "SOURCES.md").read_text()
    block = text.split("## sha256 of every file (as stored)", 1)[1].split("```")[1]
    rows = [tuple(line.split()) for line in block.strip().splitlines()]
    return [(digest, MOVED.get(path, path)) for digest, path in rows if (RAW / MOVED.get(path, path)).parent.exists()]


@pytest.mark.parametrize(("digest", "path"), _listed())
def test_sha256_matches_sources(digest: str, path: str) -> None:
    assert hashlib.sha256((RAW / path).read_bytes()).hexdigest() == digest


def test_every_dataset_folder_is_documented() -> None:
    readme = (RAW / "README.md").read_text()
    for folder in sorted(p.name for p in RAW.iterdir() if p.is_dir()):
        assert re.search(rf"`{folder}/`", readme), folder
