"""Sliding-window video inference for ``kind == "window"`` models, streaming, with feature caching.

Output frame ``i`` of a ``T``-frame video is restored from the ``N = model.num_frames`` inputs
``i - c, ..., i + N - 1 - c`` (``c = model.center_frame_idx``, default ``N // 2``). Indices
outside ``[0, T)`` are **mirrored without repeating the edge frame** (``reflection``, as BasicSR's
``generate_frame_indices(padding='reflection')``): ``-1 -> 1``, ``-2 -> 2``, ``T -> T - 2``,
``T + 1 -> T - 3``; for very short videos the reflection repeats with period ``2 (T - 1)``.

Frames are read from an iterator and output frames are yielded as soon as their window is
complete, so at most ``2 * max(c, N - 1 - c) + 2`` inputs (or their feature pyramids) are held.

With ``cache=True`` and a model offering ``extract_features`` / ``fuse_and_reconstruct``
(:class:`stvsr.models.edvr.EDVR`), each frame's feature pyramid is computed once and reused by
every window that contains it (``T`` extractions instead of ``T * N``); alignment, fusion and
reconstruction still run once per output frame. Other window models (e.g.
:class:`~stvsr.models.edvr.TwoStageEDVR`) always take the naive path: one full forward per window.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn

from stvsr.errors import StvsrError


def mirror_index(j: int, t: int) -> int:
    """Reflect ``j`` into ``[0, t)`` without repeating the edge (``-1 -> 1``, ``t -> t-2``)."""
    if t <= 0:
        raise ValueError("t must be positive")
    if t == 1:
        return 0
    period = 2 * (t - 1)
    j %= period
    return period - j if j >= t else j


def window_indices(i: int, t: int, num_frames: int, centre: int | None = None) -> list[int]:
    """Input indices of the window that restores frame ``i`` of a ``t``-frame video."""
    c = num_frames // 2 if centre is None else centre
    return [mirror_index(j, t) for j in range(i - c, i - c + num_frames)]


class SlidingWindowRunner:
    """Run a window model over a whole video, one output frame per input frame.

    Args:
        model: a ``kind == "window"`` network (``(B, N, 3, h, w) -> (B, 3, s·h, s·w)``).
        cache: reuse per-frame feature pyramids across windows (needs ``extract_features`` and
            ``fuse_and_reconstruct``; silently naive otherwise, see :attr:`cached`).
        device: where to run (default: the model's device).

    The model runs as given: pass ``stvsr.infer.optimize(model, device, precision)`` for the
    fast kernels and a precision (as :func:`stvsr.infer.runner.restore_stream` does).

    Attributes:
        max_buffered: the most input frames held at once during the last :meth:`run`.
    """

    def __init__(
        self,
        model: nn.Module,
        cache: bool = True,
        *,
        device: str | torch.device | None = None,
    ) -> None:
        if getattr(model, "kind", None) != "window":
            kind = getattr(model, "kind", None)
            raise StvsrError(f"SlidingWindowRunner needs a window model, got kind={kind!r}")
        self.model = model
        self.num_frames = int(model.num_frames)
        self.centre = int(getattr(model, "center_frame_idx", self.num_frames // 2))
        self.cached = bool(cache) and all(
            hasattr(model, a) for a in ("extract_features", "fuse_and_reconstruct")
        )
        if device is None:
            p = next(model.parameters(), None)
            device = p.device if p is not None else "cpu"
        self.device = torch.device(device)
        self.max_buffered = 0

    @torch.no_grad()  # the decorator (unlike a ``with`` block) keeps grad mode out of the caller
    def run(self, frames: Tensor | Iterable[Tensor]) -> Iterator[Tensor]:
        """Yield the restored frames ``(3, s·h, s·w)`` in order.

        Args:
            frames: a ``(T, 3, h, w)`` tensor or an iterable of ``(3, h, w)`` frames in [0, 1].
        """
        source = iter(frames.unbind(0) if isinstance(frames, Tensor) else frames)
        n, c = self.num_frames, self.centre
        reach = max(c, n - 1 - c)  # farthest index (either side, after mirroring) a window needs
        raw: dict[int, Tensor] = {}
        feats: dict[int, tuple] = {}
        total: int | None = None  # known once the source is exhausted
        read = 0
        self.max_buffered = 0
        i = 0
        while True:
            # read until frame i's window is available (or the video ended)
            while total is None and read <= i + reach:
                try:
                    frame = next(source)
                except StopIteration:
                    total = read
                    break
                if frame.dim() != 3:
                    raise StvsrError(
                        f"expected frames of shape (3, h, w), got {tuple(frame.shape)}"
                    )
                frame = frame.to(self.device, torch.float32)
                raw[read] = frame
                if self.cached:
                    pyr = self.model.extract_features(frame[None, None])
                    feats[read] = pyr[0]
                read += 1
                self.max_buffered = max(self.max_buffered, len(raw))
            if total is not None and i >= total:
                break
            t_known = total if total is not None else 10**12  # no mirroring needed yet
            idx = window_indices(i, t_known, n, c)
            if self.cached:
                out = self.model.fuse_and_reconstruct([feats[j] for j in idx], raw[i][None])
            else:
                window = torch.stack([raw[j] for j in idx])[None]
                out = self.model(window)
            yield out[0]
            i += 1
            # drop what no later window can reach
            for j in [j for j in raw if j < i - reach]:
                raw.pop(j)
                feats.pop(j, None)

    def run_all(self, frames: Tensor | Iterable[Tensor]) -> Tensor:
        """All outputs stacked: ``(T, 3, s·h, s·w)``."""
        outs = list(self.run(frames))
        if not outs:
            raise StvsrError("the video has no frames; pass at least one frame")
        return torch.stack(outs)
