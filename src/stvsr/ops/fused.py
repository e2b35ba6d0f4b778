"""Plain-by-default conv helpers with an opt-in fast CPU path.

The networks call :func:`conv_act` and :func:`conv_shuffle_act`, and the speed paths beside
:func:`stvsr.infer.optimize` also :func:`conv_part`, :func:`fast_layout` and
:func:`fast_enabled`; their default behaviour is the plain PyTorch computation through modules
(``Conv2d.__call__``, so forward hooks, subclasses and wrappers apply), in whatever precision the
caller's autocast asks for.

Inside :func:`fast_kernels` (entered by the module :func:`stvsr.infer.optimize` returns, for the
duration of each of its calls) they switch to the CPU inference speed-ups:

* oneDNN's fused conv + activation / conv + add kernels (the ones Inductor uses; exact in fp32:
  same accumulation, the activation / add applied to the accumulator), which bypass
  ``Conv2d.__call__`` (a conv or activation with forward hooks, or a conv that is a subclass or
  wrapper of ``nn.Conv2d``, is still called as a module);
* weights converted once to the compute dtype and channels-last and cached in the
  :class:`FastKernels` object (keyed by the parameters' identity and version counters, so
  loading a state dict refreshes them; the model's parameters are never modified);
* channels-last activations (:func:`fast_layout`) and the phase-major pixel shuffle;
* the models' speed paths (:mod:`stvsr.infer.optimize_edvr` etc.), which check
  :func:`fast_enabled` (e.g. EDVR's PCD terms).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

__all__ = [
    "FastKernels",
    "autocast_dtype",
    "conv_act",
    "conv_part",
    "conv_shuffle_act",
    "cpu_bf16_native",
    "fast_enabled",
    "fast_kernels",
    "fast_layout",
    "has_forward_hooks",
    "param_version",
    "runs_as_module",
]

Act = nn.Module | None


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype active for ``device_type``, or None."""
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


# oneDNN's fused conv + pointwise kernels; only CPU fp32/bf16 without autograd use them
_PW = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)


def cpu_bf16_native() -> bool:
    """Whether this CPU computes bf16 natively as oneDNN reports it (AVX512-BF16, AMX or
    AVX-NE-CONVERT). Without it oneDNN's bf16 convolution refuses to run and PyTorch's own
    bf16 convolution is emulated (41× slower than fp32 on an AVX2 EPYC, measured)."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(probe is not None and probe())


def param_version(conv: nn.Module) -> tuple:
    """Identity of ``conv``'s current weight and bias values (storage, version counter,
    strides): it changes when a state dict is loaded or a parameter is updated in place, so
    it keys caches of tensors derived from them. (Inference tensors have no version counter.)"""
    w, b = conv.weight, conv.bias
    return (w.data_ptr(), _version(w), w.stride(),
            None if b is None else (b.data_ptr(), _version(b)))


def _version(t: Tensor) -> int:
    return -1 if t.is_inference() else t._version


def has_forward_hooks(m: nn.Module | None) -> bool:
    """Whether calling ``m`` as a module would run forward (pre-)hooks."""
    if m is None:
        return False
    g = nn.modules.module
    return bool(
        m._forward_hooks or m._forward_pre_hooks or getattr(g, "_global_forward_hooks", None)
        or getattr(g, "_global_forward_pre_hooks", None)
    )


def _channels_last(x: Tensor) -> bool:
    """``x`` is a (strictly) channels-last 4-D tensor."""
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and (
        not x.is_contiguous())


class FastKernels:
    """State of the fast path of one optimized model: switches and derived-weight caches.

    Args:
        channels_last: :func:`fast_layout` turns activations channels-last and cached weights
            are stored channels-last (oneDNN's 3×3 convs are ~1.5× faster so on CPU).

    Which dtypes oneDNN's fused kernels take is read once, here: fp32, and bf16 where the CPU
    computes it natively (:func:`cpu_bf16_native`).
    """

    def __init__(self, channels_last: bool = True) -> None:
        self.channels_last = channels_last
        self.fused_dtypes = (torch.float32, torch.bfloat16) if cpu_bf16_native() else (
            torch.float32,)
        self._weights: dict[tuple, tuple] = {}
        self._phase: dict[nn.Module, tuple] = {}

    def weight(
        self, conv: nn.Module, dtype: torch.dtype, part: slice | None = None,
        with_bias: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """``conv``'s weight (input channels ``part``) and bias (``None`` unless
        ``with_bias``) in ``dtype``, converted once (channels-last when enabled) and cached.
        With autograd on they are converted on the fly from the parameters."""
        w, b = conv.weight, conv.bias if with_bias else None
        fmt = torch.channels_last if self.channels_last and w.dim() == 4 else (
            torch.contiguous_format)
        if torch.is_grad_enabled():
            wp = w if part is None else w[:, part]
            return wp.to(dtype), None if b is None else b.to(dtype)
        if part is None and w.dtype == dtype and w.is_contiguous(memory_format=fmt):
            return w, b
        key = (conv, None if part is None else (part.start, part.stop), dtype, with_bias)
        version = param_version(conv)
        hit = self._weights.get(key)
        if hit is not None and hit[0] == version:
            return hit[1], hit[2]
        with torch.no_grad():
            wp = w if part is None else w[:, part]
            wc = wp.to(dtype).contiguous(memory_format=fmt)
            bc = None if b is None else b.to(dtype)
        self._weights[key] = (version, wc, bc)
        return wc, bc

    def phase_major(self, conv: nn.Conv2d) -> nn.Conv2d:
        """A frozen copy of ``conv`` (``4c`` outputs) with output channel ``4·ch + 2i + j``
        moved to ``(2i + j)·c + ch``; rebuilt when ``conv``'s parameters change."""
        key = param_version(conv)
        hit = self._phase.get(conv)
        if hit is not None and hit[0] == key:
            return hit[1]
        w, b = conv.weight, conv.bias
        c = w.shape[0] // 4
        with torch.no_grad():
            fmt = torch.channels_last if self.channels_last else torch.contiguous_format
            wp = w.detach().unflatten(0, (c, 4)).transpose(0, 1).flatten(0, 1)
            shadow = nn.Conv2d(
                conv.in_channels, 4 * c, conv.kernel_size, conv.stride, conv.padding,
                conv.dilation, bias=b is not None, device="meta",
            )
            shadow.weight = nn.Parameter(wp.contiguous(memory_format=fmt), requires_grad=False)
            if b is not None:
                bp = b.detach().view(c, 4).t().reshape(-1).clone()
                shadow.bias = nn.Parameter(bp, requires_grad=False)
        self._phase[conv] = (key, shadow)
        return shadow


_ACTIVE: ContextVar[FastKernels | None] = ContextVar("stvsr_fast_kernels", default=None)


@contextlib.contextmanager
def fast_kernels(state: FastKernels | None) -> Iterator[None]:
    """Run the helpers of this module on their fast path with ``state``'s caches (``None``:
    plain) for the duration of the block (per thread / task)."""
    token = _ACTIVE.set(state)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def fast_enabled() -> bool:
    """Whether the fast path is on (inside :func:`fast_kernels`)."""
    return _ACTIVE.get() is not None


def fast_layout(x: Tensor) -> Tensor:
    """``x`` (4-D) in channels-last memory format on the fast path, as is otherwise."""
    state = _ACTIVE.get()
    if state is not None and state.channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def runs_as_module(conv: nn.Module, act: Act = None) -> bool:
    """Whether the fast path must call ``conv`` (and ``act``) as modules: forward hooks on
    either, or ``conv`` not exactly an ``nn.Conv2d`` (a subclass or wrapper, e.g. LoRA or
    quantisation, whose own forward must run)."""
    return type(conv) is not nn.Conv2d or has_forward_hooks(conv) or has_forward_hooks(act)


def _act_attr(act: Act) -> tuple[str, list[float]] | None:
    """oneDNN post-op of an activation module, or None when it has none."""
    if act is None:
        return "none", []
    if type(act) is nn.ReLU:
        return "relu", []
    if type(act) is nn.LeakyReLU:
        return "leaky_relu", [float(act.negative_slope)]
    return None


def _plain_tail(y: Tensor, act: Act, add: Tensor | None) -> Tensor:
    if add is not None:
        y = y + add
    return y if act is None else act(y)


def _fast_conv(
    state: FastKernels, conv: nn.Conv2d, x: Tensor, act: Act, add: Tensor | None,
    part: slice | None, with_bias: bool,
) -> Tensor:
    """``act(conv_part(x) + add)`` with cached weights and fused oneDNN kernels where possible;
    the result is in the autocast dtype (else ``x``'s), ``x``'s memory format."""
    dt = autocast_dtype(x.device.type) or x.dtype
    w, b = state.weight(conv, dt, part, with_bias)
    x = x.to(dt)
    if add is not None:
        add = add.to(dt)
    grad = torch.is_grad_enabled() and (
        x.requires_grad or w.requires_grad or (add is not None and add.requires_grad)
    )
    attr = _act_attr(act)
    fused = (
        _PW is not None and x.device.type == "cpu" and dt in state.fused_dtypes and not grad
        and not torch.jit.is_tracing()
        and conv.groups == 1 and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
    )
    if fused:
        pad, stride, dil = list(conv.padding), list(conv.stride), list(conv.dilation)
        # fresh low-precision weights under autocast would be cast again inside: bypass it
        with torch.autocast("cpu", enabled=False):
            if add is None:
                if attr is None:
                    return act(_PW(x, w, b, pad, stride, dil, 1, "none", [], ""))  # type: ignore[misc]
                return _PW(x, w, b, pad, stride, dil, 1, attr[0], attr[1], "")
            relu = attr is not None and attr[0] == "relu"
            y = _PW.binary(
                x, add, w, b, pad, stride, dil, 1, "add", None, "relu" if relu else None, [], None
            )
        if attr is not None and attr[0] == "leaky_relu":
            return F.leaky_relu_(y, attr[1][0])
        return y if relu or act is None else act(y)
    y = F.conv2d(x, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)
    if add is not None:
        y = y + add if grad else y.add_(add)
    if attr is None:
        return act(y)  # type: ignore[misc]
    if attr[0] == "relu":
        return F.relu(y) if grad else F.relu_(y)
    if attr[0] == "leaky_relu":
        return F.leaky_relu(y, attr[1][0]) if grad else F.leaky_relu_(y, attr[1][0])
    return y


def conv_act(conv: nn.Conv2d, x: Tensor, act: Act = None, add: Tensor | None = None) -> Tensor:
    """``act(conv(x) + add)``: ``(B, Cin, H, W) -> (B, Cout, Ho, Wo)``.

    Plain: exactly that, ``conv`` and ``act`` called as modules. Fast path (inside
    :func:`fast_kernels`, unless :func:`runs_as_module`; fused for a zero-padded ``groups == 1``
    conv and ``act`` ``None``, ``nn.ReLU`` or ``nn.LeakyReLU``): one oneDNN call with the cached
    weights, the result in the autocast dtype and ``x``'s memory format. ``add``:
    ``(B, Cout, Ho, Wo)`` or None.
    """
    state = _ACTIVE.get()
    if state is None or runs_as_module(conv, act):
        return _plain_tail(conv(x), act, add)
    return _fast_conv(state, conv, x, act, add, None, True)


def conv_part(
    conv: nn.Conv2d, x: Tensor, part: slice, *, with_bias: bool = True, act: Act = None,
    add: Tensor | None = None,
) -> Tensor:
    """``act(conv_part(x) + add)`` where ``conv_part`` convolves ``x (B, |part|, H, W)`` with the
    input channels ``part`` of ``conv``'s weight (and its bias when ``with_bias``): one term of a
    conv over a channel concatenation, ``W·cat(a, b) = W[:, :C]·a + W[:, C:]·b``. Plain:
    ``F.conv2d``; fast path as :func:`conv_act`."""
    state = _ACTIVE.get()
    if state is None:
        b = conv.bias if with_bias else None
        y = F.conv2d(x, conv.weight[:, part], b, conv.stride, conv.padding, conv.dilation,
                     conv.groups)
        return _plain_tail(y, act, add)
    return _fast_conv(state, conv, x, act, add, part, with_bias)


def conv_shuffle_act(conv: nn.Conv2d, x: Tensor, factor: int, act: Act = None) -> Tensor:
    """``act(pixel_shuffle(conv(x), factor))``: ``(B, Cin, H, W) -> (B, Cout/f², f·H, f·W)``.

    Fast path: the (elementwise) activation commutes with the shuffle (a permutation) and is
    fused into the conv; for ``factor == 2``, a channels-last ``x`` and no autograd the conv runs
    with phase-major output channels (:meth:`FastKernels.phase_major`), which turns the shuffle
    into a copy of contiguous ``Cout/4``-channel pixels into a channels-last result (4× less CPU
    than ``pixel_shuffle``'s channels-last kernel for fp32 at 360×640; the same numbers).
    """
    state = _ACTIVE.get()
    if state is None or runs_as_module(conv, act):
        y = F.pixel_shuffle(conv(x), factor)
        return y if act is None else act(y)
    phase = (
        factor == 2 and not torch.is_grad_enabled() and _channels_last(x)
        and conv.out_channels % 4 == 0 and _act_attr(act) is not None
    )
    if not phase:
        return F.pixel_shuffle(_fast_conv(state, conv, x, act, None, None, True), factor)
    y = _fast_conv(state, state.phase_major(conv), x, act, None, None, True)
    b, c4, h, w = y.shape  # channel (2i + j)·c + ch
    c = c4 // 4
    out = torch.empty(b, c, 2 * h, 2 * w, dtype=y.dtype, device=y.device,
                      memory_format=torch.channels_last)
    # NHWC views: out[b, 2h + i, 2w + j, ch] = y[b, h, w, (2i + j)·c + ch]
    out.permute(0, 2, 3, 1).view(b, h, 2, w, 2, c).copy_(
        y.permute(0, 2, 3, 1).view(b, h, w, 2, 2, c).permute(0, 1, 3, 2, 4, 5)
    )
    return out
