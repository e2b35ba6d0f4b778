"""Learning-rate schedules as pure functions of the step (so resuming needs only the step)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch.optim import Optimizer

__all__ = ["LRSchedule", "cosine_restart_factor"]


def cosine_restart_factor(step: int, periods: Sequence[int], restart_weights: Sequence[float],
                          eta_min_ratio: float) -> float:
    """Cosine annealing with restarts (BasicSR's ``CosineAnnealingRestartLR``) as a factor of
    the base rate at ``step`` (0-based): inside period ``i`` (starting at ``c_i``, length
    ``P_i``, weight ``w_i``) the factor is ``r + w_i (1 - r) (1 + cos(π (step - c_i) / P_i)) / 2``
    with ``r = eta_min / base_lr``; after the last period it stays at ``r``."""
    start = 0
    for period, weight in zip(periods, restart_weights):
        if step < start + period:
            t = (step - start) / period
            return eta_min_ratio + weight * (1 - eta_min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        start += period
    return eta_min_ratio


class LRSchedule:
    """Sets every param group's ``lr`` for a step: linear warm-up then the chosen schedule.

    ``kind``: ``"cosine_restart"`` or ``"constant"``. Warm-up multiplies by
    ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps.
    """

    def __init__(self, optimizer: Optimizer, *, kind: str = "cosine_restart",
                 periods: Sequence[int] = (), restart_weights: Sequence[float] = (),
                 eta_min: float = 0.0, warmup_steps: int = 0) -> None:
        self.optimizer = optimizer
        self.kind = kind
        self.periods = list(periods)
        self.restart_weights = list(restart_weights) or [1.0] * len(self.periods)
        self.eta_min = eta_min
        self.warmup_steps = warmup_steps
        self.base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        for g, lr in zip(optimizer.param_groups, self.base_lrs):
            g["initial_lr"] = lr

    def lr_at(self, step: int, base_lr: float) -> float:
        """The learning rate of a group with ``base_lr`` at 0-based ``step``."""
        if self.kind == "constant":
            lr = base_lr
        else:
            ratio = self.eta_min / base_lr if base_lr > 0 else 0.0
            lr = base_lr * cosine_restart_factor(step, self.periods, self.restart_weights, ratio)
        if self.warmup_steps > 0 and step < self.warmup_steps:
            lr *= (step + 1) / self.warmup_steps
        return lr

    def apply(self, step: int) -> float:
        """Set the rates for ``step``; returns the first group's rate."""
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = self.lr_at(step, base)
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        self.base_lrs = list(state["base_lrs"])
