"""LRClean: a multi-frame network that removes compression artifacts at LR size, and the
two-stage restorers built on it (clean the encoded LR clip, then restore it).

*Design* (ours, after EDVR's two-stage restoration: a first stage that cleans the degraded
input before the restorer; and RealBasicVSR's cleaning module, which does it at LR size): a
video that reached the user as H.264 at a modest rate carries blocking, ringing and smeared
texture that a ×4 network trained on clean frames magnifies. :class:`LRClean` maps each
encoded LR frame, with its neighbours ``t - r ... t + r`` (mirrored at the clip's ends), to the
clean LR frame the clip was encoded from. Its loss is at LR size, so it trains on a 2-core CPU;
the restorers behind it (official BasicVSR, ``sfnet-s``) are unchanged.

Structure (``C`` = ``num_feat``, ``F`` = ``frame_feat``): per-frame features
``lrelu(conv3x3(3 → F))`` computed once per frame, the ``2r + 1`` feature maps of a window
concatenated and fused by ``conv3x3((2r+1)F → C)`` + LeakyReLU, ``num_block`` residual blocks,
``conv3x3(C → 3)``, added to the centre frame. ``forward((B, T, 3, h, w)) -> (B, T, 3, h, w)``
(kind ``recurrent``, scale 1), RGB in [0, 1], not clamped.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stvsr.errors import StvsrError
from stvsr.models.blocks import ResidualBlockNoBN, make_layer
from stvsr.registry import register_model

__all__ = ["CleanThenRestore", "LRClean", "build_clean_restore", "window_indices"]


def window_indices(num_frames: int, radius: int) -> list[list[int]]:
    """For each frame ``t`` of a clip of ``num_frames``, its window ``t - r ... t + r`` with
    indices mirrored at the ends (``-1 -> 1``, ``T -> T - 2``; repeatedly, for clips shorter
    than the window)."""
    last = num_frames - 1
    period = 2 * last

    def mirror(k: int) -> int:
        if period == 0:
            return 0
        k %= period
        return period - k if k > last else k

    return [[mirror(k) for k in range(t - radius, t + radius + 1)] for t in range(num_frames)]


class LRClean(nn.Module):
    """Multi-frame compression-artifact removal at LR size (see the module docstring).

    Args:
        num_feat: channels ``C`` of the fused trunk.
        frame_feat: channels ``F`` of each frame's features.
        num_block: residual blocks in the trunk.
        radius: neighbours on each side (window ``2r + 1``).
        group: output frames computed together in one pass of the trunk (memory only; the
            result does not depend on it).
    """

    kind = "recurrent"
    scale = 1
    num_frames = 0

    def __init__(self, num_feat: int = 64, frame_feat: int = 32, num_block: int = 8,
                 radius: int = 2, group: int = 8) -> None:
        super().__init__()
        if radius < 0 or group < 1:
            raise StvsrError("LRClean: radius must be >= 0 and group >= 1")
        self.radius = radius
        self.group = group
        self.conv_frame = nn.Conv2d(3, frame_feat, 3, 1, 1)
        self.conv_fuse = nn.Conv2d((2 * radius + 1) * frame_feat, num_feat, 3, 1, 1)
        self.body = make_layer(ResidualBlockNoBN, num_block, num_feat=num_feat)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)
        nn.init.zeros_(self.conv_last.weight)  # starts as the identity
        nn.init.zeros_(self.conv_last.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, 3, h, w)`` encoded LR → ``(B, T, 3, h, w)`` cleaned LR."""
        if x.dim() != 5 or x.shape[2] != 3:
            raise StvsrError(f"LRClean expects (B, T, 3, h, w), got {tuple(x.shape)}")
        b, t, c, h, w = x.shape
        feats = self.lrelu(self.conv_frame(x.reshape(b * t, c, h, w))).view(b, t, -1, h, w)
        windows = window_indices(t, self.radius)
        out = []
        for start in range(0, t, self.group):
            idx = torch.tensor(windows[start:start + self.group], device=x.device)
            n = idx.shape[0]
            stacked = feats[:, idx.flatten()].reshape(b * n, -1, h, w)  # (B n, (2r+1) F, h, w)
            y = self.lrelu(self.conv_fuse(stacked))
            y = self.conv_last(self.body(y)).view(b, n, c, h, w)
            out.append(x[:, start:start + n] + y)
        return torch.cat(out, 1)


class CleanThenRestore(nn.Module):
    """Two-stage restoration: :class:`LRClean` on the LR clip, then ``restorer`` on its output.

    Takes the restorer's contract (``kind``, ``scale``, ``num_frames``): ``recurrent``
    ``(B, T, 3, h, w) -> (B, T, 3, sh, sw)`` or ``spacetime`` ``(B, n, 3, h, w) -> (B, 2n-1, 3,
    sh, sw)``. The cleaned clip is clamped to [0, 1] before the restorer (its training range).
    """

    def __init__(self, cleaner: nn.Module, restorer: nn.Module) -> None:
        super().__init__()
        if getattr(restorer, "kind", None) not in ("recurrent", "spacetime"):
            raise StvsrError("CleanThenRestore needs a recurrent or space-time restorer")
        self.cleaner = cleaner
        self.restorer = restorer
        self.kind = restorer.kind
        self.scale = restorer.scale
        self.num_frames = getattr(restorer, "num_frames", 0)

    def forward(self, x: Tensor) -> Tensor:
        return self.restorer(self.cleaner(x).clamp(0.0, 1.0))


register_model("lr-clean-untrained", LRClean,
               description="LRClean architecture (compression removal at LR size), randomly "
                           "initialised (for training)")


def build_clean_restore(restorer: str, cleaner_weights: str | None = None,
                        pretrained: bool = True) -> CleanThenRestore:
    """:class:`CleanThenRestore` of an :class:`LRClean` (from ``cleaner_weights``, a trained
    checkpoint, else randomly initialised) and the preset ``restorer`` (its weights when
    ``pretrained``; they must have been pulled, nothing is downloaded here)."""
    from stvsr.registry import create_model

    cleaner = create_model("lr-clean-untrained", weights=cleaner_weights)
    return CleanThenRestore(cleaner, create_model(restorer,
                                                  weights="default" if pretrained else None))
