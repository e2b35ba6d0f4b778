"""The two CPU/GPU implementations behind :func:`stvsr.ops.dcn.modulated_deform_conv2d`:
*pure* (``grid_sample`` + matmul over chunks of output rows; autograd, any device) and
*native* (the C deformable im2col of :mod:`stvsr.ops.native` + matmul; CPU inference). Both
take the same arguments and agree with the float64 reference (tests)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F  # noqa: N812

from stvsr.ops import native
from stvsr.ops.fused import autocast_dtype


def coord_dtype(dtype: torch.dtype) -> torch.dtype:
    """Sampling coordinates are float64 for float64 inputs and float32 for everything else."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# Speed notes (this 2-core AMD EPYC, heavily shared while measured, so CPU seconds of one thread;
# C = 64, 180x320, dg = 8, one call, fp32, no grad):
#   one grid_sample over the whole map + mask multiply + one bmm ...... 0.33 s
#   same, chunked over output rows (below) .......................... 0.15 s (fwd+bwd 0.68 vs 0.88)
#   same under bf16 autocast (bf16 matmul, fp32 sampling) ............ 0.12 s
#   gather + F.embedding_bag with mask-folded bilinear weights ....... ~1.5x slower than
#     grid_sample here: the per-point index/weight math costs more than the sampling
#   channels-last input: x is free, a strided mask was +15% until it is gathered once per chunk
#   plain conv3x3 (oneDNN), same size ................................ 0.04 s
# The spec's reference, torchvision's CPU kernel, is ~0.44 s wall with 2 threads. grid_sample is
# ~60% of the time and the fp32 matmul ~30%.
# The native kernel (wall, 2 threads, EDVR's packed offset map, |offset| ~1.6 px, matmul
# included): bf16 27 ms vs pure 74 ms, fp32 41 ms vs 79 ms per call; torch.compile of the same
# sampling was slower than grid_sample (and compiles for 18 s).
#
# Target size (bytes) of one chunk of sampled columns. On CPU, sampling, masking and the matmul
# run on chunks of output rows so that the big intermediates stay far below glibc's mmap
# threshold (32 MiB) and mostly in cache: a fresh 130 MB buffer per call costs more in page
# faults than the arithmetic (4-16 MiB chunks measured alike; 64 MiB was 1.5x slower). With
# autograd every chunk's grid_sample backward returns a full-size input gradient, so chunks are
# larger there; on CUDA the caching allocator makes one chunk best.
_CHUNK_BYTES = {"cpu": 16 << 20, "cpu_grad": 32 << 20, "cuda": 1 << 30, "cpu_native": 8 << 20}


@dataclass
class _Sampling:
    """What the chunks of :func:`deform_conv_pure` share: ``x`` as ``(B*dg, Cin/dg, H, W)`` in
    the coordinate dtype ``cdt``, offsets / mask views ``(B, dg, K, 2, Ho, Wo)`` /
    ``(B, dg, 1, K, Ho, Wo)``, the packed ``(3·dg·K, Ho·Wo)`` view of DCNv2Pack's offset map
    (or None) and the normalised base positions ``ny (K, Ho)``, ``nx (K, Wo)``."""

    xs: Tensor
    off: Tensor
    msk: Tensor
    full: Tensor | None
    ny: Tensor
    nx: Tensor
    offset_dtype: torch.dtype
    mask_contiguous: bool
    mask_logits: bool
    fast: bool
    cdt: torch.dtype
    dims: tuple[int, int, int, int, int, int]  # b, dg, cg, k, h, w


def _prepare(
    x: Tensor, offset: Tensor, mask: Tensor, kernel: tuple[int, int], stride: tuple[int, int],
    padding: tuple[int, int], dilation: tuple[int, int], dg: int, mask_logits: bool, fast: bool,
) -> _Sampling:
    """The sampling inputs of :func:`deform_conv_pure` (without autocast, float32/float64)."""
    b, cin, h, w = x.shape
    kh, kw = kernel
    k = kh * kw
    cg = cin // dg
    ho, wo = offset.shape[-2:]
    cdt = coord_dtype(x.dtype)
    dev = x.device
    xs = x.reshape(b * dg, cg, h, w)
    if fast and xs.stride(1) == 1 and not xs.is_contiguous(memory_format=torch.channels_last):
        # channels-last x: each group's channels become one contiguous (H, W, Cin/dg) block
        # (so that a bilinear sample's corners share cache lines), cast in the same pass
        xs = torch.empty(xs.shape, dtype=cdt, device=dev, memory_format=torch.channels_last)
        xs.copy_(x.reshape(b * dg, cg, h, w))
    else:
        xs = xs.to(cdt)
    # 6-D views only split the channel dim, so they work for any memory format; low-precision
    # offsets/masks are promoted to ``cdt`` chunk by chunk (the adds/multiplies below)
    if torch.promote_types(offset.dtype, cdt) != cdt:
        offset = offset.to(cdt)
    if mask_logits and not fast:
        mask = torch.sigmoid(mask)
    if torch.promote_types(mask.dtype, cdt) != cdt and not (mask_logits and fast):
        mask = mask.to(cdt)
    # DCNv2Pack's case: offsets and mask logits are consecutive channel slices of one
    # channels-last map, so a chunk of rows is one contiguous (rows*Wo, 3*dg*K) block; one
    # blocked 2-D transpose per chunk turns it planar, and every later pass (grid adds,
    # sigmoid) reads contiguous memory instead of a stride of 3*dg*K elements
    nt = 2 * dg * k
    ct = 3 * dg * k
    packed = (
        fast and mask_logits and b == 1 and offset.dtype == mask.dtype
        and offset.stride(1) == 1 and mask.stride(1) == 1
        and offset.stride()[2:] == mask.stride()[2:] == (wo * ct, ct)
        and mask.data_ptr() == offset.data_ptr() + nt * offset.element_size()
    )
    # normalised base positions (align_corners=False: pixel p -> (2p + 1) / size - 1)
    ki = torch.arange(kh, device=dev, dtype=cdt).repeat_interleave(kw) * dilation[0]
    kj = torch.arange(kw, device=dev, dtype=cdt).repeat(kh) * dilation[1]
    oy = torch.arange(ho, device=dev, dtype=cdt) * stride[0] - padding[0]
    ox = torch.arange(wo, device=dev, dtype=cdt) * stride[1] - padding[1]
    return _Sampling(
        xs=xs, off=offset.view(b, dg, k, 2, ho, wo), msk=mask.view(b, dg, 1, k, ho, wo),
        full=offset.as_strided((ct, ho * wo), (1, ct)) if packed else None,
        ny=((ki[:, None] + oy[None, :]) * 2.0 + 1.0) / h - 1.0,  # (K, Ho)
        nx=((kj[:, None] + ox[None, :]) * 2.0 + 1.0) / w - 1.0,  # (K, Wo)
        offset_dtype=offset.dtype, mask_contiguous=mask.is_contiguous(),
        mask_logits=mask_logits, fast=fast, cdt=cdt, dims=(b, dg, cg, k, h, w),
    )


def _sample_rows(sp: _Sampling, r0: int, r1: int, abs_sums: list[Tensor] | None) -> Tensor:
    """Masked bilinear samples of output rows ``[r0, r1)``: ``(B, dg, Cin/dg, K, rows, Wo)``
    (without autocast, in the coordinate dtype)."""
    b, dg, cg, k, h, w = sp.dims
    wo = sp.off.shape[-1]
    n = r1 - r0
    dev, cdt, fast = sp.xs.device, sp.cdt, sp.fast
    nt = 2 * dg * k
    ct = 3 * dg * k
    if sp.full is not None:
        tc = torch.empty(ct, n * wo, dtype=sp.offset_dtype, device=dev)
        src = sp.full[:, r0 * wo : r1 * wo]
        if torch.get_num_threads() > 1:  # the 2-D transpose kernel is serial: 3-D copy
            tc.view(ct, n, wo).copy_(src.unflatten(1, (n, wo)))
        else:
            tc.copy_(src)  # blocked 2-D transpose
        o = tc[:nt].view(b, dg, k, 2, n, wo)
        if abs_sums is not None:  # contiguous and in cache: cheap
            abs_sums.append(torch.linalg.vector_norm(tc[:nt], 1, dtype=cdt))
    else:
        o = sp.off[..., r0:r1, :]
    if fast:
        grid = torch.empty(b, dg, k, n, wo, 2, dtype=cdt, device=dev)
        torch.add(sp.nx[:, None, :], o[:, :, :, 1], alpha=2.0 / w, out=grid[..., 0])
        torch.add(sp.ny[:, r0:r1, None], o[:, :, :, 0], alpha=2.0 / h, out=grid[..., 1])
    else:
        gx = torch.add(sp.nx[:, None, :], o[:, :, :, 1], alpha=2.0 / w)
        gy = torch.add(sp.ny[:, r0:r1, None], o[:, :, :, 0], alpha=2.0 / h)
        grid = torch.stack((gx, gy), dim=-1)
    s = F.grid_sample(
        sp.xs, grid.view(b * dg, k * n, wo, 2), mode="bilinear", padding_mode="zeros",
        align_corners=False,
    ).view(b, dg, cg, k, n, wo)
    mk = sp.msk[..., r0:r1, :]
    if sp.full is not None:  # contiguous logits: vectorised sigmoid, in ``cdt``
        lg = tc[nt:].view(b, dg, 1, k, n, wo)
        mk = torch.sigmoid(lg) if lg.dtype == cdt else lg.to(cdt).sigmoid_()
    elif sp.mask_logits and fast:  # gather into a contiguous fp32 buffer, sigmoid in place
        mk = torch.empty(mk.shape, dtype=cdt, device=dev).copy_(mk).sigmoid_()
    elif not sp.mask_contiguous:  # e.g. channels-last: gather once, not per channel
        mk = mk.contiguous()
    # (a mixed-dtype ``mul(..., out=bf16)`` was 4x slower than this in-place multiply
    # plus a separate cast)
    return s.mul_(mk) if fast else s * mk


def deform_conv_pure(
    x: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    dg: int,
    chunk_bytes: int | None = None,
    mask_logits: bool = False,
    abs_sums: list[Tensor] | None = None,
) -> Tensor:
    """DCNv2 from ``grid_sample`` + a matmul, chunked over output rows; shapes as the public op.

    ``mask_logits``: ``mask`` holds logits; the sigmoid is applied here (without autograd: chunk
    by chunk, in the coordinate dtype, on the contiguous chunk the mask is gathered into anyway;
    on a channel slice of a channels-last map ``torch.sigmoid`` takes a scalar fp32 path, 8x
    slower than this).

    ``abs_sums``: where the fast packed path below runs, it appends the L1 norms (in the
    coordinate dtype) of the offset chunks it reads anyway; they sum to ``|offset|_1``. Else it
    is left empty.

    For a chunk of output rows, every deformable group is sampled by one ``grid_sample`` call on
    ``x`` viewed as ``(B*dg, Cin/dg, H, W)`` with a grid of ``(B*dg, K*rows, Wo, 2)``; the result,
    times the mask, is already the im2col matrix ``(B, Cin*K, rows*Wo)`` in the order of
    ``weight.view(Cout, Cin*K)``. Coordinates are float32 (float64 for float64 inputs) whatever
    the input dtype or autocast; the matmul runs in the input's (or autocast's) dtype. A
    channels-last ``x`` gives a channels-last result (when ``groups == 1``), else NCHW-contiguous.
    """
    b, cin, h, w = x.shape
    cout, cin_g, kh, kw = weight.shape
    groups = cin // cin_g
    k = kh * kw
    ho, wo = offset.shape[-2:]
    cdt = coord_dtype(x.dtype)
    dev = x.device
    fast = not _needs_grad(x, offset, mask, weight, bias)
    mm_dtype = autocast_dtype(dev.type) or x.dtype
    wmat = weight.to(mm_dtype).reshape(groups, cout // groups, cin_g * k)

    # all coordinate math and the sampling run without autocast, in float32/float64
    no_autocast = torch.autocast(dev.type, enabled=False)
    with no_autocast:
        sp = _prepare(x, offset, mask, (kh, kw), stride, padding, dilation, dg, mask_logits, fast)
    if chunk_bytes is None:
        key = "cuda" if dev.type == "cuda" else ("cpu" if fast else "cpu_grad")
        chunk_bytes = _CHUNK_BYTES[key]
    row_bytes = b * cin * k * wo * torch.finfo(cdt).bits // 8
    rows = max(1, min(ho, chunk_bytes // max(1, row_bytes)))
    # channels-last in -> channels-last out
    nhwc = groups == 1 and x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
        memory_format=torch.channels_last
    )
    # no autograd, one image, channels-last: the matmul writes (rows*Wo, Cout) straight into
    # the NHWC output rows (the transposed product; no copy)
    direct = fast and nhwc and b == 1 and groups == 1
    outs: list[Tensor] = []
    out: Tensor | None = None
    if direct:
        out = torch.empty(b, cout, ho, wo, dtype=mm_dtype, device=dev,
                          memory_format=torch.channels_last)
        out_rows = out.permute(0, 2, 3, 1).view(ho * wo, cout)
        wmat_t = wmat.view(cout, cin * k).t()
    for r0 in range(0, ho, rows):
        r1 = min(ho, r0 + rows)
        n = r1 - r0
        with no_autocast:
            s = _sample_rows(sp, r0, r1, abs_sums)
        cols = s.view(b, groups, cin_g * k, n * wo).to(mm_dtype)
        if direct:
            torch.mm(cols.view(cin * k, n * wo).t(), wmat_t, out=out_rows[r0 * wo : r1 * wo])
            continue
        res = torch.matmul(wmat, cols).view(b, cout, n, wo)
        if fast:  # straight into the output rows (a small copy, in cache)
            if out is None:
                fmt = torch.channels_last if nhwc else torch.contiguous_format
                out = torch.empty(b, cout, ho, wo, dtype=res.dtype, device=dev, memory_format=fmt)
            out[:, :, r0:r1].copy_(res)
        else:
            outs.append(res)
    if not fast:
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
        if nhwc:
            out = out.contiguous(memory_format=torch.channels_last)
    if out is None:  # no output rows
        out = torch.zeros(b, cout, ho, wo, dtype=mm_dtype, device=dev)
    if bias is not None:
        bv = bias.to(out.dtype).view(1, cout, 1, 1)
        out = out.add_(bv) if fast else out + bv
    return out


def _needs_grad(*tensors: Tensor | None) -> bool:
    """Whether autograd will record an op on these tensors (``None`` entries are skipped)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def native_ok(
    x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None
) -> bool:
    """Whether :func:`deform_conv_native` can run these inputs (CPU, no autograd, one conv
    group, float32/bfloat16 or all-float64) and the native kernel loads."""
    if _needs_grad(x, offset, mask, weight, bias) or x.device.type != "cpu":
        return False
    if weight.shape[1] != x.shape[1]:  # grouped conv
        return False
    return native.supports(
        x.dtype, torch.promote_types(offset.dtype, mask.dtype), autocast_dtype("cpu") or x.dtype,
        offset.shape[1] // 2,
    )


def deform_conv_native(
    x: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    dg: int,
    chunk_bytes: int | None = None,
    mask_logits: bool = False,
    abs_sums: list[Tensor] | None = None,
) -> Tensor:
    """DCNv2 from the native deformable im2col (:mod:`stvsr.ops.native`) + a matmul per chunk of
    output rows; same arguments and result as :func:`deform_conv_pure` (inference only, one
    conv group; check :func:`native_ok` first).

    The kernel reads ``x`` channels-last (converted once if it is not), ``offset``/``mask``
    through their strides (a channel slice of a channels-last map as is), computes coordinates
    in float32 (float64 for float64 inputs) and writes the samples in the matmul's dtype with
    columns ordered (group, tap, channel); the weight is permuted to match. ``abs_sums`` gets
    one float64 tensor: ``|offset|_1``.
    """
    b, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    k = kh * kw
    ho, wo = offset.shape[-2:]
    mm_dtype = autocast_dtype("cpu") or x.dtype
    odt = torch.promote_types(offset.dtype, mask.dtype)
    offset, mask = offset.to(odt), mask.to(odt)
    nhwc = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    xl = x if x.is_contiguous(memory_format=torch.channels_last) else x.contiguous(
        memory_format=torch.channels_last
    )
    wmat_t = (
        weight.to(mm_dtype).reshape(cout, dg, cin // dg, k).permute(0, 1, 3, 2)
        .reshape(cout, cin * k).t()
    )
    out = torch.empty(b, cout, ho, wo, dtype=mm_dtype, memory_format=torch.channels_last)
    if chunk_bytes is None:
        chunk_bytes = _CHUNK_BYTES["cpu_native"]
    rows = max(1, min(ho, chunk_bytes // max(1, wo * cin * k * out.element_size())))
    buf = torch.empty(rows * wo, cin * k, dtype=mm_dtype)
    total = 0.0
    with torch.autocast("cpu", enabled=False):
        for bi in range(b):
            xi = xl[bi].permute(1, 2, 0)  # (H, W, Cin), unit channel stride
            out_rows = out[bi].permute(1, 2, 0).view(ho * wo, cout)
            for r0 in range(0, ho, rows):
                r1 = min(ho, r0 + rows)
                cols = buf[: (r1 - r0) * wo]
                total += native.deform_cols(
                    xi, offset[bi], mask[bi], (kh, kw), stride, padding, dilation, dg, (r0, r1),
                    cols, mask_logits,
                )
                torch.mm(cols, wmat_t, out=out_rows[r0 * wo : r1 * wo])
        if bias is not None:
            out.add_(bias.to(mm_dtype).view(1, cout, 1, 1))
    if abs_sums is not None:
        abs_sums.append(torch.tensor(total, dtype=torch.float64))
    return out if nhwc or b * ho * wo == 0 else out.contiguous()
