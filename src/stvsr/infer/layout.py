"""The stream layout of a model kind: what a model needs around an input and what it outputs.

One :class:`StreamLayout` (from :func:`layout_of`) answers, for ``recurrent``, ``window`` and
``spacetime`` models alike, the questions the streaming code asks:

* **outputs per input** (``step``): 1, or 2 for space-time models, which add an in-between
  frame after every input but the last, so ``n`` inputs give ``2n - 1`` outputs
  (:meth:`~StreamLayout.n_out`); output ``step · i`` restores input ``i``, output ``2i + 1`` is
  new, halfway between inputs ``i`` and ``i + 1`` (:meth:`~StreamLayout.source`).
* **context** (:meth:`~StreamLayout.context`): input frames a run needs on each side of the
  inputs it owns. Chunked kinds take ``overlap`` (at least ``step - 1`` on the right: a chunk's
  last in-between frame needs the next input); a window model needs half its window
  (``max(c, N - 1 - c)`` for centre index ``c`` of ``N`` frames).
* **ownership** (:meth:`~StreamLayout.owned`): the outputs a run of inputs ``[c0, c1)`` owns when
  the stream is cut into consecutive runs: ``[step · c0, step · c1)``, the final run ending at the
  stream's last output. Concatenating the owned outputs of consecutive runs gives every output
  of the whole stream once, in order.

:func:`stvsr.infer.runner.restore_stream` (chunks), :mod:`stvsr.infer.segments` and
:mod:`stvsr.infer.engine` (resumable segments of ``stvsr upscale``), :mod:`stvsr.infer.execute`
(labelling a segment's outputs) and :mod:`stvsr.eval.protocols` (scoring) all use it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from stvsr.errors import StvsrError

__all__ = ["KINDS", "StreamLayout", "layout_of"]

KINDS = ("recurrent", "window", "spacetime")


@dataclass(frozen=True)
class StreamLayout:
    """Layout of a model kind; ``reach`` is a window model's context (0 for chunked kinds)."""

    kind: str
    reach: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise StvsrError(f"model kind {self.kind!r} cannot be run on a video")

    @property
    def step(self) -> int:
        """Outputs per input: 2 for space-time models (input, then in-between), else 1."""
        return 2 if self.kind == "spacetime" else 1

    @property
    def chunked(self) -> bool:
        """Whether the stream is cut into chunks (recurrent, space-time) or slid over (window)."""
        return self.kind != "window"

    def n_out(self, n: int) -> int:
        """Outputs of a stream of ``n >= 1`` inputs: ``n``, or ``2n - 1`` for space-time."""
        return self.step * n - (self.step - 1) if n > 0 else 0

    def output_of(self, i: int) -> int:
        """The output index that restores input ``i``."""
        return self.step * i

    def source(self, j: int) -> tuple[str, int]:
        """What output ``j`` is: ``("frame", i)`` restores input ``i``; ``("mid", i)`` is the new
        frame halfway between inputs ``i`` and ``i + 1``."""
        i, new = divmod(j, self.step)
        return ("mid" if new else "frame"), i

    def context(self, overlap: int) -> tuple[int, int]:
        """Input frames needed left and right of the inputs a run owns."""
        if not self.chunked:
            return self.reach, self.reach
        return overlap, max(overlap, self.step - 1)

    def owned(self, c0: int, c1: int, *, last: bool) -> range:
        """Outputs owned by the run of inputs ``[c0, c1)`` (``last``: it ends the stream)."""
        return range(self.step * c0, self.n_out(c1) if last else self.step * c1)


def layout_of(model: nn.Module) -> StreamLayout:
    """The :class:`StreamLayout` of ``model`` (its ``kind``; a window model's ``num_frames`` and
    ``center_frame_idx``)."""
    kind = getattr(model, "kind", None)
    if kind == "window":
        nf = int(model.num_frames)
        centre = int(getattr(model, "center_frame_idx", nf // 2))
        return StreamLayout(kind, reach=max(centre, nf - 1 - centre))
    if kind not in KINDS:
        raise StvsrError(f"model kind {kind!r} cannot be run on a video")
    return StreamLayout(kind)
