"""losses: the registry's table, each name building its sentence-transformers class, options, errors."""

from __future__ import annotations

import pytest
from sentence_transformers.cross_encoder import losses as st_losses

from rerank_lab.errors import ConfigError
from rerank_lab.losses import FORMATS, LOSSES, loss_spec, make_loss

# name -> (sentence-transformers class, example format, head size), as in the module's table
TABLE = {
    "bce": ("BinaryCrossEntropyLoss", "pairs", 1),
    "ce": ("CrossEntropyLoss", "classes", 2),
    "ranknet": ("RankNetLoss", "lists", 1),
    "listnet": ("ListNetLoss", "lists", 1),
    "listmle": ("ListMLELoss", "lists", 1),
    "plistmle": ("PListMLELoss", "lists", 1),
    "lambda": ("LambdaLoss", "lists", 1),
    "mnrl": ("MultipleNegativesRankingLoss", "groups", 1),
    "cmnrl": ("CachedMultipleNegativesRankingLoss", "groups", 1),
    "mse": ("MSELoss", "teacher-pairs", 1),
    "margin_mse": ("MarginMSELoss", "teacher-groups", 1),
}


def test_registry_matches_the_table():
    assert {name: (s.cls_name, s.format, s.num_labels) for name, s in LOSSES.items()} == TABLE
    assert {s.format for s in LOSSES.values()} == set(FORMATS)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_make_loss_builds_the_sentence_transformers_class(name, seeded_base_cross_encoder):
    loss = make_loss(name, seeded_base_cross_encoder, {"num_negatives": 3})
    assert type(loss) is getattr(st_losses, TABLE[name][0])
    assert loss.model is seeded_base_cross_encoder


@pytest.mark.parametrize("name", ["mnrl", "cmnrl"])
def test_negatives_option_reaches_the_loss(name, seeded_base_cross_encoder):
    assert make_loss(name, seeded_base_cross_encoder, {"num_negatives": 5}).num_negatives == 5


@pytest.mark.parametrize("name", ["mnrl", "cmnrl"])
def test_negatives_option_is_required(name, seeded_base_cross_encoder):
    with pytest.raises(ConfigError, match=rf"loss '{name}' needs option 'num_negatives' \(fix: set it in the train section\)"):
        make_loss(name, seeded_base_cross_encoder)


@pytest.mark.parametrize(
    ("scheme", "cls"),
    [
        (None, st_losses.NDCGLoss2PPScheme),  # the default
        ("none", st_losses.NoWeightingScheme),
        ("ndcg1", st_losses.NDCGLoss1Scheme),
        ("ndcg2", st_losses.NDCGLoss2Scheme),
        ("lambdarank", st_losses.LambdaRankScheme),
        ("ndcg2pp", st_losses.NDCGLoss2PPScheme),
    ],
)
def test_lambda_weighting_scheme(scheme, cls, seeded_base_cross_encoder):
    options = {} if scheme is None else {"lambda_scheme": scheme}
    assert type(make_loss("lambda", seeded_base_cross_encoder, options).weighting_scheme) is cls


def test_unknown_lambda_scheme_lists_the_valid_ones(seeded_base_cross_encoder):
    valid = "lambdarank, ndcg1, ndcg2, ndcg2pp, none"
    with pytest.raises(ConfigError, match=rf"unknown LambdaLoss weighting scheme 'ndcg3' \(fix: use one of: {valid}\)"):
        make_loss("lambda", seeded_base_cross_encoder, {"lambda_scheme": "ndcg3"})


def test_options_other_losses_do_not_take_are_ignored(seeded_base_cross_encoder):
    loss = make_loss("listnet", seeded_base_cross_encoder, {"lambda_scheme": "none", "num_negatives": 3})
    assert type(loss) is st_losses.ListNetLoss


def test_unknown_loss_lists_the_valid_names(seeded_base_cross_encoder):
    valid = "bce, ce, cmnrl, lambda, listmle, listnet, margin_mse, mnrl, mse, plistmle, ranknet"
    with pytest.raises(ConfigError, match=rf"^unknown loss 'BCE' \(fix: use one of: {valid}\)$"):
        loss_spec("BCE")
    with pytest.raises(ConfigError, match=r"^unknown loss 'hinge'"):
        make_loss("hinge", seeded_base_cross_encoder)
