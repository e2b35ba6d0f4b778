"""Fast conv helpers shared by the networks: oneDNN's fused conv + activation / add on CPU
(exact in fp32), weights cached in the compute dtype / memory format, keyed by the parameter
values' identity; plain ``F.conv2d`` (and ``Conv2d.__call__`` when hooks are registered)
everywhere else."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

__all__ = ["cached_weight", "conv_act", "has_forward_hooks", "param_version", "weight_format"]


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
