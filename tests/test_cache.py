"""The per-user cache folder: where it is, clear errors when it cannot be written, and -- the
point of it -- a score cache that queued DVC experiments share while they run at once
(``dvc queue start -j 2``), every score stored once and equal to a serial run's."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest

from rerank_lab.cache import cache_dir, cache_location
from rerank_lab.cli import main
from rerank_lab.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
ENV_VARS = ("RERANK_LAB_CACHE", "XDG_CACHE_HOME")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No cache variable set, HOME in tmp_path: each test sets what it needs."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


# --- where ---------------------------------------------------------------------------------------


def test_the_default_is_under_home_dot_cache_and_is_created(clean_env, tmp_path):
    assert cache_dir() == tmp_path / "home" / ".cache" / "rerank-lab"
    assert cache_dir().is_dir()
    assert list(cache_dir().iterdir()) == []  # the writability probe leaves nothing behind


def test_xdg_cache_home_comes_before_home(clean_env, tmp_path):
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "rerank-lab"


def test_rerank_lab_cache_comes_before_xdg(clean_env, tmp_path):
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    clean_env.setenv("RERANK_LAB_CACHE", str(tmp_path / "mine" / "deeper"))
    assert cache_dir() == tmp_path / "mine" / "deeper"  # the folder itself, no rerank-lab suffix; parents created
    assert not (tmp_path / "xdg").exists()


def test_a_relative_xdg_cache_home_is_ignored(clean_env, tmp_path):
    clean_env.setenv("XDG_CACHE_HOME", "relative/xdg")  # the XDG spec: relative values are invalid
    assert cache_location() == tmp_path / "home" / ".cache" / "rerank-lab"


def test_a_relative_rerank_lab_cache_is_refused(clean_env):
    # a relative folder is another folder in each temporary workspace a queued experiment runs in
    clean_env.setenv("RERANK_LAB_CACHE", "cache")
    expected = r"^RERANK_LAB_CACHE='cache' is a relative path; .* \(fix: set RERANK_LAB_CACHE to an absolute path"
    with pytest.raises(ConfigError, match=expected):
        cache_dir()


@pytest.mark.parametrize(
    ("where", "why"),
    [
        ("a-file", "it is a file"),
        ("a-file/sub", "a parent of it is a file"),  # fails for root too, unlike a chmod'ed folder
    ],
)
def test_an_unwritable_location_is_one_line_naming_it_and_the_fix(clean_env, tmp_path, where, why):
    (tmp_path / "a-file").write_text("not a folder")
    clean_env.setenv("RERANK_LAB_CACHE", str(tmp_path / where))
    with pytest.raises(ConfigError) as info:
        cache_dir()
    message = str(info.value)
    fix = "(fix: set RERANK_LAB_CACHE to a writable folder)"
    assert message == f"{tmp_path / where}: the rerank-lab cache folder cannot be written: {why} {fix}"
    assert "\n" not in message


def test_a_stage_refuses_an_unwritable_default_cache_before_any_work(clean_env, tmp_path, capsys):
    """``rerank-lab score`` without ``--cache``: the per-user cache is checked first, one line, exit 2."""
    (tmp_path / "a-file").write_text("not a folder")
    clean_env.setenv("RERANK_LAB_CACHE", str(tmp_path / "a-file" / "sub"))
    out = tmp_path / "out"
    args = ["score", "--model", tmp_path, "--runs", tmp_path, "--dataset", tmp_path, "--corpus", tmp_path]
    clean_env.setattr(sys, "argv", ["rerank-lab", *map(str, [*args, "--output", out / "o", "--metrics", out / "m.json"])])
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2
    expected = r"error: .*a-file/sub: the rerank-lab cache folder cannot be written: a parent of it is a file "
    assert re.fullmatch(expected + r"\(fix: set RERANK_LAB_CACHE to a writable folder\)\n", err), err
    assert not out.exists()


# --- a tiny world: a dataset, a corpus, a first-stage run and a tiny cross-encoder ---------------

DOCS = {
    "d1": "Cats purr by vibrating the muscles of the larynx.",
    "d2": "Dogs bark at strangers who come to the door.",
    "d3": "Rivers carry sand and silt down to the sea.",
    "d4": "Volcanoes erupt when the pressure of magma rises.",
    "d5": "Bread rises because yeast makes carbon dioxide.",
    "d6": "Bees make honey from the nectar of flowers.",
    "d7": "Glaciers move slowly down a mountain valley.",
    "d8": "Owls hunt small animals at night.",
}
QUERIES = {
    "validation": {"v1": "how do cats purr", "v2": "why do volcanoes erupt"},
    "test": {"t1": "how do bees make honey", "t2": "where do owls hunt", "t3": "what do rivers carry"},
}
# six candidates a query, scores distinct: the top 3 and top 5 differ by two docs a query
ORDER = ["d1", "d4", "d6", "d8", "d3", "d2", "d5", "d7"]


def _run(split: str) -> dict[str, dict[str, float]]:
    run = {}
    for i, qid in enumerate(sorted(QUERIES[split])):
        docs = ORDER[i:] + ORDER[:i]  # a different order per query
        run[qid] = {d: 10.0 - r for r, d in enumerate(docs[:6])}
    return run


def _tiny_cross_encoder(folder: Path) -> Path:
    """A real, randomly initialised one-logit BERT (seeded), saved as a sentence-transformers CrossEncoder."""
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from rerank_lab.models import resolve_model

    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64
    )
    config.num_labels = 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertForSequenceClassification(config)
    raw = folder.parent / f"{folder.name}-raw"
    model.save_pretrained(raw)
    AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2")).save_pretrained(raw)  # the packaged tokenizer (offline)
    CrossEncoder(str(raw), max_length=64, device="cpu").save_pretrained(str(folder))
    return folder


def _world(root: Path) -> dict[str, Path]:
    from rerank_lab.io.datasets import save_corpus, save_dataset
    from rerank_lab.io.trec import write_run
    from rerank_lab.schema import to_corpus, to_dataset

    save_corpus(to_corpus([{"id": d, "title": "", "text": t, "context_spans": [[0, len(t)]]} for d, t in DOCS.items()]), root / "corpus")
    rows = {
        split: [
            {"id": q, "query": text, "texts": [DOCS["d1"]], "text_ids": ["d1"], "context_spans": [[[0, len(DOCS["d1"])]]], "labels": [1]}
            for q, text in sorted(queries.items())
        ]
        for split, queries in QUERIES.items()
    }
    save_dataset(datasets.DatasetDict({s: to_dataset(r) for s, r in rows.items()}), root / "dataset")
    for split in QUERIES:
        write_run(_run(split), root / "runs" / "bm25" / f"{split}.trec", tag="bm25")
    return {"model": _tiny_cross_encoder(root / "model"), "dataset": root / "dataset", "corpus": root / "corpus", "runs": root / "runs"}


def _pairs(top_k: int) -> list[tuple[str, str]]:
    """The (query, passage) pairs ``score`` reranks at ``top_k``, worked out from the runs above."""
    from rerank_lab.io.trec import ranked
    from rerank_lab.schema import passage_text

    return [
        (QUERIES[split][qid], passage_text("", DOCS[d]))
        for split in ("validation", "test")
        for qid, docs in sorted(_run(split).items())
        for d, _ in ranked(docs)[:top_k]
    ]


def _table(path: Path) -> dict[tuple[str, str], float]:
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return {(m, p): s for m, p, s in db.execute("SELECT model, pair, score FROM scores")}
    finally:
        db.close()


PARAMS = (
    "score:\n  runs: [bm25]\n  top_k: 3\n  splits: [validation, test]\n"
    "rerankers:\n  ce: {type: cross-encoder, model: trained, max_length: 64}\n"
)


def test_score_without_cache_option_fills_the_per_user_cache(clean_env, tmp_path, capsys):
    """The stage's default score cache is ``scores.sqlite`` in the per-user cache (no ``--cache``)."""
    from rerank_lab.scoring import PairScorer, pair_key

    clean_env.setenv("RERANK_LAB_CACHE", str(tmp_path / "cache"))
    world = _world(tmp_path / "world")
    (tmp_path / "params.yaml").write_text(PARAMS)
    args = ["score", "--params", tmp_path / "params.yaml"]
    args += [a for k in ("model", "runs", "dataset", "corpus") for a in (f"--{k}", world[k])]
    clean_env.setattr(sys, "argv", ["rerank-lab", *map(str, [*args, "--output", tmp_path / "out", "--metrics", tmp_path / "m.json"])])
    main()
    assert "pairs_computed 15" in capsys.readouterr().out  # 5 queries x top 3
    key = PairScorer(str(world["model"]), 64, device="cpu").key
    assert set(_table(tmp_path / "cache" / "scores.sqlite")) == {(key, pair_key(q, p)) for q, p in _pairs(3)}
    assert not (tmp_path / ".rerank-lab").exists()


# --- the acceptance test: two queued experiments, -j 2, one shared score cache -------------------

DVC_YAML = """\
stages:
  score:
    cmd: rerank-lab score --model model --runs runs --dataset dataset --corpus corpus --output out --metrics metrics.json
    deps:
      - model
      - runs
      - dataset
      - corpus
    params:
      - score
    outs:
      - out
    metrics:
      - metrics.json:
          cache: false
"""


def _sh(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def _our_processes(project: Path) -> list[int]:
    """Processes working in the test's project (DVC's queue workers and what they run), by id."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == project or project in cwd.parents:
            pids.append(int(entry.name))
    return pids


def _stop_workers(project: Path, env: dict[str, str]) -> None:
    subprocess.run([env["DVC"], "queue", "stop", "--kill"], cwd=project, env=env, capture_output=True, timeout=120)
    deadline = time.monotonic() + 20
    while (pids := _our_processes(project)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_for(names: list[str], project: Path, env: dict[str, str], timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = _sh([env["DVC"], "queue", "status"], project, env)
        rows = {line.split()[1]: line for line in status.splitlines()[1:] if len(line.split()) > 2}
        states = {n: ("Success" if "Success" in rows.get(n, "") else "Failed" if "Failed" in rows.get(n, "") else "") for n in names}
        if all(states.values()):
            break
        if time.monotonic() > deadline:
            states = {n: s or "not done" for n, s in states.items()}
            break
        time.sleep(2)
    if set(states.values()) != {"Success"}:
        logs = "\n".join(
            subprocess.run([env["DVC"], "queue", "logs", n], cwd=project, env=env, capture_output=True, text=True).stdout for n in names
        )
        pytest.fail(f"queued experiments did not all succeed: {states}\n{status}\n{logs[-6000:]}")


@pytest.mark.slow
def test_two_queued_experiments_at_once_share_the_score_cache(tmp_path):
    """``dvc exp run --queue`` twice (top_k 3 and 5), ``dvc queue start -j 2``: both run the real
    ``rerank-lab score`` at the same time in DVC's temporary workspaces, writing one per-user cache.
    Every (model, pair) is stored once, and its score equals a serial run's."""
    from rerank_lab.score_cache import ScoreCache
    from rerank_lab.scoring import PairScorer

    project, cache = tmp_path / "project", tmp_path / "cache"
    world = _world(project)
    (project / "dvc.yaml").write_text(DVC_YAML)
    (project / "params.yaml").write_text(PARAMS)
    (project / ".gitignore").write_text("/model-raw/\n")
    bin_dir = Path(sys.executable).parent  # the venv running the tests has dvc and rerank-lab
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT / "src"),  # the queued rerank-lab runs this checkout's code
        "RERANK_LAB_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "DVC": str(bin_dir / "dvc"),
    }
    _sh(["git", "init", "-q"], project, env)
    _sh([env["DVC"], "init", "-q"], project, env)
    _sh(["git", "add", "-A"], project, env)
    _sh(["git", "commit", "-q", "-m", "a tiny score pipeline"], project, env)
    try:
        for k in (3, 5):
            _sh([env["DVC"], "exp", "run", "--queue", "-n", f"k{k}", "-S", f"score.top_k={k}"], project, env)
        _sh([env["DVC"], "queue", "start", "-j", "2"], project, env)
        _wait_for(["k3", "k5"], project, env)
    finally:
        _stop_workers(project, env)
    assert not _our_processes(project)

    shared = _table(cache / "scores.sqlite")
    # the serial reference: the same experiments one after the other, into a cache of their own
    serial_cache = ScoreCache(tmp_path / "serial.sqlite")
    for k in (3, 5):
        PairScorer(str(world["model"]), 64, device="cpu", cache=serial_cache).score(_pairs(k))
    serial = _table(tmp_path / "serial.sqlite")
    assert len(serial) == len(set(_pairs(5))) == 25  # 5 queries x top 5, all distinct
    assert set(shared) == set(serial)  # every pair, under the one model key, once (the table's primary key)
    for key, value in serial.items():
        # equal up to float rounding: a pair may have been scored in another batch (other padding)
        assert shared[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
