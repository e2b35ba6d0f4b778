"""A clip's frames for evaluation: HR frames read once, in order, and degraded to LR.

*Design*: frames are read and degraded strictly in frame order, each exactly once, whatever
order the protocol's runs ask for them in, so a random degradation draws the same numbers for
a frame under every protocol (the generator is the clip's, :func:`clip_generator`). A chain
without a video codec degrades frame by frame; one with a codec (``chain.per_clip``) encodes
each run's inputs as one stream, as a file of those frames would be. A frame is kept only while
a later run or score still needs it (use counts from the protocol's runs), so a long S-VSR
clip streams in bounded memory.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from stvsr.data.chain import DegradationChain
from stvsr.data.degradations import modcrop
from stvsr.data.images import read_image
from stvsr.eval.protocols import Run
from stvsr.frames import frame_to_tensor, to_uint8

__all__ = ["ClipSource", "clip_generator"]


def clip_generator(seed: int, clip: str) -> np.random.Generator:
    """The generator of a clip's degradation draws: fixed by ``seed`` and the clip's name."""
    return np.random.default_rng([int(seed), zlib.crc32(clip.encode())])


class ClipSource:
    """The HR and LR frames of one clip, as the runs of its protocol need them.

    Args:
        files: the clip's HR frame files, in order.
        chain: the degradation, at the model's scale (``chain.scale``).
        rng: the clip's generator (:func:`clip_generator`).
        runs: the protocol's runs on this clip (they fix what is kept, and how long).
        keep_inputs: also keep each scored frame's LR input (as its run fed it) until
            :meth:`fed` takes it (for the bicubic reference of S-VSR).
    """

    def __init__(self, files: Sequence[Path], chain: DegradationChain,
                 rng: np.random.Generator, runs: Sequence[Run], *, keep_inputs: bool = False
                 ) -> None:
        self.files, self.chain, self.rng = list(files), chain, rng
        self.keep_inputs = keep_inputs
        self._next = 0  # the next frame to read
        self._uses = Counter(i for run in runs for i in run.inputs)  # LR (or HR) uses left
        self._scored = {t.frame for run in runs for t in run.targets}
        self._gt: dict[int, np.ndarray] = {}  # uint8 (H, W, 3) HR frames not yet scored
        self._kept: dict[int, torch.Tensor] = {}  # LR (3, h, w), or HR for a codec chain
        self._fed: dict[int, torch.Tensor] = {}  # LR inputs of scored frames (keep_inputs)

    def stream(self, run: Run) -> Iterator[torch.Tensor]:
        """The LR frames ``(3, h, w)`` of ``run.inputs``, in order."""
        if not self.chain.per_clip:
            for i in run.inputs:
                yield self._feed(i, self._take(i))
            return
        hrs = torch.stack([self._take(i) for i in run.inputs])
        for i, lr in zip(run.inputs, self.chain.apply(hrs, self.rng), strict=True):
            yield self._feed(i, lr)

    def gt(self, frame: int) -> np.ndarray:
        """The 8-bit HR frame ``frame`` ``(H, W, 3)`` (modcropped); each is taken once."""
        self._read_until(frame)
        return self._gt.pop(frame)

    def fed(self, frame: int) -> torch.Tensor:
        """The LR frame ``(3, h, w)`` that was fed for HR frame ``frame`` (``keep_inputs``)."""
        return self._fed.pop(frame)

    @property
    def held(self) -> list[int]:
        """The frames whose LR (or, with a codec, HR) tensor is kept for a later run."""
        return sorted(self._kept)

    def _feed(self, i: int, lr: torch.Tensor) -> torch.Tensor:
        if self.keep_inputs and i in self._scored:
            self._fed[i] = lr
        return lr

    def _take(self, i: int) -> torch.Tensor:
        """One use of frame ``i``'s kept tensor (LR, or HR for a codec chain)."""
        self._read_until(i)
        self._uses[i] -= 1
        return self._kept[i] if self._uses[i] else self._kept.pop(i)

    def _read_until(self, frame: int) -> None:
        """Read (and, without a codec, degrade) the frames up to ``frame`` in order."""
        while self._next <= frame:
            i = self._next
            hr = modcrop(frame_to_tensor(read_image(self.files[i])), self.chain.scale)
            if i in self._scored:
                self._gt[i] = to_uint8(hr)
            if self.chain.per_clip:
                kept = hr
            else:  # every frame is degraded, in order, used or not (one draw sequence)
                kept = self.chain.apply(hr.unsqueeze(0), self.rng)[0]
            if self._uses[i]:
                self._kept[i] = kept
            self._next += 1
