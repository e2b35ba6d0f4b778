"""SFNet-S v1 (preset ``sfnet-s-v1``): the first shipped space-time model, kept for comparison.

The shipped ``sfnet-s`` is now v2 (:mod:`stvsr.models.sfnet_s`); this module keeps v1's
architecture and trained head so that its published numbers can be reproduced.

The paper-scale :class:`~stvsr.models.sfnet.SFNet` cannot be trained on a 2-core CPU, so the
shipped small model keeps SFNet's store-and-fetch structure but takes its propagation from the
official BasicVSR (Vimeo-90K, BI ×4) weights and trains only what is new:

* **Store** (backward pass): BasicVSR's backward trunk runs ``n-1 -> 0`` and keeps one feature
  map per input frame.
* **Fetch** (forward pass): BasicVSR's forward trunk runs ``0 -> n-1``, fetches the stored
  feature of each frame and fuses the two; input frames are reconstructed by BasicVSR's
  upsampler, so their outputs are exactly BasicVSR's.
* **Mid-frame fetch** (:class:`MidFetch`, trained): each new frame at ``t = 1/2`` fetches the
  fused features, LR frames and restored HR frames of its two neighbours. Linear-motion flows to
  ``t`` (Super-SloMo's combination of the SpyNet flows BasicVSR already computed) align the
  neighbours' features; a small residual network then predicts a correction of both flows, a
  blending logit (added to a forward–backward-consistency prior) and an HR residual. The last
  layer starts at zero, so the untrained head is a flow-interpolation two-stage model.

``forward((B, n, 3, h, w)) -> (B, 2n-1, 3, 4h, 4w)``, RGB in ``[0, 1]``, outputs not clamped.
Checkpoints hold ``vsr.*`` (BasicVSR) and ``head.*``; the shipped file holds only ``head.*`` and
the official BasicVSR weights are filled in on load (:meth:`SFNetSV1.convert_state_dict`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from stvsr.errors import StvsrError
from stvsr.models.basicvsr import VIMEO_BI_WEIGHTS, BasicVSR
from stvsr.models.blocks import ResidualBlockNoBN, make_layer
from stvsr.ops.flow import flow_warp, midpoint_motion, resize_flow
from stvsr.registry import register_model
from stvsr.weights import WeightsSpec

__all__ = ["BACKBONE_WEIGHTS", "HEAD_V1_WEIGHTS", "MidFetch", "SFNetSV1", "export_head",
           "init_from_basicvsr"]

BACKBONE_WEIGHTS = VIMEO_BI_WEIGHTS  # filled in on load; must have been pulled


class MidFetch(nn.Module):
    """Synthesises the HR frame half-way between two restored neighbours.

    Inputs (``h, w`` LR; ``H = 4h, W = 4w``): fused BasicVSR features ``g0, g1 (N, C, h, w)``,
    LR frames ``x0, x1 (N, 3, h, w)``, restored frames ``y0, y1 (N, 3, H, W)``, SpyNet flows
    ``f01, f10 (N, 2, h, w)`` (``x0(p) ≈ x1(p + f01(p))``). Output ``(N, 3, H, W)``.

    Args:
        num_feat: channels of the neighbours' features (BasicVSR's ``num_feat``).
        mid_feat: channels of the head's trunk.
        num_block: residual blocks in the trunk.
        scale: spatial factor between the LR and HR frames.
        sigma: forward–backward consistency tolerance, LR pixels.
    """

    def __init__(self, num_feat: int = 64, mid_feat: int = 64, num_block: int = 8,
                 scale: int = 4, sigma: float = 0.5) -> None:
        super().__init__()
        self.scale = scale
        self.sigma = float(sigma)
        in_ch = 2 * num_feat + 2 * 3 + 2 + 2
        self.conv_in = nn.Conv2d(in_ch, mid_feat, 3, 1, 1)
        self.body = make_layer(ResidualBlockNoBN, num_block, num_feat=mid_feat)
        # 2 + 2 flow corrections, 1 blending logit, 3·s² HR residual (pixel-shuffled).
        self.conv_out = nn.Conv2d(mid_feat, 5 + 3 * scale * scale, 3, 1, 1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, g0: Tensor, g1: Tensor, x0: Tensor, x1: Tensor, y0: Tensor, y1: Tensor,
                f01: Tensor, f10: Tensor) -> Tensor:
        s = self.scale
        m = midpoint_motion(f01, f10, self.sigma)
        ft0, ft1 = m.ft0, m.ft1
        prior = torch.log(m.w0 + 1e-4) - torch.log(m.w1 + 1e-4)

        feats = torch.cat([
            flow_warp(g0, ft0, padding_mode="border"), flow_warp(g1, ft1, padding_mode="border"),
            flow_warp(x0, ft0, padding_mode="border"), flow_warp(x1, ft1, padding_mode="border"),
            torch.tanh(m.e0t), torch.tanh(m.e1t), ft0,
        ], dim=1)
        z = self.lrelu(self.conv_in(feats))
        z = self.conv_out(self.body(z))
        d0, d1, logit, res = z[:, 0:2], z[:, 2:4], z[:, 4:5], z[:, 5:]

        big = y0.shape[-2:]
        w0i = flow_warp(y0, resize_flow(ft0 + d0, tuple(big)), padding_mode="border")
        w1i = flow_warp(y1, resize_flow(ft1 + d1, tuple(big)), padding_mode="border")
        alpha = torch.sigmoid(F.interpolate(prior + logit, size=big, mode="bilinear",
                                            align_corners=False))
        return alpha * w0i + (1 - alpha) * w1i + F.pixel_shuffle(res, s)


class SFNetSV1(nn.Module):
    """Store-and-fetch ST-VSR on a BasicVSR backbone (see the module docstring).

    ``(B, n, 3, h, w) -> (B, 2n-1, 3, 4h, 4w)`` for ``n >= 2``; even outputs are BasicVSR's
    restorations of the inputs, odd outputs the :class:`MidFetch` frames.

    Args:
        num_feat, num_block: BasicVSR's propagation width and depth (64 / 30 for the official
            weights).
        mid_feat, mid_block: width and depth of the mid-frame head.
    """

    kind = "spacetime"
    scale = 4
    num_frames = 0

    def __init__(self, num_feat: int = 64, num_block: int = 30, mid_feat: int = 64,
                 mid_block: int = 8) -> None:
        super().__init__()
        self.vsr = BasicVSR(num_feat=num_feat, num_block=num_block)
        self.head = MidFetch(num_feat=num_feat, mid_feat=mid_feat, num_block=mid_block)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[2] != 3:
            raise StvsrError(f"sfnet-s-v1 expects input (B, n, 3, h, w); got {tuple(x.shape)}")
        b, n, _, h, w = x.shape
        if n < 2:
            raise StvsrError(f"sfnet-s-v1 needs at least 2 input frames, got {n}")
        flows = self.vsr.compute_flows(x)
        assert flows is not None
        out = x.new_empty(b, 2 * n - 1, 3, 4 * h, 4 * w)
        prev_g = prev_y = None
        for i, g in enumerate(self.vsr.iter_features(x, flows)):
            y = self.vsr.reconstruct(g, x[:, i])
            out[:, 2 * i] = y
            if i > 0:
                out[:, 2 * i - 1] = self.head(prev_g, g, x[:, i - 1], x[:, i], prev_y, y,
                                              flows[0][:, i - 1], flows[1][:, i - 1])
            prev_g, prev_y = g, y
        return out

    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A head-only checkpoint (every key ``head.*``) gets the official BasicVSR weights."""
        if state and all(k.startswith("head.") for k in state):
            from stvsr.weights import local_path, read_checkpoint

            backbone = read_checkpoint(local_path(BACKBONE_WEIGHTS))
            state = {**{f"vsr.{k}": v for k, v in backbone.items()}, **state}
        return state


def init_from_basicvsr(model: SFNetSV1, state: dict[str, Tensor]) -> list[str]:
    """Load a BasicVSR state dict into ``model.vsr`` (strictly); returns the keys set."""
    from stvsr.weights import load_state_dict_strict

    load_state_dict_strict(model.vsr, state, source="BasicVSR checkpoint")
    return [f"vsr.{k}" for k in model.vsr.state_dict()]


def export_head(checkpoint: str | Path, out: str | Path) -> str:
    """Write the ``head.*`` tensors of a full sfnet-s checkpoint to ``out`` (safetensors).

    The backbone must be the official :data:`BACKBONE_WEIGHTS` (checked tensor by tensor),
    since that is what a head-only file is completed with on load. Returns the file's sha256.
    """
    from stvsr.weights import export_trained_part, local_path, read_checkpoint

    backbone = read_checkpoint(local_path(BACKBONE_WEIGHTS))
    return export_trained_part(checkpoint, out, {f"vsr.{k}": v for k, v in backbone.items()},
                               metadata={"backbone": BACKBONE_WEIGHTS.name})


HEAD_V1_WEIGHTS = WeightsSpec(
    name="sfnet-s-v1",
    filename="sfnet_s_head.safetensors",
    sha256="ec69302664caa90563002b3f508f8e58118c24b89d68976d764729dec254a37b",
    license="Apache-2.0 (stvsr); backbone: official BasicVSR weights, Apache-2.0 (BasicSR)",
    packaged="pretrained/sfnet_s_head.safetensors",
    description="sfnet-s mid-frame head trained on the stvsr CPU corpus "
                "(backbone: basicvsr-vimeo-bi, filled in on load)",
)
register_model(
    "sfnet-s-v1", SFNetSV1, weights=HEAD_V1_WEIGHTS, parts=[BACKBONE_WEIGHTS],
    description="SFNet-S v1 x4/x2t: official BasicVSR store/fetch + the first trained "
                "mid-frame head (kept for comparison; sfnet-s is v2)",
)
