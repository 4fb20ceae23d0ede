"""Tuning on several machines, and no secret leaving its place (issue 13, parts 3 and 6).

A real PostgreSQL server (a private cluster on loopback, tests/postgres.py) holds one study; two
``rerank-lab tune`` processes fill it at once (and again in a journal file, the no-server way).
Its URL carries a password and reaches the workers the documented way -- ``tune.storage:
env:RERANK_LAB_OPTUNA_URL`` -- and afterwards the password is nowhere: not in the repository,
the params, the outputs, the metrics, the cache, or the logs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest
import yaml

from rerank_lab.cli import main
from rerank_lab.optuna_storage import open_storage, over_budget
from tests.postgres import free_port, private_cluster, skip_or_fail
from tests.tune_world import write_stage_inputs

ROOT = Path(__file__).resolve().parents[1]
N_TRIALS = 24
ENV_URL = "RERANK_LAB_OPTUNA_URL"
# a worker: the slow imports first, then wait for the start signal, so both really run at once; a
# tuning worker's first trial then waits until every worker has begun one (trials are fast: without
# it, a worker that loads its inputs first could run the whole budget before the other joins)
WORKER = """
import sys, time
from pathlib import Path
import optuna, sqlalchemy
from rerank_lab import optuna_storage
if sys.argv[3] != "open":
    from rerank_lab import cli, study, tune
    ready = Path(sys.argv[1])
    run_trials = study.run_trials  # what the tune stage calls to run its trials (rerank_lab.optuna_storage)

    def barrier_first_trial(the_study, func, *args, **kwargs):
        def first_waits(trial):
            mark = ready.with_name("started" + ready.name[len("ready"):])
            if not mark.exists():
                mark.touch()
                until = time.monotonic() + 120
                while len(list(ready.parent.glob("started*"))) < len(list(ready.parent.glob("ready*"))):
                    assert time.monotonic() < until, "the other workers never began a trial"
                    time.sleep(0.01)
            return func(trial)
        return run_trials(the_study, first_waits, *args, **kwargs)

    assert run_trials.__module__ == "rerank_lab.optuna_storage"  # the barrier wraps what tune really runs
    study.run_trials = barrier_first_trial
Path(sys.argv[1]).touch()
deadline = time.monotonic() + 120
while not Path(sys.argv[2]).exists() and time.monotonic() < deadline:
    time.sleep(0.01)
if sys.argv[3] == "open":
    optuna_storage.open_storage(sys.argv[4])
else:
    sys.argv = ["rerank-lab", *sys.argv[3:]]
    cli.main()
"""


def _driver() -> None:
    try:
        import psycopg  # noqa: F401 -- SQLAlchemy 2.1's driver for postgresql://
    except ModuleNotFoundError:
        skip_or_fail("no PostgreSQL driver (psycopg 3)")


def _params(folder: Path, **tune: object) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump({"score": {"name": "minilm"}, "tune": {"storage": f"env:{ENV_URL}", **tune}}))
    return path


def _tune_args(world: Path, params: Path, out: Path, metrics: Path) -> list[str]:
    paths = {"dataset": world / "dataset", "qrels": world / "qrels", "runs": world / "runs", "scores": world / "scored"}
    return ["tune", "--params", str(params), *(a for k, p in paths.items() for a in (f"--{k}", str(p))),
            "--output", str(out), "--metrics", str(metrics)]  # fmt: skip


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server for this module's tests; its superuser's password needs escaping in a URL."""
    _driver()
    with private_cluster(f"s3cr/{secrets.token_hex(8)}") as cluster:
        yield cluster


def _at_once(commands: list[list[str]], folder: Path, env: dict[str, str]) -> list[Path]:
    """Run ``commands`` (each a WORKER's arguments) together: each does its slow imports, then all
    start at one signal. Returns their logs (stdout and stderr) once all have exited 0."""
    go, procs, logs = folder / "go", [], []
    for i, args in enumerate(commands):
        logs.append(folder / f"worker{i + 1}.log")
        with logs[-1].open("w") as log:
            procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(folder / f"ready{i}"), str(go), *args],
                                          cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not all((folder / f"ready{i}").exists() for i in range(len(procs))):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [lg.read_text() for lg in logs]
            time.sleep(0.05)
        go.touch()
        codes = [p.wait(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0] * len(procs), "\n".join(lg.read_text()[-3000:] for lg in logs)
    return logs, [p.pid for p in procs]


@pytest.fixture(scope="module", params=["postgresql", "journal"])
def two_workers(request, tmp_path_factory):
    """Two tune workers, started together on one study: in the fresh PostgreSQL cluster, or in a
    journal file on a (here: local) shared filesystem, the no-server alternative. Its URL (with the
    password) reaches them through the environment, as the README says."""
    root = tmp_path_factory.mktemp(f"workers-{request.param}")
    if request.param == "postgresql":
        cluster = request.getfixturevalue("postgres")
        url, shown = cluster.url(), f"postgresql://rl:***@127.0.0.1:{cluster.port}/postgres"
    else:
        cluster, url = None, f"journal:{root / 'shared' / 'tune.log'}"
        (root / "shared").mkdir()
        shown = url
    world = root / "world"
    write_stage_inputs(world)
    params = _params(root, n_trials=N_TRIALS)
    env = {**os.environ, ENV_URL: url, "RERANK_LAB_CACHE": str(root / "cache")}
    commands = [["-v", *_tune_args(world, params, root / f"out{i}", root / f"metrics{i}.json")] for i in (1, 2)]
    logs, pids = _at_once(commands, root, env)
    metrics = [json.loads((root / f"metrics{i}.json").read_text()) for i in (1, 2)]
    return SimpleNamespace(root=root, cluster=cluster, shown=shown, pids=pids, logs=logs, study=_load(url), metrics=metrics)


def _load(url: str):
    import optuna

    (summary,) = optuna.get_all_study_summaries(open_storage(url))  # one study: both workers found it
    return optuna.load_study(study_name=summary.study_name, storage=open_storage(url))


def test_two_workers_fill_one_study_and_report_the_same_best_trial(two_workers):
    from rerank_lab.policy import Settings
    from rerank_lab.study import _feasible_best

    study, (m1, m2) = two_workers.study, two_workers.metrics
    unrun = [t for t in study.trials if over_budget(t)]  # asked when the other worker had just taken the last place
    trials = [t for t in study.trials if not over_budget(t)]
    assert m1["study"] == m2["study"] == study.study_name
    assert len(trials) == N_TRIALS  # n_trials is the study's total
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"} and {t.state.name for t in unrun} <= {"FAIL"}
    host = socket.gethostname()
    ran = Counter(t.user_attrs["worker"] for t in trials)
    # each worker's first trial waited at the barrier until the other had begun one (the WORKER's wrap of
    # the trial loop tune runs: when tune stopped calling Study.optimize, the old wrap was never reached)
    assert sorted(p.name for p in two_workers.root.glob("started*")) == ["started0", "started1"]
    assert set(ran) == {f"{host}:{pid}" for pid in two_workers.pids}  # both workers' trials, one study
    assert [m1["trials_this_run"], m2["trials_this_run"]] == [ran[f"{host}:{pid}"] for pid in two_workers.pids]
    # each waited for the other's last trial: the same finished trials, the same best one
    assert m1["trials"] == m2["trials"] == len(trials)
    assert m1["best_trial"] == m2["best_trial"] == _feasible_best(study, m1["epsilon"]).number
    assert m1["best"] == m2["best"] == dataclasses.asdict(Settings.from_params(trials[m1["best_trial"]].params))
    # each names the study's storage in its log, from the environment (a password masked)
    assert all(f"in {two_workers.shown} (from ${ENV_URL}): " in log.read_text() for log in two_workers.logs)
    out1, out2 = two_workers.root / "out1", two_workers.root / "out2"
    for name in ("best.json", "trials.tsv", "runs/bm25+minilm+tuned/test.trec"):
        assert (out1 / name).read_bytes() == (out2 / name).read_bytes(), name


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def _repo_files() -> list[Path]:
    """The repository's files (tracked, and untracked but not ignored), as git lists them."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot list the repository's files")
    return [ROOT / n for n in listed.stdout.decode().split("\0") if n and (ROOT / n).is_file()]


def test_workers_opening_a_fresh_database_at_once_all_get_the_study_s_tables(postgres, tmp_path):
    # the first use of an empty database creates Optuna's tables; several workers doing it in the same
    # moment make PostgreSQL refuse all but one (a duplicate type): open_storage retries, then finds them
    import optuna

    url = postgres.create_database("fresh")
    _at_once([["open", url]] * 3, tmp_path, {**os.environ, "RERANK_LAB_CACHE": str(tmp_path / "cache")})
    assert optuna.get_all_study_summaries(open_storage(url)) == []


@pytest.mark.parametrize("two_workers", ["postgresql"], indirect=True)
def test_the_password_of_the_storage_url_is_nowhere(two_workers):
    cluster = two_workers.cluster
    forms = {cluster.password, quote(cluster.password, safe="")}  # as given, and as the URL escapes it
    places = [*_files(two_workers.root), *_repo_files()]  # params, outputs, metrics, cache, the workers' logs; the repo
    assert {p.name for p in places} >= {"params.yaml", "metrics1.json", "best.json", "trials.tsv", "worker1.log", "worker2.log"}
    leaks = [str(p) for p in places if any(f.encode() in p.read_bytes() for f in forms)]
    assert leaks == []
    assert all(two_workers.shown in log.read_text() for log in two_workers.logs)  # named, masked


def test_an_unreachable_storage_url_is_one_line_naming_it_without_its_password(tmp_path, monkeypatch, capsys):
    _driver()
    world = tmp_path / "world"
    write_stage_inputs(world)
    port, password = free_port(), f"s3cr/{secrets.token_hex(8)}"  # nothing listens on the port
    monkeypatch.setenv(ENV_URL, f"postgresql://rl:{quote(password, safe='')}@127.0.0.1:{port}/optuna")
    for var, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
        monkeypatch.setenv(var, value)  # main() sets these; monkeypatch puts the old values back
    out, metrics = tmp_path / "out", tmp_path / "metrics.json"
    monkeypatch.setattr(sys, "argv", ["rerank-lab", *_tune_args(world, _params(tmp_path, n_trials=5), out, metrics)])
    with pytest.raises(SystemExit, match="^2$"):
        main()
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot open the Optuna storage 'postgresql://rl:***@127.0.0.1:{port}/optuna' (from ${ENV_URL}): ")
    assert "Connection refused" in err and "(fix: check tune.storage: " in err and "is the server running" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert password not in err and quote(password, safe="") not in err
    assert not out.exists() and not metrics.exists()
