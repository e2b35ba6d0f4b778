"""Modulated deformable convolution: pure PyTorch vs a naive float64 loop reference."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch.nn import functional as F  # noqa: N812

from stvsr.errors import StvsrError
from stvsr.ops import dcn, dcn_sampling
from stvsr.ops.dcn import DCNv2Pack, ModulatedDeformConv2d, modulated_deform_conv2d


def _bilinear_zero(img: torch.Tensor, y: float, x: float) -> float:
    """Bilinear sample of a 2-D map at (y, x); each corner outside the map reads zero."""
    h, w = img.shape
    y0, x0 = math.floor(y), math.floor(x)
    ly, lx = y - y0, x - x0
    total = 0.0
    for yy, wy in ((y0, 1.0 - ly), (y0 + 1, ly)):
        for xx, wx in ((x0, 1.0 - lx), (x0 + 1, lx)):
            if 0 <= yy < h and 0 <= xx < w:
                total += wy * wx * float(img[yy, xx])
    return total


def naive_mdcn(x, offset, mask, weight, bias, stride, padding, dilation, dg):
    """Ground truth: explicit loops over output pixels, kernel positions and channels (float64)."""
    b, cin, _, _ = x.shape
    cout, cin_g, kh, kw = weight.shape
    groups = cin // cin_g
    ho, wo = offset.shape[-2:]
    cpg = cin // dg
    out = torch.zeros(b, cout, ho, wo, dtype=torch.float64)
    for n in range(b):
        for oy in range(ho):
            for ox in range(wo):
                # sampled column: (cin, kh*kw)
                col = torch.zeros(cin, kh * kw, dtype=torch.float64)
                for c in range(cin):
                    g = c // cpg
                    for i in range(kh):
                        for j in range(kw):
                            k = i * kw + j
                            dy = float(offset[n, g * 2 * kh * kw + 2 * k, oy, ox])
                            dx = float(offset[n, g * 2 * kh * kw + 2 * k + 1, oy, ox])
                            m = float(mask[n, g * kh * kw + k, oy, ox])
                            py = oy * stride - padding + i * dilation + dy
                            px = ox * stride - padding + j * dilation + dx
                            col[c, k] = m * _bilinear_zero(x[n, c], py, px)
                for co in range(cout):
                    gi = co // (cout // groups)
                    cs = col[gi * cin_g : (gi + 1) * cin_g]
                    val = float((weight[co].reshape(cin_g, -1).double() * cs).sum())
                    out[n, co, oy, ox] = val + (float(bias[co]) if bias is not None else 0.0)
    return out


def _out_size(size: int, k: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def _random_case(seed, b, cin, cout, h, w, k, stride, padding, dilation, dg, scale=3.0, groups=1):
    g = torch.Generator().manual_seed(seed)
    ho = _out_size(h, k, stride, padding, dilation)
    wo = _out_size(w, k, stride, padding, dilation)
    x = torch.randn(b, cin, h, w, generator=g, dtype=torch.float64)
    offset = torch.randn(b, 2 * dg * k * k, ho, wo, generator=g, dtype=torch.float64) * scale
    mask = torch.rand(b, dg * k * k, ho, wo, generator=g, dtype=torch.float64)
    weight = torch.randn(cout, cin // groups, k, k, generator=g, dtype=torch.float64)
    bias = torch.randn(cout, generator=g, dtype=torch.float64)
    return x, offset, mask, weight, bias


CASES = [
    # b, cin, cout, h, w, k, stride, padding, dilation, dg
    (1, 4, 3, 5, 6, 3, 1, 1, 1, 1),
    (2, 8, 5, 7, 9, 3, 1, 1, 1, 2),
    (1, 6, 4, 9, 7, 3, 2, 0, 1, 2),
    (2, 4, 6, 8, 8, 3, 1, 1, 2, 1),
    (1, 8, 3, 6, 9, 3, 2, 1, 2, 2),
    (2, 4, 3, 5, 5, 1, 1, 0, 1, 2),
    (1, 6, 6, 7, 5, 1, 2, 1, 1, 1),
]


def _chunked(x, offset, mask, weight, bias, s, p, d, dg):
    """The pure op evaluated one output row at a time."""
    return dcn.deform_conv_pure(x, offset, mask, weight, bias, (s, s), (p, p), (d, d), dg, 1)


@pytest.mark.parametrize("case", CASES)
def test_pure_matches_naive_float64(case):
    b, cin, cout, h, w, k, s, p, d, dg = case
    x, offset, mask, weight, bias = _random_case(sum(case), b, cin, cout, h, w, k, s, p, d, dg)
    # large offsets: a good share of the samples must leave the map
    ho, wo = offset.shape[-2:]
    outside = 0
    for i in range(k):
        py = offset[:, 0::2].reshape(b, dg, k, k, ho, wo)[:, :, i] + i * d - p
        outside += int(((py < -1) | (py > h)).sum())
    assert outside > 0.1 * offset[:, 0::2].numel()
    out = modulated_deform_conv2d(x, offset, mask, weight, bias, s, p, d, dg, impl="pure")
    ref = naive_mdcn(x, offset, mask, weight, bias, s, p, d, dg)
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-10
    # row-chunked evaluation (one output row per chunk), inference and autograd code paths
    with torch.no_grad():
        chunked = _chunked(x, offset, mask, weight, bias, s, p, d, dg)
    assert (chunked - ref).abs().max().item() <= 1e-10
    xg = x.clone().requires_grad_(True)
    chunked = _chunked(xg, offset, mask, weight, bias, s, p, d, dg)
    assert (chunked - ref).abs().max().item() <= 1e-10


@pytest.mark.parametrize("batch,grad", [(1, False), (2, False), (2, True)])
def test_channels_last_inputs(batch, grad):
    """Channels-last x/offset/mask give the same numbers, and a channels-last result."""
    x, offset, mask, weight, bias = _random_case(11, batch, 8, 5, 7, 9, 3, 1, 1, 1, 2)
    ref = naive_mdcn(x, offset, mask, weight, bias, 1, 1, 1, 2)
    cl = torch.channels_last
    xc, oc, mc = (t.contiguous(memory_format=cl) for t in (x, offset, mask))
    xc.requires_grad_(grad)
    for out in (
        modulated_deform_conv2d(xc, oc, mc, weight, bias, 1, 1, 1, 2),
        _chunked(xc, oc, mc, weight, bias, 1, 1, 1, 2),
    ):
        assert out.is_contiguous(memory_format=cl)
        assert (out - ref).abs().max().item() <= 1e-10
    if grad:
        out.sum().backward()
        xg = x.clone().requires_grad_(True)
        modulated_deform_conv2d(xg, offset, mask, weight, bias, 1, 1, 1, 2).sum().backward()
        assert (xc.grad - xg.grad).abs().max().item() <= 1e-10


def test_conv_groups_match_naive():
    x, offset, mask, weight, bias = _random_case(7, 1, 8, 4, 6, 6, 3, 1, 1, 1, 2, groups=2)
    out = modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, 2, impl="pure")
    ref = naive_mdcn(x, offset, mask, weight, bias, 1, 1, 1, 2)
    assert (out - ref).abs().max().item() <= 1e-10


@pytest.mark.parametrize("k,stride,padding,dilation", [(3, 1, 1, 1), (3, 2, 0, 2), (1, 1, 0, 1)])
def test_zero_offset_unit_mask_is_conv2d(k, stride, padding, dilation):
    x, offset, mask, weight, bias = _random_case(1, 2, 8, 5, 9, 11, k, stride, padding, dilation, 4)
    out = modulated_deform_conv2d(
        x, torch.zeros_like(offset), torch.ones_like(mask), weight, bias, stride, padding,
        dilation, 4,
    )
    ref = F.conv2d(x, weight, bias, stride, padding, dilation)
    assert (out - ref).abs().max().item() <= 1e-10


def _shifted_padded(x: torch.Tensor, a: int, b: int, pad: int) -> torch.Tensor:
    """``s[Y, X] = x[Y - pad + a, X - pad + b]`` (zero outside x); size ``(H + 2p, W + 2p)``."""
    big = 8 + abs(a) + abs(b)
    xp = F.pad(x, (big, big, big, big))
    h, w = x.shape[-2:]
    y0, x0 = big - pad + a, big - pad + b
    return xp[..., y0 : y0 + h + 2 * pad, x0 : x0 + w + 2 * pad]


@pytest.mark.parametrize("a,bshift", [(1, 2), (-2, 1), (0, -3)])
def test_integer_shift_equals_conv_of_shifted_input(a, bshift):
    x, offset, mask, weight, bias = _random_case(3, 1, 4, 3, 8, 9, 3, 1, 1, 1, 2)
    offset = offset.clone()
    offset[:, 0::2] = a
    offset[:, 1::2] = bshift
    out = modulated_deform_conv2d(x, offset, torch.ones_like(mask), weight, bias, 1, 1, 1, 2)
    # the deformable conv reads x[y - 1 + i + a, x - 1 + j + b], zero outside x
    ref = F.conv2d(_shifted_padded(x, a, bshift, 1), weight, bias)
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-10


def test_gradcheck_float64():
    x, offset, mask, weight, bias = _random_case(5, 1, 2, 2, 3, 3, 3, 1, 1, 1, 2, scale=1.3)
    # keep samples away from integer coordinates, where bilinear is not differentiable
    offset = offset.round() + 0.25 + 0.5 * torch.rand_like(offset)
    tensors = [t.clone().requires_grad_(True) for t in (x, offset, mask, weight, bias)]

    def fn(xx, oo, mm, ww, bb):
        return modulated_deform_conv2d(xx, oo, mm, ww, bb, 1, 1, 1, 2, impl="pure")

    def fn_chunked(xx, oo, mm, ww, bb):
        return _chunked(xx, oo, mm, ww, bb, 1, 1, 1, 2)

    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(fn_chunked, tensors, eps=1e-6, atol=1e-6, fast_mode=True)


def test_float32_close_to_float64():
    x, offset, mask, weight, bias = _random_case(9, 2, 8, 6, 12, 10, 3, 1, 1, 1, 2)
    ref = modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, 2)
    out = modulated_deform_conv2d(
        x.float(), offset.float(), mask.float(), weight.float(), bias.float(), 1, 1, 1, 2
    )
    assert out.dtype == torch.float32
    assert (out.double() - ref).abs().max().item() < 1e-4


def test_bf16_keeps_fp32_coordinates():
    """A wide map: bf16 normalised coordinates would be off by about a pixel near the edge."""
    torch.manual_seed(0)
    h, w, dg = 4, 256, 2
    x = torch.randn(1, 8, h, w).bfloat16()
    offset = torch.full((1, 2 * dg * 9, h, w), 0.5).bfloat16()  # exact in bf16
    mask = torch.rand(1, dg * 9, h, w).bfloat16()
    weight = (torch.randn(4, 8, 3, 3) * 0.3).bfloat16()
    ref = modulated_deform_conv2d(
        x.double(), offset.double(), mask.double(), weight.double(), None, 1, 1, 1, dg
    )
    out = modulated_deform_conv2d(x, offset, mask, weight, None, 1, 1, 1, dg)
    assert out.dtype == torch.bfloat16
    scale = ref.abs().max().item()
    assert (out.double() - ref).abs().max().item() < 0.03 * scale
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_ac = modulated_deform_conv2d(
            x.float(), offset.float(), mask.float(), weight.float(), None, 1, 1, 1, dg
        )
    assert (out_ac.double() - ref).abs().max().item() < 0.03 * scale


def test_module_matches_function():
    torch.manual_seed(1)
    m = ModulatedDeformConv2d(8, 5, 3, stride=1, padding=1, deformable_groups=2).double()
    x, offset, mask, _, _ = _random_case(2, 1, 8, 5, 6, 7, 3, 1, 1, 1, 2)
    out = m(x, offset, mask)
    ref = naive_mdcn(x, offset, mask, m.weight.detach(), m.bias.detach(), 1, 1, 1, 2)
    assert (out - ref).abs().max().item() <= 1e-10


def test_dcnv2pack_state_dict_and_zero_init():
    m = DCNv2Pack(64, 64, 3, padding=1, deformable_groups=8)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "weight": (64, 64, 3, 3),
        "bias": (64,),
        "conv_offset.weight": (216, 64, 3, 3),
        "conv_offset.bias": (216,),
    }
    assert m.conv_offset.weight.abs().sum() == 0 and m.conv_offset.bias.abs().sum() == 0
    # zero-initialised offsets: plain conv with the weight, scaled by mask sigmoid(0) = 0.5
    x = torch.randn(1, 64, 6, 7)
    out = m(x, torch.randn(1, 64, 6, 7))
    ref = F.conv2d(x * 0.5, m.weight, m.bias, 1, 1)
    assert (out - ref).abs().max().item() < 1e-4


def test_dcnv2pack_chunk_layout():
    """conv_offset bias alone sets a known offset/mask; o1 holds the first half of the groups."""
    dg, k = 2, 3
    m = DCNv2Pack(4, 3, 3, padding=1, deformable_groups=dg).double()
    kk = k * k
    bias = torch.zeros(3 * dg * kk, dtype=torch.float64)
    # channel layout of offset = cat(o1, o2): group g, position q -> (dy, dx) at g*18 + 2q (+1).
    # group 0 shifts every position by dy=+1, group 1 by dx=-2; masks: group 0 -> 1, group 1 -> 0
    for q in range(kk):
        bias[0 * 2 * kk + 2 * q] = 1.0  # group 0 dy  (lives in o1)
        bias[1 * 2 * kk + 2 * q + 1] = -2.0  # group 1 dx (lives in o2)
    bias[2 * dg * kk : 2 * dg * kk + kk] = 30.0  # sigmoid -> 1 for group 0
    bias[2 * dg * kk + kk :] = -30.0  # sigmoid -> 0 for group 1
    with torch.no_grad():
        m.conv_offset.bias.copy_(bias)
    x = torch.randn(1, 4, 6, 7, dtype=torch.float64)
    out = m(x, torch.zeros_like(x))
    shifted = _shifted_padded(x, 1, 0, 1)  # group 0 channels read one row below
    w = m.weight.detach().clone()
    w[:, 2:] = 0  # group 1 fully masked out
    ref = F.conv2d(shifted, w, m.bias)
    assert (out - ref).abs().max().item() < 1e-10


def test_dcnv2pack_max_offset_clamp(caplog):
    m = DCNv2Pack(4, 3, 3, padding=1, deformable_groups=1, max_offset=2.0).double()
    with torch.no_grad():
        m.conv_offset.bias[: 2 * 9] = 7.5
    x = torch.randn(1, 4, 9, 9, dtype=torch.float64)
    with caplog.at_level(logging.WARNING, logger="stvsr.ops.dcn"):
        out = m(x, x)
        m(x, x)
    assert sum("max_offset" in r.getMessage() for r in caplog.records) == 1
    mask = torch.full((1, 9, 9, 9), torch.sigmoid(torch.tensor(0.0)).item(), dtype=torch.float64)
    offset = torch.full((1, 18, 9, 9), 2.0, dtype=torch.float64)
    ref = modulated_deform_conv2d(x, offset, mask, m.weight, m.bias, 1, 1, 1, 1)
    assert (out - ref).abs().max().item() < 1e-10
    m.max_offset = None
    unclamped = m(x, x)
    assert (unclamped - out).abs().max().item() > 1e-3


def test_dcnv2pack_warns_on_large_offsets(caplog):
    m = DCNv2Pack(4, 3, 3, padding=1, deformable_groups=1)
    with torch.no_grad():
        m.conv_offset.bias[: 2 * 9] = 60.0
    with caplog.at_level(logging.WARNING, logger="stvsr.ops.dcn"):
        m(torch.randn(1, 4, 5, 5), torch.randn(1, 4, 5, 5))
    assert any("larger than 50" in r.getMessage() for r in caplog.records)


def test_errors():
    x, offset, mask, weight, bias = _random_case(0, 1, 4, 3, 5, 5, 3, 1, 1, 1, 2)
    with pytest.raises(StvsrError):
        modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, 3)
    with pytest.raises(StvsrError):
        modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, 2, impl="cuda-magic")
    if not dcn.torchvision_available():
        with pytest.raises(StvsrError):
            modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, 2, impl="torchvision")


@pytest.mark.skipif(not dcn.torchvision_available(), reason="torchvision does not import here")
def test_torchvision_matches_pure():
    x, offset, mask, weight, bias = _random_case(4, 2, 8, 5, 7, 9, 3, 1, 1, 1, 2)
    tv = modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, 2, impl="torchvision")
    pure = modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, 2, impl="pure")
    assert (tv - pure).abs().max().item() <= 1e-10


def test_torchvision_dispatch(monkeypatch):
    """The dispatch logic, with a stand-in for torchvision's op (which does not import here)."""
    calls = []

    def fake_tv(x, offset, weight, bias, stride, padding, dilation, mask):
        calls.append((x.dtype, offset.dtype, mask.dtype, torch.is_autocast_enabled("cpu")))
        dg = offset.shape[1] // (2 * weight.shape[2] * weight.shape[3])
        return dcn.deform_conv_pure(x, offset, mask, weight, bias, stride, padding, dilation, dg)

    monkeypatch.setattr(dcn, "_tv_deform_conv2d", fake_tv)
    x, offset, mask, weight, bias = _random_case(8, 1, 4, 3, 6, 7, 3, 1, 1, 1, 2)
    ref = naive_mdcn(x, offset, mask, weight, bias, 1, 1, 1, 2)
    out = modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, 2, impl="torchvision")
    assert len(calls) == 1 and (out - ref).abs().max().item() <= 1e-10
    modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, 2, impl="auto")  # CPU: pure
    assert len(calls) == 1
    args = [t.bfloat16() for t in (x, offset, mask, weight, bias)]
    out = modulated_deform_conv2d(*args, 1, 1, 1, 2, impl="torchvision")
    assert calls[-1] == (torch.float32, torch.float32, torch.float32, False)
    assert out.dtype == torch.bfloat16


def test_mixed_dtypes():
    """bf16 offsets/mask with fp32 features (autocast's offset conv): exact fp32 upcast."""
    case = _random_case(6, 1, 8, 4, 9, 9, 3, 1, 1, 1, 2)
    x, offset, mask, weight, bias = (t.float() for t in case)
    ob, mb = offset.bfloat16(), mask.bfloat16()
    for grad, impl in ((False, "pure"), (True, "pure"), (False, "auto")):
        xx = x.clone().requires_grad_(grad)
        out = modulated_deform_conv2d(xx, ob, mb, weight, bias, 1, 1, 1, 2, impl=impl)
        ref = modulated_deform_conv2d(x, ob.float(), mb.float(), weight, bias, 1, 1, 1, 2, impl)
        assert out.dtype == torch.float32
        assert (out - ref).abs().max().item() <= 1e-6
    out = modulated_deform_conv2d(x, offset.double(), mask.double(), weight, bias, 1, 1, 1, 2)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("grad", [False, True])
def test_dcnv2pack_channels_last_packed_path(monkeypatch, caplog, grad):
    """Channels-last, batch 1, no autograd: offsets and mask logits are read as one packed,
    transposed block per row chunk (several chunks here) and still match the naive reference;
    with autograd the generic path gives the same numbers; the |offset| warning still fires."""
    monkeypatch.setitem(dcn_sampling._CHUNK_BYTES, "cpu", 4000)
    torch.manual_seed(3)
    m = DCNv2Pack(8, 6, 3, padding=1, deformable_groups=2).double()
    with torch.no_grad():
        m.conv_offset.weight.normal_(0.0, 0.5)
        m.conv_offset.bias.normal_(0.0, 0.5)
    cl = torch.channels_last
    x = torch.randn(1, 8, 9, 11, dtype=torch.float64).contiguous(memory_format=cl)
    feat = torch.randn(1, 8, 9, 11, dtype=torch.float64).contiguous(memory_format=cl)
    m.weight.data = m.weight.data.contiguous(memory_format=cl)
    m.conv_offset.weight.data = m.conv_offset.weight.data.contiguous(memory_format=cl)
    with torch.set_grad_enabled(grad):
        out = m(x, feat)
    with torch.no_grad():
        om = m.conv_offset(feat)
        n = om.shape[1] // 3
        ref = naive_mdcn(
            x, om[:, : 2 * n], torch.sigmoid(om[:, 2 * n :]), m.weight, m.bias, 1, 1, 1, 2
        )
        sums: list[torch.Tensor] = []
        direct = dcn.deform_conv_pure(
            x, om[:, : 2 * n], om[:, 2 * n :], m.weight, m.bias, (1, 1), (1, 1), (1, 1), 2,
            mask_logits=True, abs_sums=sums,
        )
    assert (out.detach() - ref).abs().max().item() <= 1e-10
    assert (direct - ref).abs().max().item() <= 1e-10
    assert out.is_contiguous(memory_format=cl)
    assert len(sums) > 1  # the packed path ran, in several chunks
    l1 = om[:, : 2 * n].abs().sum().item()
    assert abs(sum(s.item() for s in sums) - l1) <= 1e-9 * l1
    with torch.no_grad():
        m.conv_offset.bias[: 2 * n] = 60.0
    with caplog.at_level(logging.WARNING, logger="stvsr.ops.dcn"), torch.set_grad_enabled(grad):
        m(x, feat)
    assert any("larger than 50" in r.getMessage() for r in caplog.records)
