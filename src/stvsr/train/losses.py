"""Pixel losses and the training objective of each model kind."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stvsr.train.config import LossConfig

__all__ = ["PixelLoss", "charbonnier", "compute_loss", "spacetime_loss"]


def charbonnier(pred: Tensor, target: Tensor, eps: float = 1e-3) -> Tensor:
    """Mean Charbonnier penalty ``sqrt((pred - target)² + eps²)`` over matching shapes."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def spacetime_loss(out: Tensor, structure: Tensor, gt: Tensor, lambda_s: float = 0.25) -> Tensor:
    """SFNet's training loss: Charbonnier(I, gt) + ``lambda_s`` · Charbonnier(S, gt) (ε = 1e-3).

    All three tensors ``(B, K, 3, s·h, s·w)``: the images ``I`` and structure images ``S`` of
    ``SFNet(x, return_structure=True)`` and the targets. ``lambda_s = 0.25`` is *design*
    (``docs/spec/sfnet.md``); :func:`compute_loss` computes the same with
    ``loss.structure_weight``.
    """
    return charbonnier(out, gt) + lambda_s * charbonnier(structure, gt)


class PixelLoss(nn.Module):
    """Charbonnier ``sqrt((x - y)² + eps²)``, L1 or MSE, reduced by ``mean`` or ``sum``.

    Any matching shapes, e.g. ``(B, 3, H, W)`` or ``(B, K, 3, H, W)``; returns a scalar.
    """

    def __init__(self, kind: str = "charbonnier", eps: float = 1e-3, reduction: str = "mean"):
        super().__init__()
        self.kind, self.eps, self.reduction = kind, eps, reduction

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        diff = pred.float() - target.float()
        if self.kind == "charbonnier":
            err = torch.sqrt(diff * diff + self.eps * self.eps)
        elif self.kind == "l1":
            err = diff.abs()
        else:
            err = diff * diff
        return err.sum() if self.reduction == "sum" else err.mean()


def compute_loss(model: nn.Module, kind: str, lr: Tensor, gt: Tensor, cfg: LossConfig,
                 pixel: PixelLoss) -> Tensor:
    """Forward ``model`` (possibly DDP-wrapped) on ``lr (B, T, 3, h, w)`` and score against
    ``gt``: ``(B, 3, H, W)`` (window), ``(B, T, 3, H, W)`` (recurrent) or
    ``(B, 2T-1, 3, H, W)`` (spacetime). Spacetime models add ``structure_weight ·``
    the same loss on their structure images (SFNet's ``return_structure``)."""
    if kind == "spacetime" and cfg.structure_weight > 0:
        out, structure = model(lr, return_structure=True)
        return pixel(out, gt) + cfg.structure_weight * pixel(structure, gt)
    out = model(lr)
    if out.shape != gt.shape:
        raise RuntimeError(f"model output {tuple(out.shape)} does not match the target "
                           f"{tuple(gt.shape)}; check data.mode / data.num_frames")
    return pixel(out, gt)
