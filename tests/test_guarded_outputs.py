"""Misused output paths through the real CLI, for every command: one line naming the path and a fix,
exit 2, and not a byte changed -- the inputs, the output path, nothing else in the folder.

Each command gets the same misuses of each path it writes (an output that is, lies inside or
contains an input; an existing file or foreign folder where the output goes; a path under a file;
a read-only folder; a metrics path that is an input, the output or a folder). The guard runs before
the stage reads anything, so the inputs are placeholders and no model ever loads; the expected
message says which check fired (a placeholder input that got read would fail another way).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from rerank_lab.cli import cli, main

REPO = Path(__file__).resolve().parents[1]


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root``: file bytes, ``None`` for a folder."""
    return {p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


# --- one placeholder world holding every command's inputs --------------------------------------------

# every command's paths: option -> path relative to the test folder ("in/..." are inputs, "out/..." new)
COMMANDS: dict[str, dict[str, str]] = {
    "convert": {"--source": "=scifact_rationales", "--input": "in/raw", "--output": "out/o", "--metrics": "out/m.json"},
    "dedup": {"--source": "=scifact_rationales", "--input": "in/dataset", "--output": "out/o", "--metrics": "out/m.json"},
    "index": {"--retriever": "=bm25s", "--corpus": "in/corpus", "--models": "in/models", "--output": "out/o"},
    "retrieve": {
        "--retriever": "=bm25s",
        "--index": "in/index",
        "--dataset": "in/dataset",
        "--source": "=scifact_rationales",
        "--models": "in/models",
        "--output": "out/o",
    },
    "fuse": {"--fusion": "=rrf", "--runs": "in/runs", "--output": "out/o"},
    "mine": {
        "--input": "in/dataset",
        "--corpus": "in/corpus",
        "--qrels": "in/qrels",
        "--runs": "in/runs",
        "--cache": "out/cache.sqlite",
        "--models": "in/models",
        "--output": "out/o",
        "--metrics": "out/m.json",
    },
    "label": {
        "--input": "in/dataset",
        "--reranker": "in/model",
        "--cache": "out/cache.sqlite",
        "--models": "in/models",
        "--output": "out/o",
        "--metrics": "out/m.json",
    },
    "teacher-score": {
        "--input": "in/dataset",
        "--runs": "in/runs",
        "--cache": "out/cache.sqlite",
        "--models": "in/models",
        "--output": "out/o",
    },
    "train": {
        "--dataset": "in/dataset",
        "--qrels": "in/qrels",
        "--models": "in/models",
        "--output": "out/o",
        "--checkpoints": "out/ckpt",
        "--metrics": "out/m.json",
        "--plots": "out/plots",
    },
    "train-late": {"--dataset": "in/dataset", "--models": "in/models", "--output": "out/o", "--metrics": "out/m.json"},
    "score": {
        "--model": "in/model",
        "--late-model": "in/late-model",
        "--runs": "in/runs",
        "--dataset": "in/dataset",
        "--corpus": "in/corpus",
        "--cache": "out/cache.sqlite",
        "--output": "out/o",
        "--metrics": "out/m.json",
    },
    "tune": {
        "--dataset": "in/dataset",
        "--qrels": "in/qrels",
        "--runs": "in/runs",
        "--scores": "in/scores",
        "--output": "out/o",
        "--metrics": "out/m.json",
    },
    "evaluate": {
        "--runs": "in/runs",
        "--dataset": "in/dataset",
        "--qrels": "in/qrels",
        "--probabilities": "in/probabilities",
        "--metrics": "out/m.json",
        "--output": "out/o",
    },
    "report": {"--repo": "in/repo", "--output": "out/o"},
    "check": {"--output": "out/o"},  # reads only --params
    "headline": {"--evaluate": "in/evaluate.json", "--tune": "in/tune.json", "--metrics": "out/m.json"},  # writes only --metrics
}
FOLDERS = {"train": ("--output", "--plots"), "headline": ()}  # outputs written whole; --output everywhere else


def _world(tmp: Path) -> None:
    names = ("raw", "dataset", "corpus", "qrels", "index", "models", "model", "late-model", "scores", "probabilities", "repo")
    names += ("evaluate.json", "tune.json")  # headline's inputs (placeholders, never read)
    for name in names:
        (tmp / "in" / name).mkdir(parents=True)
        (tmp / "in" / name / "data.txt").write_text(f"{name}: a user's input\n")
    (tmp / "in" / "runs" / "bm25").mkdir(parents=True)
    (tmp / "in" / "runs" / "bm25" / "test.trec").write_text("q1 Q0 d1 1 2.5 bm25\n")
    shutil.copy2(REPO / "params.yaml", tmp / "params.yaml")  # the real sections: every config parses
    (tmp / "notes.txt").write_text("a user's notes\n")
    (tmp / "folder").mkdir()
    (tmp / "folder" / "thesis.tex").write_text("a user's folder\n")
    for other in ("fuse", "index"):  # another command's output
        (tmp / other).mkdir()
        (tmp / other / ".rerank-lab-output").write_text(f"rerank-lab {other}\n")
        (tmp / other / "test.trec").write_text("q1 Q0 d1 1 2.5 rrf\n")
    (tmp / "a-folder").mkdir()
    (tmp / "a-folder" / "keep.txt").write_text("kept\n")
    (tmp / "ro").mkdir()
    (tmp / "in" / "repo" / "metrics").mkdir()
    (tmp / "in" / "repo" / "metrics" / "train.json").write_text("{}\n")


def lock(folder: Path) -> None:
    """Make ``folder`` read-only for this process: chmod for a user, the immutable flag for root
    (whom permission bits do not stop); skip the test where neither works."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
    elif shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("root cannot make a read-only folder here (chattr +i)")


def unlock(folder: Path) -> None:
    if os.geteuid() != 0:
        folder.chmod(0o755)
    else:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    lock(folder)
    try:
        yield
    finally:
        unlock(folder)


# --- the cases: (command, id, {option: new value}, expected message after "error: <path>: ") -----------


def _first_input(command: str) -> tuple[str, str]:
    opt = next((o for o, v in COMMANDS[command].items() if v.startswith("in/")), "--params")
    return opt, COMMANDS[command].get(opt, "params.yaml")


def _cases() -> list[tuple[str, str, dict[str, str], str, bool]]:
    cases = []
    for command, options in COMMANDS.items():
        opt, src = _first_input(command)
        params = command != "report"
        for out in FOLDERS.get(command, ("--output",)):
            o = re.escape(out)

            def add(name: str, value: str, expected: str, ro: bool = False, _out: str = out, _command: str = command) -> None:
                cases.append((_command, f"{_out[2:]}-{name}", {_out: value}, expected, ro))

            if command == "report":  # an output inside the repo is the normal case; the repo itself is not
                add("is-input", src, rf"{o} is the same path as --repo")
                add("contains-input", "in", rf"{o} contains --repo in/repo; replacing it would delete that input")
                add("repo-folder", "in/repo/metrics", rf"{o} is an existing folder that holds files that rerank-lab report did not write")
            elif opt != "--params":  # (check reads only --params: its cases are the is-params ones below)
                add("is-input", src, rf"{o} is the same path as {opt}")
                add("inside-input", f"{src}/sub", rf"{o} lies inside {opt} {src}")
                add("contains-input", "in", rf"{o} contains {opt} {src}; replacing it would delete that input")
            add("user-file", "notes.txt", rf"{o} is an existing file; rerank-lab {command} writes a folder there")
            add("user-folder", "folder", rf"{o} is an existing folder that holds files that rerank-lab {command} did not write")
            other = "index" if command == "fuse" else "fuse"
            add("other-command", other, rf"{o} is an existing folder that holds the output of `rerank-lab {other}`")
            add("under-a-file", "notes.txt/out", rf"{o} lies under .*notes\.txt, which is a file")
            add("read-only", "ro/out", rf"{o} cannot be written: .*ro is read-only", ro=True)
            if params:
                add("is-params", "params.yaml", rf"{o} is the same path as --params")
        if "--metrics" in options:
            for name, value, expected, ro in (
                ("is-params", "params.yaml", r"--metrics is the same path as --params", False),
                ("is-input", src, rf"--metrics is the same path as {opt}", False),
                ("names-input-file", f"{src}/data.txt", rf"--metrics lies inside {opt} {src}", False),
                *([("is-output", options["--output"], r"--metrics is the same path as --output", False)] if "--output" in options else []),
                ("a-folder", "a-folder", r"--metrics is a folder; it names a file", False),
                ("under-a-file", "notes.txt/m.json", r"--metrics lies under .*notes\.txt, which is a file", False),
                ("read-only", "ro/m.json", r"--metrics cannot be written: .*ro is read-only", True),
            ):
                cases.append((command, f"metrics-{name}", {"--metrics": value}, expected, ro))
        for opt2 in ("--cache", "--checkpoints"):
            if opt2 in options:
                f = re.escape(opt2)
                cases.append((command, f"{opt2[2:]}-is-params", {opt2: "params.yaml"}, rf"{f} is the same path as --params", False))
                cases.append((command, f"{opt2[2:]}-is-output", {opt2: options["--output"]}, rf"{f} is the same path as --output", False))
        if "--checkpoints" in options:
            folder, file = r"--checkpoints is an existing folder that holds files", r"--checkpoints is an existing file"
            cases.append((command, "checkpoints-user-folder", {"--checkpoints": "folder"}, folder, False))
            cases.append((command, "checkpoints-user-file", {"--checkpoints": "notes.txt"}, file, False))
    return cases


CASES = _cases()
# every command but repro (which writes no stage output) has its cases: a new command must add its paths to COMMANDS
# every command that writes files: the stages and report (not repro, grid, hpo: they run experiments;
# not remote-check: writes nothing; not pr-report: its files come from `rerank-lab report`)
NOT_WRITING = {"repro", "grid", "hpo", "remote-check", "pr-report"}
assert {c for c, *_ in CASES} == set(COMMANDS) == set(cli.list_commands(click.Context(cli))) - NOT_WRITING


@pytest.mark.parametrize(("command", "name", "change", "expected", "ro"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_a_misused_output_path_changes_nothing(command, name, change, expected, ro, tmp_path, monkeypatch, capsys) -> None:
    _world(tmp_path)
    options = {**COMMANDS[command], **change}
    args = [command] + [a for opt, v in options.items() for a in (opt, v[1:] if v.startswith("=") else v)]
    if command != "report":
        args += ["--params", "params.yaml"]
    monkeypatch.chdir(tmp_path)  # relative paths, as dvc.yaml gives them
    for var, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
        monkeypatch.setenv(var, value)  # main() sets these; monkeypatch puts the old values back
    monkeypatch.setattr(sys, "argv", ["rerank-lab", *args])
    before = tree(tmp_path)
    capsys.readouterr()
    with read_only(tmp_path / "ro") if ro else contextlib.nullcontext():
        with pytest.raises(SystemExit) as info:
            main()
    captured = capsys.readouterr()
    assert info.value.code == 2, captured.err
    path = next(iter(change.values()))
    assert re.fullmatch(rf"error: {re.escape(path)}: {expected}.*\(fix: [^\n]+\)\n", captured.err), captured.err
    assert captured.out == ""
    assert tree(tmp_path) == before


def test_output_dot_is_refused(tmp_path, monkeypatch, capsys) -> None:
    """``--output .`` used to leave a full ``..tmp-*`` folder behind: the folder holds the inputs."""
    _world(tmp_path)
    monkeypatch.chdir(tmp_path)
    args = ["convert", "--source", "scifact_rationales", "--input", "in/raw", "--output", ".", "--metrics", "m.json"]
    monkeypatch.setattr(sys, "argv", ["rerank-lab", *args])
    before = tree(tmp_path)
    with pytest.raises(SystemExit, match="^2$"):
        main()
    assert capsys.readouterr().err == (
        "error: .: --output contains --params params.yaml; replacing it would delete that input "
        "(fix: write --output to a new path that neither is, lies inside, nor contains an input)\n"
    )
    assert tree(tmp_path) == before
    assert not any(p.name.startswith(f".{tmp_path.name}.tmp-") for p in tmp_path.parent.iterdir())


# --- outputs and metrics are committed together, last; a killed run leaves nothing that lasts ---------


def _beir(root: Path, docs: int) -> Path:
    """A BEIR folder with ``docs`` documents and one judged query per two documents."""
    (root / "qrels").mkdir(parents=True)
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"_id": f"d{i}", "title": f"T{i}", "text": f"Doc {i}, one. Two."}) + "\n" for i in range(docs))
    with open(root / "queries.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) + "\n" for i in range(docs // 2))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{2 * i}\t1\n" for i in range(docs // 2)))
    return root


def _convert_args(tmp: Path, raw: Path, out: Path, metrics: Path) -> list[str]:
    (tmp / "params.yaml").write_text("convert:\n  seed: 1\n  sources:\n    x:\n      format: beir\n")
    paths = ["--params", tmp / "params.yaml", "--input", raw, "--output", out, "--metrics", metrics]
    return ["convert", "--source", "x", *map(str, paths)]


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]


def test_a_rerun_replaces_its_own_output(tmp_path, monkeypatch) -> None:
    raw, out, metrics = _beir(tmp_path / "raw", 4), tmp_path / "out" / "converted", tmp_path / "out" / "convert.json"
    args = _convert_args(tmp_path, raw, out, metrics)
    cli.main(args, prog_name="rerank-lab", standalone_mode=False)
    assert (out / ".rerank-lab-output").read_text() == "rerank-lab convert\n"  # what lets the rerun replace it
    shutil.rmtree(raw)
    _beir(raw, 6)
    cli.main(args, prog_name="rerank-lab", standalone_mode=False)
    assert json.loads(metrics.read_text())["test_queries"] == 3
    assert (out / "qrels" / "test.tsv").read_text().count("\n") == 4
    assert _temporaries(tmp_path) == []


def test_a_refused_metrics_path_keeps_the_previous_output(tmp_path, monkeypatch, capsys) -> None:
    """The metrics used to be written after the output was renamed into place: a read-only metrics
    folder gave a traceback and a new output next to stale metrics."""
    raw, out = _beir(tmp_path / "raw", 4), tmp_path / "out" / "converted"
    (tmp_path / "ro").mkdir()
    args = _convert_args(tmp_path, raw, out, tmp_path / "ro" / "convert.json")
    cli.main(args, prog_name="rerank-lab", standalone_mode=False)
    shutil.rmtree(raw)
    _beir(raw, 6)  # the rerun would write another output
    before = tree(tmp_path)
    monkeypatch.setattr(sys, "argv", ["rerank-lab", *args])
    with read_only(tmp_path / "ro"), pytest.raises(SystemExit, match="^2$"):
        main()
    expected = r"error: \S+/ro/convert\.json: --metrics cannot be written: \S+ is read-only \(fix: [^\n]+\)\n"
    assert re.fullmatch(expected, capsys.readouterr().err)
    assert tree(tmp_path) == before


def test_sigkill_mid_write_then_rerun_leaves_no_temporaries_and_the_same_output(tmp_path) -> None:
    raw = _beir(tmp_path / "raw", 20000)  # a second or two of work: time to kill it while it writes
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}

    def command(folder: Path) -> list[str]:
        return [sys.executable, "-m", "rerank_lab.cli", *_convert_args(tmp_path, raw, folder / "out", folder / "convert.json")]

    subprocess.run(command(tmp_path / "reference"), env=env, check=True, capture_output=True)
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen(command(work), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None:  # kill once the temporary output holds a written file
            if any(f.is_file() for t in work.glob(".out.tmp-*") for f in t.rglob("*")):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the command ended before it could be killed mid-write"
    assert _temporaries(work), "the kill left no temporary: nothing was tested"
    subprocess.run(command(work), env=env, check=True, capture_output=True)
    assert _temporaries(work) == []
    assert tree(work) == tree(tmp_path / "reference")
