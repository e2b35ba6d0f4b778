"""Frame <-> tensor conversion: the one place where integer frames become model tensors and back.

* **Frames** are numpy arrays ``(..., H, W, 3)``, RGB, ``uint8`` (0-255) or ``uint16`` (the full
  0-65535 scale, 10/12/16-bit video and PNG).
* **Tensors** are float32 ``(..., 3, H, W)`` with values in [0, 1]: frame / peak (255 or 65535).

Everything that reads frames for a model (``stvsr upscale``, ``stvsr eval``, the trainer's data
and validation, ``stvsr data prepare``, ``stvsr report``, the demo) uses :func:`frame_to_tensor`
/ :func:`frames_to_tensor`, and everything that turns model output into frames to write or to
score uses :func:`tensor_to_frame` (:func:`to_uint8` is its 8-bit form, what
:mod:`stvsr.metrics` scores).

**The rounding rule: clamp to [0, 1], multiply by the peak, round half to even**
(``torch.round``). Why this rule: it is what BasicSR's ``tensor2img`` does (``np.round`` of
``x * 255``; the code behind the BasicVSR / EDVR numbers we reproduce) and what the video writer
path always did, so the frames ``stvsr eval`` scores are bit for bit the frames ``stvsr upscale``
writes. It differs from MATLAB's ``uint8`` (half away from zero, which ``metrics`` used before)
only where ``x · 255`` is exactly ``k + 1/2`` in float32, a few pixels per frame: on Vid4
calendar subsets (basicvsr-vimeo-bi; sfnet-s and stvsr-twostage, both ST-VSR protocols) the
per-frame PSNR-Y moved by at most 3.2e-6 dB, the model outputs themselves being bit-identical.

Not a conversion, and so not covered: :func:`stvsr.data.degradations.quantize` puts simulated
LR inputs on the 8-bit grid as MATLAB ``imresize`` + ``uint8`` does when making the
literature's LR files (half up, computed in float64, where exact ties do not occur on real
frames); that is part of the data protocol.
"""

from __future__ import annotations

import numpy as np
import torch

from stvsr.errors import StvsrError

__all__ = [
    "frame_to_tensor",
    "frames_to_tensor",
    "round_half_even",
    "tensor_to_frame",
    "to_8bit",
    "to_uint8",
]


def _peak(dtype: np.dtype) -> float:
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    raise StvsrError(f"expected uint8 or uint16 frames, got {dtype}")


def frames_to_tensor(rgb: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(..., H, W, 3)`` uint8/uint16 -> ``(..., 3, H, W)`` in [0, 1] (÷ peak, in ``dtype``)."""
    arr = np.asarray(rgb)
    peak = _peak(arr.dtype)
    if arr.dtype == np.uint16:  # torch has no uint16 arithmetic on every version
        arr = arr.astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(arr))
    return t.movedim(-1, -3).to(dtype).div_(peak)


def frame_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8/uint16 -> float32 ``(3, H, W)`` in [0, 1]."""
    if np.ndim(rgb) != 3:
        raise StvsrError(f"expected an (H, W, 3) frame, got shape {np.shape(rgb)}")
    return frames_to_tensor(rgb)


def round_half_even(x: torch.Tensor, peak: float = 255.0) -> torch.Tensor:
    """``round(clamp(x, 0, 1) · peak)``, ties to even: the package's one rule (computed in
    float32, or float64 for float64 input)."""
    x = x.detach()
    x = x if x.dtype == torch.float64 else x.float()
    return x.clamp(0.0, 1.0).mul(peak).round()


def tensor_to_frame(x: torch.Tensor, high: bool = False) -> np.ndarray:
    """Float ``(..., 3, H, W)`` -> ``(..., H, W, 3)`` uint8, or uint16 on 0-65535 when ``high``.

    Values are clamped to [0, 1] and rounded half to even (see the module docstring).
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 3 or x.shape[-3] != 3:
        raise StvsrError("expected a tensor (..., 3, H, W) with values in [0, 1]")
    peak = 65535.0 if high else 255.0
    y = round_half_even(x, peak).movedim(-3, -1).cpu().contiguous().numpy()
    return y.astype(np.uint16 if high else np.uint8)


def to_8bit(rgb: np.ndarray) -> np.ndarray:
    """A uint16 (0-65535) frame as uint8: the nearest ``k`` to ``x / 257`` (never a tie, 257 is
    odd); uint8 frames are returned as they are."""
    if rgb.dtype == np.uint8:
        return rgb
    _peak(rgb.dtype)
    return ((rgb.astype(np.uint32) + 128) // 257).astype(np.uint8)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float RGB ``(..., 3, H, W)`` in [0, 1] -> uint8 ``(..., H, W, 3)`` (clamp, ×255, round
    half to even): the frames that are written and scored."""
    return tensor_to_frame(x, high=False)
