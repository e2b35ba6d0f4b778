"""SFNet-S v2: store-and-fetch ST-VSR on official BasicVSR and RIFE (the shipped ``sfnet-s``).

The paper-scale :class:`~stvsr.models.sfnet.SFNet` cannot be trained on the hardware this
project has, so the shipped model keeps its store-and-fetch structure and takes the parts that
pretrained weights reachable here do well:

* **Store** (backward pass) and **adjacent fetch** (forward pass): official BasicVSR (Vimeo-90K
  BI ×4), frozen. Every input frame gets its fused feature ``g_i`` (``64 × h × w``); input
  frames are reconstructed by BasicVSR's upsampler, so they come out exactly as BasicVSR's.
* **Motion to the new frame**: official Practical-RIFE 3.9, frozen, run on the two restored HR
  neighbours at ``t = ½``: flows ``F_t0, F_t1`` and a blending mask (``use_rife=False``: the
  linear-motion combination of BasicVSR's own SpyNet flows, as ``sfnet-s-v1``).
* **Distant fetch** (``use_df``, trained): the new frame between inputs ``i`` and ``i+1`` also
  reads the stored features of the inputs two steps away, ``i-1`` and ``i+2``, with the
  content-matching local-window attention of :class:`~stvsr.models.sfnet_blocks.DistantFetch`
  (stable under large motion because it matches features instead of regressing offsets).
* **Fusion head** (:class:`MidFusion`, trained): at LR, the neighbours' features and frames
  warped to ``t``, the mask and flows and the distant read go through a residual trunk, which
  predicts a correction of both flows and of the mask (applied to the HR warps) and an HR
  residual through a pixel-shuffle upsampler — so the new frame is re-synthesised from
  features, not only blended from bilinearly warped (hence softened) neighbours. Its last layers
  start at zero: the untrained model is exactly ``stvsr-twostage-rife``.

``forward((B, n, 3, h, w)) -> (B, 2n-1, 3, 4h, 4w)``, RGB in ``[0, 1]``, outputs not clamped.
Checkpoints hold ``vsr.*``, ``rife.*`` and ``head.*``; the shipped file holds only ``head.*``,
and the official BasicVSR and RIFE weights are filled in on load.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from stvsr.errors import StvsrError
from stvsr.models.basicvsr import COMPRESSED_WEIGHTS, VIMEO_BI_WEIGHTS, BasicVSR
from stvsr.models.blocks import ResidualBlockNoBN, make_layer
from stvsr.models.rife import RIFE, RIFE_WEIGHTS
from stvsr.models.sfnet_blocks import DistantFetch, StoreEntry
from stvsr.ops.flow import flow_warp, midpoint_motion, resize_flow
from stvsr.registry import register_model
from stvsr.weights import WeightsSpec, apply_delta, is_delta, local_path, read_checkpoint

__all__ = ["BACKBONE_WEIGHTS", "HEAD_WEIGHTS", "MidFusion", "SFNetS", "export_head"]

# the official parts, filled in on load (they must have been pulled: `stvsr weights pull`)
BACKBONE_WEIGHTS = {"vsr.": VIMEO_BI_WEIGHTS, "rife.": RIFE_WEIGHTS}


class MidFusion(nn.Module):
    """Synthesises the HR frame at ``t = ½`` from its two restored neighbours (trained part).

    Inputs (``h, w`` LR; ``H = 4h, W = 4w``): fused BasicVSR features ``g0, g1 (N, C, h, w)``,
    LR frames ``x0, x1 (N, 3, h, w)``, restored frames ``y0, y1 (N, 3, H, W)``, HR flows from
    ``t`` ``flow (N, 4, H, W)`` (``F_t0``, ``F_t1``), blending logit ``mask (N, 1, H, W)``
    (weight of ``y0`` is its sigmoid), and the distant store entries ``keys (N, M, Ck, h/2,
    w/2)``, ``values (N, M, Cv, h/2, w/2)`` (``M = 0``: no read). Output ``(N, 3, H, W)``.
    """

    def __init__(self, num_feat: int = 64, mid_feat: int = 64, num_block: int = 10,
                 scale: int = 4, use_df: bool = True, key_channels: int = 32,
                 value_channels: int = 32, radius: int = 3, warp_mode: str = "bicubic") -> None:
        super().__init__()
        self.warp_mode = warp_mode
        if scale != 4:
            raise StvsrError("MidFusion is built for x4")
        self.scale = scale
        self.use_df = use_df
        c = mid_feat
        self.conv_in = nn.Conv2d(2 * num_feat + 2 * 3 + 1 + 4, c, 3, 1, 1)
        if use_df:
            self.store = StoreEntry(num_feat, key_channels, value_channels)
            self.fetch = DistantFetch(c, key_channels, value_channels, radius=radius)
        self.body = make_layer(ResidualBlockNoBN, num_block, num_feat=c)
        self.conv_motion = nn.Conv2d(c, 5, 3, 1, 1)  # 4 flow corrections (LR px), 1 mask logit
        self.upconv1 = nn.Conv2d(c, 4 * c, 3, 1, 1)
        self.upconv2 = nn.Conv2d(c, 4 * 64, 3, 1, 1)
        self.conv_hr = nn.Conv2d(64, 64, 3, 1, 1)
        self.conv_last = nn.Conv2d(64, 3, 3, 1, 1)
        for conv in (self.conv_motion, self.conv_last):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)

    def entry(self, g: Tensor) -> tuple[Tensor, Tensor]:
        """Store entry ``(key, value)`` of a fused feature ``g (N, C, h, w)``."""
        return self.store(g)

    def forward(self, g0: Tensor, g1: Tensor, x0: Tensor, x1: Tensor, y0: Tensor, y1: Tensor,
                flow: Tensor, mask: Tensor, keys: Tensor | None = None,
                values: Tensor | None = None) -> Tensor:
        s = self.scale
        lr = x0.shape[-2:]
        big = y0.shape[-2:]
        fl = torch.cat([resize_flow(flow[:, :2], tuple(lr)),
                        resize_flow(flow[:, 2:], tuple(lr))], dim=1)
        ml = F.interpolate(mask, size=lr, mode="bilinear", align_corners=False)
        feats = torch.cat([
            flow_warp(g0, fl[:, :2], padding_mode="border"),
            flow_warp(g1, fl[:, 2:], padding_mode="border"),
            flow_warp(x0, fl[:, :2], padding_mode="border"),
            flow_warp(x1, fl[:, 2:], padding_mode="border"),
            torch.tanh(ml / 4), fl / 8,
        ], dim=1)
        z = self.lrelu(self.conv_in(feats))
        if self.use_df and keys is not None and keys.shape[1] > 0:
            z = z + self.fetch(z, keys, values)
        z = self.body(z)
        motion = F.interpolate(self.conv_motion(z), size=big, mode="bilinear",
                               align_corners=False)
        res = self.lrelu(F.pixel_shuffle(self.upconv1(z), 2))
        res = self.lrelu(F.pixel_shuffle(self.upconv2(res), 2))
        res = self.conv_last(self.lrelu(self.conv_hr(res)))
        ft = flow + motion[:, :4] * s
        w0 = flow_warp(y0, ft[:, :2], mode=self.warp_mode, padding_mode="border")
        w1 = flow_warp(y1, ft[:, 2:], mode=self.warp_mode, padding_mode="border")
        a = torch.sigmoid(mask + motion[:, 4:5])
        return a * w0 + (1 - a) * w1 + res


class SFNetS(nn.Module):
    """Store-and-fetch ST-VSR on BasicVSR + RIFE (see the module docstring).

    ``(B, n, 3, h, w) -> (B, 2n-1, 3, 4h, 4w)`` for ``n >= 2``; even outputs are BasicVSR's
    restorations of the inputs, odd outputs the :class:`MidFusion` frames.

    Args:
        num_feat, num_block: BasicVSR's width and depth (64 / 30 for the official weights).
        mid_feat, mid_block: width and depth of the fusion head.
        use_rife: motion from RIFE on the restored neighbours (else SpyNet linear motion).
        use_df: distant fetch from the stored features of inputs ``i-1`` and ``i+2``.
        sigma: forward–backward consistency tolerance (LR px) for the SpyNet motion prior.
    """

    kind = "spacetime"
    scale = 4
    delta_base = VIMEO_BI_WEIGHTS.name  # a store shipped as a difference is added to these
    num_frames = 0

    def __init__(self, num_feat: int = 64, num_block: int = 30, mid_feat: int = 64,
                 mid_block: int = 10, use_rife: bool = False, use_df: bool = True,
                 sigma: float = 0.5, warp_mode: str = "bicubic") -> None:
        super().__init__()
        self.vsr = BasicVSR(num_feat=num_feat, num_block=num_block)
        self.rife = RIFE() if use_rife else None
        self.head = MidFusion(num_feat=num_feat, mid_feat=mid_feat, num_block=mid_block,
                              use_df=use_df, warp_mode=warp_mode)
        self.use_df = use_df
        self.sigma = float(sigma)

    def motion(self, y0: Tensor, y1: Tensor, f01: Tensor, f10: Tensor) -> tuple[Tensor, Tensor]:
        """HR flows from ``t = ½`` ``(N, 4, H, W)`` and blending logit ``(N, 1, H, W)`` for
        restored (clamped) neighbours ``y0, y1`` and BasicVSR's LR flows ``f01, f10``."""
        big = tuple(y0.shape[-2:])
        if self.rife is not None:
            with torch.autocast(y0.device.type, enabled=False):
                inter = self.rife.intermediate(y0.float(), y1.float())
            return inter.flow.to(y0.dtype), inter.mask.to(y0.dtype)
        m = midpoint_motion(f01, f10, self.sigma)
        flow = torch.cat([resize_flow(m.ft0, big), resize_flow(m.ft1, big)], 1)
        prior = torch.log(m.w0 + 1e-4) - torch.log(m.w1 + 1e-4)
        return flow, F.interpolate(prior, size=big, mode="bilinear", align_corners=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[2] != 3:
            raise StvsrError(f"sfnet-s expects input (B, n, 3, h, w); got {tuple(x.shape)}")
        b, n, _, h, w = x.shape
        if n < 2:
            raise StvsrError(f"sfnet-s needs at least 2 input frames, got {n}")
        flows = self.vsr.compute_flows(x)
        assert flows is not None
        out = x.new_empty(b, 2 * n - 1, 3, 4 * h, 4 * w)
        # window of the last four inputs: (index, fused feature, restored frame, store entry)
        win: deque[tuple[int, Tensor, Tensor, tuple[Tensor, Tensor] | None]] = deque(maxlen=4)

        def new_frame(i: int) -> None:
            """Frame between inputs i and i+1; ``win`` holds i-1 .. i+2 where they exist."""
            byidx = {e[0]: e for e in win}
            _, g0, y0, _ = byidx[i]
            _, g1, y1, _ = byidx[i + 1]
            keys = values = None
            far = [byidx[j][3] for j in (i - 1, i + 2) if j in byidx and byidx[j][3] is not None]
            if far:
                keys = torch.stack([e[0] for e in far], 1)
                values = torch.stack([e[1] for e in far], 1)
            y0, y1 = y0.clamp(0, 1), y1.clamp(0, 1)
            flow, mask = self.motion(y0, y1, flows[0][:, i], flows[1][:, i])
            out[:, 2 * i + 1] = self.head(g0, g1, x[:, i], x[:, i + 1], y0, y1, flow, mask,
                                          keys, values)

        for i, g in enumerate(self.vsr.iter_features(x, flows)):
            y = self.vsr.reconstruct(g, x[:, i])
            out[:, 2 * i] = y
            win.append((i, g, y, self.head.entry(g) if self.use_df else None))
            if i >= 2:
                new_frame(i - 2)
        for i in range(max(0, n - 2), n - 1):
            new_frame(i)
        return out

    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A head-only checkpoint (every key ``head.*``) gets the official BasicVSR and RIFE
        weights. A BasicVSR fine-tune shipped as a difference (every key ``delta.*``) becomes
        the store, with the shipped head and the official RIFE (``sfnet-s-compressed``)."""
        if is_delta(state):  # the official BasicVSR is read once: as the delta's base
            parts = pretrained_parts(self)
            official = {k[len("vsr."):]: v for k, v in parts.items() if k.startswith("vsr.")}
            store = apply_delta(official, state)
            head = read_checkpoint(local_path(HEAD_WEIGHTS))
            return {**parts, **head, **{f"vsr.{k}": v for k, v in store.items()}}
        if state and all(k.startswith("head.") for k in state):
            state = {**pretrained_parts(self), **state}
        return state


def pretrained_parts(model: SFNetS) -> dict[str, Tensor]:
    """The official weights of ``model``'s frozen parts, under their ``vsr.``/``rife.`` keys."""
    parts: dict[str, Tensor] = {}
    for prefix, spec in BACKBONE_WEIGHTS.items():
        module = getattr(model, prefix[:-1])
        if module is None:
            continue
        state = read_checkpoint(local_path(spec))
        convert = getattr(module, "convert_state_dict", None)
        if convert is not None:
            state = convert(state)
        parts.update({prefix + k: v for k, v in state.items()})
    return parts


def init_pretrained(model: SFNetS) -> list[str]:
    """Load the official BasicVSR and RIFE weights into ``model`` (strictly per part); returns
    the keys set. Used as the trainer's warm start (``init_mode: pretrained``)."""
    parts = pretrained_parts(model)
    own = model.state_dict()
    missing = [k for k in own if (k.startswith("vsr.") or k.startswith("rife.")) and k not in parts]
    if missing:
        raise StvsrError(f"pretrained parts miss {missing[0]!r}")
    model.load_state_dict({**own, **parts}, strict=True)
    return sorted(parts)


def export_head(checkpoint: str | Path, out: str | Path, model: SFNetS | None = None) -> str:
    """Write the ``head.*`` tensors of a full sfnet-s checkpoint to ``out`` (safetensors).

    The frozen parts must equal the official weights (checked tensor by tensor), since that is
    what a head-only file is completed with on load. Returns the file's sha256.
    """
    from stvsr.weights import export_trained_part

    names = ",".join(w.name for w in BACKBONE_WEIGHTS.values())
    return export_trained_part(checkpoint, out, pretrained_parts(model or SFNetS()),
                               metadata={"backbone": names})


register_model(
    "sfnet-s-untrained", SFNetS,
    description="sfnet-s v2 architecture, head randomly initialised (for training)",
)
HEAD_WEIGHTS = WeightsSpec(
    name="sfnet-s",
    filename="sfnet_s2_head.safetensors",
    sha256="802b9329def1fd56baaf7bc31d4c58136eb1fef9cb1f8ffeefd8a9107fd91af3",
    license="Apache-2.0 (stvsr); backbone: official BasicVSR weights, Apache-2.0 (BasicSR)",
    packaged="pretrained/sfnet_s2_head.safetensors",
    description="sfnet-s v2 fusion head trained on the stvsr CPU corpus "
                "(backbone: basicvsr-vimeo-bi, filled in on load)",
)
register_model(
    "sfnet-s", SFNetS, weights=HEAD_WEIGHTS, parts=BACKBONE_WEIGHTS.values(),
    description="SFNet-S v2 x4/x2t: official BasicVSR store/adjacent fetch + trained distant "
                "fetch and fusion head (the default model of `stvsr upscale`)",
)
register_model(
    "sfnet-s-compressed", SFNetS, weights=COMPRESSED_WEIGHTS,
    parts=(*BACKBONE_WEIGHTS.values(), HEAD_WEIGHTS),
    description="sfnet-s for compressed input (H.264/web video): its store is "
                "basicvsr-compressed, head and RIFE as sfnet-s (default of `stvsr upscale` for "
                "lossy-coded input)",
)
