"""The guarded-output helper on its own: what it refuses, what it commits together, what it cleans."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rerank_lab.io.outputs import MARKER, OutputError, Read, Written, clean_stale, guard, staged
from tests.test_guarded_outputs import lock, read_only, tree, unlock


class Boom(Exception):
    pass


def _folder(path: Path, marker: str | None = None, **files: str) -> Path:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    if marker is not None:
        (path / MARKER).write_text(f"rerank-lab {marker}\n")
    return path


def test_guard_refuses_an_output_that_is_inside_or_contains_an_input(tmp_path) -> None:
    data = _folder(tmp_path / "data", raw="x")
    for out, pattern in (
        (data, r"^\S+/data: --output is the same path as --input \(fix: "),
        (data / "sub", r"^\S+/data/sub: --output lies inside --input \S+/data \(fix: "),
        (tmp_path, r"--output contains --input \S+/data; replacing it would delete that input"),
    ):
        with pytest.raises(OutputError, match=pattern):
            guard("s", [Read("--input", data)], [Written("--output", out)])
    with pytest.raises(OutputError, match=r"--metrics lies inside --output"):
        guard("s", [], [Written("--output", tmp_path / "o"), Written("--metrics", tmp_path / "o" / "m.json", "file")])


def test_guard_follows_links_to_the_input(tmp_path) -> None:
    data = _folder(tmp_path / "data", raw="x")
    (tmp_path / "link").symlink_to(data)
    with pytest.raises(OutputError, match="--output is the same path as --input"):
        guard("s", [Read("--input", data)], [Written("--output", tmp_path / "link")])


def test_an_output_may_lie_inside_an_around_input_but_not_contain_it(tmp_path) -> None:
    repo = _folder(tmp_path / "repo", marker=None, **{"dvc.yaml": "stages: {}\n"})
    guard("report", [Read("--repo", repo, around=True)], [Written("--output", repo / "report")])
    with pytest.raises(OutputError, match="--output contains --repo"):
        guard("report", [Read("--repo", repo, around=True)], [Written("--output", tmp_path)])


def test_what_an_output_folder_may_replace(tmp_path) -> None:
    guard("s", [], [Written("--output", _folder(tmp_path / "own", "s", a="1"))])  # its own earlier output
    guard("s", [], [Written("--output", _folder(tmp_path / "empty"))])  # nothing to lose
    guard("s", [], [Written("--checkpoints", _folder(tmp_path / "ckpt", **{"settings.sha1": "x"}), "kept", "settings.sha1")])
    for path, pattern in (
        (_folder(tmp_path / "other", "t", a="1"), r"holds the output of `rerank-lab t`"),
        (_folder(tmp_path / "user", a="1"), r"holds files that rerank-lab s did not write \(no \.rerank-lab-output in it\)"),
    ):
        with pytest.raises(OutputError, match=pattern):
            guard("s", [], [Written("--output", path)])
    (tmp_path / "file").write_text("mine")
    with pytest.raises(OutputError, match="--output is an existing file"):
        guard("s", [], [Written("--output", tmp_path / "file")])
    with pytest.raises(OutputError, match="--metrics is a folder; it names a file"):
        guard("s", [], [Written("--metrics", tmp_path / "empty", "file")])
    guard("s", [], [Written("--metrics", tmp_path / "file", "file")])  # a metrics file is rewritten


def test_guard_refuses_a_path_under_a_file_or_in_a_read_only_folder(tmp_path) -> None:
    (tmp_path / "file").write_text("mine")
    with pytest.raises(OutputError, match=r"^\S+/file/a/b: --output lies under \S+/file, which is a file"):
        guard("s", [], [Written("--output", tmp_path / "file" / "a" / "b")])
    (tmp_path / "ro").mkdir()
    with read_only(tmp_path / "ro"), pytest.raises(OutputError, match=r"--metrics cannot be written: \S+/ro is read-only"):
        guard("s", [], [Written("--metrics", tmp_path / "ro" / "new" / "m.json", "file")])


def test_staged_commits_every_output_and_the_metrics_together(tmp_path) -> None:
    writes = [Written("--output", tmp_path / "a" / "out"), Written("--plots", tmp_path / "b" / "plots")]
    writes.append(Written("--metrics", tmp_path / "m.json", "file"))
    with staged("s", writes) as staging:
        for flag in ("--output", "--plots"):
            _folder(staging.paths[flag], x=flag)
            assert not (tmp_path / "a" / "out").exists()  # nothing is in place before the block ends
        staging.paths["--metrics"].write_text("{}\n")
        assert not (tmp_path / "m.json").exists()
    assert tree(tmp_path) == {
        "a": None,
        "a/out": None,
        f"a/out/{MARKER}": b"rerank-lab s\n",
        "a/out/x": b"--output",
        "b": None,
        "b/plots": None,
        f"b/plots/{MARKER}": b"rerank-lab s\n",
        "b/plots/x": b"--plots",
        "m.json": b"{}\n",
    }


def test_a_failed_stage_commits_nothing_and_removes_its_temporaries(tmp_path) -> None:
    _folder(tmp_path / "out", "s", old="1")
    (tmp_path / "m.json").write_text("old\n")
    before = tree(tmp_path)
    writes = [Written("--output", tmp_path / "out"), Written("--metrics", tmp_path / "m.json", "file")]
    writes.append(Written("--plots", tmp_path / "new" / "deep"))
    with pytest.raises(Boom), staged("s", writes) as staging:
        _folder(staging.paths["--output"], new="2")
        raise Boom()
    assert tree(tmp_path) == before  # the folders made for new/deep are gone too


def test_a_failed_commit_puts_the_old_outputs_back(tmp_path) -> None:
    _folder(tmp_path / "a" / "out", "s", old="1")
    _folder(tmp_path / "b" / "out", "s", old="2")
    before = tree(tmp_path)
    writes = [Written("--output", tmp_path / "a" / "out"), Written("--plots", tmp_path / "b" / "out")]
    try:
        with pytest.raises(OutputError, match=r"^\S+/b/out: cannot put --plots in place"), staged("s", writes) as staging:
            _folder(staging.paths["--output"], new="1")
            _folder(staging.paths["--plots"], new="2")
            lock(tmp_path / "b")  # a/out is moved aside, b/out cannot be: a/out must come back
    finally:
        unlock(tmp_path / "b")
    clean_stale(tmp_path / "b" / "out")  # the temporary that read-only b/ kept: the next run removes it
    assert tree(tmp_path) == before


def test_stale_temporaries_of_dead_runs_are_removed_and_live_ones_kept(tmp_path) -> None:
    dead = _folder(tmp_path / ".out.tmp-999999999-abc", half="x")  # a pid no process has
    unnamed = _folder(tmp_path / ".out.tmp-k3j2h1g0", half="x")  # the library's own atomic_dir temporary
    old = _folder(tmp_path / ".out.old-999999999-x")
    live = _folder(tmp_path / f".out.tmp-{os.getppid()}-abc", half="x")  # the test runner's parent is alive
    other = _folder(tmp_path / ".other.tmp-999999999-abc")
    assert sorted(clean_stale(tmp_path / "out")) == sorted([dead, unnamed, old])
    assert live.is_dir() and other.is_dir()
