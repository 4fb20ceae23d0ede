"""The pull-request report, as CI runs it: ``rerank-lab pr-report``.

The steps that ``.github/workflows/report.yml`` used to hold, each one checked:

1. fetch the diff base (``git fetch <git remote> <base>``; the report diffs against ``<git remote>/<base>``);
2. check the DVC remote (:func:`rerank_lab.remote.check_remote`: wrong credentials, a dead endpoint or
   a missing bucket stop here with one line, exit status 2);
3. ``dvc pull --run-cache``: the outputs of this commit and the team's run cache. An object missing on
   the remote is an error that names each missing output and its hash (exit status 2) -- unless
   ``--recompute-missing`` (or ``RERANK_LAB_RECOMPUTE_MISSING=1``) is given: then the decision to
   recompute them is logged, by name, and ``dvc repro`` recomputes their stages;
4. ``dvc exp pull <git remote> --all-commits``: every experiment the team pushed, with its outputs;
5. ``dvc repro``: what the pull request changed (restored from the run cache where DVC can), logged as
   stages run / restored / unchanged;
6. ``rerank-lab report --base <git remote>/<base>``: ``report.md``, its PNGs and the leaderboard.

Every step's output is streamed to stderr, prefixed by ``pr-report:`` lines that say what runs and how
long it took. Posting the report as a pull-request comment (CML) stays in the workflow.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
import yaml

from rerank_lab.errors import ConfigError, InputError
from rerank_lab.exp_run import stream
from rerank_lab.remote import check_remote, read_remote

RECOMPUTE_ENV = "RERANK_LAB_RECOMPUTE_MISSING"
Echo = Callable[[str], None]


class StepFailed(click.ClickException):
    """A command of the report failed for a reason that is not the user's input (exit status 1)."""

    exit_code = 1

    def show(self, file=None) -> None:  # one line, as every other error
        click.echo(f"error: {self.message}", err=True)


def _log(message: str) -> None:
    click.echo(f"pr-report: {message}", err=True)


def _run(args: list[str], cwd: Path, what: str) -> tuple[int, str]:
    """Run ``args`` in ``cwd``, streaming its output to stderr; return its exit status and output."""
    shown = {"dvc": "dvc", "rerank_lab.cli": "rerank-lab"}.get(args[2], "") if args[0] == sys.executable else ""
    _log(f"{what}: {' '.join([shown, *args[3:]] if shown else args)}")
    start = time.monotonic()
    rc, lines = stream(args, cwd, on_line=lambda line: click.echo(line, err=True))
    _log(f"{what}: exit {rc} in {time.monotonic() - start:.1f} s")
    return rc, "\n".join(lines)


def _dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def _last_error(output: str) -> str:
    errors = [ln.strip() for ln in output.splitlines() if ln.startswith("ERROR")]
    return errors[-1] if errors else (output.strip().splitlines() or ["no output"])[-1]


def tracked_hashes(repo: Path) -> dict[str, tuple[str, bool]]:
    """Every output the workspace's ``dvc.lock`` and ``*.dvc`` files record: hash -> (path, made by a stage)."""
    found: dict[str, tuple[str, bool]] = {}
    lock = repo / "dvc.lock"
    if lock.is_file():
        for stage in (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {}).values():
            for out in stage.get("outs", []):
                if out.get("md5"):
                    found[out["md5"]] = (out["path"], True)
    listed = subprocess.run(["git", "ls-files", "*.dvc"], cwd=repo, capture_output=True, text=True).stdout.split()
    for name in listed:
        for out in (yaml.safe_load((repo / name).read_text(encoding="utf-8")) or {}).get("outs", []):
            if out.get("md5"):
                found[out["md5"]] = (str(Path(name).parent / out["path"]), False)
    return found


def missing_objects(output: str, repo: Path) -> list[tuple[str, str, bool]]:
    """The objects ``dvc pull`` reported missing, as (path, hash, made by a stage); an object that is no
    recorded output (a file of a tracked folder) is named by the targets whose checkout failed.

    >>> out = "Missing cache files:\\nmd5: 0123456789abcdef0123456789abcdef\\nERROR: failed to pull data from the cloud - "
    >>> out += "Checkout failed for following targets:\\nd\\ny\\nIs your cache up to date?"
    >>> missing_objects(out, Path("/nonexistent"))
    [('a file in d, y', '0123456789abcdef0123456789abcdef', True)]
    """
    hashes = list(dict.fromkeys(re.findall(r"md5: ([0-9a-f]{32}(?:\.dir)?)", output)))
    failed = re.search(r"Checkout failed for following targets:\n(.*?)\nIs your cache up to date\?", output, re.S)
    targets = ", ".join(failed.group(1).split()) if failed else "an output of this commit"
    known = tracked_hashes(repo) if (repo / ".git").exists() else {}
    found = []
    for h in hashes:
        path, by_stage = known.get(h, (f"a file in {targets}", True))
        found.append((path, h, by_stage))
    return found


def fetch_base(repo: Path, base: str, git_remote: str) -> str:
    """The revision the diffs compare against: ``<git_remote>/<base>`` freshly fetched, or ``base`` itself."""
    if git_remote:
        refspec = f"+refs/heads/{base}:refs/remotes/{git_remote}/{base}"
        rc, out = _run(["git", "fetch", "--no-tags", git_remote, refspec], repo, "fetch the diff base")
        if rc:
            raise ConfigError(
                f"cannot fetch the diff base {base!r} from git remote {git_remote!r}: {_last_line(out)}",
                path=repo,
                fix="name an existing branch with --base, and a git remote with --git-remote (or '' to use a local branch)",
            )
        return f"{git_remote}/{base}"
    ok = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"], cwd=repo, capture_output=True).returncode == 0
    if not ok:
        raise ConfigError(
            f"the diff base {base!r} is no commit of this repository", path=repo, fix="fetch it first, or pass --git-remote origin"
        )
    return base


def _last_line(out: str) -> str:
    lines = [ln.strip() for ln in out.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def pull(repo: Path, remote: str | None, recompute_missing: bool) -> None:
    """``dvc pull --run-cache``; a missing object is an error naming it, or a logged decision to recompute."""
    rc, out = _run(_dvc("pull", "--run-cache", *(["-r", remote] if remote else [])), repo, "pull outputs and the run cache")
    if rc == 0:
        return
    missing = missing_objects(out, repo)
    if not missing:
        raise StepFailed(f"`dvc pull` failed: {_last_error(out)}")
    where = read_remote(repo, remote).where
    named = ", ".join(f"{path} (md5 {h})" for path, h, _ in missing)
    added = [path for path, _, by_stage in missing if not by_stage]
    if recompute_missing and not added:
        _log(f"decision: recompute {len(missing)} object(s) missing on {where}: {named} ({RECOMPUTE_ENV} / --recompute-missing)")
        return
    fix = (
        f"{', '.join(added)}: added with `dvc add`, so no stage can recompute it; run `dvc push` where it was added"
        if added
        else f"run `dvc push` where they were made, or pass --recompute-missing ({RECOMPUTE_ENV}=1) to recompute their stages"
    )
    raise InputError(f"{len(missing)} object(s) missing: {named}", path=where, fix=fix)


def repro(repo: Path) -> dict[str, list[str]]:
    """``dvc repro``; which stages ran, came from the run cache, or were unchanged."""
    rc, out = _run(_dvc("repro"), repo, "reproduce what changed")
    if rc:
        raise StepFailed(f"`dvc repro` failed: {_last_error(out)}")
    counts = {
        "ran": re.findall(r"^Running stage '([^']+)'", out, re.M),
        "restored": re.findall(r"^Stage '([^']+)' is cached - skipping run", out, re.M),
        "unchanged": re.findall(r"^Stage '([^']+)' didn't change, skipping", out, re.M),
    }
    _log("dvc repro: " + ", ".join(f"{len(v)} {k}" + (f" ({', '.join(v)})" if v else "") for k, v in counts.items()))
    return counts


def pr_report(repo: Path, base: str, git_remote: str, remote: str | None, output: str, recompute_missing: bool) -> dict[str, object]:
    """Run the six steps in ``repo``; returns the diff base and the repro counts."""
    start = time.monotonic()
    base_rev = fetch_base(repo, base, git_remote)
    _log(f"remote: {check_remote(repo, remote)}")
    pull(repo, remote, recompute_missing)
    if git_remote:
        rc, out = _run(_dvc("exp", "pull", git_remote, "--all-commits", *(["-r", remote] if remote else [])), repo, "pull experiments")
        if rc:
            raise StepFailed(f"`dvc exp pull {git_remote} --all-commits` failed: {_last_error(out)}")
    counts = repro(repo)
    rc, out = _run([sys.executable, "-m", "rerank_lab.cli", "report", "--output", output, "--base", base_rev], repo, "report")
    if rc == 2:  # the report's own one-line user error, already printed
        raise InputError(_last_line(out).removeprefix("error: "))
    if rc:
        raise StepFailed(f"`rerank-lab report` failed: {_last_error(out)}")
    _log(f"{Path(output) / 'report.md'} written against {base_rev} in {time.monotonic() - start:.1f} s")
    return {"base": base_rev, **counts}


@click.command()
@click.option("--repo", default=".", show_default=True, type=click.Path(exists=True, file_okay=False), help="the DVC repository")
@click.option("--base", default="main", show_default=True, help="branch the metric and param diffs compare against")
@click.option("--git-remote", default="origin", show_default=True, help="git remote to fetch the base and experiments from ('' for none)")
@click.option("--remote", default=None, help="DVC remote (default: core.remote)")
@click.option("--output", default="report", show_default=True, help="folder for report.md, its PNGs and the leaderboard")
@click.option(
    "--recompute-missing/--no-recompute-missing",
    default=False,
    envvar=RECOMPUTE_ENV,
    show_default=True,
    help="recompute outputs missing on the remote (logged) instead of stopping",
)
def cli(repo: str, base: str, git_remote: str, remote: str | None, output: str, recompute_missing: bool) -> None:
    """The pull-request report: fetch the base, check the remote, pull, repro, report."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    pr_report(Path(repo), base, git_remote, remote, output, recompute_missing)
