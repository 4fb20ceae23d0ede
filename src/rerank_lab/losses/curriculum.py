"""R4 curriculum: a pointwise warm-up loss for the first steps, then a listwise loss.

The cross-encoder head starts untrained; a short BCE warm-up gives it a sensible scale before a
listwise loss refines the ordering. Both wrapped losses are sentence-transformers' own; this
module only decides which one a training step uses, from list-format examples. List labels may be
graded (``train.gains: graded``): the listwise loss gets them as they are, the pointwise warm-up
gets ``grade > 0`` as 0/1, since BCE needs 0/1 targets.
"""

from __future__ import annotations

import torch
from torch import nn


class CurriculumLoss(nn.Module):
    """``warmup`` (pointwise, on the lists flattened to 0/1-labelled pairs) for ``switch_step`` steps, then ``main``."""

    def __init__(self, model, warmup: nn.Module, main: nn.Module, switch_step: int) -> None:
        super().__init__()
        self.model = model
        self.warmup = warmup
        self.main = main
        self.switch_step = switch_step
        self.steps = 0
        self.history: list[str] = []  # which loss each training step used

    def skip(self, steps: int) -> None:
        """Go on from ``steps`` training steps done before a resumed run, not from step 0."""
        self.steps = steps
        done = min(steps, self.switch_step)
        self.history = [type(self.warmup).__name__] * done + [type(self.main).__name__] * (steps - done)

    def forward(self, inputs: list, labels: list[torch.Tensor], **kwargs) -> torch.Tensor:
        if self.model.training:
            self.steps += 1
        use_warmup = self.steps <= self.switch_step
        if self.model.training:
            self.history.append(type(self.warmup if use_warmup else self.main).__name__)
        if not use_warmup:
            return self.main(inputs, labels, **kwargs)
        queries, docs = inputs
        flat_q = [q for q, ds in zip(queries, docs) for _ in ds]
        flat_d = [d for ds in docs for d in ds]
        flat_labels = torch.cat([torch.as_tensor(lab, dtype=torch.float32).view(-1)[: len(ds)] for lab, ds in zip(labels, docs)])
        binary = (flat_labels > 0).float()  # graded gains -> 0/1 for BCE
        return self.warmup([flat_q, flat_d], binary.to(self.model.device), **kwargs)

    @property
    def citation(self) -> str:
        return self.main.citation
