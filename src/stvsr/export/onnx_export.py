"""Export a preset to ONNX and check it at once against PyTorch with onnxruntime.

``export_onnx("basicvsr-vimeo-bi", "bvsr.onnx", frames=5, size=(64, 64))`` writes

* ``bvsr.onnx`` — one input ``lr`` ``(1, N, 3, H, W)`` float32 RGB in ``[0, 1]`` and one output
  ``hr``: ``(1, N, 3, sH, sW)`` (recurrent models), ``(1, 2N-1, 3, sH, sW)`` (space-time models:
  even outputs restore the inputs, odd outputs are the new in-between frames) or
  ``(1, 3, sH, sW)`` (window models such as EDVR: the centre frame). Outputs are float32 RGB,
  nominally in ``[0, 1]`` but not clamped (clamp, ×255 and round for 8-bit frames);
* ``bvsr.json`` — that description in machine-readable form (names, layout, value range, scale,
  frames in/out, opset, size constraints) plus the result of the check.

The network is traced (``torch.onnx.export(dynamo=False)``) with a fixed number of input frames
(the recurrent loops are unrolled) and batch 1; ``dynamic_size`` keeps H and W symbolic (the
flow and padding code of :mod:`stvsr.ops.flow` / :mod:`stvsr.models.spynet` has trace-friendly
branches for that). EDVR's deformable convolutions become ONNX ``DeformConv`` (opset >= 19,
``dcn="deformconv"``) or, for runtimes without that operator, an equivalent ``GridSample`` +
``MatMul`` graph (``dcn="gridsample"``, opset >= 16).

The check runs onnxruntime (CPU) and PyTorch on the same random input (smooth random frames, see
:func:`check_input`) and fails when the largest absolute difference exceeds ``tolerance`` (1e-4
for fp32). When onnxruntime lacks ``DeformConv``,
the ``DeformConv`` graph is checked with ``onnx.reference`` instead (slow: small sizes only).
"""

from __future__ import annotations

import contextlib
import json
import time
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from stvsr.errors import StvsrError

__all__ = [
    "DCN_MODES",
    "check_input",
    "check_onnx",
    "deform_conv_grid_sample",
    "export_onnx",
    "has_weights",
    "metadata_path",
    "require_onnx",
]

DCN_MODES = ("auto", "deformconv", "gridsample")
DEFAULT_OPSET = 19
TOLERANCE = 1e-4
INPUT_NAME = "lr"
OUTPUT_NAME = "hr"


def has_weights(model: nn.Module) -> bool:
    """Whether ``model`` or a sub-model built with weights (e.g. the two-stage baseline's
    BasicVSR) was loaded from a checkpoint."""
    return any(getattr(m, "pretrained", False) for m in model.modules())


def require_onnx() -> tuple[Any, Any]:
    """``(onnx, onnxruntime)``, or a clear error telling how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise StvsrError(
            f"ONNX export needs the optional packages onnx and onnxruntime ({exc.name} is "
            "missing): pip install 'stvsr[onnx]'"
        ) from None
    return onnx, onnxruntime


def metadata_path(onnx_path: str | Path) -> Path:
    """Where the description of ``onnx_path`` goes: the same name with ``.json``."""
    return Path(onnx_path).with_suffix(".json")


# --------------------------------------------------------------------------- deformable conv


def deform_conv_grid_sample(
    x: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    dg: int,
) -> Tensor:
    """DCNv2 as ``GridSample`` + ``MatMul`` with traceable (symbolic) sizes.

    Same layout and result as :func:`stvsr.ops.dcn.modulated_deform_conv2d` (offset channel
    ``g·2K + 2k`` = dy, ``+1`` = dx; mask channel ``g·K + k``; bilinear, corners outside read
    zero), for one conv group: ``x (B, Cin, H, W)``, ``offset (B, 2·dg·K, Ho, Wo)``,
    ``mask (B, dg·K, Ho, Wo)`` (already through the sigmoid) ``-> (B, Cout, Ho, Wo)``.
    """
    b, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    k = kh * kw
    ho, wo = offset.shape[-2:]
    dt = x.dtype
    off = offset.reshape(b * dg, k, 2, ho, wo)
    ki = (torch.arange(kh, dtype=dt).repeat_interleave(kw) * dilation[0]).view(1, k, 1, 1)
    kj = (torch.arange(kw, dtype=dt).repeat(kh) * dilation[1]).view(1, k, 1, 1)
    oy = (torch.arange(ho, dtype=dt) * stride[0] - padding[0]).view(1, 1, -1, 1)
    ox = (torch.arange(wo, dtype=dt) * stride[1] - padding[1]).view(1, 1, 1, -1)
    py = oy + ki + off[:, :, 0]
    px = ox + kj + off[:, :, 1]
    gx = (2.0 * px + 1.0) / w - 1.0  # align_corners=False normalisation
    gy = (2.0 * py + 1.0) / h - 1.0
    grid = torch.stack((gx, gy), dim=-1).reshape(b * dg, k * ho, wo, 2)
    cols = F.grid_sample(x.reshape(b * dg, cin // dg, h, w), grid, mode="bilinear",
                         padding_mode="zeros", align_corners=False)  # (B·dg, Cin/dg, K·Ho, Wo)
    cols = cols.reshape(b, dg, cin // dg, k, ho, wo) * mask.reshape(b, dg, 1, k, ho, wo)
    out = torch.matmul(weight.reshape(cout, cin * k), cols.reshape(b, cin * k, ho * wo))
    out = out.reshape(b, cout, ho, wo)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


@torch.library.custom_op("stvsr_export::deform_conv", mutates_args=())
def _deform_conv_op(x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, bias: Tensor,
                    stride: list[int], padding: list[int], dilation: list[int],
                    dg: int) -> Tensor:
    """:func:`deform_conv_grid_sample` as one traced op, exported as ONNX ``DeformConv``."""
    return deform_conv_grid_sample(x, offset, mask, weight, bias, tuple(stride), tuple(padding),
                                   tuple(dilation), dg)


@_deform_conv_op.register_fake
def _(x, offset, mask, weight, bias, stride, padding, dilation, dg):
    return x.new_empty(x.shape[0], weight.shape[0], *offset.shape[-2:])


def _deform_conv_symbolic(g, x, offset, mask, weight, bias, stride, padding, dilation, dg):
    from torch.onnx import symbolic_helper as sh

    stride = sh._get_const(stride, "is", "stride")
    padding = sh._get_const(padding, "is", "padding")
    dilation = sh._get_const(dilation, "is", "dilation")
    dg = sh._get_const(dg, "i", "dg")
    kh, kw = sh._get_tensor_sizes(weight)[-2:]
    return g.op(
        "DeformConv", x, weight, offset, bias, mask,
        dilations_i=list(dilation), group_i=1, kernel_shape_i=[kh, kw], offset_group_i=dg,
        pads_i=[padding[0], padding[1], padding[0], padding[1]], strides_i=list(stride),
    )


_SYMBOLIC_REGISTERED: set[int] = set()


def _register_symbolic(opset: int) -> None:
    if opset not in _SYMBOLIC_REGISTERED:
        torch.onnx.register_custom_op_symbolic("stvsr_export::deform_conv",
                                               _deform_conv_symbolic, opset)
        _SYMBOLIC_REGISTERED.add(opset)


def _dcn_pack_forward(mode: str) -> Callable[..., Tensor]:
    """A :class:`~stvsr.ops.dcn.DCNv2Pack` ``forward`` that traces to ONNX (``mode`` =
    ``"deformconv"`` or ``"gridsample"``); same maths as the module's own forward."""

    def forward(self, x: Tensor, feat: Tensor) -> Tensor:
        co = self.conv_offset
        out = F.conv2d(feat, co.weight, co.bias, co.stride, co.padding, co.dilation)
        n = self.conv_offset.out_channels // 3
        offset, mask = out[:, : 2 * n], torch.sigmoid(out[:, 2 * n:])
        if self.max_offset is not None:
            offset = offset.clamp(-float(self.max_offset), float(self.max_offset))
        args = (x, offset, mask, self.weight, self.bias, self.stride, self.padding,
                self.dilation, self.deformable_groups)
        if mode == "deformconv":
            return _deform_conv_op(x, offset, mask, self.weight, self.bias, list(self.stride),
                                   list(self.padding), list(self.dilation),
                                   self.deformable_groups)
        return deform_conv_grid_sample(*args)

    return forward


@contextlib.contextmanager
def _export_ready(model: nn.Module, dcn: str) -> Iterator[None]:
    """Traceable DCNs for the duration of an export (the plain networks trace as NCHW convs)."""
    from stvsr.ops.dcn import DCNv2Pack

    patched: list[nn.Module] = []
    for m in model.modules():
        if isinstance(m, DCNv2Pack):
            m.forward = types.MethodType(_dcn_pack_forward(dcn), m)
            patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


# --------------------------------------------------------------------------- description


def _layout(model: nn.Module, frames: int) -> dict[str, Any]:
    kind = model.kind
    s = int(model.scale)
    if kind == "window":
        centre = int(getattr(model, "center_frame_idx", getattr(model, "num_frames", frames) // 2))
        return {"frames_out": 1, "output_layout": "NCHW", "output_shape": [1, 3, s, s],
                "output_frames": f"the restored input frame {centre} (window centre)"}
    if kind == "spacetime":
        return {"frames_out": 2 * frames - 1, "output_layout": "NTCHW",
                "output_shape": [1, 2 * frames - 1, 3, s, s],
                "output_frames": "even indices 2i restore input frame i; odd indices 2i+1 are "
                                 "new frames half-way between inputs i and i+1"}
    return {"frames_out": frames, "output_layout": "NTCHW", "output_shape": [1, frames, 3, s, s],
            "output_frames": "output frame i restores input frame i"}


def _describe(model: nn.Module, name: str, frames: int, size: tuple[int, int], opset: int,
              dcn: str | None, dynamic: bool, multiple: int) -> dict[str, Any]:
    s = int(model.scale)
    lay = _layout(model, frames)
    h: Any = "H" if dynamic else size[0]
    w: Any = "W" if dynamic else size[1]
    out_shape = list(lay.pop("output_shape"))
    out_shape[-2:] = [f"{s}*H" if dynamic else s * size[0], f"{s}*W" if dynamic else s * size[1]]
    layout = lay.pop("output_layout")
    return {
        "format": "stvsr-onnx/1",
        "model": name,
        "kind": model.kind,
        "weights": getattr(model, "weights_source", None),
        "pretrained": has_weights(model),
        "opset": opset,
        "deformable_conv": dcn,
        "inputs": [{
            "name": INPUT_NAME, "dtype": "float32", "layout": "NTCHW",
            "shape": [1, frames, 3, h, w], "color": "RGB", "value_range": [0.0, 1.0],
            "note": "8-bit frames divided by 255",
        }],
        "outputs": [{
            "name": OUTPUT_NAME, "dtype": "float32", "layout": layout, "shape": out_shape,
            "color": "RGB", "value_range": [0.0, 1.0],
            "note": "not clamped: clamp to [0, 1], multiply by 255 and round for 8-bit frames",
        }],
        "scale": s,
        "time_factor": 2 if model.kind == "spacetime" else 1,
        "frames_in": frames,
        **lay,
        "batch": 1,
        "dynamic_size": dynamic,
        "export_size": list(size),
        "size_multiple": multiple,
        "torch": torch.__version__,
    }


# --------------------------------------------------------------------------- export and check


def _size_multiple(model: nn.Module) -> int:
    """H and W of a dynamic-size graph must be multiples of this (EDVR pads otherwise, and the
    padding is traced for the export size only)."""
    mults = [int(m.multiple) for m in model.modules() if isinstance(getattr(m, "multiple", None),
                                                                     int)]
    return max(mults, default=1)


def _run_torch(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        y = model(x)
    return (y[0] if isinstance(y, tuple) else y).float()


def check_input(frames: int, size: tuple[int, int], seed: int = 0) -> Tensor:
    """The check's input ``(1, frames, 3, H, W)``: random *smooth* frames (uniform noise at 1/8
    of the size, bicubic-upsampled, clamped to [0, 1]; independent per frame).

    White noise would make the optical flow of the flow-based models chaotic: there fp32
    rounding differences between two runtimes grow through the recurrence (sfnet-s at 180x320:
    4e-4 on input frames, against 5e-7 for smooth random frames), which says nothing about the
    export.
    """
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    low = torch.rand(frames, 3, max(2, h // 8), max(2, w // 8), generator=gen)
    x = F.interpolate(low, size=(h, w), mode="bicubic", align_corners=False).clamp_(0.0, 1.0)
    return x.unsqueeze(0).contiguous()


def check_onnx(path: str | Path, model: nn.Module, size: tuple[int, int], frames: int,
               *, seed: int = 0) -> dict[str, Any]:
    """Run ``path`` with onnxruntime (CPU) and ``model`` with PyTorch on one random input of
    ``(1, frames, 3, *size)`` (:func:`check_input`); returns ``{"runtime", "max_abs_diff",
    "size", "seconds_*"}``.

    A graph with ``DeformConv`` that onnxruntime cannot run is evaluated by ``onnx.reference``.
    """
    onnx, ort = require_onnx()
    x = check_input(frames, size, seed)
    t0 = time.perf_counter()
    ref = _run_torch(model, x).numpy()
    t_torch = time.perf_counter() - t0
    runtime = f"onnxruntime {ort.__version__}"
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        t0 = time.perf_counter()
        got = sess.run(None, {INPUT_NAME: x.numpy()})[0]
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        text = str(exc)
        if "DeformConv" not in text:
            raise StvsrError(
                f"onnxruntime cannot run {path}: {' '.join(text.split())[:300]}") from None
        from onnx.reference import ReferenceEvaluator

        runtime = f"onnx.reference {onnx.__version__} (onnxruntime {ort.__version__} has no " \
                  "DeformConv kernel)"
        t0 = time.perf_counter()
        got = ReferenceEvaluator(str(path)).run(None, {INPUT_NAME: x.numpy()})[0]
    t_onnx = time.perf_counter() - t0
    if tuple(got.shape) != tuple(ref.shape):
        raise StvsrError(f"{path}: output shape {tuple(got.shape)} differs from PyTorch's "
                         f"{tuple(ref.shape)}")
    diff = float(abs(got.astype("float64") - ref.astype("float64")).max())
    return {"runtime": runtime, "size": list(size), "max_abs_diff": diff,
            "seconds_torch": round(t_torch, 3), "seconds_onnx": round(t_onnx, 3)}


def _second_size(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """A different size (taller and wider by a few multiples) for checking a dynamic graph."""
    step = max(4, multiple)
    return (size[0] + 2 * step, size[1] + 3 * step)


def export_onnx(
    model_name: str,
    out: str | Path,
    *,
    frames: int | None = None,
    size: tuple[int, int] = (64, 64),
    dynamic_size: bool = False,
    opset: int | None = None,
    weights: str | None = "default",
    dcn: str = "auto",
    check: bool = True,
    tolerance: float = TOLERANCE,
    model: nn.Module | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Export preset ``model_name`` (or ``model``, an already built network) to ``out``.

    Args:
        frames: input frames N (default: the window of a window model, 5 for recurrent and 4
            for space-time models).
        size: LR ``(H, W)`` of the traced input (and of the check).
        dynamic_size: keep H and W symbolic (checked at a second size too).
        opset: ONNX opset (default 19; ``DeformConv`` needs 19).
        weights: as :func:`stvsr.registry.create_model`.
        dcn: ``"deformconv"``, ``"gridsample"`` or ``"auto"`` (DeformConv from opset 19).
        check: compare onnxruntime with PyTorch and raise above ``tolerance``.

    Returns:
        The description written beside ``out`` (see the module docstring), with ``check``.
    """
    require_onnx()
    from stvsr.registry import create_model

    if dcn not in DCN_MODES:
        raise StvsrError(f"unknown dcn mode {dcn!r}; choose one of {', '.join(DCN_MODES)}")
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if opset < 16:
        raise StvsrError(f"opset {opset} is too old: GridSample needs 16 or later")
    if model is None:
        model = create_model(model_name, weights=weights)
    model = model.float().eval()
    kind = model.kind
    if frames is None:
        frames = int(model.num_frames) if kind == "window" else (4 if kind == "spacetime" else 5)
    if kind == "window" and frames != int(model.num_frames):
        raise StvsrError(f"{model_name} restores the centre of {model.num_frames}-frame windows; "
                         f"pass --frames {model.num_frames}")
    if frames < (2 if kind == "spacetime" else 1):
        raise StvsrError(f"{model_name} needs at least 2 input frames, got {frames}")
    h, w = int(size[0]), int(size[1])
    if h < 8 or w < 8:
        raise StvsrError(f"size {h}x{w} is too small; use at least 8x8")
    multiple = _size_multiple(model)
    if dynamic_size and (h % multiple or w % multiple):
        raise StvsrError(f"{model_name} with --dynamic-size: H and W must be multiples of "
                         f"{multiple}; got {h}x{w}")
    if dynamic_size and model_name.endswith("bicubic"):
        raise StvsrError(f"{model_name}'s MATLAB-bicubic weights depend on the frame size: "
                         "export it without --dynamic-size")
    from stvsr.ops.dcn import DCNv2Pack

    has_dcn = any(isinstance(m, DCNv2Pack) for m in model.modules())
    mode = None
    if has_dcn:
        mode = dcn if dcn != "auto" else ("deformconv" if opset >= 19 else "gridsample")
        if mode == "deformconv" and opset < 19:
            raise StvsrError(f"DeformConv needs opset 19 or later (got {opset}); pass --opset 19 "
                             "or --dcn gridsample")
    if mode == "deformconv":
        _register_symbolic(opset)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    x = torch.rand(1, frames, 3, h, w, generator=torch.Generator().manual_seed(1))
    dyn = {INPUT_NAME: {3: "H", 4: "W"},
           OUTPUT_NAME: ({2: "sH", 3: "sW"} if kind == "window" else {3: "sH", 4: "sW"})}
    t0 = time.perf_counter()
    tmp = out.with_name(out.name + ".partial")
    with warnings.catch_warnings(), _export_ready(model, mode or "gridsample"), \
            torch.enable_grad():
        warnings.simplefilter("ignore")  # TracerWarnings for every constant size comparison
        torch.onnx.export(
            model, (x,), str(tmp), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes=dyn if dynamic_size else None, do_constant_folding=True,
        )
    tmp.replace(out)
    seconds = time.perf_counter() - t0
    meta = _describe(model, model_name, frames, (h, w), opset, mode, dynamic_size, multiple)
    meta["export_seconds"] = round(seconds, 2)
    log(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, opset {opset}"
        + (f", deformable conv as {mode}" if mode else "") + f") in {seconds:.1f} s")
    if check:
        checks = [check_onnx(out, model, (h, w), frames)]
        if dynamic_size:
            checks.append(check_onnx(out, model, _second_size((h, w), multiple), frames))
        worst = max(c["max_abs_diff"] for c in checks)
        meta["check"] = {"tolerance": tolerance, "max_abs_diff": worst, "runs": checks,
                         "input": "random smooth frames (check_input), seed 0"}
        for c in checks:
            log(f"check {c['size'][0]}x{c['size'][1]}: max abs difference {c['max_abs_diff']:.3g} "
                f"({c['runtime']} vs PyTorch)")
        metadata_path(out).write_text(json.dumps(meta, indent=2))
        if not worst <= tolerance:
            raise StvsrError(f"{out}: ONNX output differs from PyTorch by {worst:.3g} "
                             f"(> {tolerance:g}); the export is not faithful")
    else:
        metadata_path(out).write_text(json.dumps(meta, indent=2))
    log(f"wrote {metadata_path(out)}")
    return meta
