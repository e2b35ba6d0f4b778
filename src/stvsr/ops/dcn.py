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

from stvsr.errors import StvsrError
from stvsr.ops import native
from stvsr.ops.dcn_sampling import (
    coord_dtype,
    deform_conv_native,
    deform_conv_pure,
    native_ok,
)
from stvsr.ops.fused import autocast_dtype, conv_act

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
        if not native_ok(x, offset, mask, weight, bias):
            why = native.unavailable_reason() or (
                "it runs CPU inference only (no autograd, one conv group, float32/bfloat16 or "
                "float64)"
            )
            raise StvsrError(f"impl='native' cannot run here: {why}; use impl='pure'")
        return impl
    if impl == "auto":
        if _tv_deform_conv2d is not None and x.is_cuda:
            return "torchvision"
        if native_ok(x, offset, mask, weight, bias):
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
        return deform_conv_native(x, offset, mask, weight, bias, stride_, padding_, dilation_, dg)
    if path == "torchvision":
        # low-precision inputs run in float32 so that the sampling coordinates stay float32
        cdt = coord_dtype(x.dtype)
        with torch.autocast(x.device.type, enabled=False):
            out = _tv_deform_conv2d(
                x.to(cdt), offset.to(cdt), weight.to(cdt), None if bias is None else bias.to(cdt),
                stride=stride_, padding=padding_, dilation=dilation_, mask=mask.to(cdt),
            )
        return out.to(autocast_dtype(x.device.type) or x.dtype)
    return deform_conv_pure(x, offset, mask, weight, bias, stride_, padding_, dilation_, dg)


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
            fn = deform_conv_native if path == "native" else deform_conv_pure
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
