"""Self-ensemble: average a model's outputs over flipped / transposed (and time-reversed) inputs.

Every stvsr network is equivariant in design, not in its weights: flipping a clip left-right,
running the model and flipping the output back gives a slightly different, equally valid
restoration. Averaging the ``k`` dihedral variants (identity, flips, transposes) — and, for video
models, the time-reversed clip as well — cancels part of each run's error. It costs ``k`` (``2k``
with time reversal) forward passes; papers mark such results with a "+" (e.g. EDVR+) and
published single-model numbers are without it.

:class:`SelfEnsemble` wraps any model of the stvsr contract (``kind`` ``"recurrent"``,
``"window"`` or ``"spacetime"``; input ``(B, T, 3, h, w)``) and keeps that contract, so it runs
through :func:`stvsr.infer.runner.restore_stream` like any model (window models then take the
per-window path, without the per-frame feature cache).
"""

from __future__ import annotations

from torch import Tensor, nn

from stvsr.errors import StvsrError

__all__ = ["DIHEDRAL", "SelfEnsemble", "self_ensemble"]

# (flip width, flip height, transpose) for the 8 symmetries of the square, in the order taken:
# a smaller k uses a prefix (2: + left-right, 4: + up-down flips, 8: + transposes).
DIHEDRAL: tuple[tuple[bool, bool, bool], ...] = (
    (False, False, False), (True, False, False), (False, True, False), (True, True, False),
    (False, False, True), (True, False, True), (False, True, True), (True, True, True),
)


def _forward_transform(x: Tensor, fw: bool, fh: bool, tr: bool) -> Tensor:
    if fw:
        x = x.flip(-1)
    if fh:
        x = x.flip(-2)
    return x.transpose(-1, -2) if tr else x


def _inverse_transform(y: Tensor, fw: bool, fh: bool, tr: bool) -> Tensor:
    if tr:
        y = y.transpose(-1, -2)
    if fh:
        y = y.flip(-2)
    return y.flip(-1) if fw else y


class SelfEnsemble(nn.Module):
    """Average ``model`` over ``k`` dihedral transforms (and time reversal when ``temporal``).

    ``forward(x)``: ``(B, T, 3, h, w)`` -> the wrapped model's output for ``x`` (e.g.
    ``(B, 3, s·h, s·w)`` for a window model, ``(B, T, 3, s·h, s·w)`` recurrent,
    ``(B, 2T-1, 3, s·h, s·w)`` space-time), as the float32 mean of the variants. With a
    transpose the model sees ``w × h`` frames, so both sizes must suit it. Time reversal is
    offered for ``recurrent`` and ``spacetime`` models (outputs reversed back) and for
    ``window`` models (the centre frame stays the centre).
    """

    def __init__(self, model: nn.Module, k: int = 8, temporal: bool = False) -> None:
        super().__init__()
        if k not in (1, 2, 4, 8):
            raise StvsrError(f"self-ensemble size must be 1, 2, 4 or 8, got {k}")
        kind = getattr(model, "kind", None)
        if kind not in ("recurrent", "window", "spacetime"):
            raise StvsrError(f"cannot self-ensemble a model of kind {kind!r}")
        if temporal and kind == "window" and not _central(model):
            raise StvsrError("time reversal needs a window model whose centre frame is central")
        self.model = model
        self.k = k
        self.temporal = temporal
        self.kind = kind
        self.scale = model.scale
        for attr in ("num_frames", "center_frame_idx", "pretrained", "weights_source"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))
        # results and resumable runs name the ensemble apart from the single model
        self.preset = f"{getattr(model, 'preset', type(model).__name__)}+se{self.variants}"

    @property
    def variants(self) -> int:
        """Forward passes per call."""
        return self.k * (2 if self.temporal else 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5:
            raise StvsrError(f"expected (B, T, 3, h, w) frames, got {tuple(x.shape)}")
        total: Tensor | None = None
        for reverse in ((False, True) if self.temporal else (False,)):
            xr = x.flip(1) if reverse else x
            for fw, fh, tr in DIHEDRAL[: self.k]:
                y = self.model(_forward_transform(xr, fw, fh, tr))
                if isinstance(y, tuple):
                    y = y[0]
                y = _inverse_transform(y.float(), fw, fh, tr)
                if reverse and self.kind != "window":  # a window model's output has no time axis
                    y = y.flip(1)
                total = y if total is None else total + y
        assert total is not None
        return total / self.variants


def self_ensemble(model: nn.Module, n: int) -> nn.Module:
    """``model`` averaged over ``n`` runs (what ``--self-ensemble N`` builds): 1 is the model
    itself; 2, 4, 8, 16 are ``n / 2`` dihedral transforms, each run forwards and time-reversed.

    Time reversal comes first because it was worth the most per run on held-out corpus clips
    (sfnet-s, windowed protocol, PSNR-Y: 1 run 33.539; 2 runs 33.573 with a left-right flip
    but 33.620 time-reversed; 8 dihedral 33.648; 16 = 8 × 2 33.661). A window model whose
    centre frame is not central gets ``n`` dihedral transforms instead.
    """
    if n == 1:
        return model
    if n not in (2, 4, 8, 16):
        raise StvsrError(f"--self-ensemble must be 1, 2, 4, 8 or 16, got {n}")
    if getattr(model, "kind", None) == "window" and not _central(model) and n < 16:
        return SelfEnsemble(model, n)
    return SelfEnsemble(model, n // 2, temporal=True)


def _central(model: nn.Module) -> bool:
    """Whether a window model restores its middle frame (so that time reversal keeps it)."""
    centre = getattr(model, "center_frame_idx", model.num_frames // 2)
    return centre == model.num_frames - 1 - centre
