"""Defaults shared by the CLI, the engine and the demo."""

# The model `stvsr upscale` and `stvsr demo` use when none is named: the shipped space-time
# model (x4 space, x2 frame rate; `--fps-factor 1` keeps the rate).
DEFAULT_MODEL = "sfnet-s"

# The model `stvsr upscale --scale 1` uses when none is named: frame interpolation only, at any
# rational `--fps-factor` (Practical-RIFE 3.9).
INTERPOLATION_MODEL = "rife"


def resolve_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` when a CUDA device is available, else ``"cpu"``; anything else
    as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(precision: str, device: str) -> str:
    """``"auto"`` → on CUDA bf16 where supported, else fp16; on a CPU bf16 when it computes
    bf16 natively (oneDNN reports it; there the bf16 paths of EDVR, BasicVSR and sfnet-s ran
    1.3-1.9× faster than fp32), else fp32. Anything else as given."""
    if precision != "auto":
        return precision
    import torch

    if str(device).startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return "bf16" if supported is not None and supported() else "fp32"
