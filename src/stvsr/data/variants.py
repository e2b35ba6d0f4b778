"""Whole-clip LR variants: degrade (and encode) each clip's full frames once, crop them many times.

With a video codec in the degradation chain, encoding a small crop per item both costs the data
loader most of its time and gives artifacts unlike a real file's (the encoder sees a 36-pixel
frame, not a picture). A :class:`VariantCache` instead makes ``variants`` degraded versions of
each whole clip — each with its own draw of the chain (CRF, pixel format, downscale kind ...),
seeded by ``(seed, clip, variant)`` so every worker and every resume makes the same ones — keeps
them as 8-bit LR frames, and items crop from them. *Design*: the LR patch is cropped after
encoding, as from a real decoded file.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch

from stvsr.data.degradations import modcrop
from stvsr.frames import frames_to_tensor, to_uint8

__all__ = ["VariantCache"]


class VariantCache:
    """Per-process cache of ``(clean LR, degraded LR)`` uint8 clips ``(N, h, w, 3)``.

    ``split(hr, rng) -> (clean, degraded)`` is the degradation
    (:meth:`stvsr.data.datasets.DegradationSpec.split`); at most ``max_bytes`` are kept, the
    least recently used clip variant going first.
    """

    def __init__(self, split: Callable, scale: int, seed: int,
                 max_bytes: int = 1 << 30) -> None:
        self.split, self.scale, self.seed, self.max_bytes = split, scale, seed, max_bytes
        self._items: OrderedDict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._bytes = 0

    def get(self, clip: int, variant: int,
            load_hr: Callable[[], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The variant ``variant`` of clip ``clip``; ``load_hr()`` gives its HR frames
        ``(N, H, W, 3)`` uint8 when it must be made."""
        key = (clip, variant)
        hit = self._items.get(key)
        if hit is None:
            hit = self._make(clip, variant, load_hr())
            self._items[key] = hit
            self._bytes += hit[0].nbytes + hit[1].nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (a, b) = self._items.popitem(last=False)
                self._bytes -= a.nbytes + b.nbytes
        self._items.move_to_end(key)
        return hit

    def _make(self, clip: int, variant: int, hr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.Generator(np.random.PCG64(
            np.random.SeedSequence([self.seed, 7919, clip, variant])))
        frames = modcrop(frames_to_tensor(hr), self.scale)
        with torch.no_grad():
            clean, coded = self.split(frames, rng)
        return to_uint8(clean), to_uint8(coded)
