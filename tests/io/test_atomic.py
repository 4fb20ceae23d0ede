"""Atomic writers: the output appears whole or not at all, and no temporaries are left behind."""

from __future__ import annotations

import pytest

from rerank_lab.io.atomic import atomic_dir, atomic_file, write_text


class Boom(Exception):
    pass


def test_dir_success_creates_the_folder(tmp_path):
    with atomic_dir(tmp_path / "sub" / "out") as tmp:
        assert tmp.parent == tmp_path / "sub" and tmp.name.startswith(".out.tmp-")
        (tmp / "a.txt").write_text("A")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["out"]
    assert (tmp_path / "sub" / "out" / "a.txt").read_text() == "A"


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_dir_failure_leaves_nothing(tmp_path, error):
    with pytest.raises(error):
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "half.txt").write_text("half")
            raise error()
    assert list(tmp_path.iterdir()) == []


def test_dir_failure_keeps_the_old_output(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    with pytest.raises(Boom):
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "new.txt").write_text("new")
            raise Boom()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["old.txt"]


def test_dir_success_replaces_the_old_output(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.txt").write_text("stale")
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no .out.old-* or .out.tmp-* left
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["new.txt"]


def test_dir_success_replaces_an_old_file(tmp_path):
    (tmp_path / "out").write_text("was a file")
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (tmp_path / "out" / "new.txt").read_text() == "new"


def test_file_success_creates_parents(tmp_path):
    with atomic_file(tmp_path / "a" / "b.txt") as fh:
        fh.write("héllo\n")
    assert (tmp_path / "a" / "b.txt").read_bytes() == "héllo\n".encode()
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.txt"]


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_file_failure_leaves_nothing(tmp_path, error):
    with pytest.raises(error):
        with atomic_file(tmp_path / "out.txt") as fh:
            fh.write("half")
            raise error()
    assert list(tmp_path.iterdir()) == []


def test_file_failure_keeps_the_old_file(tmp_path):
    (tmp_path / "out.txt").write_text("old")
    with pytest.raises(Boom):
        with atomic_file(tmp_path / "out.txt") as fh:
            fh.write("new")
            raise Boom()
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    assert (tmp_path / "out.txt").read_text() == "old"


def test_file_success_replaces_the_old_file(tmp_path):
    (tmp_path / "out.txt").write_text("old, and longer than the new text")
    with atomic_file(tmp_path / "out.txt") as fh:
        fh.write("new")
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    assert (tmp_path / "out.txt").read_text() == "new"


def test_file_binary_mode_and_newlines(tmp_path):
    with atomic_file(tmp_path / "b.bin", mode="wb") as fh:
        fh.write(b"\x00\r\n")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\r\n"
    write_text(tmp_path / "t.txt", "a\nb\n")  # text mode writes \n on every platform
    assert (tmp_path / "t.txt").read_bytes() == b"a\nb\n"
