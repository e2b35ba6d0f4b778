"""EDVR's modules (Wang et al., CVPR-W 2019): pyramid-cascading-deformable (PCD) alignment,
temporal-spatial attention (TSA) fusion and the predeblur module. Parameter names follow
BasicSR. Assembled into the network by :mod:`stvsr.models.edvr`.

Each forward is the paper's computation, written with plain module calls
(:func:`~stvsr.ops.fused.conv_act` is ``act(conv(x) + add)``). The equivalent but reorganised
computations of fast inference (split PCD offset convs with cached terms, TSA frame by frame,
in-place tails) live in :mod:`stvsr.infer.optimize_edvr`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from stvsr.models.blocks import ResidualBlockNoBN
from stvsr.ops.dcn import DCNv2Pack
from stvsr.ops.fused import conv_act

__all__ = [
    "PCDAlignment",
    "TSAFusion",
    "PredeblurModule",
    "Pyramid",
    "conv_layer",
    "leaky_relu",
    "up2",
]

Pyramid = tuple[Tensor, Tensor, Tensor]


def up2(x: Tensor) -> Tensor:
    """Bilinear ×2, ``align_corners=False``."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def leaky_relu() -> nn.LeakyReLU:
    """LeakyReLU(0.1), out of place (a forward hook may keep the conv output it follows)."""
    return nn.LeakyReLU(negative_slope=0.1)


def conv_layer(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    """A ``k``×``k`` conv, ``k // 2`` padding: ``(B, cin, H, W) -> (B, cout, H/s, W/s)``."""
    return nn.Conv2d(cin, cout, k, stride, k // 2)


def dcn_offsets_contiguous(pack: DCNv2Pack, x: Tensor, feat: Tensor) -> Tensor:
    """``pack(x, feat)``; for batches > 1 the offset features go in NCHW-contiguous, because the
    DCN op views its offsets as ``(B * dg, ...)``, which channels-last offsets do not allow."""
    if feat.shape[0] > 1 and not feat.is_contiguous():
        feat = feat.contiguous()
    return pack(x, feat)


class PCDAlignment(nn.Module):
    """Pyramid, cascading and deformable alignment of one neighbour to the reference.

    ``forward(nbr, ref)``: two pyramids ``[l1, l2, l3]`` with ``l_k`` of shape
    ``(B, C, H / 2^(k-1), W / 2^(k-1))`` -> aligned ``(B, C, H, W)``.
    """

    def __init__(self, num_feat: int = 64, deformable_groups: int = 8) -> None:
        super().__init__()
        c = num_feat
        self.offset_conv1 = nn.ModuleDict()
        self.offset_conv2 = nn.ModuleDict()
        self.offset_conv3 = nn.ModuleDict()
        self.dcn_pack = nn.ModuleDict()
        self.feat_conv = nn.ModuleDict()
        for i in (3, 2, 1):
            lv = f"l{i}"
            self.offset_conv1[lv] = conv_layer(2 * c, c)
            if i == 3:
                self.offset_conv2[lv] = conv_layer(c, c)
            else:
                self.offset_conv2[lv] = conv_layer(2 * c, c)
                self.offset_conv3[lv] = conv_layer(c, c)
            self.dcn_pack[lv] = DCNv2Pack(c, c, 3, padding=1, deformable_groups=deformable_groups)
            if i < 3:
                self.feat_conv[lv] = conv_layer(2 * c, c)
        self.cas_offset_conv1 = conv_layer(2 * c, c)
        self.cas_offset_conv2 = conv_layer(c, c)
        self.cas_dcnpack = DCNv2Pack(c, c, 3, padding=1, deformable_groups=deformable_groups)
        self.lrelu = leaky_relu()

    def forward(self, nbr: Sequence[Tensor], ref: Sequence[Tensor]) -> Tensor:
        """Align ``nbr`` to ``ref`` (coarse to fine over the pyramid, then a cascading DCN)."""
        up_offset: Tensor | None = None
        up_feat: Tensor | None = None
        feat = nbr[0]
        for i in (3, 2, 1):
            lv = f"l{i}"
            offset = self.lrelu(self.offset_conv1[lv](torch.cat([nbr[i - 1], ref[i - 1]], 1)))
            if i == 3:
                offset = conv_act(self.offset_conv2[lv], offset, self.lrelu)
            else:
                assert up_offset is not None and up_feat is not None
                offset = conv_act(
                    self.offset_conv2[lv], torch.cat([offset, up_offset.to(offset.dtype)], 1),
                    self.lrelu,
                )
                offset = conv_act(self.offset_conv3[lv], offset, self.lrelu)
            feat = dcn_offsets_contiguous(self.dcn_pack[lv], nbr[i - 1], offset)
            if i < 3:
                # no activation after feat_conv at l1
                feat = conv_act(self.feat_conv[lv], torch.cat([feat, up_feat.to(feat.dtype)], 1),
                                self.lrelu if i > 1 else None)
            else:
                feat = self.lrelu(feat)
            if i > 1:
                up_offset = up2(offset) * 2  # offsets double with the resolution
                up_feat = up2(feat)
        offset = self.lrelu(self.cas_offset_conv1(torch.cat([feat, ref[0]], 1)))
        offset = conv_act(self.cas_offset_conv2, offset, self.lrelu)
        return self.lrelu(dcn_offsets_contiguous(self.cas_dcnpack, feat, offset))


class TSAFusion(nn.Module):
    """Temporal and spatial attention fusion.

    ``forward(aligned)``: list of ``T`` aligned features ``(B, C, H, W)`` (H, W multiples of 4)
    -> fused ``(B, C, H, W)``. The temporal correlation is computed in fp32 (fp64 for a float64
    model) whatever the autocast dtype.
    """

    def __init__(self, num_feat: int = 64, num_frame: int = 5, center_frame_idx: int = 2) -> None:
        super().__init__()
        c = num_feat
        self.center_frame_idx = center_frame_idx
        self.temporal_attn1 = conv_layer(c, c)
        self.temporal_attn2 = conv_layer(c, c)
        self.feat_fusion = conv_layer(num_frame * c, c, 1)
        self.spatial_attn1 = conv_layer(num_frame * c, c, 1)
        self.spatial_attn2 = conv_layer(2 * c, c, 1)
        self.spatial_attn3 = conv_layer(c, c)
        self.spatial_attn4 = conv_layer(c, c, 1)
        self.spatial_attn5 = conv_layer(c, c)
        self.spatial_attn_l1 = conv_layer(c, c, 1)
        self.spatial_attn_l2 = conv_layer(2 * c, c)
        self.spatial_attn_l3 = conv_layer(c, c)
        self.spatial_attn_add1 = conv_layer(c, c, 1)
        self.spatial_attn_add2 = conv_layer(c, c, 1)
        self.lrelu = leaky_relu()

    @staticmethod
    def _pool_pair(x: Tensor) -> Tensor:
        """``cat(maxpool3x3s2(x), avgpool3x3s2(x))`` with padding 1 (count_include_pad)."""
        return torch.cat([F.max_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 3, 2, 1)], dim=1)

    def weighted_frames(self, aligned: Sequence[Tensor]) -> Tensor:
        """Temporal attention: ``cat_t(aligned[t] * sigmoid(<emb_t, emb_ref>))``, ``T`` maps
        ``(B, C, H, W)`` -> ``(B, T*C, H, W)`` with frame-major channels."""
        t = len(aligned)
        b = aligned[0].shape[0]
        emb_ref = conv_act(self.temporal_attn1, aligned[self.center_frame_idx])
        cdt = torch.promote_types(emb_ref.dtype, torch.float32)  # correlation: fp32 or fp64
        emb_ref = emb_ref.to(cdt)
        stack = torch.cat(list(aligned), dim=0)  # (T*B, C, H, W), frame-major
        emb = self.temporal_attn2(stack).to(cdt)
        # per-pixel correlation with the centre, summed over channels in fp32 (T*B, 1, H, W)
        corr = (emb.unflatten(0, (t, b)) * emb_ref).sum(dim=2, keepdim=True).flatten(0, 1)
        prob = torch.sigmoid(corr).to(stack.dtype)
        weighted = (stack * prob).split(b, dim=0)
        return torch.cat(weighted, dim=1)  # (B, T*C, H, W), frame-major channels

    @staticmethod
    def modulate(feat: Tensor, attn: Tensor, attn_add: Tensor) -> Tensor:
        """Spatial attention applied to the fused features: ``feat * sigmoid(attn) * 2 +
        attn_add``, all ``(B, C, H, W)``."""
        return feat * torch.sigmoid(attn) * 2 + attn_add

    def forward(self, aligned: Sequence[Tensor]) -> Tensor:
        feat_in = self.weighted_frames(aligned)
        feat = conv_act(self.feat_fusion, feat_in, self.lrelu)
        attn = conv_act(self.spatial_attn1, feat_in, self.lrelu)
        attn = conv_act(self.spatial_attn2, self._pool_pair(attn), self.lrelu)
        level = conv_act(self.spatial_attn_l1, attn, self.lrelu)
        level = conv_act(self.spatial_attn_l2, self._pool_pair(level), self.lrelu)
        level = up2(conv_act(self.spatial_attn_l3, level, self.lrelu))
        attn = conv_act(self.spatial_attn3, attn, self.lrelu) + level
        attn = up2(conv_act(self.spatial_attn4, attn, self.lrelu))
        attn = conv_act(self.spatial_attn5, attn)  # no activation
        attn_add = conv_act(
            self.spatial_attn_add2, conv_act(self.spatial_attn_add1, attn, self.lrelu)
        )
        return self.modulate(feat, attn, attn_add)


class PredeblurModule(nn.Module):
    """Strided residual pyramid that pre-deblurs each frame (EDVR's deblurring front end).

    ``(N, 3, H, W) -> (N, C, H, W)``, or ``(N, C, H/4, W/4)`` with ``hr_in``.
    H, W multiples of 4 (16 with ``hr_in``).
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, hr_in: bool = False) -> None:
        super().__init__()
        c = num_feat
        self.hr_in = hr_in
        self.conv_first = conv_layer(num_in_ch, c)
        if hr_in:
            self.stride_conv_hr1 = conv_layer(c, c, 3, 2)
            self.stride_conv_hr2 = conv_layer(c, c, 3, 2)
        self.stride_conv_l2 = conv_layer(c, c, 3, 2)
        self.stride_conv_l3 = conv_layer(c, c, 3, 2)
        self.resblock_l3 = ResidualBlockNoBN(num_feat=c)
        self.resblock_l2_1 = ResidualBlockNoBN(num_feat=c)
        self.resblock_l2_2 = ResidualBlockNoBN(num_feat=c)
        self.resblock_l1 = nn.ModuleList([ResidualBlockNoBN(num_feat=c) for _ in range(5)])
        self.lrelu = leaky_relu()

    def forward(self, x: Tensor) -> Tensor:
        l1 = self.lrelu(self.conv_first(x))
        if self.hr_in:
            l1 = self.lrelu(self.stride_conv_hr2(self.lrelu(self.stride_conv_hr1(l1))))
        l2 = self.lrelu(self.stride_conv_l2(l1))
        l3 = self.lrelu(self.stride_conv_l3(l2))
        l3 = up2(self.resblock_l3(l3))
        l2 = up2(self.resblock_l2_2(self.resblock_l2_1(l2) + l3))
        l1 = self.resblock_l1[1](self.resblock_l1[0](l1)) + l2
        for blk in self.resblock_l1[2:]:
            l1 = blk(l1)
        return l1
