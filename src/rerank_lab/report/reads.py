"""Test-read accounting: how many systems have looked at the test labels, and p-values adjusted for it.

Each experiment reads test labels once, in evaluate, for every run it finds. Across the experiments
the report ranks, the same system is often evaluated again -- the first stage is the same file in
every cell whose retrieval inputs are equal, and the workspace repeats the last experiment. A
*system* is therefore identified by the **content hash of its test run file** (``sha256``, which
evaluate writes to ``data/evaluate/<ds>/runs.tsv``): identical files are one system, read once. A
revision without that file (evaluated before issue 11, or its outputs not in the DVC cache) has
each of its runs counted as a distinct system -- the count, and so the adjustment, can only grow.

The Holm family is every distinct paired test on the test split behind a number in the report:

* each distinct (system, reference) comparison evaluate made (``vs_<ref>``: the pair counts once,
  whichever way round, its raw ``p_randomization`` the largest seen for it);
* the report's own tests: every seed group of two or more against the first stage, and every
  group against the best group of its dataset (rerank_lab.report.seeds).

:meth:`TestReads.adjusted` is :func:`rerank_lab.stats.holm` over that family; the report shows each
raw p-value next to its adjusted value. Selection never reads any of it (dev confirm half only).
"""

from __future__ import annotations

from typing import Any

Key = tuple[Any, ...]


class TestReads:
    """The systems read on test and the family of test comparisons, filled experiment by experiment."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        self.systems: set[Key] = set()
        self.reads = 0  # evaluations of a run on test, duplicates included
        self.unhashed = 0  # of those, runs without a content hash (counted as distinct)
        self.family: dict[Key, float] = {}
        self.kinds: dict[Key, str] = {}

    @staticmethod
    def identity(dataset: str, run: str, rev: str, hashes: dict[tuple[str, str], str]) -> Key:
        """A system: the hash of its test run file, or -- without one -- this revision's run."""
        digest = hashes.get((run, "test"))
        return ("sha256", dataset, digest) if digest else ("unhashed", dataset, rev, run)

    def add_evaluation(
        self, dataset: str, rev: str, evaluation: dict[str, Any], hashes: dict[tuple[str, str], str]
    ) -> dict[tuple[str, str], Key]:
        """One experiment's ``metrics/evaluate/<ds>.json``: its test reads and its test comparisons.

        Returns ``{(run, reference): family key}`` for every comparison it holds.
        """
        keys: dict[tuple[str, str], Key] = {}
        for run, splits in evaluation.items():
            test = (splits or {}).get("test") if isinstance(splits, dict) else None
            if not isinstance(test, dict):
                continue
            system = self.identity(dataset, run, rev, hashes)
            self.reads += 1
            self.unhashed += system[0] == "unhashed"
            self.systems.add(system)
            for name, sig in test.items():
                if not (name.startswith("vs_") and isinstance(sig, dict) and sig.get("p_randomization") is not None):
                    continue
                ref = self.identity(dataset, name[3:], rev, hashes)
                key = ("evaluate", dataset, sig.get("metric"), frozenset((system, ref)))
                keys[(run, name[3:])] = self.add(key, float(sig["p_randomization"]), "evaluate")
        return keys

    def add(self, key: Key, p_value: float | None, kind: str) -> Key:
        """A comparison of the family (the same key twice is one test: its largest p-value is kept)."""
        if p_value is not None:
            self.family[key] = max(p_value, self.family.get(key, 0.0))
            self.kinds[key] = kind
        return key

    def adjusted(self) -> dict[Key, float]:
        """Holm over the whole family: ``{key: adjusted p}``."""
        from rerank_lab.stats import holm

        keys = sorted(self.family, key=repr)  # holm does not depend on the order; a fixed one reads better
        return dict(zip(keys, holm([self.family[k] for k in keys]), strict=True))

    def summary(self) -> dict[str, int]:
        return {
            "test_reads": self.reads,
            "distinct_systems": len(self.systems),
            "unhashed_reads": self.unhashed,
            "family": len(self.family),
            **{f"family_{kind}": sum(1 for k in self.family if self.kinds[k] == kind) for kind in ("evaluate", "seeds", "groups")},
        }

    def describe(self, experiments: int) -> str:
        s = self.summary()
        unhashed = (
            f" {s['unhashed_reads']} of those reads had no run hash (evaluated before issue 11, or not in the DVC cache): "
            "each counted as a distinct system, which can only enlarge the family."
            if s["unhashed_reads"]
            else ""
        )
        return (
            f"**{s['distinct_systems']} distinct systems** have been evaluated on test across the {experiments} ranked "
            f"experiment rows ({s['test_reads']} evaluations of a run on test; identical run files -- same sha256 -- "
            f"count once).{unhashed} `test_p_holm_test_reads` is the raw randomization p-value Holm-adjusted over the family "
            f"of all **{s['family']} test comparisons** behind this report: {s['family_evaluate']} distinct paired tests "
            f"evaluate ran on test (a pair counts once), {s['family_seeds']} seed-group tests on seed-averaged values, and "
            f"{s['family_groups']} tests between seed groups. Nothing is chosen on test: selection is on the dev confirm half only."
        )
