"""The factor grid: cells, names and --where (pure), and `rerank-lab grid queue` through DVC's own
queue in a real git + DVC repository (queued names, the params a queued run applies, bad input
refused with nothing queued)."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rerank_lab import cli
from rerank_lab.errors import ConfigError
from rerank_lab.grid import applied, cells, check_cell, grid_axes, hydra_value, select
from rerank_lab.grid_names import cell_names, labels
from rerank_lab.params_file import load_params
from rerank_lab.stage import Stage
from rerank_lab.validate import CHOICE_LISTS, CHOICES, SELF, configures

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's rerank-lab and dvc
PROJECT = {k: v for k, v in load_params(REPO / "params.yaml").items() if k != "grid"}
GRID = {"train.loss": ["listnet", "lambda"], "mine.miner": ["random", "hard", "mixed"]}


def _params(grid: dict | None = None, **changes) -> dict:
    """The project's params.yaml with a grid section (and dotted-key changes)."""
    params = copy.deepcopy(PROJECT)
    for key, value in changes.items():
        *head, last = key.split(".")
        node = params
        for part in head:
            node = node[part]
        node[last] = value
    params["grid"] = grid if grid is not None else {"axes": GRID}
    return params


# --- pure: cells, names, --where ---------------------------------------------------------------


def test_cells_are_the_product_first_axis_slowest_named_after_their_values() -> None:
    axes = grid_axes(_params())
    chosen = cells(axes)
    assert [(c["train.loss"], c["mine.miner"]) for c in chosen] == [
        ("listnet", "random"), ("listnet", "hard"), ("listnet", "mixed"),
        ("lambda", "random"), ("lambda", "hard"), ("lambda", "mixed"),
    ]  # fmt: skip
    assert cell_names(axes, chosen)[:2] == ["loss-listnet.miner-random", "loss-listnet.miner-hard"]


def test_a_name_depends_on_the_cell_only_not_on_what_selected_it() -> None:
    params = _params({"axes": GRID, "subsets": {"hard": {"mine.miner": ["hard"]}}})
    full = grid_axes(params)
    full_names = dict(zip(map(str, cells(full)), cell_names(full, cells(full)), strict=True))
    for axes in (grid_axes(params, "hard"), select(full, ["miner=hard"]), select(full, ["train.loss=lambda", "mine.miner=hard"])):
        for cell, name in zip(cells(axes), cell_names(axes, cells(axes)), strict=True):
            assert full_names[str(cell)] == name


def test_labels_grow_until_unique_and_values_become_ref_safe_names() -> None:
    expected = {"train.seed": "train_seed", "mine.seed": "mine_seed", "tune.epsilon": "epsilon"}
    assert labels(["train.seed", "mine.seed", "tune.epsilon"]) == expected
    axes = {"datasets": (["nfcorpus", "arguana"],), "train.max_queries": (None,), "score.dtype": ("a b/c..d.",)}
    (name,) = cell_names(axes, cells(axes))
    assert re.fullmatch(r"datasets-nfcorpus\+arguana\.max_queries-null\.dtype-a_b_c\.d\._-[0-9a-f]{7}", name)
    assert cell_names({"score.name": ("1", 1)}, [{"score.name": "1"}, {"score.name": 1}])[1] == "name-1"
    git = subprocess.run(["git", "check-ref-format", f"refs/exps/ab/cd/{name}"], check=False)
    assert git.returncode == 0


def test_names_that_would_clash_get_a_stable_hash() -> None:
    axes = {"train.model": ("a/b", "a:b")}
    first = cell_names(axes, cells(axes))
    assert first[0] != first[1] and all(n.startswith("model-a_b-") for n in first)
    assert cell_names(axes, cells(axes)) == first
    assert cell_names(axes, cells(select(axes, ["model=a/b"]))) == first[:1]  # not only when both are picked


def test_where_values_of_one_axis_add_up_and_axes_must_all_hold() -> None:
    axes = {"train.loss": ("listnet", "lambda"), "mine.miner": ("random", "hard", "mixed"), "tune.epsilon": (0.5, 1.0)}
    kept = select(axes, ["miner=hard", "mine.miner=random", "epsilon=1"])  # 1 matches 1.0
    assert kept == {"train.loss": ("listnet", "lambda"), "mine.miner": ("random", "hard"), "tune.epsilon": (1.0,)}
    assert len(cells(kept)) == 4


def test_a_subset_replaces_the_axes_it_names_and_appends_new_ones() -> None:
    params = _params({"axes": GRID, "subsets": {"seeds": {"train.seed": [1, 2, 3], "mine.miner": ["hard"]}}})
    assert grid_axes(params, "seeds") == {"train.loss": ("listnet", "lambda"), "mine.miner": ("hard",), "train.seed": (1, 2, 3)}


# --- pure: bad grids --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grid", "subset", "expected"),
    [
        (
            {"axes": {"train.lss": ["bce"]}},
            None,
            r"^grid\.axes\.train\.lss: names no key of params\.yaml \(fix: did you mean 'train\.loss'",
        ),
        ({"axes": {"tune.epsilon": []}}, None, r"^grid\.axes\.tune\.epsilon: is empty: .*\(fix: list its values, e\.g\. \[0\.5\]"),
        ({"axes": {"tune.epsilon": 0.5}}, None, r"^grid\.axes\.tune\.epsilon: must be a list of values, got 0\.5 \(fix: .*: \[0\.5\]\)$"),
        (
            {"axes": {"train": ["x"]}},
            None,
            r"^grid\.axes\.train: names a section, not a value \(fix: name a key inside it, e\.g\. train\.\w+\)$",
        ),
        ({"axes": {"train.loss": ["listnet", "listnet"]}}, None, r"^grid\.axes\.train\.loss\[1\]: repeats an earlier value"),
        ({"axes": {"mine.miner": [{"type": "random"}]}}, None, r"^grid\.axes\.mine\.miner\[0\]: must be a value or a list of values"),
        ({"axes": {}}, None, r"^grid\.axes: names no axis"),
        ({"axis": {"train.loss": ["bce"]}}, None, r"^grid\.axis: unknown key \(fix: did you mean 'axes'\?"),
        (
            {"axes": GRID, "subsets": {"few": {"mine.minr": ["hard"]}}},
            None,
            r"^grid\.subsets\.few\.mine\.minr: names no key .*'mine\.miner",
        ),
        (
            {"axes": GRID, "subsets": {"few": {"mine.miner": ["hard"]}}},
            "fwe",
            r"^--subset: params has no grid subset 'fwe' \(fix: .* 'few'\?",
        ),
    ],
)
def test_a_bad_grid_is_one_line_naming_the_key_and_the_fix(grid, subset, expected) -> None:
    with pytest.raises(ConfigError, match=expected):
        grid_axes(_params(grid), subset)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (
            "mine.miner=hrad",
            r"^--where 'mine\.miner=hrad': hrad is not a value of axis mine\.miner \(fix: .* 'hard'\? use one of: random, hard, mixed\)$",
        ),
        (
            "tune.epsilon=0.5",
            r"^--where 'tune\.epsilon=0\.5': 'tune\.epsilon' is not an axis of the grid \(fix: axes: train\.loss, mine\.miner\)",
        ),
        ("minr=hard", r"^--where 'minr=hard': 'minr' is not an axis .*did you mean 'miner'\?"),
        ("hard", r"^--where 'hard': not AXIS=VALUE"),
    ],
)
def test_a_bad_where_is_one_line_naming_the_axis_and_its_values(where, expected) -> None:
    with pytest.raises(ConfigError, match=expected):
        select(grid_axes(_params()), [where])


# --- DVC's -S, read back as the stages read params --------------------------------------------


def test_every_value_comes_back_from_dvc_s_as_written(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_params()))
    cell = {"datasets": ["nfcorpus", "arguana"], "train.max_queries": None, "tune.epsilon": 1.0}
    cell |= {"score.name": "1", "tune.study_name": "a,b c'd"}
    assert [hydra_value(v) for v in cell.values()] == ["[nfcorpus,arguana]", "null", "1.0", "'1'", "'a,b c\\'d'"]
    back = applied(path, cell)
    assert (back["datasets"], back["train"]["max_queries"], back["tune"]["epsilon"]) == (["nfcorpus", "arguana"], None, 1.0)
    assert (back["score"]["name"], back["tune"]["study_name"]) == ("1", "a,b c'd")


def test_a_small_learning_rate_round_trips_through_dvc(tmp_path: Path) -> None:
    """DVC writes 2e-05 without a dot; params are read as YAML 1.2 (rerank_lab.config.load_params), so
    the cell's value comes back as the number it is (YAML 1.1 would read text) and the cell is queued."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_params()))
    check_cell(path, "c", {"train.learning_rate": 2e-05})


def test_a_cell_a_stage_would_refuse_names_the_cell_the_key_and_the_axis(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_params()))
    expected = r"^grid cell c: train\.loss: unknown \w+, got 'foo' \(fix: .*; or change foo in grid\.axes\.train\.loss\)$"
    with pytest.raises(ConfigError, match=expected):
        check_cell(path, "c", {"train.loss": "foo"})
    with pytest.raises(ConfigError, match=r"^grid cell c: params has no 'convert\.sources\.nope'"):
        check_cell(path, "c", {"datasets": ["nope"]})  # convert's --source check, for each listed dataset


def test_a_cell_whose_sections_disagree_is_refused_too(tmp_path: Path) -> None:
    """Each section alone is valid; the check stage's consistency rule (tune.run must be reranked) is not."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_params()))
    with pytest.raises(ConfigError, match=r"^grid cell c: tune\.run: .*got 'dense' \(fix: .*; or change dense in grid\.axes\.tune\.run\)$"):
        check_cell(path, "c", {"tune.run": "dense"})


def test_the_params_check_covers_every_command_that_reads_params() -> None:
    records = {v.name: v.choices for v in vars(cli).values() if isinstance(v, Stage) and v.params and v.name != SELF}
    assert CHOICES == records
    assert set(configures()) == set(CHOICES)
    assert all(c in CHOICE_LISTS for choices in CHOICES.values() for c in choices)


# --- through the real CLI, in a real git + DVC repository -------------------------------------

STEP = """\
import json, yaml
p = yaml.safe_load(open("params.yaml"))
json.dump({"loss": p["train"]["loss"], "miner": p["mine"]["miner"]}, open("cell.json", "w"))
"""
DVC_YAML = {
    "stages": {
        "cell": {
            "cmd": "python step.py",
            "deps": ["step.py"],
            "params": ["train.loss", "mine.miner"],
            "metrics": [{"cell.json": {"cache": False}}],
        }
    }
}


def _env() -> dict[str, str]:
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "PYTHONPATH": str(REPO / "src"), "DVC_NO_ANALYTICS": "1"}


def _run(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), cwd=cwd, env=_env(), capture_output=True, text=True, check=False)
    assert not check or proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _repo(root: Path, params: dict) -> Path:
    root.mkdir()
    _run(root, "git", "init", "-q")
    _run(root, "git", "config", "user.email", "t@example.org")
    _run(root, "git", "config", "user.name", "t")
    _run(root, "dvc", "init", "-q")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    (root / "step.py").write_text(STEP)
    _run(root, "git", "add", "-A")
    _run(root, "git", "commit", "-qm", "grid")
    return root


def _queued(root: Path) -> list[str]:
    out = _run(root, "dvc", "queue", "status").stdout
    return re.findall(r"^\w{7}\s+(\S+)\s+.*\bQueued\s*$", out, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def shared_repo(tmp_path_factory) -> Path:
    return _repo(tmp_path_factory.mktemp("grid") / "repo", _params())


def _main(root: Path, args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """``rerank-lab <args>`` in ``root``, in this process (main() as the console script runs it)."""
    monkeypatch.chdir(root)
    for var, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
        monkeypatch.setenv(var, value)  # main() sets these; monkeypatch puts the old values back
    monkeypatch.setattr(sys, "argv", ["rerank-lab", *args])
    capsys.readouterr()
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_grid_queue_queues_every_cell_named_after_it(tmp_path: Path, monkeypatch, capsys) -> None:
    root = _repo(tmp_path / "repo", _params())
    code, out, _ = _main(root, ["grid", "queue", "--dry-run"], monkeypatch, capsys)
    assert (
        code == 0 and out.splitlines()[0] == "dvc exp run --queue -n loss-listnet.miner-random -S train.loss=listnet -S mine.miner=random"
    )
    assert out.splitlines()[-1] == "would queue 6 of 6 cells"
    assert _queued(root) == []
    out = _run(root, "rerank-lab", "grid", "queue").stdout  # the console script, as a user runs it
    assert out.splitlines()[-1].startswith("queued 6 of 6 cells")
    names = [f"loss-{loss}.miner-{miner}" for loss in ("listnet", "lambda") for miner in ("random", "hard", "mixed")]
    assert sorted(_queued(root)) == sorted(names)
    code, _, err = _main(root, ["grid", "queue", "--where", "loss=lambda"], monkeypatch, capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert re.match(
        r"^error: 3 of 3 cells already exist \(loss-lambda\.miner-random: queued, \.\.\.\); nothing queued \(fix: remove them", err
    )
    assert "dvc queue remove loss-lambda.miner-random loss-lambda.miner-hard loss-lambda.miner-mixed" in err and "--skip-existing" in err
    assert len(_queued(root)) == 6


@pytest.mark.slow  # runs two experiments through DVC's queue worker (~35 s)
def test_a_queued_cell_runs_with_its_own_params(tmp_path: Path) -> None:
    root = _repo(tmp_path / "repo", _params({"axes": GRID, "subsets": {"two": {"mine.miner": ["hard", "mixed"]}}}))
    _run(root, "rerank-lab", "grid", "queue", "--subset", "two", "--where", "loss=lambda")
    assert sorted(_queued(root)) == ["loss-lambda.miner-hard", "loss-lambda.miner-mixed"]
    _run(root, "dvc", "queue", "start", "-j", "1")
    deadline = time.monotonic() + 120  # a wait for DVC's worker, not a speed assertion
    while re.search(r"\b(Queued|Running)\s*$", _run(root, "dvc", "queue", "status").stdout, flags=re.MULTILINE):
        assert time.monotonic() < deadline, _run(root, "dvc", "queue", "status").stdout
        time.sleep(1)
    shown = json.loads(_run(root, "dvc", "exp", "show", "--json").stdout)
    exps = {e["name"]: e["revs"][0]["data"] for baseline in shown for e in (baseline.get("experiments") or []) if e.get("name")}
    assert sorted(exps) == ["loss-lambda.miner-hard", "loss-lambda.miner-mixed"]
    data = exps["loss-lambda.miner-mixed"]
    assert data["params"]["params.yaml"]["data"]["train"]["loss"] == "lambda"
    assert data["params"]["params.yaml"]["data"]["mine"]["miner"] == "mixed"
    assert data["metrics"]["cell.json"]["data"] == {"loss": "lambda", "miner": "mixed"}


@pytest.mark.parametrize(
    ("grid", "args", "expected"),
    [
        ({"axes": {"train.lss": ["listnet"]}}, [], r"^grid\.axes\.train\.lss: names no key of params\.yaml \(fix: .* 'train\.loss'\?"),
        ({"axes": {"train.loss": []}}, [], r"^grid\.axes\.train\.loss: is empty: .*\(fix: list its values, e\.g\. \[listnet\]"),
        ({"axes": GRID}, ["--where", "miner=hrad"], r"^--where 'miner=hrad': hrad is not a value of axis mine\.miner \(fix: .* 'hard'\?"),
        (
            {"axes": GRID},
            ["--where", "seed=1"],
            r"^--where 'seed=1': 'seed' is not an axis of the grid \(fix: axes: train\.loss, mine\.miner",
        ),
        (
            {"axes": {"train.loss": ["listnet", "foo"], "mine.miner": ["hard"]}},
            [],
            r"^grid cell loss-foo\.miner-hard: train\.loss: unknown \w+, got 'foo' \(fix: .*or change foo in grid\.axes\.train\.loss\)$",
        ),
        ({"axes": GRID}, ["--subset", "smoke"], r"^--subset: params has no grid subset 'smoke' \(fix: add it under grid\.subsets\)$"),
    ],
)
def test_bad_grid_input_is_one_line_and_queues_nothing(grid, args, expected, shared_repo: Path, monkeypatch, capsys) -> None:
    (shared_repo / "params.yaml").write_text(yaml.safe_dump(_params(grid), sort_keys=False))
    code, _, err = _main(shared_repo, ["grid", "queue", *args], monkeypatch, capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert re.match(expected, err.removeprefix("error: ")), err
    assert _queued(shared_repo) == []
    assert _run(shared_repo, "dvc", "exp", "ls", "--name-only").stdout.strip() == ""


def test_an_unwritable_cache_stops_the_queue_before_any_cell(shared_repo: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    (shared_repo / "params.yaml").write_text(yaml.safe_dump(_params({"axes": GRID}), sort_keys=False))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    monkeypatch.setenv("RERANK_LAB_CACHE", str(blocker / "cache"))  # under a file: no one can create it, root included
    code, _, err = _main(shared_repo, ["grid", "queue"], monkeypatch, capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(blocker / "cache") in err and "RERANK_LAB_CACHE" in err, err
    assert _queued(shared_repo) == []
