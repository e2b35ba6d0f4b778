"""EDVR's modules (Wang et al., CVPR-W 2019): pyramid-cascading-deformable (PCD) alignment,
temporal-spatial attention (TSA) fusion and the predeblur module. Parameter names follow
BasicSR. Assembled into the network by :mod:`stvsr.models.edvr`.

The forward passes are plain module calls (:func:`~stvsr.ops.fused.conv_act` is
``act(conv(x) + add)``); inside :func:`stvsr.infer.optimize`'s fast path they use fused kernels
and, where marked, reorganised but equivalent computations (split PCD offset convs, TSA written
frame by frame, in-place tails).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from stvsr.models.blocks import ResidualBlockNoBN
from stvsr.ops.dcn import DCNv2Pack
from stvsr.ops.fused import conv_act, conv_part, fast_enabled, runs_as_module

__all__ = [
    "PCDAlignment",
    "TSAFusion",
    "PredeblurModule",
    "FeaturePyramid",
    "Pyramid",
]

Pyramid = tuple[Tensor, Tensor, Tensor]


def _up2(x: Tensor) -> Tensor:
    """Bilinear ×2, ``align_corners=False``."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def _lrelu() -> nn.LeakyReLU:
    """LeakyReLU(0.1), out of place (a forward hook may keep the conv output it follows)."""
    return nn.LeakyReLU(negative_slope=0.1)


class FeaturePyramid(tuple):
    """``(l1, l2, l3)`` of one frame (a plain tuple to its users) that can also carry per-frame
    PCD terms computed on the fast path of :meth:`EDVR.fuse_and_reconstruct` (cached in
    ``__dict__``), so that a frame shared by several windows gets them computed once."""


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, k // 2)


def _dcn(pack: DCNv2Pack, x: Tensor, feat: Tensor) -> Tensor:
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
            self.offset_conv1[lv] = _conv(2 * c, c)
            if i == 3:
                self.offset_conv2[lv] = _conv(c, c)
            else:
                self.offset_conv2[lv] = _conv(2 * c, c)
                self.offset_conv3[lv] = _conv(c, c)
            self.dcn_pack[lv] = DCNv2Pack(c, c, 3, padding=1, deformable_groups=deformable_groups)
            if i < 3:
                self.feat_conv[lv] = _conv(2 * c, c)
        self.cas_offset_conv1 = _conv(2 * c, c)
        self.cas_offset_conv2 = _conv(c, c)
        self.cas_dcnpack = DCNv2Pack(c, c, 3, padding=1, deformable_groups=deformable_groups)
        self.lrelu = _lrelu()

    # Fast path: the first offset convs see ``cat(nbr, ref)``. A conv over a channel
    # concatenation is the sum of two convs over the halves, ``W·cat(a, b) = W[:, :C]·a +
    # W[:, C:]·b`` (exact up to float summation order), so the reference half (with the bias) is
    # computed once per window instead of once per neighbour, and the neighbour half once per
    # frame when the pyramid is reused by several windows (cached video inference). Saves 4 of 5
    # (window) or all (cached) reference-half convs: ~39 GFLOP per window for EDVR-M at 180x320.
    def split_convs(self) -> bool:
        """Whether to split the convs over ``cat(nbr, ref)`` (fast path, unless one of them must
        run as a module: :func:`~stvsr.ops.fused.runs_as_module`)."""
        convs = (*self.offset_conv1.values(), self.cas_offset_conv1)
        return fast_enabled() and not any(runs_as_module(m) for m in convs)

    def nbr_terms(self, nbr: Sequence[Tensor]) -> list[Tensor]:
        """Neighbour halves of ``offset_conv1`` at l1, l2, l3 (no bias), shaped like ``nbr``."""
        c = nbr[0].shape[1]
        return [
            conv_part(self.offset_conv1[f"l{i}"], nbr[i - 1], slice(0, c), with_bias=False)
            for i in (1, 2, 3)
        ]

    def ref_terms(self, ref: Sequence[Tensor]) -> list[Tensor]:
        """Reference halves (with bias) of ``offset_conv1`` at l1, l2, l3 and of
        ``cas_offset_conv1``: four ``(B, C, h_k, w_k)`` maps."""
        c = ref[0].shape[1]
        half = slice(c, 2 * c)
        out = [conv_part(self.offset_conv1[f"l{i}"], ref[i - 1], half) for i in (1, 2, 3)]
        return out + [conv_part(self.cas_offset_conv1, ref[0], half)]

    def forward(
        self,
        nbr: Sequence[Tensor],
        ref: Sequence[Tensor],
        nbr_terms: Sequence[Tensor] | None = None,
        ref_terms: Sequence[Tensor] | None = None,
    ) -> Tensor:
        """Align ``nbr`` to ``ref``. On the fast path (:meth:`split_convs`, or when
        ``nbr_terms``/``ref_terms`` from :meth:`nbr_terms` / :meth:`ref_terms` are passed) the
        convs over ``cat(nbr, ref)`` are computed as the sum of their two halves."""
        split = nbr_terms is not None or ref_terms is not None or self.split_convs()
        nt = rt = None
        if split:
            nt = self.nbr_terms(nbr) if nbr_terms is None else nbr_terms
            rt = self.ref_terms(ref) if ref_terms is None else ref_terms
        up_offset: Tensor | None = None
        up_feat: Tensor | None = None
        feat = nbr[0]
        for i in (3, 2, 1):
            lv = f"l{i}"
            if nt is not None and rt is not None:
                r = rt[i - 1]
                offset = self.lrelu(nt[i - 1].to(r.dtype) + r)
            else:
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
            feat = _dcn(self.dcn_pack[lv], nbr[i - 1], offset)
            if i < 3:
                # no activation after feat_conv at l1
                feat = conv_act(self.feat_conv[lv], torch.cat([feat, up_feat.to(feat.dtype)], 1),
                                self.lrelu if i > 1 else None)
            else:
                feat = self.lrelu(feat)
            if i > 1:
                up_offset = _up2(offset) * 2  # offsets double with the resolution
                up_feat = _up2(feat)
        if rt is not None:
            c = nbr[0].shape[1]
            offset = conv_part(self.cas_offset_conv1, feat, slice(0, c), with_bias=False,
                               act=self.lrelu, add=rt[3])
        else:
            offset = self.lrelu(self.cas_offset_conv1(torch.cat([feat, ref[0]], 1)))
        offset = conv_act(self.cas_offset_conv2, offset, self.lrelu)
        return self.lrelu(_dcn(self.cas_dcnpack, feat, offset))


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
        self.temporal_attn1 = _conv(c, c)
        self.temporal_attn2 = _conv(c, c)
        self.feat_fusion = _conv(num_frame * c, c, 1)
        self.spatial_attn1 = _conv(num_frame * c, c, 1)
        self.spatial_attn2 = _conv(2 * c, c, 1)
        self.spatial_attn3 = _conv(c, c)
        self.spatial_attn4 = _conv(c, c, 1)
        self.spatial_attn5 = _conv(c, c)
        self.spatial_attn_l1 = _conv(c, c, 1)
        self.spatial_attn_l2 = _conv(2 * c, c)
        self.spatial_attn_l3 = _conv(c, c)
        self.spatial_attn_add1 = _conv(c, c, 1)
        self.spatial_attn_add2 = _conv(c, c, 1)
        self.lrelu = _lrelu()

    @staticmethod
    def _pool_pair(x: Tensor) -> Tensor:
        """``cat(maxpool3x3s2(x), avgpool3x3s2(x))`` with padding 1 (count_include_pad)."""
        return torch.cat([F.max_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 3, 2, 1)], dim=1)

    def _weighted_frames(self, aligned: Sequence[Tensor]) -> Tensor:
        """``cat_t(aligned[t] * sigmoid(<emb_t, emb_ref>))``: ``(B, T*C, H, W)``, frame-major
        channels, in ``aligned``'s memory format."""
        t = len(aligned)
        a0 = aligned[0]
        b, c, h, w = a0.shape
        emb_ref = conv_act(self.temporal_attn1, aligned[self.center_frame_idx])
        cdt = torch.promote_types(emb_ref.dtype, torch.float32)  # correlation: fp32 or fp64
        emb_ref = emb_ref.to(cdt)
        if fast_enabled() and not torch.is_grad_enabled():
            # fast path: frame by frame, written straight into the concatenation: no (T*B, C,
            # H, W) stack, no separate product/cat/re-layout passes (same per-element maths)
            cl = a0.is_contiguous(memory_format=torch.channels_last) and not a0.is_contiguous()
            fmt = torch.channels_last if cl else torch.contiguous_format
            feat_in = torch.empty(b, t * c, h, w, dtype=a0.dtype, device=a0.device,
                                  memory_format=fmt)
            for i, a in enumerate(aligned):
                emb = conv_act(self.temporal_attn2, a).to(cdt)
                corr = (emb * emb_ref).sum(dim=1, keepdim=True)
                prob = torch.sigmoid_(corr).to(a.dtype)
                torch.mul(a, prob, out=feat_in[:, i * c : (i + 1) * c])
            return feat_in
        stack = torch.cat(list(aligned), dim=0)  # (T*B, C, H, W), frame-major
        emb = self.temporal_attn2(stack).to(cdt)
        # per-pixel correlation with the centre, summed over channels in fp32 (T*B, 1, H, W)
        corr = (emb.unflatten(0, (t, b)) * emb_ref).sum(dim=2, keepdim=True).flatten(0, 1)
        prob = torch.sigmoid(corr).to(stack.dtype)
        weighted = (stack * prob).split(b, dim=0)
        feat_in = torch.cat(weighted, dim=1)  # (B, T*C, H, W), frame-major channels
        if stack.is_contiguous(memory_format=torch.channels_last) and not stack.is_contiguous():
            feat_in = feat_in.contiguous(memory_format=torch.channels_last)
        return feat_in

    def forward(self, aligned: Sequence[Tensor]) -> Tensor:
        feat_in = self._weighted_frames(aligned)
        feat = conv_act(self.feat_fusion, feat_in, self.lrelu)
        attn = conv_act(self.spatial_attn1, feat_in, self.lrelu)
        attn = conv_act(self.spatial_attn2, self._pool_pair(attn), self.lrelu)
        level = conv_act(self.spatial_attn_l1, attn, self.lrelu)
        level = conv_act(self.spatial_attn_l2, self._pool_pair(level), self.lrelu)
        level = _up2(conv_act(self.spatial_attn_l3, level, self.lrelu))
        attn = conv_act(self.spatial_attn3, attn, self.lrelu) + level
        attn = _up2(conv_act(self.spatial_attn4, attn, self.lrelu))
        attn = conv_act(self.spatial_attn5, attn)  # no activation
        attn_add = conv_act(
            self.spatial_attn_add2, conv_act(self.spatial_attn_add1, attn, self.lrelu)
        )
        if fast_enabled() and not torch.is_grad_enabled():  # same order, in place
            return feat.mul_(torch.sigmoid_(attn)).mul_(2).add_(attn_add)
        return feat * torch.sigmoid(attn) * 2 + attn_add


class PredeblurModule(nn.Module):
    """Strided residual pyramid that pre-deblurs each frame (EDVR's deblurring front end).

    ``(N, 3, H, W) -> (N, C, H, W)``, or ``(N, C, H/4, W/4)`` with ``hr_in``.
    H, W multiples of 4 (16 with ``hr_in``).
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, hr_in: bool = False) -> None:
        super().__init__()
        c = num_feat
        self.hr_in = hr_in
        self.conv_first = _conv(num_in_ch, c)
        if hr_in:
            self.stride_conv_hr1 = _conv(c, c, 3, 2)
            self.stride_conv_hr2 = _conv(c, c, 3, 2)
        self.stride_conv_l2 = _conv(c, c, 3, 2)
        self.stride_conv_l3 = _conv(c, c, 3, 2)
        self.resblock_l3 = ResidualBlockNoBN(num_feat=c)
        self.resblock_l2_1 = ResidualBlockNoBN(num_feat=c)
        self.resblock_l2_2 = ResidualBlockNoBN(num_feat=c)
        self.resblock_l1 = nn.ModuleList([ResidualBlockNoBN(num_feat=c) for _ in range(5)])
        self.lrelu = _lrelu()

    def forward(self, x: Tensor) -> Tensor:
        l1 = self.lrelu(self.conv_first(x))
        if self.hr_in:
            l1 = self.lrelu(self.stride_conv_hr2(self.lrelu(self.stride_conv_hr1(l1))))
        l2 = self.lrelu(self.stride_conv_l2(l1))
        l3 = self.lrelu(self.stride_conv_l3(l2))
        l3 = _up2(self.resblock_l3(l3))
        l2 = _up2(self.resblock_l2_2(self.resblock_l2_1(l2) + l3))
        l1 = self.resblock_l1[1](self.resblock_l1[0](l1)) + l2
        for blk in self.resblock_l1[2:]:
            l1 = blk(l1)
        return l1
