"""CurriculumLoss: warm-up loss for the first ``switch_step`` training calls, then the main loss;
lists flattened into (query, text) pairs with their labels for the pointwise warm-up."""

from __future__ import annotations

import math

import pytest
import torch

from rerank_lab.losses import make_loss
from rerank_lab.losses.curriculum import CurriculumLoss

QUERIES = ["how do cats purr", "why do volcanoes erupt"]
DOCS = [
    ["Cats purr by vibrating the larynx.", "Dogs bark at strangers.", "Rivers carry sand."],
    ["Bread rises with yeast.", "Volcanoes erupt when magma pressure rises."],
]
LABELS = [torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0])]
# the lists flattened: 5 pairs, labels 1 0 0 0 1
FLAT_PAIRS = [(QUERIES[0], d) for d in DOCS[0]] + [(QUERIES[1], d) for d in DOCS[1]]
FLAT_LABELS = [1.0, 0.0, 0.0, 0.0, 1.0]


@pytest.fixture
def model(seeded_base_cross_encoder):
    seeded_base_cross_encoder.eval()
    yield seeded_base_cross_encoder
    seeded_base_cross_encoder.eval()


def _curriculum(model, switch_step: int) -> CurriculumLoss:
    return CurriculumLoss(model, make_loss("bce", model), make_loss("listnet", model), switch_step)


def _logits(model, pairs) -> list[float]:
    with torch.no_grad():
        return model(model.preprocess(pairs))["scores"].view(-1).tolist()


def _bce_by_hand(logits: list[float], labels: list[float]) -> float:
    """mean of -[y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))]"""
    sig = [1 / (1 + math.exp(-x)) for x in logits]
    return -sum(y * math.log(s) + (1 - y) * math.log(1 - s) for s, y in zip(sig, labels)) / len(labels)


def test_first_switch_step_training_calls_use_the_warmup(model):
    loss = _curriculum(model, switch_step=2)
    model.train()
    with torch.no_grad():
        for _ in range(5):
            loss([QUERIES, DOCS], LABELS)
    assert loss.steps == 5
    assert loss.history == ["BinaryCrossEntropyLoss"] * 2 + ["ListNetLoss"] * 3


def test_evaluation_calls_do_not_advance_the_schedule(model):
    loss = _curriculum(model, switch_step=1)
    with torch.no_grad():
        for _ in range(3):
            loss([QUERIES, DOCS], LABELS)  # eval mode
    assert loss.steps == 0
    assert loss.history == []


def test_warmup_is_bce_on_the_lists_flattened_to_pairs(model):
    loss = _curriculum(model, switch_step=1)
    with torch.no_grad():
        value = loss([QUERIES, DOCS], LABELS).item()  # eval mode, step 0 <= 1: the warm-up
        direct = make_loss("bce", model)([[q for q, _ in FLAT_PAIRS], [d for _, d in FLAT_PAIRS]], torch.tensor(FLAT_LABELS)).item()
    assert value == pytest.approx(_bce_by_hand(_logits(model, FLAT_PAIRS), FLAT_LABELS), rel=1e-5)
    assert value == pytest.approx(direct, rel=1e-6)
    # the labels matter: the same pairs with the second list's labels swapped score differently
    assert value != pytest.approx(_bce_by_hand(_logits(model, FLAT_PAIRS), [1.0, 0.0, 0.0, 1.0, 0.0]), rel=1e-3)


def test_graded_labels_reach_the_warmup_as_0_1(model):
    # train.gains: graded gives list labels such as [2, 0, 0]; BCE takes targets in [0, 1], so the
    # warm-up sees grade > 0 as 1 (old code fed it 2.0: a target BCE cannot reach)
    loss = _curriculum(model, switch_step=1)
    graded = [torch.tensor([2.0, 0.0, 0.0]), torch.tensor([0.0, 1.0])]
    with torch.no_grad():
        value = loss([QUERIES, DOCS], graded).item()
    assert value == pytest.approx(_bce_by_hand(_logits(model, FLAT_PAIRS), FLAT_LABELS), rel=1e-5)


def test_padded_labels_are_cut_to_each_list(model):
    loss = _curriculum(model, switch_step=1)
    padded = [torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, -1.0])]  # second list padded to 3
    with torch.no_grad():
        assert loss([QUERIES, DOCS], padded).item() == pytest.approx(loss([QUERIES, DOCS], LABELS).item(), rel=1e-6)


def test_after_the_switch_the_main_loss_sees_the_lists_unchanged(model):
    loss = _curriculum(model, switch_step=1)
    model.train()
    with torch.no_grad():
        loss([QUERIES, DOCS], LABELS)  # step 1: warm-up
        loss([QUERIES, DOCS], LABELS)  # step 2: main
    model.eval()
    with torch.no_grad():
        value = loss([QUERIES, DOCS], LABELS).item()  # an evaluation call uses the last step's loss: main
        main = make_loss("listnet", model)([QUERIES, DOCS], LABELS).item()
    assert value == pytest.approx(main, rel=1e-6)
    assert value != pytest.approx(_bce_by_hand(_logits(model, FLAT_PAIRS), FLAT_LABELS), rel=1e-3)


def test_gradients_flow_through_the_warmup(model):
    loss = _curriculum(model, switch_step=1)
    model.train()
    model.zero_grad()
    try:
        loss([QUERIES, DOCS], LABELS).backward()
        grad = dict(model.named_parameters())["0.model.classifier.weight"].grad
        assert grad is not None and grad.abs().sum().item() > 0
    finally:
        model.zero_grad(set_to_none=True)


def test_citation_is_the_main_loss_s(model):
    loss = _curriculum(model, switch_step=1)
    assert loss.citation == loss.main.citation
    assert "cao2007learning" in loss.citation


@pytest.mark.parametrize(
    ("done", "history", "next_loss"),
    [
        (1, ["BinaryCrossEntropyLoss"], "BinaryCrossEntropyLoss"),  # step 2 <= switch 2: still warming up
        (2, ["BinaryCrossEntropyLoss"] * 2, "ListNetLoss"),
        (3, ["BinaryCrossEntropyLoss"] * 2 + ["ListNetLoss"], "ListNetLoss"),
    ],
)
def test_skip_goes_on_from_a_resumed_step(done, history, next_loss, model):
    loss = _curriculum(model, switch_step=2)
    loss.skip(done)
    assert loss.steps == done
    assert loss.history == history
    model.train()
    with torch.no_grad():
        loss([QUERIES, DOCS], LABELS)
    assert loss.history == [*history, next_loss]
