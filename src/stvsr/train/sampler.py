"""The resumable, DDP-aware order in which training items are visited."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from stvsr.train.config import ConfigError

__all__ = ["StepSampler"]


class StepSampler(Sampler[int]):
    """Resumable sampler that splits each *global* batch over DDP ranks.

    Epoch ``e`` visits ``randperm(n)`` seeded by ``(seed, e)`` (several permutations chained
    when ``n`` is smaller than the global batch ``B``), in ``len // B`` whole batches; rank
    ``r`` of ``R`` takes positions ``[bB + rB/R, bB + (r+1)B/R)`` of batch ``b``. So the union
    over ranks of a batch is the single-process batch, and ``start_batch`` skips batches
    already trained on.
    """

    def __init__(self, n: int, global_batch: int, *, rank: int = 0, world: int = 1,
                 seed: int = 0) -> None:
        if global_batch % world:
            raise ConfigError(f"data.batch_size {global_batch} must be divisible by the "
                              f"{world} processes")
        self.n, self.batch, self.rank, self.world, self.seed = n, global_batch, rank, world, seed
        self.per_rank = global_batch // world
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    @property
    def batches_per_epoch(self) -> int:
        return max(1, math.ceil(self.batch / self.n)) * self.n // self.batch

    def _order(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        reps = max(1, math.ceil(self.batch / self.n))
        return torch.cat([torch.randperm(self.n, generator=g) for _ in range(reps)])

    def __iter__(self) -> Iterator[int]:
        order = self._order().tolist()
        for b in range(self.start_batch, self.batches_per_epoch):
            lo = b * self.batch + self.rank * self.per_rank
            yield from order[lo: lo + self.per_rank]

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch - self.start_batch) * self.per_rank

