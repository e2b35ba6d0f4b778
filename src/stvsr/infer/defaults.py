"""Defaults shared by the CLI, the engine, the runner, the evaluations and the demo."""

from __future__ import annotations

import warnings

# The model `stvsr upscale` and `stvsr demo` use when none is named: the shipped space-time
# model (x4 space, x2 frame rate; `--fps-factor 1` keeps the rate).
DEFAULT_MODEL = "sfnet-s"

# ... and for input that a lossy codec made (H.264, HEVC, MPEG-2/4, ...; stvsr.infer.source):
# sfnet-s with the BasicVSR store fine-tuned on H.264-coded clips. Held out (docs/evaluation.md
# #compressed-input), ST-VSR on H.264 CRF 28 input: 27.818 against sfnet-s 27.246; on clean
# input it loses 1.43 dB, so it is only for lossy-coded input.
DEFAULT_COMPRESSED_MODEL = "sfnet-s-compressed"

# x264 / x265 input whose settings say CRF below this is coded well enough that the clean model
# serves it better (design, from measurement: the fine-tuned store gains, held out, +0.03 dB at
# CRF 15 (carphone -0.37), +0.27 at 16 (every clip gains), +0.51 at 17, +0.43 at 18, +0.58 at
# 23, +0.56 at 28, +0.43 at 33, and loses 1.60 dB on clean input).
COMPRESSED_MIN_CRF = 16.0

# The model `stvsr upscale --scale 1` uses when none is named: frame interpolation only, at any
# rational `--fps-factor` (Practical-RIFE 3.9).
INTERPOLATION_MODEL = "rife"

# A CPU without native bf16 (AVX512-BF16, AMX or AVX-NE-CONVERT; e.g. an AVX2 EPYC) emulates
# bf16 convolutions: 41x slower than fp32 on such a machine (a 64-channel 3x3 conv, measured).
BF16_EMULATED = ("bf16 on this CPU is emulated (it has no native bf16: AVX512-BF16, AMX or "
                 "AVX-NE-CONVERT), about 40x slower than fp32 here; use {fix}")

# Chunking of the one streaming path (stvsr.infer.runner.restore_stream), by model kind:
# (chunk, overlap) = input frames a chunk owns, context frames run on each side and discarded.
# `stvsr upscale`, `stvsr eval` (S-VSR and both ST-VSR protocols) and the trainer's validation
# all take their defaults from here, so what is scored is what is shipped. A stream no longer
# than `chunk` runs whole: every Vid4 clip (<= 49 frames) for recurrent models (BasicVSR at
# 320x180 needs ~1 GB per 50 frames), and every Vid4 clip's <= 25 LR frames in the ST-VSR full
# protocol, exactly as the published numbers are computed. `window` models slide over the
# stream (their context is half their window); their chunk only sizes `stvsr upscale` segments.
CHUNKING: dict[str, tuple[int, int]] = {
    "recurrent": (50, 8),
    "spacetime": (30, 5),
    "window": (30, 5),
}


def chunking(kind: str, chunk: int | None = None, overlap: int | None = None) -> tuple[int, int]:
    """``(chunk, overlap)`` for a model of ``kind``: the given values, else :data:`CHUNKING`'s."""
    default_chunk, default_overlap = CHUNKING.get(kind, CHUNKING["recurrent"])
    return (default_chunk if chunk is None else chunk,
            default_overlap if overlap is None else overlap)


def resolve_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` when a CUDA device is available, else ``"cpu"``; anything else
    as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def warn_if_bf16_emulated(precision: str, device: str, fix: str) -> None:
    """Warn in one line (saying ``fix``) when ``precision`` is bf16 on a CPU ``device`` that
    has no native bf16 (:data:`BF16_EMULATED`)."""
    from stvsr.ops.fused import cpu_bf16_native

    if precision == "bf16" and str(device).startswith("cpu") and not cpu_bf16_native():
        warnings.warn(BF16_EMULATED.format(fix=fix), RuntimeWarning, stacklevel=3)


def resolve_precision(precision: str, device: str) -> str:
    """``"auto"`` → on CUDA bf16 where supported, else fp16; on a CPU bf16 when it computes
    bf16 natively (oneDNN reports it; there the bf16 paths of EDVR, BasicVSR and sfnet-s ran
    1.3-1.9× faster than fp32), else fp32. Anything else as given.

    Explicit ``bf16`` on a CPU without native bf16 runs (emulated) with a warning."""
    import torch

    from stvsr.ops.fused import cpu_bf16_native

    warn_if_bf16_emulated(precision, device, "--precision fp32 (or auto)")
    if precision != "auto":
        return precision
    if str(device).startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_bf16_native() else "fp32"
