"""Whole-clip LR variants: degrade (and encode) each clip's full frames once, crop them many times.

With a video codec in the degradation chain, encoding a small crop per item both costs the data
loader most of its time and gives artifacts unlike a real file's (the encoder sees a 36-pixel
frame, not a picture). A :class:`VariantCache` instead makes ``variants`` degraded versions of
each whole clip — each with its own draw of the chain (CRF, pixel format, downscale kind ...),
seeded by ``(seed, clip, variant)`` so every worker and every resume makes the same ones — keeps
them as 8-bit LR frames, and items crop from them. *Design*: the LR patch is cropped after
encoding, as from a real decoded file.

With a ``store`` folder the variants persist: each is read from ``store/<clip>/v<k>.npz`` when
there and written there when made. That lets a machine without PyAV (a lent GPU) train on coded
variants made here (``benchmarks/gpu_pack.py --recipe basicvsr-compressed``); a file made for
another degradation, seed or scale is an error, never silently reused.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from stvsr.data.degradations import modcrop
from stvsr.errors import DataError
from stvsr.frames import frames_to_tensor, to_uint8

__all__ = ["VariantCache"]


class VariantCache:
    """Per-process cache of ``(clean LR, degraded LR)`` uint8 clips ``(N, h, w, 3)``.

    ``split(hr, rng) -> (clean, degraded)`` is the degradation
    (:meth:`stvsr.data.datasets.DegradationSpec.split`); at most ``max_bytes`` are kept, the
    least recently used clip variant going first. ``store``: a folder the variants persist in
    (module docstring); ``tag`` names the degradation in its files; without ``keep_clean``
    a stored file holds the degraded clip only (half the size; the clean LR comes back empty).
    """

    def __init__(self, split: Callable, scale: int, seed: int,
                 max_bytes: int = 1 << 30, store: str | Path | None = None,
                 tag: str = "", keep_clean: bool = True) -> None:
        self.split, self.scale, self.seed, self.max_bytes = split, scale, seed, max_bytes
        self.store = None if store is None else Path(store)
        self.keep_clean = keep_clean
        self.stamp = {"degradation": tag, "seed": int(seed), "scale": int(scale),
                      "clean": bool(keep_clean)}
        self._items: OrderedDict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._bytes = 0

    def get(self, clip: int, variant: int, load_hr: Callable[[], np.ndarray],
            name: str = "") -> tuple[np.ndarray, np.ndarray]:
        """The variant ``variant`` of clip number ``clip`` (named ``name`` in the store);
        ``load_hr()`` gives its HR frames ``(N, H, W, 3)`` uint8 when it must be made."""
        key = (clip, variant)
        hit = self._items.get(key)
        if hit is None:
            hit = self._stored(name, variant)
            if hit is None:
                hit = self._make(clip, variant, load_hr())
                self._save(name, variant, hit)
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

    def path(self, name: str, variant: int) -> Path | None:
        """The store file of variant ``variant`` of clip ``name`` (``None`` without a store)."""
        if self.store is None:
            return None
        if not name:
            raise ValueError("a stored variant needs its clip's name")
        return self.store / name / f"v{variant}.npz"

    def _stored(self, name: str, variant: int) -> tuple[np.ndarray, np.ndarray] | None:
        path = self.path(name, variant)
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path) as f:
                stamp = json.loads(str(f["stamp"]))
                pair = (f["clean"], f["coded"])
        except Exception as e:  # noqa: BLE001 - any unreadable file: one line, what to do
            raise DataError(f"{path} is not a readable variant file ({e}); delete it and it "
                            "is made again") from None
        if stamp != self.stamp:
            raise DataError(f"{path} was made for {stamp}, this run asks for {self.stamp}; "
                            f"delete {self.store} or set data.variants_dir to another folder")
        return pair

    def _save(self, name: str, variant: int, pair: tuple[np.ndarray, np.ndarray]) -> None:
        path = self.path(name, variant)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
        clean = pair[0] if self.keep_clean else pair[0][:0]
        np.savez_compressed(tmp, clean=clean, coded=pair[1],
                            stamp=np.array(json.dumps(self.stamp)))
        tmp.replace(path)  # atomic: a reader never sees half a file
