"""Bits per character: the mean next-character cross-entropy in base 2, accumulated exactly over a split."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric


class BitsPerCharacter(Metric):
    """Mean negative log-likelihood per character, in bits (``nats / ln 2``).

    Sums the loss and the character count across batches (and processes, under DDP) and divides once, so the
    result is the exact per-character figure over the whole split, not a mean of batch means.

    Args:
        in_nats: report nats per character instead of bits.

    Example::

        >>> metric = BitsPerCharacter()
        >>> metric.update(torch.log(torch.tensor([[0.5, 0.5]])), torch.tensor([[0]]))
        >>> round(float(metric.compute()), 4)
        1.0
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, in_nats: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.in_nats = in_nats
        self.add_state("nll_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self,
        logits: Tensor | None = None,
        targets: Tensor | None = None,
        *,
        nll_sum: Tensor | None = None,
        count: int | None = None,
    ) -> None:
        """Add a batch: either ``logits`` and ``targets``, or an already summed loss.

        Args:
            logits: (..., V) unnormalised next-character scores (log-probabilities work too).
            targets: (...) the true next-character ids.
            nll_sum: the summed negative log-likelihood in nats (instead of ``logits``/``targets``).
            count: how many characters ``nll_sum`` covers.
        """
        if nll_sum is None:
            if logits is None or targets is None:
                raise ValueError("pass `logits` and `targets`, or `nll_sum` and `count`")
            if logits.shape[:-1] != targets.shape:
                raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} do not match")
            nll_sum = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="sum"
            )
            count = targets.numel()
        elif count is None or count < 0:
            raise ValueError(f"`count` must be a non-negative int with `nll_sum`, got {count!r}")
        self.nll_sum += nll_sum.detach().to(self.nll_sum.dtype)
        self.count += count

    def compute(self) -> Tensor:
        nats = self.nll_sum / self.count.clamp(min=1)
        return (nats if self.in_nats else nats / math.log(2)).float()
