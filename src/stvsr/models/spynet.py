"""SpyNet optical flow (Ranjan & Black, CVPR 2017) in BasicSR's layout, as used by BasicVSR.

Parameter and buffer names match the ``spynet.*`` entries of the official BasicVSR checkpoints:
``mean``/``std`` (ImageNet statistics, ``(1, 3, 1, 1)``) and
``basic_module.{0..5}.basic_module.{0,2,4,6,8}.{weight,bias}`` (five 7×7 convs per level).

Flow convention (shared with :func:`stvsr.ops.flow.flow_warp`)::

    flow = spynet(ref, supp)                  # (B, 2, H, W), pixels; ch 0 = x, ch 1 = y
    supp_on_ref = flow_warp(supp, flow)       # ≈ ref
    # i.e. ref(p) ≈ supp(p + flow(p)): flow points from a pixel of ``ref`` to where the same
    # content is found in ``supp``.

For frame interpolation, ``flow_warp(frame1, spynet(frame0, frame1))`` moves frame 1 onto
frame 0; a flow towards ``t`` in between is commonly approximated by scaling (e.g.
``flow_warp(frame1, 0.5 * spynet(frame0, frame1))`` takes frame-1 content half way, sampled on
frame-0 positions).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from stvsr.ops.flow import flow_warp, resize_flow

__all__ = ["SpyNet", "SpyNetBasicModule", "load_spynet"]

_LEVELS = 6


class SpyNetBasicModule(nn.Module):
    """One pyramid level: five 7×7 convs (8→32→64→32→16→2) with ReLUs between them.

    Shapes: ``(B, 8, H, W) -> (B, 2, H, W)`` (input = ref 3 + warped supp 3 + flow 2).
    """

    def __init__(self) -> None:
        super().__init__()
        chans = (8, 32, 64, 32, 16, 2)
        layers: list[nn.Module] = []
        for i in range(5):
            layers.append(nn.Conv2d(chans[i], chans[i + 1], 7, 1, 3))
            if i < 4:
                layers.append(nn.ReLU(inplace=True))
        self.basic_module = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.basic_module(x)


class SpyNet(nn.Module):
    """Coarse-to-fine flow estimator, 6 pyramid levels (BasicSR layout and computation).

    ``forward(ref, supp)`` takes two ``(B, 3, H, W)`` RGB batches in ``[0, 1]`` of any size and
    returns the ``(B, 2, H, W)`` flow in pixels (channel 0 = x, channel 1 = y) that warps
    ``supp`` onto ``ref``: ``flow_warp(supp, flow) ≈ ref``, i.e. ``ref(p) ≈ supp(p + flow(p))``.
    Inputs are resized (bilinear) to the next multiples of 32 internally and the flow is
    resized back and rescaled to the input's pixel grid.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer(
            "mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=True
        )
        self.register_buffer(
            "std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=True
        )
        self.basic_module = nn.ModuleList(SpyNetBasicModule() for _ in range(_LEVELS))

    def _pyramid(self, img: torch.Tensor) -> list[torch.Tensor]:
        """Normalised image pyramid, coarsest first; ``img`` sides are multiples of 32."""
        levels = [(img - self.mean.to(img.dtype)) / self.std.to(img.dtype)]
        for _ in range(_LEVELS - 1):
            levels.append(F.avg_pool2d(levels[-1], 2, 2, count_include_pad=False))
        return levels[::-1]

    def process(self, ref: torch.Tensor, supp: torch.Tensor) -> torch.Tensor:
        """Flow for inputs whose sides are multiples of 32: ``(B, 3, H, W) x2 -> (B, 2, H, W)``."""
        refs = self._pyramid(ref)
        supps = self._pyramid(supp)
        b, _, h0, w0 = refs[0].shape
        flow = refs[0].new_zeros(b, 2, h0, w0)
        for level, module in enumerate(self.basic_module):
            if level > 0:
                size = refs[level].shape[2:]
                flow = F.interpolate(flow, size=size, mode="bilinear", align_corners=True) * 2.0
            warped = flow_warp(supps[level], flow, padding_mode="border")
            flow = module(torch.cat([refs[level], warped, flow], dim=1)) + flow
        return flow

    def forward(self, ref: torch.Tensor, supp: torch.Tensor) -> torch.Tensor:
        """Flow warping ``supp`` onto ``ref``: ``(B, 3, H, W) x2 -> (B, 2, H, W)`` (pixels)."""
        if ref.shape != supp.shape or ref.dim() != 4 or ref.shape[1] != 3:
            raise ValueError(
                f"SpyNet expects two (B, 3, H, W) tensors of the same shape; got "
                f"{tuple(ref.shape)} and {tuple(supp.shape)}"
            )
        h, w = ref.shape[2:]
        if torch.jit.is_tracing():  # ONNX export: pad to multiples of 32 with symbolic sizes
            h32 = (torch.ceil(h / 32.0) * 32).clamp(min=32).long()
            w32 = (torch.ceil(w / 32.0) * 32).clamp(min=32).long()
            ref = F.interpolate(ref, size=(h32, w32), mode="bilinear", align_corners=False)
            supp = F.interpolate(supp, size=(h32, w32), mode="bilinear", align_corners=False)
            return resize_flow(self.process(ref, supp), (h, w), mode="bilinear",
                               align_corners=False)
        h32 = max(32, int(math.ceil(h / 32.0)) * 32)
        w32 = max(32, int(math.ceil(w / 32.0)) * 32)
        if (h32, w32) != (h, w):
            ref = F.interpolate(ref, size=(h32, w32), mode="bilinear", align_corners=False)
            supp = F.interpolate(supp, size=(h32, w32), mode="bilinear", align_corners=False)
        flow = self.process(ref, supp)
        return resize_flow(flow, (h, w), mode="bilinear", align_corners=False)


def load_spynet(weights: str | Path = "basicvsr-vimeo-bi") -> SpyNet:
    """A pretrained :class:`SpyNet` (eval mode) taken from a BasicVSR checkpoint.

    Args:
        weights: a registered weights name (its verified cached file: pulled beforehand with
            ``stvsr weights pull``, never downloaded here) or the path of a BasicVSR
            checkpoint; its ``spynet.*`` entries are loaded strictly.
    """
    from stvsr import weights as wlib
    from stvsr.registry import resolve_weights

    path = resolve_weights(weights)
    state = wlib.read_checkpoint(path)
    sub = {k[len("spynet."):]: v for k, v in state.items() if k.startswith("spynet.")}
    if not sub:
        sub = state  # a bare SpyNet state dict
    net = SpyNet()
    wlib.load_state_dict_strict(net, sub, source=f"{path} (spynet.*)")
    return net.eval()
