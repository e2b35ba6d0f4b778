"""SFNet's building blocks (*design* where the paper is silent, see ``docs/spec/sfnet.md``): the
fetch-entry selection rule, adjacent fetch (deformable alignment), the distant-fetch memory
read and store entries, reconstruction, and one recurrent module (BRM or FRM) that combines
them. Assembled into the network by :mod:`stvsr.models.sfnet`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from stvsr.errors import StvsrError
from stvsr.models.blocks import ResidualBlockNoBN, make_layer
from stvsr.ops.dcn import DCNv2Pack
from stvsr.ops.fused import conv_act, conv_shuffle_act

__all__ = [
    "POLICIES",
    "AdjacentFetch",
    "DistantFetch",
    "RecurrentModule",
    "Reconstruction",
    "StoreEntry",
    "leaky_relu",
    "local_window_read",
    "select_fetch_indices",
]

POLICIES = ("spread", "nearest")


# --------------------------------------------------------------------------- fetch selection


def select_fetch_indices(
    candidates: Sequence[int], k: int, budget: int | None, policy: str = "spread"
) -> list[int]:
    """Which stored entries step ``k`` reads (*design*). Pure function.

    Args:
        candidates: frame indices of the store entries step ``k`` may read (any order).
        k: the current output index.
        budget: at most this many entries are returned (``M``); ``None`` = all candidates.
        policy: ``"nearest"`` — the ``budget`` entries closest in time to ``k`` (ties: the
            earlier index first); ``"spread"`` — the ``ceil(budget / 2)`` nearest ones plus
            ``budget - ceil(budget / 2)`` entries spread evenly (centres of equal bins) over the
            remaining candidates in index order, so the far past/future is still sampled.

    Returns:
        The selected indices, sorted ascending (``len <= budget``; all candidates if they fit).
    """
    if policy not in POLICIES:
        raise StvsrError(f"unknown store policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if budget is not None and int(budget) < 1:
        raise StvsrError(f"fetch budget must be >= 1 or None (all), got {budget}")
    cands = sorted(set(int(c) for c in candidates))
    if budget is None or len(cands) <= budget:
        return cands
    budget = int(budget)
    by_dist = sorted(cands, key=lambda j: (abs(j - k), j))
    if policy == "nearest":
        return sorted(by_dist[:budget])
    n_near = (budget + 1) // 2
    near = by_dist[:n_near]
    rest = sorted(set(cands) - set(near))
    m = budget - n_near
    length = len(rest)
    spread = [rest[int((i + 0.5) * length / m)] for i in range(m)] if m > 0 else []
    return sorted(near + spread)


# --------------------------------------------------------------------------- building blocks


def leaky_relu() -> nn.LeakyReLU:
    """LeakyReLU(0.1), in place."""
    return nn.LeakyReLU(negative_slope=0.1, inplace=True)


class AdjacentFetch(nn.Module):
    """AF: modulated deformable alignment of an adjacent hidden state onto the current frame.

    ``forward(feat (B, C, h, w), hidden (B, C, h, w)) -> aligned (B, C, h, w)``. Offsets and
    masks are predicted from ``cat(feat, hidden)`` by two 3×3 convs + the DCN's own
    ``conv_offset`` (EDVR's ``DCNv2Pack`` layout, ``deformable_groups`` groups); the DCN samples
    ``hidden``. Offsets are clamped to ``±max_offset`` LR pixels (*design*; a warning is logged
    when the clamp bites). With ``pyramid=True`` a PCD-like second level at half resolution
    predicts coarse offsets (clamped to ``max_offset / 2``) that feed the full-resolution
    offset head, and the two aligned maps are fused (*design*). ``h`` and ``w`` must be even
    with the pyramid.
    """

    def __init__(
        self,
        num_feat: int,
        deformable_groups: int = 8,
        max_offset: float | None = 10.0,
        pyramid: bool = False,
    ) -> None:
        super().__init__()
        c = num_feat
        self.pyramid = pyramid
        self.offset_conv1 = nn.Conv2d(2 * c, c, 3, 1, 1)
        self.offset_conv2 = nn.Conv2d(2 * c if pyramid else c, c, 3, 1, 1)
        self.dcn = DCNv2Pack(c, c, 3, padding=1, deformable_groups=deformable_groups,
                             max_offset=max_offset)
        self.lrelu = leaky_relu()
        if pyramid:
            half = None if max_offset is None else max_offset / 2.0
            self.down_feat = nn.Conv2d(c, c, 3, 2, 1)
            self.down_hidden = nn.Conv2d(c, c, 3, 2, 1)
            self.l2_offset_conv1 = nn.Conv2d(2 * c, c, 3, 1, 1)
            self.l2_offset_conv2 = nn.Conv2d(c, c, 3, 1, 1)
            self.l2_dcn = DCNv2Pack(c, c, 3, padding=1, deformable_groups=deformable_groups,
                                    max_offset=half)
            self.fuse = nn.Conv2d(2 * c, c, 3, 1, 1)
        # design: the offset heads start near zero instead of at exactly zero (BasicSR), so the
        # offset-prediction convs receive gradients from the first step.
        for dcn in (self.dcn, getattr(self, "l2_dcn", None)):
            if dcn is not None:
                nn.init.normal_(dcn.conv_offset.weight, std=1e-4)

    def forward(self, feat: Tensor, hidden: Tensor) -> Tensor:
        off = conv_act(self.offset_conv1, torch.cat([feat, hidden], dim=1), self.lrelu)
        if not self.pyramid:
            off = conv_act(self.offset_conv2, off, self.lrelu)
            return self.lrelu(self.dcn(hidden, off))
        f2 = self.lrelu(self.down_feat(feat))
        h2 = self.lrelu(self.down_hidden(hidden))
        off2 = self.lrelu(self.l2_offset_conv1(torch.cat([f2, h2], dim=1)))
        off2 = self.lrelu(self.l2_offset_conv2(off2))
        al2 = self.lrelu(self.l2_dcn(h2, off2))
        size = feat.shape[-2:]
        off2_up = F.interpolate(off2, size=size, mode="bilinear", align_corners=False) * 2.0
        off = self.lrelu(self.offset_conv2(torch.cat([off, off2_up], dim=1)))
        al1 = self.lrelu(self.dcn(hidden, off))
        al2_up = F.interpolate(al2, size=size, mode="bilinear", align_corners=False)
        return self.lrelu(self.fuse(torch.cat([al1, al2_up], dim=1)))


def local_window_read(q: Tensor, keys: Tensor, values: Tensor, radius: int, tau: Tensor) -> Tensor:
    """Softmax memory read over a ``(2r+1)²`` window, jointly across ``M`` entries.

    For every query position ``p``: ``a(m, d) = softmax_{m,d}(<q(p), key_m(p + d)> /
    (sqrt(Ck) · tau))`` over the ``M`` entries and window offsets ``d`` inside the map; the
    read-out is ``sum a(m, d) · value_m(p + d)``. Positions outside the map are excluded.
    Implemented as a padded-shift loop over the ``(2r+1)²`` offsets (no per-pixel loop);
    memory ``O(M · (2r+1)² · hw)`` for the logits.

    Args:
        q: ``(B, Ck, hp, wp)`` queries.
        keys: ``(B, M, Ck, hp, wp)``.
        values: ``(B, M, Cv, hp, wp)``.
        radius: ``r``.
        tau: scalar temperature (> 0).

    Returns:
        ``(B, Cv, hp, wp)``.
    """
    b, m, ck, hp, wp = keys.shape
    r = int(radius)
    d = 2 * r + 1
    kp = F.pad(keys, (r, r, r, r))
    vp = F.pad(values, (r, r, r, r))
    valid = F.pad(q.new_ones(1, 1, hp, wp), (r, r, r, r))
    scale = 1.0 / (math.sqrt(ck) * tau)
    neg = torch.finfo(q.dtype).min
    qe = q.unsqueeze(1)
    logits = []
    for dy in range(d):
        for dx in range(d):
            ks = kp[..., dy:dy + hp, dx:dx + wp]
            lg = (qe * ks).sum(dim=2)  # (B, M, hp, wp)
            ok = valid[..., dy:dy + hp, dx:dx + wp] > 0
            logits.append(torch.where(ok, lg * scale, lg.new_full((), neg)))
    attn = torch.softmax(torch.stack(logits, dim=2).view(b, m * d * d, hp, wp), dim=1)
    attn = attn.view(b, m, d * d, hp, wp)
    out = q.new_zeros(b, values.shape[2], hp, wp)
    i = 0
    for dy in range(d):
        for dx in range(d):
            vs = vp[..., dy:dy + hp, dx:dx + wp]  # (B, M, Cv, hp, wp)
            out = out + (attn[:, :, i].unsqueeze(2) * vs).sum(1)
            i += 1
    return out


class DistantFetch(nn.Module):
    """DF: content-based read of distant store entries (*design*).

    ``forward(feat (B, C, h, w), keys (B, M, Ck, hp, wp), values (B, M, Cv, hp, wp))
    -> G (B, C, h, w)``. The query is a 1×1 conv of ``feat`` average-pooled by ``stride``; the
    read-out (:func:`local_window_read`, radius ``r``, learned temperature ``exp(log_tau)``) is
    upsampled bilinearly to ``h × w`` and mapped to ``C`` channels by a 3×3 conv.
    """

    def __init__(self, num_feat: int, key_channels: int, value_channels: int, radius: int = 3,
                 stride: int = 2) -> None:
        super().__init__()
        self.radius = radius
        self.stride = stride
        self.query = nn.Conv2d(num_feat, key_channels, 1)
        self.log_tau = nn.Parameter(torch.zeros(()))
        self.out_conv = nn.Conv2d(value_channels, num_feat, 3, 1, 1)

    def forward(self, feat: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        q = self.query(feat)
        if self.stride > 1:
            q = F.avg_pool2d(q, self.stride)
        read = local_window_read(q, keys, values, self.radius, self.log_tau.exp())
        read = F.interpolate(read, size=feat.shape[-2:], mode="bilinear", align_corners=False)
        return self.out_conv(read)


class StoreEntry(nn.Module):
    """Store entry ``c_k = (key, value)`` of a hidden state (*design*).

    ``forward(H (B, C, h, w)) -> (key (B, Ck, h/st, w/st), value (B, Cv, h/st, w/st))``: 1×1
    convs then average pooling by ``stride``.
    """

    def __init__(self, num_feat: int, key_channels: int, value_channels: int,
                 stride: int = 2) -> None:
        super().__init__()
        self.stride = stride
        self.key = nn.Conv2d(num_feat, key_channels, 1)
        self.value = nn.Conv2d(num_feat, value_channels, 1)

    def forward(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.key(hidden), self.value(hidden)
        if self.stride > 1:
            k, v = F.avg_pool2d(k, self.stride), F.avg_pool2d(v, self.stride)
        return k, v


class Reconstruction(nn.Module):
    """``R``: ``n_rec`` residual blocks + pixel-shuffle upsampler + conv_hr + conv_last.

    ``(B, C, h, w) -> (B, 3, s·h, s·w)``. Upsampler: ×2 ×2 for ``s = 4`` (``upconv1``,
    ``upconv2``), one ×3 (``s = 3``) or ×2 (``s = 2``) stage (``upconv1``), none for ``s = 1``;
    the tail's names and shapes match BasicVSR's for ``C = 64, s = 4``.
    """

    def __init__(self, num_feat: int, num_block: int, scale: int) -> None:
        super().__init__()
        c = num_feat
        self.scale = scale
        self.body = make_layer(ResidualBlockNoBN, num_block, num_feat=c)
        self.lrelu = leaky_relu()
        if scale == 4:
            self.upconv1 = nn.Conv2d(c, 4 * c, 3, 1, 1)
            self.upconv2 = nn.Conv2d(c, 4 * c, 3, 1, 1)
            self.shuffles = [2, 2]
        elif scale in (2, 3):
            self.upconv1 = nn.Conv2d(c, scale * scale * c, 3, 1, 1)
            self.shuffles = [scale]
        else:
            self.shuffles = []
        self.conv_hr = nn.Conv2d(c, c, 3, 1, 1)
        self.conv_last = nn.Conv2d(c, 3, 3, 1, 1)

    def forward(self, x: Tensor, add: Tensor | None = None) -> Tensor:
        """``(B, C, h, w) -> (B, 3, s·h, s·w)``; ``add`` (same shape as the output) is added to
        the result of the last conv."""
        out = self.body(x)
        for i, f in enumerate(self.shuffles):
            conv = self.upconv1 if i == 0 else self.upconv2
            out = conv_shuffle_act(conv, out, f, self.lrelu)
        out = conv_act(self.conv_hr, out, self.lrelu)
        return conv_act(self.conv_last, out, add=add)


class RecurrentModule(nn.Module):
    """One recurrent direction (BRM or FRM): AF, DF, DS and the store-entry head.

    ``num_adjacent`` = 1 (BRM: ``H^b_{k+1}``) or 2 (FRM: ``H^f_{k-1}`` and ``H^b_{k+1}``,
    aligned separately and fused by a 1×1 conv ``af_fuse``). With ``use_af=False`` the adjacent
    hidden states enter unaligned (ablation). DS: ``H = RB^{n_ds}(lrelu(conv1×1(cat(F, A, G))))``.
    """

    def __init__(self, num_feat: int, num_ds: int, num_adjacent: int, *, use_af: bool,
                 use_df: bool, key_channels: int, value_channels: int, radius: int,
                 store_stride: int, deformable_groups: int, max_offset: float | None,
                 pyramid: bool) -> None:
        super().__init__()
        c = num_feat
        self.use_af = use_af
        self.use_df = use_df
        if use_af:
            self.af = nn.ModuleList(
                AdjacentFetch(c, deformable_groups, max_offset, pyramid)
                for _ in range(num_adjacent)
            )
        if num_adjacent > 1:
            self.af_fuse = nn.Conv2d(num_adjacent * c, c, 1)
        if use_df:
            self.df = DistantFetch(c, key_channels, value_channels, radius, store_stride)
            self.store = StoreEntry(c, key_channels, value_channels, store_stride)
        n_in = 3 if use_df else 2
        self.ds_fuse = nn.Conv2d(n_in * c, c, 1)
        self.ds_body = make_layer(ResidualBlockNoBN, num_ds, num_feat=c)
        self.lrelu = leaky_relu()

    def adjacent(self, feat: Tensor, hidden: Sequence[Tensor | None]) -> Tensor:
        """AF of ``feat (B, C, h, w)`` with each adjacent state (``None`` = absent → zeros)."""
        parts = []
        for i, h in enumerate(hidden):
            if h is None:
                parts.append(torch.zeros_like(feat))
            elif self.use_af:
                parts.append(self.af[i](feat, h))
            else:
                parts.append(h)
        if len(parts) == 1:
            return parts[0]
        return conv_act(self.af_fuse, torch.cat(parts, dim=1), self.lrelu)

    def step(self, feat: Tensor, adj: Tensor, fetched: Tensor | None) -> Tensor:
        """DS: ``(F, A, G) -> H``, all ``(B, C, h, w)``."""
        parts = [feat, adj]
        if self.use_df:
            parts.append(fetched if fetched is not None else torch.zeros_like(feat))
        fused = conv_act(self.ds_fuse, torch.cat(parts, dim=1), self.lrelu)
        return self.ds_body(fused)
