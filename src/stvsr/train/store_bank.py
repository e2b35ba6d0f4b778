"""Frozen-store bank: train the sfnet-s head on frozen outputs computed once per whole sequence.

*Design.* In ``sfnet-s`` the store (BasicVSR's bidirectional propagation and upsampler) and the
motion prior (SpyNet flows to ``t = ½``) are frozen; only the fusion head learns. The plain
recipe recomputes the frozen parts for every training crop, which is most of a step. The bank
instead runs them **once on a whole sequence** (every input frame, full frame size, as
``stvsr upscale`` and the full ST-VSR protocol do) and keeps the results; training steps then
crop windows and patches from the kept sequences and run only the head.

Two consequences, both intended:

* a step costs the head's forward and backward only (plus, every ``refresh`` steps, one frozen
  pass over a new sequence);
* the head learns from the features it meets at inference time — propagated over the whole
  sequence and the whole frame — instead of features of a 4-frame 32 × 32 crop.

The pool is a deterministic function of the step (sequence keys come from a seeded stream;
step ``s`` holds keys ``s // refresh … s // refresh + pool - 1``), and so is every batch, so
``--resume`` rebuilds the same pool and continues with the same batches.

Shapes (one sequence of ``T`` inputs, LR ``h × w``, HR ``H = 4h``, ``W = 4w``, ``C`` features):
``lr (T, 3, h, w)``, ``feat (T, C, h, w)``, ``restored (T, 3, H, W)`` (not clamped),
``flow (T-1, 4, H, W)`` (``F_t0``, ``F_t1`` of each pair), ``mask (T-1, 1, H, W)``,
``hr (2T-1, 3, H, W)`` uint8 (targets: inputs at even indices, new frames at odd ones).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import astuple, dataclass

import numpy as np
import torch
from torch import Tensor

from stvsr.data.datasets import VideoClipDataset
from stvsr.errors import StvsrError
from stvsr.models.sfnet_s import SFNetS

__all__ = ["BankBatch", "SequenceKey", "StoreBank", "StoreSequence", "frozen_pass", "head_window"]


@dataclass(frozen=True)
class SequenceKey:
    """Which sequence of which clip: HR frames ``phase + interval · m``, flipped / transposed /
    reversed as a whole (augmentation happens before the frozen pass, never after it)."""

    clip: int
    interval: int
    phase: int
    hflip: bool
    vflip: bool
    transpose: bool
    reverse: bool


@dataclass
class StoreSequence:
    """The frozen outputs of one whole sequence (shapes in the module docstring)."""

    key: SequenceKey
    lr: Tensor
    feat: Tensor
    restored: Tensor
    flow: Tensor
    mask: Tensor
    hr: Tensor

    @property
    def inputs(self) -> int:
        return self.lr.shape[0]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in
                   (self.lr, self.feat, self.restored, self.flow, self.mask, self.hr))


@dataclass
class BankBatch:
    """A batch of windows of ``n`` inputs cropped to ``p × p`` LR (``P = 4p``):
    ``lr, feat (B, n, ·, p, p)``, ``restored (B, n, 3, P, P)``, ``flow (B, n-1, 4, P, P)``,
    ``mask (B, n-1, 1, P, P)``, ``gt (B, 2n-1, 3, P, P)``."""

    lr: Tensor
    feat: Tensor
    restored: Tensor
    flow: Tensor
    mask: Tensor
    gt: Tensor

    def to(self, device: torch.device) -> BankBatch:
        return BankBatch(*(t.to(device, non_blocking=True) for t in
                           (self.lr, self.feat, self.restored, self.flow, self.mask, self.gt)))


def frozen_pass(model: SFNetS, lr: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The frozen computation of ``model`` on one whole sequence ``lr (T, 3, h, w)``.

    Returns ``feat (T, C, h, w)``, ``restored (T, 3, H, W)``, ``flow (T-1, 4, H, W)``,
    ``mask (T-1, 1, H, W)`` — the same tensors ``model.forward`` computes for the sequence.
    """
    x = lr[None]
    with torch.no_grad():
        flows = model.vsr.compute_flows(x)
        if flows is None:
            raise StvsrError("a bank sequence needs at least 2 input frames")
        feats, restored = [], []
        for i, g in enumerate(model.vsr.iter_features(x, flows)):
            feats.append(g)
            restored.append(model.vsr.reconstruct(g, x[:, i]))
        motion = [model.motion(restored[i].clamp(0, 1), restored[i + 1].clamp(0, 1),
                               flows[0][:, i], flows[1][:, i]) for i in range(len(feats) - 1)]
    return (torch.cat(feats), torch.cat(restored), torch.cat([m[0] for m in motion]),
            torch.cat([m[1] for m in motion]))


def head_window(model: SFNetS, batch: BankBatch) -> Tensor:
    """``model``'s output for the windows of ``batch``: ``(B, 2n-1, 3, P, P)``.

    Even frames are the restored inputs; the new frame between inputs ``i`` and ``i+1`` reads,
    as in ``model.forward``, the store entries of inputs ``i-1`` and ``i+2`` where the window
    has them.
    """
    head = model.head
    n = batch.lr.shape[1]
    entries = [head.entry(batch.feat[:, j]) for j in range(n)] if model.use_df else []
    y = batch.restored
    frames = [y[:, 0]]
    for i in range(n - 1):
        keys = values = None
        far = [entries[j] for j in (i - 1, i + 2) if entries and 0 <= j < n]
        if far:
            keys = torch.stack([e[0] for e in far], 1)
            values = torch.stack([e[1] for e in far], 1)
        mid = head(batch.feat[:, i], batch.feat[:, i + 1], batch.lr[:, i], batch.lr[:, i + 1],
                   y[:, i].clamp(0, 1), y[:, i + 1].clamp(0, 1), batch.flow[:, i],
                   batch.mask[:, i], keys, values)
        frames += [mid, y[:, i + 1]]
    return torch.stack(frames, 1)


def to_float(frames: Tensor) -> Tensor:
    """uint8 ``(..., 3, H, W)`` -> float32 in ``[0, 1]``, exactly as
    :func:`stvsr.frames.frames_to_tensor` converts."""
    return frames.to(torch.float32).div_(255)


def _augment(hr: Tensor, key: SequenceKey) -> Tensor:
    if key.hflip:
        hr = hr.flip(-1)
    if key.vflip:
        hr = hr.flip(-2)
    if key.transpose:
        hr = hr.transpose(-1, -2)
    if key.reverse:
        hr = hr.flip(0)
    return hr


class StoreBank:
    """A pool of :class:`StoreSequence` over a dataset's clips, and the batches cut from it.

    Args:
        model: the sfnet-s model being trained (its frozen parts fill the pool).
        dataset: a ``"stvsr"``-mode :class:`VideoClipDataset` (clips, degradation, intervals,
            flips, patch size and window length come from it).
        batch_size, seed, rank: the per-rank batch, the run's seed and this process's rank.
        pool: sequences kept at once; refresh: steps between replacing one of them;
        max_inputs: inputs per sequence at most (longer clips are cut).
        device, autocast: where and at which precision the frozen pass runs (the training
            step's own settings, so the bank equals the plain step).
    """

    def __init__(self, model: SFNetS, dataset: VideoClipDataset, *, batch_size: int, seed: int,
                 pool: int = 8, refresh: int = 32, max_inputs: int = 16, rank: int = 0,
                 device: torch.device | None = None, autocast=None) -> None:
        if not isinstance(model, SFNetS):
            raise StvsrError("train.bank needs an sfnet-s model (frozen store, trained head); "
                             f"got {type(model).__name__}")
        if dataset.mode != "stvsr" or dataset.lr_patch is None:
            raise StvsrError("train.bank needs data.mode stvsr with a data.lr_patch")
        if pool < 1 or refresh < 1 or max_inputs < dataset.num_frames:
            raise StvsrError("train.bank: pool and refresh must be >= 1 and max_inputs >= "
                             "data.num_frames")
        self.model, self.dataset = model, dataset
        self.batch_size, self.seed, self.rank = batch_size, seed, rank
        self.pool, self.refresh, self.max_inputs = pool, refresh, max_inputs
        self.device = device or torch.device("cpu")
        self.autocast = autocast
        self.resident: dict[int, StoreSequence] = {}

    # ---- the key stream -----------------------------------------------------------------
    def key(self, visit: int) -> SequenceKey:
        """The ``visit``-th sequence key of the run (a function of the seed and ``visit``)."""
        ds = self.dataset
        rng = np.random.default_rng([self.seed, visit, 0x5B])
        ci = int(rng.integers(len(ds.clips)))
        n = ds.clip_length(ci)
        need = 2 * ds.num_frames - 1
        usable = [k for k in ds.intervals if (need - 1) * k + 1 <= n]
        if not usable:
            raise StvsrError(f"clip {ds.clips[ci].name} has {n} frames; a window needs {need}")
        k = usable[int(rng.integers(len(usable)))]
        phase = int(rng.integers(min(2 * k, n - (need - 1) * k)))
        flags = [bool(v) for v in rng.random(4) < 0.5]
        return SequenceKey(ci, k, phase, ds.flip and flags[0], ds.flip and flags[1],
                           ds.transpose and flags[2], ds.reverse and flags[3])

    def sequence(self, key: SequenceKey) -> StoreSequence:
        """Read, augment and degrade the sequence of ``key`` and run the frozen pass on it."""
        ds = self.dataset
        n = ds.clip_length(key.clip)
        count = min((n - 1 - key.phase) // key.interval + 1, 2 * self.max_inputs - 1)
        count -= 1 - count % 2  # an odd number of HR frames: inputs at both ends
        idx = [key.phase + key.interval * m for m in range(count)]
        frames = ds.clip_frames(key.clip, idx)
        s = ds.scale
        frames = frames[:, : frames.shape[1] // s * s, : frames.shape[2] // s * s]
        hr = _augment(torch.from_numpy(frames).movedim(-1, -3), key).contiguous()  # uint8
        rng = np.random.default_rng([self.seed, *map(int, astuple(key)), 0xDE])
        _, lr = ds.degradation.split(to_float(hr[0::2]), rng)
        lr = lr.to(self.device)
        with self._precision():
            feat, restored, flow, mask = frozen_pass(self.model, lr)
        return StoreSequence(key, lr, feat, restored, flow, mask, hr.to(self.device))

    def _precision(self):
        import contextlib

        return self.autocast() if self.autocast is not None else contextlib.nullcontext()

    # ---- the pool -----------------------------------------------------------------------
    def fill(self, step: int) -> None:
        """Make the pool the one of ``step``: visits ``step // refresh … + pool - 1``."""
        first = step // self.refresh
        want = range(first, first + self.pool)
        for v in [v for v in self.resident if v not in want]:
            del self.resident[v]
        was = self.model.training
        self.model.eval()
        try:
            for v in want:
                if v not in self.resident:
                    self.resident[v] = self.sequence(self.key(v))
        finally:
            self.model.train(was)

    def batch(self, step: int) -> BankBatch:
        """The batch of ``step`` (fills the pool first)."""
        self.fill(step)
        ds = self.dataset
        n, p, s = ds.num_frames, ds.lr_patch, ds.scale
        assert p is not None
        rng = np.random.default_rng([self.seed, step, self.rank, 0xBA])
        visits = sorted(self.resident)
        parts: list[tuple[Tensor, ...]] = []
        for _ in range(self.batch_size):
            seq = self.resident[visits[int(rng.integers(len(visits)))]]
            h, w = seq.lr.shape[-2:]
            if h < p or w < p:
                raise StvsrError(f"clip {ds.clips[seq.key.clip].name} is {w}x{h} at LR, "
                                 f"smaller than data.lr_patch {p}")
            t0 = int(rng.integers(seq.inputs - n + 1))
            y0, x0 = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
            ly, lx = slice(y0, y0 + p), slice(x0, x0 + p)
            big = (slice(s * y0, s * (y0 + p)), slice(s * x0, s * (x0 + p)))
            t, tm = slice(t0, t0 + n), slice(t0, t0 + n - 1)
            parts.append((seq.lr[t, :, ly, lx], seq.feat[t, :, ly, lx],
                          seq.restored[t, :, big[0], big[1]], seq.flow[tm, :, big[0], big[1]],
                          seq.mask[tm, :, big[0], big[1]],
                          to_float(seq.hr[2 * t0: 2 * t0 + 2 * n - 1, :, big[0], big[1]])))
        return BankBatch(*(torch.stack(list(col)) for col in zip(*parts, strict=True)))

    def batches(self, step: int) -> Iterator[dict[str, BankBatch]]:
        """Batches from ``step`` on, as loader items (``{"bank": BankBatch}``)."""
        while True:
            yield {"bank": self.batch(step)}
            step += 1

    def resident_bytes(self) -> int:
        return sum(q.nbytes() for q in self.resident.values())
