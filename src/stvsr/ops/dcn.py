"""Modulated deformable convolution (DCNv2): pure PyTorch, an optional native C kernel for CPU
inference (:mod:`stvsr.ops.native`, built on first use) and an optional torchvision path.

Layout (identical to torchvision's and BasicSR's kernels, so official weights port unchanged):
within deformable group ``g`` and kernel position ``k = i * kw + j``, offset channel
``g * 2 * kh * kw + 2 * k`` is the vertical shift (dy) and ``+ 1`` the horizontal shift (dx);
mask channel ``g * kh * kw + k``; input channels belong to deformable groups in contiguous blocks
of ``Cin / dg``. Sampling is bilinear and every corner outside the map reads zero.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from stvsr.errors import StvsrError
from stvsr.ops import native

log = logging.getLogger(__name__)

try:  # optional: the torchvision wheel here is a CUDA build and does not import
    from torchvision.ops import deform_conv2d as _tv_deform_conv2d
except Exception:  # noqa: BLE001 - any import failure just disables the path
    _tv_deform_conv2d = None

IMPLS = ("auto", "pure", "native", "torchvision")


def torchvision_available() -> bool:
    """Whether ``torchvision.ops.deform_conv2d`` imported."""
    return _tv_deform_conv2d is not None


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    a, b = v
    return int(a), int(b)


def _coord_dtype(dtype: torch.dtype) -> torch.dtype:
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


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype active for ``device_type``, or None."""
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


# --------------------------------------------------------------------------- fast conv helpers
# oneDNN's fused conv + pointwise kernels (the ones Inductor uses); exact in fp32 (same
# accumulation, the activation / add applied to the accumulator) and they save one pass over the
# output per fused op. Only CPU fp32/bf16 without autograd; anything else takes plain F.conv2d.
_PW = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
_FUSED_DTYPES = (torch.float32, torch.bfloat16)


def param_version(conv: nn.Module) -> tuple:
    """Identity of ``conv``'s current weight and bias values (storage, version counter,
    strides): it changes when a state dict is loaded or a parameter is updated in place, so
    it keys caches of tensors derived from them."""
    w, b = conv.weight, conv.bias
    return (w.data_ptr(), w._version, w.stride(), None if b is None else (b.data_ptr(), b._version))


def weight_format(w: Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a (strictly) channels-last 4-D weight, else contiguous."""
    cl = w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


def cached_weight(
    conv: nn.Module, dtype: torch.dtype, part: slice | None = None, with_bias: bool = True
) -> tuple[Tensor, Tensor | None]:
    """``conv``'s weight (input channels ``part``, in ``conv.weight``'s memory format) and bias
    (``None`` unless ``with_bias``) in ``dtype``, converted once and cached on the module.

    The cache is keyed by the parameters' storage and version counters, so loading a state dict
    or any in-place update refreshes it. With autograd on the parameters themselves are used.
    """
    w, b = conv.weight, conv.bias if with_bias else None
    if part is None and w.dtype == dtype:
        return w, b
    if torch.is_grad_enabled() and w.requires_grad:
        wp = w if part is None else w[:, part]
        return wp.to(dtype), None if b is None else b.to(dtype)
    what = (part.start if part else None, part.stop if part else None, dtype, with_bias)
    version = param_version(conv)
    cache = conv.__dict__.setdefault("_stvsr_wcache", {})
    hit = cache.get(what)
    if hit is not None and hit[0] == version:
        return hit[1], hit[2]
    with torch.no_grad():
        wp = w if part is None else w[:, part]
        wc = wp.to(dtype).contiguous(memory_format=weight_format(w))
        bc = None if b is None else b.to(dtype)
    cache[what] = (version, wc, bc)
    return wc, bc


def has_forward_hooks(m: nn.Module) -> bool:
    g = nn.modules.module
    return bool(
        m._forward_hooks or m._forward_pre_hooks or getattr(g, "_global_forward_hooks", None)
        or getattr(g, "_global_forward_pre_hooks", None)
    )


def conv_act(
    conv: nn.Conv2d,
    x: Tensor,
    act: str | None = None,
    add: Tensor | None = None,
    part: slice | None = None,
    with_bias: bool = True,
) -> Tensor:
    """``act(conv(x) + add)`` with fused oneDNN kernels where possible.

    Args:
        conv: a ``groups == 1``, zero-padded ``nn.Conv2d`` whose weight/bias are used (in the
            autocast dtype, converted once, see :func:`cached_weight`).
        x: ``(B, Cin', H, W)``; ``Cin'`` is the size of ``part`` (input channels of the weight,
            for splitting a conv over a channel concatenation) or ``Cin``. A module with forward
            hooks is called as a module (no fusion), so that the hooks see its output.
        act: ``None``, ``"relu"`` or ``"lrelu"`` (negative slope 0.1).
        add: optional ``(B, Cout, Ho, Wo)`` added before the activation.

    Returns:
        ``(B, Cout, Ho, Wo)`` in the autocast dtype (else ``x``'s), ``x``'s memory format.
    """
    if part is None and with_bias and has_forward_hooks(conv):  # hooks see the module's own output
        y = conv(x)  # out of place below: a hook may keep ``y``
        if add is not None:
            y = y + add.to(y.dtype)
        if act == "relu":
            return F.relu(y)
        return F.leaky_relu(y, 0.1) if act == "lrelu" else y
    dt = _autocast_dtype(x.device.type) or x.dtype
    w, b = cached_weight(conv, dt, part, with_bias)
    x = x.to(dt)
    if add is not None:
        add = add.to(dt)
    grad = torch.is_grad_enabled() and (
        x.requires_grad or w.requires_grad or (add is not None and add.requires_grad)
    )
    pad, stride, dil = list(conv.padding), list(conv.stride), list(conv.dilation)
    fused = (
        _PW is not None and x.device.type == "cpu" and dt in _FUSED_DTYPES and not grad
        and not torch.jit.is_tracing()  # ONNX export traces plain convs
        and conv.groups == 1 and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
    )
    if fused:
        # fresh low-precision weights under autocast would be cast again inside: bypass it
        with torch.autocast("cpu", enabled=False):
            if add is None:
                attr = {"relu": "relu", "lrelu": "leaky_relu"}.get(act or "", "none")
                scal = [0.1] if act == "lrelu" else []
                return _PW(x, w, b, pad, stride, dil, 1, attr, scal, "")
            y = _PW.binary(
                x, add, w, b, pad, stride, dil, 1, "add", None,
                "relu" if act == "relu" else None, [], None,
            )
            return F.leaky_relu_(y, 0.1) if act == "lrelu" else y
    y = F.conv2d(x, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)
    if add is not None:
        y = y + add if grad else y.add_(add)
    if act == "relu":
        return F.relu(y) if grad else F.relu_(y)
    if act == "lrelu":
        return F.leaky_relu(y, 0.1) if grad else F.leaky_relu_(y, 0.1)
    return y


def _deform_conv_pure(
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
    cg = cin // dg
    ho, wo = offset.shape[-2:]
    cdt = _coord_dtype(x.dtype)
    dev = x.device
    fast = not _needs_grad(x, offset, mask, weight, bias)
    mm_dtype = _autocast_dtype(dev.type) or x.dtype
    wmat = weight.to(mm_dtype).reshape(groups, cout // groups, cin_g * k)

    # all coordinate math and the sampling run without autocast, in float32/float64
    no_autocast = torch.autocast(dev.type, enabled=False)
    with no_autocast:
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
        off = offset.view(b, dg, k, 2, ho, wo)
        msk = mask.view(b, dg, 1, k, ho, wo)
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
        full = offset.as_strided((ct, ho * wo), (1, ct)) if packed else None
        # normalised base positions (align_corners=False: pixel p -> (2p + 1) / size - 1)
        ki = torch.arange(kh, device=dev, dtype=cdt).repeat_interleave(kw) * dilation[0]
        kj = torch.arange(kw, device=dev, dtype=cdt).repeat(kh) * dilation[1]
        oy = torch.arange(ho, device=dev, dtype=cdt) * stride[0] - padding[0]
        ox = torch.arange(wo, device=dev, dtype=cdt) * stride[1] - padding[1]
        ny = ((ki[:, None] + oy[None, :]) * 2.0 + 1.0) / h - 1.0  # (K, Ho)
        nx = ((kj[:, None] + ox[None, :]) * 2.0 + 1.0) / w - 1.0  # (K, Wo)
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
            if full is not None:
                tc = torch.empty(ct, n * wo, dtype=offset.dtype, device=dev)
                src = full[:, r0 * wo : r1 * wo]
                if torch.get_num_threads() > 1:  # the 2-D transpose kernel is serial: 3-D copy
                    tc.view(ct, n, wo).copy_(src.unflatten(1, (n, wo)))
                else:
                    tc.copy_(src)  # blocked 2-D transpose
                o = tc[:nt].view(b, dg, k, 2, n, wo)
                if abs_sums is not None:  # contiguous and in cache: cheap
                    abs_sums.append(torch.linalg.vector_norm(tc[:nt], 1, dtype=cdt))
            else:
                o = off[..., r0:r1, :]
            if fast:
                grid = torch.empty(b, dg, k, n, wo, 2, dtype=cdt, device=dev)
                torch.add(nx[:, None, :], o[:, :, :, 1], alpha=2.0 / w, out=grid[..., 0])
                torch.add(ny[:, r0:r1, None], o[:, :, :, 0], alpha=2.0 / h, out=grid[..., 1])
            else:
                gx = torch.add(nx[:, None, :], o[:, :, :, 1], alpha=2.0 / w)
                gy = torch.add(ny[:, r0:r1, None], o[:, :, :, 0], alpha=2.0 / h)
                grid = torch.stack((gx, gy), dim=-1)
            s = F.grid_sample(
                xs, grid.view(b * dg, k * n, wo, 2), mode="bilinear", padding_mode="zeros",
                align_corners=False,
            ).view(b, dg, cg, k, n, wo)
            mk = msk[..., r0:r1, :]
            if full is not None:  # contiguous logits: vectorised sigmoid, in ``cdt``
                lg = tc[nt:].view(b, dg, 1, k, n, wo)
                mk = torch.sigmoid(lg) if lg.dtype == cdt else lg.to(cdt).sigmoid_()
            elif mask_logits and fast:  # gather into a contiguous fp32 buffer, sigmoid in place
                mk = torch.empty(mk.shape, dtype=cdt, device=dev).copy_(mk).sigmoid_()
            elif not mask.is_contiguous():  # e.g. channels-last: gather once, not per channel
                mk = mk.contiguous()
            # (a mixed-dtype ``mul(..., out=bf16)`` was 4x slower than this in-place multiply
            # plus a separate cast)
            s = s.mul_(mk) if fast else s * mk
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


def backend_summary(model: nn.Module, device: str | torch.device = "cpu") -> str | None:
    """One line saying which DCN implementation ``model``'s inference will use on ``device``
    (None when it has no deformable convolutions)."""
    impls = {m.impl for m in model.modules() if isinstance(m, ModulatedDeformConv2d)}
    if not impls:
        return None
    dev = torch.device(device).type
    if impls != {"auto"}:
        return f"deformable conv: {', '.join(sorted(impls))} (set on the model)"
    if dev == "cuda" and _tv_deform_conv2d is not None:
        return "deformable conv: torchvision"
    if dev == "cpu" and native.available():
        return "deformable conv: native C kernel (inference), pure PyTorch for training"
    why = native.unavailable_reason() if dev == "cpu" else f"{dev}"
    return f"deformable conv: pure PyTorch ({why})"


def inference_impl(model: nn.Module, device: str | torch.device = "cpu") -> str | None:
    """The deformable-conv implementation ``model``'s inference uses on ``device``: ``"pure"``,
    ``"native"``, ``"torchvision"`` or the implementations set on the model (comma-separated);
    None when it has none. Stable across runs (unlike :func:`backend_summary`'s reasons), so
    it can be part of a key."""
    impls = {m.impl for m in model.modules() if isinstance(m, ModulatedDeformConv2d)}
    if not impls:
        return None
    if impls != {"auto"}:
        return ",".join(sorted(impls))
    dev = torch.device(device).type
    if dev == "cuda" and _tv_deform_conv2d is not None:
        return "torchvision"
    if dev == "cpu" and native.available():
        return "native"
    return "pure"


def _needs_grad(*tensors: Tensor | None) -> bool:
    """Whether autograd will record an op on these tensors (``None`` entries are skipped)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _native_ok(
    x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None
) -> bool:
    """Whether :func:`_deform_conv_native` can run these inputs (CPU, no autograd, one conv
    group, float32/bfloat16 or all-float64) and the native kernel loads."""
    if _needs_grad(x, offset, mask, weight, bias) or x.device.type != "cpu":
        return False
    if weight.shape[1] != x.shape[1]:  # grouped conv
        return False
    return native.supports(
        x.dtype, torch.promote_types(offset.dtype, mask.dtype), _autocast_dtype("cpu") or x.dtype,
        offset.shape[1] // 2,
    )


def _deform_conv_native(
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
    output rows; same arguments and result as :func:`_deform_conv_pure` (inference only, one
    conv group; check :func:`_native_ok` first).

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
    mm_dtype = _autocast_dtype("cpu") or x.dtype
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


def _check(x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, dg: int) -> tuple[int, int]:
    if x.dim() != 4 or offset.dim() != 4 or mask.dim() != 4 or weight.dim() != 4:
        raise StvsrError("deform conv expects 4-D x, offset, mask and weight tensors")
    cin = x.shape[1]
    kh, kw = weight.shape[-2:]
    if cin % weight.shape[1] != 0 or weight.shape[0] % (cin // weight.shape[1]) != 0:
        raise StvsrError(f"weight {tuple(weight.shape)} does not fit {cin} input channels")
    if cin % dg != 0:
        raise StvsrError(f"input channels {cin} are not divisible by deform_groups={dg}")
    if offset.shape[1] != 2 * dg * kh * kw or mask.shape[1] != dg * kh * kw:
        raise StvsrError(
            f"offset/mask need {2 * dg * kh * kw}/{dg * kh * kw} channels for deform_groups={dg} "
            f"and a {kh}x{kw} kernel, got {offset.shape[1]}/{mask.shape[1]}"
        )
    if offset.shape[-2:] != mask.shape[-2:] or offset.shape[0] != x.shape[0]:
        raise StvsrError("offset and mask must share batch size and output size with x")
    return kh, kw


def _pick_impl(
    impl: str, x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None
) -> str:
    """``"torchvision"``, ``"native"`` or ``"pure"`` for these inputs (see
    :func:`modulated_deform_conv2d`); a clear error when an explicit choice cannot run."""
    if impl not in IMPLS:
        raise StvsrError(f"unknown deform conv impl {impl!r}; choose one of {', '.join(IMPLS)}")
    if impl == "torchvision":
        if _tv_deform_conv2d is None:
            raise StvsrError("impl='torchvision' needs an importable torchvision; use impl='pure'")
        return impl
    if impl == "native":
        if not _native_ok(x, offset, mask, weight, bias):
            why = native.unavailable_reason() or (
                "it runs CPU inference only (no autograd, one conv group, float32/bfloat16 or "
                "float64)"
            )
            raise StvsrError(f"impl='native' cannot run here: {why}; use impl='pure'")
        return impl
    if impl == "auto":
        if _tv_deform_conv2d is not None and x.is_cuda:
            return "torchvision"
        if _native_ok(x, offset, mask, weight, bias):
            return "native"
    return "pure"


def modulated_deform_conv2d(
    x: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    deform_groups: int = 1,
    impl: str = "auto",
) -> Tensor:
    """Modulated deformable convolution (DCNv2).

    Args:
        x: ``(B, Cin, H, W)``.
        offset: ``(B, 2 * dg * kh * kw, Ho, Wo)``, (dy, dx) pairs, see the module docstring.
        mask: ``(B, dg * kh * kw, Ho, Wo)``, modulation scalars (usually in [0, 1]).
        weight: ``(Cout, Cin / groups, kh, kw)``; ``groups`` is inferred from the shapes.
        bias: ``(Cout,)`` or None.
        impl: ``"pure"`` (PyTorch ops, CPU/GPU, autograd), ``"native"`` (the C kernel of
            :mod:`stvsr.ops.native`: CPU inference, built on first use when a C compiler is
            present), ``"torchvision"`` (needs an importable torchvision) or ``"auto"``:
            torchvision on CUDA when it imports; on CPU without autograd native when it builds,
            else pure (on CPU pure is ~3x faster than torchvision's kernel, native faster still).

    Returns:
        ``(B, Cout, Ho, Wo)`` in the input's dtype (the autocast dtype under autocast).
    """
    dg = int(deform_groups)
    _check(x, offset, mask, weight, dg)
    stride_, padding_, dilation_ = _pair(stride), _pair(padding), _pair(dilation)
    path = _pick_impl(impl, x, offset, mask, weight, bias)
    if path == "native":
        return _deform_conv_native(x, offset, mask, weight, bias, stride_, padding_, dilation_, dg)
    if path == "torchvision":
        # low-precision inputs run in float32 so that the sampling coordinates stay float32
        cdt = _coord_dtype(x.dtype)
        with torch.autocast(x.device.type, enabled=False):
            out = _tv_deform_conv2d(
                x.to(cdt), offset.to(cdt), weight.to(cdt), None if bias is None else bias.to(cdt),
                stride=stride_, padding=padding_, dilation=dilation_, mask=mask.to(cdt),
            )
        return out.to(_autocast_dtype(x.device.type) or x.dtype)
    return _deform_conv_pure(x, offset, mask, weight, bias, stride_, padding_, dilation_, dg)


class ModulatedDeformConv2d(nn.Module):
    """DCNv2 layer with parameters ``weight`` ``(Cout, Cin/groups, k, k)`` and ``bias``.

    ``forward(x, offset, mask)``: ``(B, Cin, H, W) -> (B, Cout, Ho, Wo)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        deformable_groups: int = 1,
        bias: bool = True,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise StvsrError("in_channels and out_channels must be divisible by groups")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.deformable_groups = deformable_groups
        self.impl = impl
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size)
        )
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform init in ``±1/sqrt(fan_in)`` (like BasicSR's ModulatedDeformConv), zero bias."""
        fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
        stdv = 1.0 / fan_in**0.5
        nn.init.uniform_(self.weight, -stdv, stdv)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, offset: Tensor, mask: Tensor) -> Tensor:
        return modulated_deform_conv2d(
            x, offset, mask, self.weight, self.bias, self.stride, self.padding, self.dilation,
            self.deformable_groups, self.impl,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"groups={self.groups}, deformable_groups={self.deformable_groups}, impl={self.impl!r}"
        )


class DCNv2Pack(ModulatedDeformConv2d):
    """BasicSR/EDVR-compatible DCNv2 whose offsets and mask are predicted from ``feat``.

    ``forward(x, feat)``: ``x (B, Cin, H, W)``, ``feat (B, Cin, H, W)`` (the offset features)
    ``-> (B, Cout, Ho, Wo)``. ``conv_offset`` (zero-initialised) gives ``3 * dg * k * k``
    channels, split into ``o1, o2, m``; ``offset = cat(o1, o2)``, ``mask = sigmoid(m)``.
    State-dict keys: ``weight``, ``bias``, ``conv_offset.weight``, ``conv_offset.bias``.

    Args:
        max_offset: if set, offsets are clamped to ``[-max_offset, max_offset]`` (a warning is
            logged once when the clamp changes something). BasicSR clamps nothing.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 1,
        dilation: int | tuple[int, int] = 1,
        deformable_groups: int = 8,
        bias: bool = True,
        max_offset: float | None = None,
        impl: str = "auto",
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, 1,
            deformable_groups, bias, impl,
        )
        self.max_offset = max_offset
        self._clamp_warned = False
        kh, kw = self.kernel_size
        self.conv_offset = nn.Conv2d(
            in_channels, 3 * deformable_groups * kh * kw, self.kernel_size, self.stride,
            self.padding, self.dilation, bias=True,
        )
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: Tensor, feat: Tensor) -> Tensor:  # type: ignore[override]
        out = conv_act(self.conv_offset, feat)
        # o1, o2, m = chunk(out, 3); offset = cat(o1, o2) is simply the first two thirds
        n = out.shape[1] // 3
        offset = out[:, : 2 * n]
        logits = out[:, 2 * n :]
        if self.max_offset is not None:
            lim = float(self.max_offset)
            if not self._clamp_warned and bool((offset.detach().abs() > lim).any()):
                log.warning("DCNv2Pack: offsets exceed max_offset=%g and are clamped", lim)
                self._clamp_warned = True
            offset = offset.clamp(-lim, lim)
        path = _pick_impl(self.impl, x, offset, logits, self.weight, self.bias)
        if path in ("pure", "native"):  # the op applies the sigmoid itself (cheaper)
            _check(x, offset, logits, self.weight, self.deformable_groups)
            sums: list[Tensor] = []
            fn = _deform_conv_native if path == "native" else _deform_conv_pure
            res = fn(
                x, offset, logits, self.weight, self.bias, self.stride, self.padding,
                self.dilation, self.deformable_groups, mask_logits=True, abs_sums=sums,
            )
            self._warn_offsets(offset, sums)
            return res
        self._warn_offsets(offset, [])
        return super().forward(x, offset, torch.sigmoid(logits))

    @staticmethod
    def _warn_offsets(offset: Tensor, sums: list[Tensor]) -> None:
        """Log a warning when the mean |offset| exceeds 50; ``sums`` are the op's per-chunk
        L1 norms of the whole offset map when it computed them (else computed here)."""
        if sums:
            total = float(torch.stack(sums).sum())
        else:  # one fused pass (float accumulation even for bf16), no |offset| temporary
            total = float(torch.linalg.vector_norm(
                offset.detach(), 1, dtype=torch.promote_types(offset.dtype, torch.float32)
            ))
        offset_absmean = total / max(1, offset.numel())
        if offset_absmean > 50:
            log.warning("Offset abs mean is %.1f, larger than 50.", offset_absmean)
