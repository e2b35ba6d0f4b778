"""Helpers shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def randomize_params(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturb every parameter (incl. zero-initialised DCN offset convs) reproducibly; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = 0.002 if "conv_offset" in name else 0.02
            p.add_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


def write_panning_clips(root: Path, clips: int, frames: int, blocks: tuple[int, int],
                        seed: int = 0, step: int = 1) -> Path:
    """Write ``clips`` PNG folders ``root/clip{c}`` of a random 4×4-block texture (``blocks``
    rows × columns of blocks) panning right by ``step`` pixels per frame (wrapping around);
    returns ``root``."""
    from stvsr.data.video import write_image

    rng = np.random.default_rng(seed)
    for c in range(clips):
        d = root / f"clip{c}"
        d.mkdir(parents=True)
        big = np.kron(rng.integers(0, 256, (*blocks, 3)), np.ones((4, 4, 1))).astype(np.uint8)
        for t in range(frames):
            write_image(d / f"{t:03d}.png", np.roll(big, step * t, axis=1))
    return root


class TemporalBox(torch.nn.Module):
    """Toy recurrent ×``scale`` model with temporal reach 2:
    ``out_t = up((x_t + 0.1 Σ_{|d|<=2} x_{t+d}) / 1.5)`` (zero outside the clip)."""

    kind, num_frames = "recurrent", 0

    def __init__(self, scale: int = 1) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        out = x.clone()
        for d in range(-2, 3):
            lo, hi = max(0, -d), min(t, t - d)
            out[:, lo:hi] += 0.1 * x[:, lo + d:hi + d]
        out = out / 1.5
        s = self.scale
        return out.repeat_interleave(s, dim=-1).repeat_interleave(s, dim=-2) if s > 1 else out


def interrupt_after(n: int):
    """An ``on_segment_done`` hook for :func:`stvsr.infer.engine.upscale_video` that simulates
    Ctrl-C once ``n`` segments of the run are saved."""

    def hook(finished: int) -> None:
        if finished >= n:
            raise KeyboardInterrupt(f"test: interrupted after {n} segment(s)")

    return hook
