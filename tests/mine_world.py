"""A tiny mining world on disk: 30 corpus docs, train/validation rows, graded qrels, a BM25-like run.

Shared by the miner, mine, teacher and score tests. Every number below is chosen so that the
expected negatives can be worked out by hand:

* qrels mark docs relevant that are NOT among the row's texts (q1: d05, q2: d03, q3: d08,
  v1: d09); d07 has grade 0 for q1, so it is judged but not relevant and may be a negative;
* q2 already holds a negative text (d02, label 0): it must never be mined again;
* run ``bm25`` (scores descending = ranks 1, 2, ...)::

    q1: d00 20  d10 19  d05 18  d11 17  d07 16  d12 15  d13 14  d14 13  d15 12  d16 11  d17 10  d18 9
    q2: d01 10  d02 9   d03 8   d20 7   d21 6   d22 5
    q3: d08 3   d24 2.5 d04 2   d25 1.5
    v1: d09 5   d06 4   d26 3   d27 2

  so relevant docs sit at ranks 1 and 3 (q1), 1-3 (q2), 1 and 3 (q3), 1 and 2 (v1).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import datasets

from rerank_lab.convert import document
from rerank_lab.io.datasets import load_corpus, save_corpus
from rerank_lab.io.qrels import read_qrels, write_qrels
from rerank_lab.io.trec import write_run
from rerank_lab.mine import load_runs
from rerank_lab.miners.base import MineContext
from rerank_lab.schema import Document, Example, passage_text, to_corpus, to_dataset

TOPICS = [
    ("Tides", "Ocean tides rise and fall because the Moon's gravity pulls on the water. The Sun adds a smaller pull."),
    ("Vaccines", "A vaccine shows the immune system a harmless piece of a pathogen. Memory cells then respond faster."),
    ("Antibodies", "Antibodies are proteins that bind to antigens. They mark invaders for destruction."),
    ("Immune memory", "After an infection, memory B cells persist for years. A second exposure triggers a quick response."),
    ("Blue sky", "The sky looks blue because air scatters short wavelengths more strongly. This is Rayleigh scattering."),
    ("Lunar gravity", "The Moon's gravity creates two tidal bulges on Earth. The planet rotates through both every day."),
    ("Honey", "Bees make honey by evaporating water from flower nectar. Enzymes break the sugars down."),
    ("Spring tides", "Spring tides happen when the Sun and Moon line up. Neap tides happen at right angles."),
    ("Sunsets", "Sunsets look red because light crosses more air near the horizon. Blue light is scattered away."),
    ("Pollination", "Bees carry pollen between flowers while collecting nectar. Many crops depend on them."),
    ("Harbours", "Harbour pilots check tide tables before moving large ships. Shallow channels need high water."),
    ("Surfing", "Surfers ride waves that are built by distant storms. Swell travels across whole oceans."),
    ("Coastal erosion", "Waves and currents wear coastlines away. Cliffs retreat a little every winter."),
    ("Moon phases", "The Moon's phases come from the angle between the Sun, Earth and Moon. A full cycle takes a month."),
    ("Sea level", "Sea level rises as glaciers melt and warm water expands. Coastal cities plan defences."),
    ("Estuaries", "Estuaries mix fresh river water with salty sea water. Many fish breed there."),
    ("Lighthouses", "Lighthouses warn ships away from rocks at night. Each one flashes its own pattern."),
    ("Tsunamis", "A tsunami is a series of waves caused by an undersea earthquake. It moves very fast in deep water."),
    ("Fishing", "Fishing boats leave port at high tide. They return before the water drops."),
    ("Bread", "Bread rises because yeast produces carbon dioxide. The gas is trapped in the gluten network."),
    ("Flu shots", "Seasonal flu shots are updated every year. The virus changes its surface proteins."),
    ("Allergies", "Allergies happen when the immune system overreacts to pollen or dust. Antihistamines help."),
    ("Vaccine history", "Edward Jenner tested the first smallpox vaccine in 1796. Cowpox gave protection."),
    ("Volcanoes", "A volcano erupts when molten rock rises through the crust. Ash can travel far."),
    ("Rainbows", "Rainbows form when sunlight is refracted inside raindrops. Each colour bends a little differently."),
    ("Clouds", "Clouds are made of tiny water droplets. They look white because they scatter all colours."),
    ("Beekeeping", "Beekeepers open hives in calm weather. Smoke keeps the bees quiet."),
    ("Wax", "Worker bees secrete wax to build honeycomb. Each cell is a hexagon."),
    ("Chess", "Chess openings aim to control the centre of the board. Knights move in an L shape."),
    ("Football", "The striker scored twice in the second half. The home team won the match."),
]
CORPUS: list[Document] = [document(f"d{i:02d}", title, body) for i, (title, body) in enumerate(TOPICS)]
DOCS = {d["id"]: d for d in CORPUS}
DOC_IDS = sorted(DOCS)

QUERIES = {
    "q1": "What makes ocean tides rise and fall?",
    "q2": "How do vaccines train the immune system?",
    "q3": "Why is the sky blue?",
    "v1": "How do bees make honey?",
}
QRELS = {
    "train": {"q1": {"d00": 2, "d05": 1, "d07": 0}, "q2": {"d01": 1, "d03": 1}, "q3": {"d04": 1, "d08": 1}},
    "validation": {"v1": {"d06": 1, "d09": 1}},
}
RUNS = {
    "train": {
        "q1": {d: 20.0 - r for r, d in enumerate(["d00", "d10", "d05", "d11", "d07", "d12", "d13", "d14", "d15", "d16", "d17", "d18"])},
        "q2": {"d01": 10.0, "d02": 9.0, "d03": 8.0, "d20": 7.0, "d21": 6.0, "d22": 5.0},
        "q3": {"d08": 3.0, "d24": 2.5, "d04": 2.0, "d25": 1.5},
    },
    "validation": {"v1": {"d09": 5.0, "d06": 4.0, "d26": 3.0, "d27": 2.0}},
}
# qrels grade > 0, plus the row's positives (labels); the row's own texts are excluded on top
RELEVANT = {"q1": {"d00", "d05"}, "q2": {"d01", "d03"}, "q3": {"d04", "d08"}, "v1": {"d06", "d09"}}


def text(doc_id: str) -> str:
    doc = DOCS[doc_id]
    return passage_text(doc["title"], doc["text"])


def row(qid: str, doc_ids: list[str], labels: list[int], relevance: bool = False) -> Example:
    out: Example = {
        "id": qid,
        "query": QUERIES[qid],
        "texts": [text(d) for d in doc_ids],
        "text_ids": list(doc_ids),
        "context_spans": [DOCS[d]["context_spans"] for d in doc_ids],
        "labels": list(labels),
    }
    if relevance:  # first span of each positive is the evidence
        spans = [DOCS[d]["context_spans"] for d in doc_ids]
        out["context_spans_relevance"] = [[int(lab and i == 0) for i in range(len(s))] for s, lab in zip(spans, labels)]
    return out


TRAIN_ROWS = [row("q1", ["d00"], [1]), row("q2", ["d01", "d02"], [1, 0]), row("q3", ["d04"], [1])]
VALIDATION_ROWS = [row("v1", ["d06"], [1])]


def dataset(relevance: bool = False) -> datasets.DatasetDict:
    train = [row(r["id"], r["text_ids"], r["labels"], relevance) for r in TRAIN_ROWS]
    validation = [row(r["id"], r["text_ids"], r["labels"], relevance) for r in VALIDATION_ROWS]
    return datasets.DatasetDict({"train": to_dataset(train), "validation": to_dataset(validation)})


@dataclasses.dataclass(frozen=True)
class World:
    corpus: Path  # saved corpus Dataset
    qrels: Path  # folder of <split>.tsv
    runs: Path  # folder of <run>/<split>.trec


def write_world(root: Path) -> World:
    save_corpus(to_corpus(CORPUS), root / "corpus")
    for split, qrels in QRELS.items():
        write_qrels(qrels, root / "qrels" / f"{split}.tsv")
    for split, run in RUNS.items():
        write_run(run, root / "runs" / "bm25" / f"{split}.trec", tag="bm25")
    return World(root / "corpus", root / "qrels", root / "runs")


def context(world: World, split: str = "train", scorers: dict | None = None) -> MineContext:
    """What mine() hands a miner, read back from the files (the relevant sets are checked by hand)."""
    corpus = {d["id"]: d for d in load_corpus(world.corpus)}
    qrels = read_qrels(world.qrels / f"{split}.tsv")
    rows = TRAIN_ROWS if split == "train" else VALIDATION_ROWS
    relevant = {
        r["id"]: {d for d, g in qrels.get(r["id"], {}).items() if g > 0} | {t for t, lab in zip(r["text_ids"], r["labels"]) if lab}
        for r in rows
    }
    assert relevant == {r["id"]: RELEVANT[r["id"]] for r in rows}
    runs = load_runs(world.runs, {"bm25"}, split, {r["id"] for r in rows})
    return MineContext(corpus, sorted(corpus), runs, relevant, scorers or {})
