"""EDVR equal to an independent formulation written here from the paper's equations, for the
plain network and for its optimized form (the speed paths of :mod:`stvsr.infer.optimize_edvr`)."""

from __future__ import annotations

# --------------------------------------------------------------------------- EDVR
# EDVR (Wang et al., CVPR-W 2019) written out from the paper's equations and the official
# layer list, in float64 with plain tensor ops and the model's own weights: its own bilinear
# resampling, pooling, pixel shuffle and modulated deformable convolution (bilinear sampling
# with zero outside, DCNv2: y(p) = Σ_k w_k · m_k · x(p + p_k + Δp_k)). Nothing below calls
# stvsr's ops, so a mistake in the model's fused / cached / in-place paths shows up here.


def _lrelu(x):
    import torch

    return torch.where(x >= 0, x, 0.1 * x)


def _conv(conv, x):
    from torch.nn import functional as F  # noqa: N812

    return F.conv2d(x, conv.weight.double(), conv.bias.double(), conv.stride, conv.padding)


def _resblocks(blocks, x):
    import torch

    for blk in blocks:
        x = x + _conv(blk.conv2, torch.relu(_conv(blk.conv1, x)))
    return x


def _upsample(x, s: int):
    """Bilinear ×``s``, ``align_corners=False``: output pixel ``o`` samples input coordinate
    ``(o + 1/2)/s - 1/2``, clamped at 0 (PyTorch's and the official code's convention)."""
    import torch

    def axis(n: int):
        src = ((torch.arange(n * s, dtype=torch.float64) + 0.5) / s - 0.5).clamp(min=0)
        i0 = src.floor().long()
        i1 = (i0 + 1).clamp(max=n - 1)
        return i0, i1, src - i0

    (y0, y1, ly), (x0, x1, lx) = axis(x.shape[-2]), axis(x.shape[-1])
    rows = x[..., y0, :] * (1 - ly)[:, None] + x[..., y1, :] * ly[:, None]
    return rows[..., x0] * (1 - lx) + rows[..., x1] * lx


def _pool_pair(x):
    """cat(max-pool, average-pool), 3×3 windows, stride 2, padding 1 (average over all 9)."""
    import torch

    h, w = x.shape[-2:]
    pad_max = torch.full((*x.shape[:-2], h + 2, w + 2), -torch.inf, dtype=x.dtype)
    pad_avg = torch.zeros_like(pad_max)
    pad_max[..., 1:-1, 1:-1] = x
    pad_avg[..., 1:-1, 1:-1] = x
    ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    wins_max = [pad_max[..., i:i + 2 * ho:2, j:j + 2 * wo:2] for i in range(3) for j in range(3)]
    wins_avg = [pad_avg[..., i:i + 2 * ho:2, j:j + 2 * wo:2] for i in range(3) for j in range(3)]
    return torch.cat([torch.stack(wins_max).amax(0), torch.stack(wins_avg).sum(0) / 9], dim=1)


def _pixel_shuffle(x, r: int = 2):
    b, c, h, w = x.shape
    return x.view(b, c // r**2, r, r, h, w).permute(0, 1, 4, 2, 5, 3).reshape(
        b, c // r**2, h * r, w * r)


def _sample_zero(img, py, px):
    """Bilinear samples of ``img (B, G, Cg, H, W)`` at ``(py, px) (B, G, Ho, Wo)``; each of the
    four neighbours outside the map counts as zero."""
    import torch

    b, g, cg, h, w = img.shape
    y0, x0 = py.floor(), px.floor()
    flat = img.reshape(b, g, cg, h * w)
    out = torch.zeros(b, g, cg, *py.shape[-2:], dtype=img.dtype)
    for dy in (0, 1):
        for dx in (0, 1):
            yy, xx = y0 + dy, x0 + dx
            wt = (1 - (py - yy).abs()) * (1 - (px - xx).abs())
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long()
            vals = flat.gather(3, idx.flatten(2)[:, :, None].expand(b, g, cg, -1))
            out += vals.view_as(out) * (wt * inside)[:, :, None]
    return out


def _dcn_pack(pack, x, feat):
    """DCNv2 as in EDVR's DCNv2Pack: offsets and mask predicted from ``feat`` (``o1, o2, m =
    chunk(conv_offset(feat), 3)``, offset = cat(o1, o2) as (dy, dx) pairs per group and kernel
    position, mask = sigmoid(m)), then ``y(p) = b + Σ_k W_k · m_k(p) · x(p + p_k + Δp_k)``."""
    import torch

    dg = pack.deformable_groups
    kh, kw = pack.kernel_size
    out = _conv(pack.conv_offset, feat)
    n = out.shape[1] // 3
    b, c, h, w = x.shape
    off = out[:, : 2 * n].reshape(b, dg, kh * kw, 2, h, w)
    mask = torch.sigmoid(out[:, 2 * n:]).reshape(b, dg, kh * kw, h, w)
    gy, gx = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                            torch.arange(w, dtype=torch.float64), indexing="ij")
    groups = x.reshape(b, dg, c // dg, h, w)
    weight = pack.weight.double()
    y = pack.bias.double().view(1, -1, 1, 1).expand(b, -1, h, w).clone()
    for k in range(kh * kw):
        i, j = divmod(k, kw)
        py = gy - pack.padding[0] + i + off[:, :, k, 0]
        px = gx - pack.padding[1] + j + off[:, :, k, 1]
        cols = (_sample_zero(groups, py, px) * mask[:, :, k, None]).reshape(b, c, h, w)
        y = y + torch.einsum("oc,bchw->bohw", weight[:, :, i, j], cols)
    return y


def _edvr_reference(model, x):
    """EDVR's output for ``x (B, T, 3, H, W)`` (H, W multiples of 4), float64."""
    import torch

    b, t = x.shape[:2]
    frames = x.flatten(0, 1)
    # feature extraction: L1 at full LR size, L2 and L3 by stride-2 convs
    l1 = _resblocks(model.feature_extraction, _lrelu(_conv(model.conv_first, frames)))
    l2 = _lrelu(_conv(model.conv_l2_2, _lrelu(_conv(model.conv_l2_1, l1))))
    l3 = _lrelu(_conv(model.conv_l3_2, _lrelu(_conv(model.conv_l3_1, l2))))
    pyr = [lv.unflatten(0, (b, t)) for lv in (l1, l2, l3)]
    c_idx = model.center_frame_idx
    pcd = model.pcd_align

    def align(i_frame: int):
        """PCD: coarse-to-fine offsets and features over the pyramid, then a cascading DCN."""
        up_off = up_feat = None
        for lvl in (3, 2, 1):
            key = f"l{lvl}"
            nbr, ref = pyr[lvl - 1][:, i_frame], pyr[lvl - 1][:, c_idx]
            off = _lrelu(_conv(pcd.offset_conv1[key], torch.cat([nbr, ref], 1)))
            if lvl == 3:
                off = _lrelu(_conv(pcd.offset_conv2[key], off))
            else:
                off = _lrelu(_conv(pcd.offset_conv2[key], torch.cat([off, up_off], 1)))
                off = _lrelu(_conv(pcd.offset_conv3[key], off))
            feat = _dcn_pack(pcd.dcn_pack[key], nbr, off)
            if lvl < 3:
                feat = _conv(pcd.feat_conv[key], torch.cat([feat, up_feat], 1))
            if lvl > 1:
                feat = _lrelu(feat)
                up_off = _upsample(off, 2) * 2  # offsets are in pixels of the finer level
                up_feat = _upsample(feat, 2)
        off = _lrelu(_conv(pcd.cas_offset_conv1, torch.cat([feat, pyr[0][:, c_idx]], 1)))
        off = _lrelu(_conv(pcd.cas_offset_conv2, off))
        return _lrelu(_dcn_pack(pcd.cas_dcnpack, feat, off))

    aligned = [align(i) for i in range(t)]
    # TSA: temporal attention = sigmoid of the per-pixel dot product of embeddings with the
    # centre's, then fusion and a two-level spatial attention pyramid
    f = model.fusion
    emb_ref = _conv(f.temporal_attn1, aligned[c_idx])
    weighted = [a * torch.sigmoid((_conv(f.temporal_attn2, a) * emb_ref).sum(1, keepdim=True))
                for a in aligned]
    feat_in = torch.cat(weighted, 1)
    feat = _lrelu(_conv(f.feat_fusion, feat_in))
    attn = _lrelu(_conv(f.spatial_attn1, feat_in))
    attn = _lrelu(_conv(f.spatial_attn2, _pool_pair(attn)))
    level = _lrelu(_conv(f.spatial_attn_l1, attn))
    level = _lrelu(_conv(f.spatial_attn_l2, _pool_pair(level)))
    level = _upsample(_lrelu(_conv(f.spatial_attn_l3, level)), 2)
    attn = _lrelu(_conv(f.spatial_attn3, attn)) + level
    attn = _upsample(_lrelu(_conv(f.spatial_attn4, attn)), 2)
    attn = _conv(f.spatial_attn5, attn)
    attn_add = _conv(f.spatial_attn_add2, _lrelu(_conv(f.spatial_attn_add1, attn)))
    fused = feat * torch.sigmoid(attn) * 2 + attn_add
    # reconstruction: residual blocks, two ×2 pixel-shuffle upsamplings, HR convs, plus the
    # bilinear ×4 upsampling of the centre input frame
    out = _resblocks(model.reconstruction, fused)
    out = _lrelu(_pixel_shuffle(_conv(model.upconv1, out)))
    out = _lrelu(_pixel_shuffle(_conv(model.upconv2, out)))
    out = _conv(model.conv_last, _lrelu(_conv(model.conv_hr, out)))
    return out + _upsample(x[:, c_idx], 4)


def _tiny_edvr():
    import torch

    from stvsr.models.edvr import EDVR

    torch.manual_seed(0)
    model = EDVR(num_feat=8, num_frame=3, deformable_groups=2, num_extract_block=1,
                 num_reconstruct_block=1).double().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            std = 1 / fan_in**0.5 if p.dim() > 1 else 0.1
            if "conv_offset" in name:
                std *= 1.5  # offsets of about a pixel, some sampling outside the map
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * std)
    return model


def test_edvr_equals_the_papers_equations_in_float64(one_thread) -> None:
    """EDVR (PCD alignment + TSA fusion + reconstruction) against the formulation above, for
    the plain inference path and the optimized one (fused convs, split and cached PCD terms,
    in-place ops) with each CPU DCN implementation, and for the autograd path."""
    import torch

    from stvsr.infer import optimize
    from stvsr.ops import native
    from stvsr.ops.dcn import ModulatedDeformConv2d

    model = _tiny_edvr()
    x = torch.rand(2, 3, 3, 8, 12, generator=torch.Generator().manual_seed(2),
                   dtype=torch.float64)
    ref = _edvr_reference(model, x)
    pack = model.pcd_align.dcn_pack["l1"]
    offsets = _conv(pack.conv_offset, torch.randn(2, 8, 8, 12, dtype=torch.float64))
    assert offsets[:, :2 * offsets.shape[1] // 3].abs().mean() > 0.3  # the DCNs really deform
    impls = ["pure"] + (["native"] if native.available() else [])
    for impl in impls:
        for m in model.modules():
            if isinstance(m, ModulatedDeformConv2d):
                m.impl = impl
        for net in (model, optimize(model, "cpu", "fp32")):
            with torch.no_grad():
                out = net(x)
            assert out.dtype == torch.float64 and out.shape == ref.shape == (2, 3, 32, 48)
            diff = (out - ref).abs().max().item()
            assert diff <= 1e-10, (impl, diff)
    for m in model.modules():
        if isinstance(m, ModulatedDeformConv2d):
            m.impl = "auto"
    out = model(x.requires_grad_())  # training path: out-of-place ops, batched attention
    assert (out.detach() - ref.detach()).abs().max().item() <= 1e-10
    assert ref.abs().mean() > 0.1 and (ref - _upsample(x[:, 1], 4)).abs().mean() > 0.1
