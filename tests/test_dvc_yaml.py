"""dvc.yaml keeps every stage reusable from DVC's run cache and its shared state out of the workspace.

A queued experiment (``dvc exp run --queue``) runs in a temporary workspace under .dvc/tmp/exps,
with only what git and DVC's cache restore. Two things used to make such a run redo work:

* a ``persist: true`` output (train's ``models/<ds>/checkpoints``): DVC's run cache refuses to
  save or restore a stage with one, so train ran again for a change that only touched tune;
* a state file in the workspace (``--cache .rerank-lab/scores.sqlite``): the temporary workspace
  has none, so every pair was scored again.

Checkpoints and the score cache now default to the per-user cache (rerank_lab.cache), which every
workspace sees; dvc.yaml must neither persist an output nor point a stage at workspace state.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _outs(stage: dict) -> list[tuple[str, dict]]:
    """(path, options) of every output, metrics and plots file of a stage."""
    entries = [e for kind in ("outs", "metrics", "plots") for e in stage.get(kind, [])]
    return [next(iter(e.items())) if isinstance(e, dict) else (e, {}) for e in entries]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_no_stage_persists_an_output(name: str) -> None:
    # DVC's run cache skips any stage with a persisted output (dvc/stage/cache.py: _can_hash)
    persisted = [path for path, options in _outs(STAGES[name]) if (options or {}).get("persist")]
    assert not persisted, f"stage {name} persists {persisted}: DVC's run cache cannot restore it in a queued experiment"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_no_stage_points_at_state_in_the_workspace(name: str) -> None:
    # --cache / --checkpoints in dvc.yaml would name a workspace path that a queued run does not have;
    # left out, the stage uses the per-user cache (RERANK_LAB_CACHE, XDG_CACHE_HOME, ~/.cache)
    cmd = STAGES[name]["cmd"]
    assert not re.search(r"--(cache|checkpoints)\b", cmd), f"stage {name}: drop --cache/--checkpoints from its cmd"
    assert ".rerank-lab/" not in cmd
