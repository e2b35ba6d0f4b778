"""Space-time (×4 space, ×2 time) baselines every ST-VSR report shows beside its model.

* ``stvsr-bicubic`` — MATLAB bicubic ×4 of every input frame; each in-between frame is the mean
  of its two upscaled neighbours.
* ``stvsr-twostage`` — official BasicVSR (``basicvsr-vimeo-bi``) restores the input frames; each
  in-between frame is made by flow-based interpolation of the two restored neighbours to
  ``t = 0.5`` (SpyNet from the same checkpoint, occlusion-aware blending; see
  :class:`TwoStageSTVSR`).

Both: ``kind = "spacetime"``, ``scale = 4``, ``(B, n, 3, h, w) -> (B, 2n - 1, 3, 4h, 4w)``,
outputs not clamped.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stvsr.errors import StvsrError
from stvsr.models.basicvsr import VIMEO_BI_WEIGHTS
from stvsr.models.rife import RIFE_WEIGHTS
from stvsr.ops.flow import flow_warp, midpoint_motion, resize_flow
from stvsr.registry import register_model

__all__ = ["BicubicSTVSR", "TwoStageRIFE", "TwoStageSTVSR", "build_twostage",
           "build_twostage_rife", "interleave"]


def _check_input(x: Tensor, name: str) -> None:
    if x.dim() != 5 or x.shape[2] != 3:
        raise StvsrError(f"{name} expects input (B, n, 3, h, w); got {tuple(x.shape)}")
    if x.shape[1] < 2:
        raise StvsrError(f"{name} needs at least 2 input frames, got {x.shape[1]}")


def interleave(frames: Tensor, middles: Tensor) -> Tensor:
    """``frames (B, n, ...)`` and ``middles (B, n-1, ...)`` -> ``(B, 2n-1, ...)`` (f0 m0 f1 …)."""
    b, n = frames.shape[:2]
    out = frames.new_empty(b, 2 * n - 1, *frames.shape[2:])
    out[:, 0::2] = frames
    out[:, 1::2] = middles
    return out


class BicubicSTVSR(nn.Module):
    """Trivial ST-VSR baseline: bicubic ×``scale`` in space, frame averaging in time.

    ``(B, n, 3, h, w) -> (B, 2n-1, 3, s·h, s·w)``; output ``2i`` = ``imresize(x_i, s)``
    (MATLAB-compatible), output ``2i+1`` = mean of outputs ``2i`` and ``2i+2``.
    """

    kind = "spacetime"
    num_frames = 0

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        from stvsr.ops.resize import imresize

        _check_input(x, "stvsr-bicubic")
        up = imresize(x, float(self.scale))
        return interleave(up, 0.5 * (up[:, :-1] + up[:, 1:]))


class TwoStageSTVSR(nn.Module):
    """Two-stage ST-VSR baseline: S-VSR model + flow-based frame interpolation at ``t = 0.5``.

    ``(B, n, 3, h, w) -> (B, 2n-1, 3, 4h, 4w)``. Even outputs are exactly ``vsr(x)``. For each
    neighbour pair ``(I0, I1)`` of restored HR frames:

    1. Flows ``F01 = spynet(x_i, x_{i+1})`` and ``F10 = spynet(x_{i+1}, x_i)`` (convention
       ``I0(p) ≈ I1(p + F01(p))``) are computed on the **LR inputs** (``flow_on="lr"``, the
       same resolution BasicVSR's own alignment uses, 16× cheaper than on HR; BasicVSR's own
       flows are reused, not recomputed) and resized ×4; ``flow_on="hr"`` runs SpyNet on the
       clamped HR outputs instead.
    2. Flows from the middle frame, Super-SloMo's linear combination at ``t = 1/2``:
       ``F_t0 = -¼ F01 + ¼ F10``, ``F_t1 = ¼ F01 - ¼ F10``; both neighbours are backward-warped
       to ``t`` (border padding).
    3. Occlusion-aware blending: forward–backward consistency errors
       ``e0 = |F01 + warp(F10, F01)|`` (frame-0 grid) and ``e1`` likewise are warped to ``t``;
       weights ``w_j = v_j · exp(-(e_j / sigma)²)`` where ``v_j`` is 1 where the sample lies
       inside frame ``j`` (warped ones, zero padding). ``I_t = (w0 W0 + w1 W1 + ε · mean(W0,
       W1)) / (w0 + w1 + ε)``, so pixels that are unreliable in both fall back to the plain
       average of the warped neighbours.

    Args:
        vsr: the S-VSR network (a ``kind="recurrent"`` ×4 model with a ``spynet`` submodule,
            i.e. BasicVSR).
        flow_on: ``"lr"`` or ``"hr"`` (see above).
        sigma: consistency tolerance in HR pixels.
        flow_chunk: SpyNet runs on at most this many pairs at once.
    """

    kind = "spacetime"
    scale = 4
    num_frames = 0

    def __init__(self, vsr: nn.Module, flow_on: str = "lr", sigma: float = 2.0,
                 flow_chunk: int = 8) -> None:
        super().__init__()
        if flow_on not in ("lr", "hr"):
            raise StvsrError(f"flow_on must be 'lr' or 'hr', got {flow_on!r}")
        if not hasattr(vsr, "spynet"):
            raise StvsrError("the two-stage baseline needs an S-VSR model with a .spynet")
        self.vsr = vsr
        self.flow_on = flow_on
        self.sigma = float(sigma)
        self.flow_chunk = max(1, int(flow_chunk))

    def _spynet(self, ref: Tensor, supp: Tensor) -> Tensor:
        step = self.flow_chunk
        parts = [self.vsr.spynet(ref[i:i + step], supp[i:i + step])
                 for i in range(0, ref.shape[0], step)]
        return torch.cat(parts, dim=0)

    def interpolate(self, i0: Tensor, i1: Tensor, f01: Tensor, f10: Tensor) -> Tensor:
        """Middle frame of ``i0, i1 (N, 3, H, W)`` given HR flows ``f01, f10 (N, 2, H, W)``."""
        m = midpoint_motion(f01, f10, self.sigma)
        w0i = flow_warp(i0, m.ft0, padding_mode="border")
        w1i = flow_warp(i1, m.ft1, padding_mode="border")
        eps = 1e-4
        return (m.w0 * w0i + m.w1 * w1i + eps * 0.5 * (w0i + w1i)) / (m.w0 + m.w1 + eps)

    def _restore(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """Restored inputs and, when the S-VSR model exposes them, its own LR flows."""
        if self.flow_on == "lr" and hasattr(self.vsr, "restore"):
            flows = self.vsr.compute_flows(x)
            return self.vsr.restore(x, flows), flows
        return self.vsr(x), None

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, "stvsr-twostage")
        b, n, c, h, w = x.shape
        hr, flows = self._restore(x)
        big = hr.shape[-2:]
        if flows is not None:  # BasicVSR's SpyNet flows between the LR inputs: reused
            f01 = flows[0].reshape(-1, 2, h, w)
            f10 = flows[1].reshape(-1, 2, h, w)
        else:
            if self.flow_on == "lr":
                a, z = x[:, :-1].reshape(-1, c, h, w), x[:, 1:].reshape(-1, c, h, w)
            else:
                a = hr[:, :-1].reshape(-1, c, *big).clamp(0, 1)
                z = hr[:, 1:].reshape(-1, c, *big).clamp(0, 1)
            f01 = self._spynet(a, z)
            f10 = self._spynet(z, a)
        if self.flow_on == "lr":
            f01 = resize_flow(f01, tuple(big))
            f10 = resize_flow(f10, tuple(big))
        i0 = hr[:, :-1].reshape(-1, c, *big)
        i1 = hr[:, 1:].reshape(-1, c, *big)
        mid = self.interpolate(i0, i1, f01, f10).view(b, n - 1, c, *big)
        return interleave(hr, mid)


def build_twostage(pretrained: bool = True, vsr_preset: str = "basicvsr-vimeo-bi",
                   **kwargs) -> TwoStageSTVSR:
    """``stvsr-twostage`` builder: loads ``vsr_preset`` (strictly, with its official weights,
    which must have been pulled: ``stvsr weights pull``; nothing is downloaded here) unless
    ``pretrained=False`` (random BasicVSR, for tests)."""
    from stvsr.registry import create_model

    vsr = create_model(vsr_preset, weights="default" if pretrained else None)
    return TwoStageSTVSR(vsr, **kwargs)


class TwoStageRIFE(nn.Module):
    """Two-stage ST-VSR with RIFE: S-VSR model, then RIFE between the restored frames.

    ``(B, n, 3, h, w) -> (B, 2n-1, 3, 4h, 4w)``. Even outputs are exactly ``vsr(x)``; output
    ``2i+1`` is ``rife.interpolate(clamp(y_i), clamp(y_{i+1}), ½)`` on the restored HR frames.
    """

    kind = "spacetime"
    scale = 4
    num_frames = 0

    def __init__(self, vsr: nn.Module, rife: nn.Module) -> None:
        super().__init__()
        self.vsr = vsr
        self.rife = rife

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, "stvsr-twostage-rife")
        b, n, c = x.shape[:3]
        hr = self.vsr(x)
        big = hr.shape[-2:]
        y = hr.clamp(0, 1)
        mid = self.rife.interpolate(y[:, :-1].reshape(-1, c, *big), y[:, 1:].reshape(-1, c, *big))
        return interleave(hr, mid.view(b, n - 1, c, *big))


def build_twostage_rife(pretrained: bool = True, vsr_preset: str = "basicvsr-vimeo-bi",
                        rife_preset: str = "rife") -> TwoStageRIFE:
    """``stvsr-twostage-rife`` builder: official BasicVSR + official RIFE 3.9 (strict; both
    must have been pulled, nothing is downloaded here)."""
    from stvsr.registry import create_model

    w = "default" if pretrained else None
    return TwoStageRIFE(create_model(vsr_preset, weights=w), create_model(rife_preset, weights=w))


register_model("stvsr-bicubic", BicubicSTVSR, scale=4,
               description="ST-VSR baseline: MATLAB bicubic x4, in-between = mean of neighbours")
register_model("stvsr-twostage", build_twostage, pretrained=True, parts=[VIMEO_BI_WEIGHTS],
               description="ST-VSR baseline: official BasicVSR (Vimeo BI) + SpyNet flow "
                           "interpolation with occlusion-aware blending")
register_model("stvsr-twostage-rife", build_twostage_rife, pretrained=True,
               parts=[VIMEO_BI_WEIGHTS, RIFE_WEIGHTS],
               description="ST-VSR baseline: official BasicVSR (Vimeo BI) + RIFE 3.9 between "
                           "the restored frames")
